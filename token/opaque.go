package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"time"
)

// OpaqueLen is the length of the strings NewOpaque returns: 256 random bits in
// unpadded base64url.
const OpaqueLen = 43

// NewOpaque returns a fresh 256-bit random value in unpadded base64url, used for
// refresh tokens, authorization codes, client secrets, session and reset tokens.
// It panics if the operating system's random source fails: nothing safe can be
// done without it.
func NewOpaque() string {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never returns an error; it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// NewID returns a fresh 128-bit random identifier in unpadded base64url, for
// "jti" and family ids: unique, not secret.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// NewTimedID returns a fresh 128-bit identifier for a token's "jti": the
// mint time t in Unix milliseconds (6 bytes, big-endian) followed by 10
// random bytes, in unpadded base64url. Revocations of a user or client are
// cut off at a millisecond; the jti says on which side of the cut a token
// was minted, which iat (whole seconds) cannot.
func NewTimedID(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	rand.Read(b[6:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TimedIDTime returns the mint time of an identifier made by NewTimedID, in
// Unix milliseconds, and false for anything that is not 16 bytes of base64url.
func TimedIDTime(id string) (int64, bool) {
	if len(id) != 22 {
		return 0, false
	}
	var b [16]byte
	if n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(id)); err != nil || n != 16 {
		return 0, false
	}
	var ms int64
	for i := 0; i < 6; i++ {
		ms = ms<<8 | int64(b[i])
	}
	return ms, true
}

// Hash returns the lower-case hex SHA-256 of s. Opaque secrets are stored only in
// this form. Because they carry 256 random bits, a fast hash is enough: nobody
// can guess a preimage, so no slow password hash is needed (unlike passwords).
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Secret holds a credential (a password, token or key) so that it cannot end up
// in a log line or a formatted error by accident: every way of printing it
// yields "REDACTED". Call Reveal where the raw value is really needed.
type Secret string

// Reveal returns the raw secret.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (Secret) String() string { return "REDACTED" }

// GoString implements fmt.GoStringer, so %#v redacts too.
func (Secret) GoString() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalText keeps encoding/json and friends from writing the raw value.
func (Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }
