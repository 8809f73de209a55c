package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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
	// The low 48 bits of the time, big-endian, in b[:6]; b[6:8] are zero
	// until the random bytes overwrite them.
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
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
	return int64(binary.BigEndian.Uint64(b[:8]) >> 16), true
}

// Hash returns the lower-case hex SHA-256 of s. Opaque secrets are stored only in
// this form. Because they carry 256 random bits, a fast hash is enough: nobody
// can guess a preimage, so no slow password hash is needed (unlike passwords).
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MAC returns the HMAC-SHA256 of msg under key: the one keyed hash of the
// server, making the keys derived from JWT_SECRET, the HMAC key's kid, CSRF
// and consent MACs, stored user codes and DPoP nonces. Each caller starts msg
// with its own purpose, so one purpose's MAC is never another's.
func MAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
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

// UserCodeAlphabet is the alphabet of user codes (RFC 8628 §6.1): twenty
// consonants, no vowels (no words) and nothing that looks like a digit.
const UserCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// UserCodeLen is the length of a user code: 20^8, about 34.5 bits, which is
// enough only because guesses are throttled (RFC 8628 §5.1).
const UserCodeLen = 8

// NewUserCode returns a fresh user code of UserCodeLen letters drawn
// uniformly from UserCodeAlphabet. Like NewOpaque, it panics if the
// operating system's random source fails.
func NewUserCode() string {
	out := make([]byte, 0, UserCodeLen)
	var b [16]byte
	for len(out) < UserCodeLen {
		rand.Read(b[:])
		for _, c := range b {
			// 240 is the largest multiple of 20 below 256: rejecting the
			// rest keeps every letter equally likely.
			if c < 240 && len(out) < UserCodeLen {
				out = append(out, UserCodeAlphabet[c%20])
			}
		}
	}
	return string(out)
}
