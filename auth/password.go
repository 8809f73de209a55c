package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters (RFC 9106). They are stored
// in every hash (PHC string form), so raising them later re-hashes passwords
// at their owners' next login while old hashes keep verifying.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultArgon2 is OWASP's first argon2id recommendation: 19 MiB, 2 passes,
// 1 lane. With at most GOMAXPROCS hashes at once, a login flood holds a few
// tens of MiB.
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read back from a stored hash, so that a corrupted or
// planted row cannot make one verification take a gigabyte or a minute.
const (
	maxArgonMemory = 256 * 1024 // KiB
	maxArgonTime   = 16
	maxArgonLen    = 128
)

// ErrHashFormat means a stored password hash is not an argon2id PHC string
// this package can read.
var ErrHashFormat = errors.New("password hash: not an argon2id PHC string")

// ErrBusy means a password could not be hashed in time because every hashing
// slot stayed busy; the handler answers 503 with Retry-After.
var ErrBusy error = busyError{}

type busyError struct{}

func (busyError) Error() string     { return "password hashing busy" }
func (busyError) Unavailable() bool { return true }

// Passwords hashes and verifies passwords with argon2id, at most a fixed
// number at a time: each hash holds Memory KiB, so the bound is what keeps a
// flood of logins from exhausting memory.
type Passwords struct {
	params Argon2Params
	slots  chan struct{}
	wait   time.Duration
	dummy  string       // a hash of a random password, verified for unknown users
	took   atomic.Int64 // nanoseconds the last verification under params took (Verify pads to it)
}

// NewPasswords returns a Passwords computing at most concurrency hashes at
// once; a request waits at most wait for a slot.
func NewPasswords(p Argon2Params, concurrency int, wait time.Duration) *Passwords {
	pw := &Passwords{params: p, slots: make(chan struct{}, max(concurrency, 1)), wait: wait}
	// The dummy needs no real derivation: random bytes are a key that no
	// password reaches, and verifying against them costs a full hash.
	salt, key := make([]byte, p.SaltLen), make([]byte, p.KeyLen)
	rand.Read(salt)
	rand.Read(key)
	pw.dummy = encodePHC(p, salt, key)
	return pw
}

// acquire takes a hashing slot, waiting at most pw.wait, or ErrBusy.
func (pw *Passwords) acquire(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pw.wait)
	defer cancel()
	select {
	case pw.slots <- struct{}{}:
		return nil
	case <-ctx.Done(): // the wait, or the request, is over
		return ErrBusy
	}
}

func (pw *Passwords) release() { <-pw.slots }

// Hash returns the PHC string of password under the current parameters.
func (pw *Passwords) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, pw.params.SaltLen)
	rand.Read(salt)
	if err := pw.acquire(ctx); err != nil {
		return "", err
	}
	defer pw.release()
	p := pw.params
	return encodePHC(p, salt, argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)), nil
}

// Verify reports whether password matches the PHC string phc, comparing in
// constant time, and whether the hash should be replaced because it was made
// with other parameters. An unreadable phc is an error wrapping ErrHashFormat.
func (pw *Passwords) Verify(ctx context.Context, password, phc string) (ok, rehash bool, err error) {
	p, salt, want, err := ParsePHC(phc)
	if err != nil {
		return false, false, err
	}
	if err := pw.acquire(ctx); err != nil {
		return false, false, err
	}
	start := time.Now()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	took := time.Since(start)
	pw.release()
	// Constant time: the derived key must not leak, byte by byte, through timing.
	ok = subtle.ConstantTimeCompare(got, want) == 1
	p.KeyLen, p.SaltLen = uint32(len(want)), uint32(len(salt))
	switch {
	case p == pw.params:
		pw.took.Store(int64(took))
	case !ok:
		// A wrong password under a hash of cheaper parameters (an account
		// not signed in since they were raised) takes as long as under the
		// current ones, which an unknown account's takes (VerifyDummy): it
		// answered in a fraction of that, and one timed login told whether
		// an account exists. Padded by a wait, outside the hashing slot; a
		// verification under the current parameters first if none was
		// measured yet. A costlier hash cannot be padded down: lowering
		// the parameters is in SECURITY.md's Known limits.
		pad := time.Duration(pw.took.Load())
		if pad == 0 {
			return false, false, pw.VerifyDummy(ctx, password)
		}
		t := time.NewTimer(pad - took)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ok, ok && p != pw.params, nil
}

// VerifyDummy spends the time of one verification and reports false, so that
// a login for an unknown account takes as long as one with a wrong password.
func (pw *Passwords) VerifyDummy(ctx context.Context, password string) error {
	_, _, err := pw.Verify(ctx, password, pw.dummy)
	return err
}

var b64 = base64.RawStdEncoding.Strict() // PHC strings use unpadded standard base64

func encodePHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// ParsePHC reads "$argon2id$v=19$m=M,t=T,p=P$salt$key" exactly as encodePHC
// writes it, with the parameters bounded. Anything else wraps ErrHashFormat.
func ParsePHC(s string) (p Argon2Params, salt, key []byte, err error) {
	bad := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %s", ErrHashFormat, why)
	}
	if len(s) > 512 {
		return bad("too long")
	}
	// base64 decoders skip '\r' and '\n', even Strict ones: refuse them here,
	// or a string encodePHC never writes would be accepted.
	if strings.ContainsAny(s, "\r\n") {
		return bad("line break")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("not argon2id v=19")
	}
	// Sscanf takes spaces, leading zeros and anything after the last
	// number: printing the numbers back must give the text read.
	var m, t, par uint32
	_, err = fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &par)
	if err != nil || fmt.Sprintf("m=%d,t=%d,p=%d", m, t, par) != parts[3] {
		return bad("parameters")
	}
	if t < 1 || t > maxArgonTime || par < 1 || par > 255 || m < 8*par || m > maxArgonMemory {
		return bad("parameters out of bounds")
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(salt) > maxArgonLen || len(key) < 16 || len(key) > maxArgonLen {
		return bad("salt or key")
	}
	return Argon2Params{Memory: m, Time: t, Threads: uint8(par), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}, salt, key, nil
}
