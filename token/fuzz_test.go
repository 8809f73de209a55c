package token

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, never returns claims with an error,
// and accepts only tokens that are exactly what Sign produces for their claims.
func FuzzParse(f *testing.F) {
	k := NewHMACKey([]byte("0123456789abcdef0123456789abcdef"))
	s, _ := NewSigner(k)
	v, _ := NewVerifier(k)
	valid, _ := s.Sign(TypeAccess, testClaims())
	h, rest, _ := strings.Cut(valid, ".")
	f.Add(valid)                                 // the one good token
	f.Add(valid + "\n")                          // base64 decoders skip newlines; we must not
	f.Add(strings.Repeat(".", 8<<10))            // thousands of separators: must fail fast
	f.Add(h + "." + rest + "=")                  // padding
	f.Add(h + ".e30." + strings.Repeat("A", 43)) // empty claims object
	f.Add("eyJhbGciOiJub25lIn0.e30.")            // alg none
	f.Add(strings.Replace(valid, h, strings.ToLower(h), 1))
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Parse(raw, testExpect, testNow)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse(%q) returned claims with error %v", raw, err)
			}
			return
		}
		again, err := s.Sign(TypeAccess, c)
		if err != nil {
			t.Fatal(err)
		}
		if again != raw { // accepted means canonical
			t.Fatalf("Parse accepted %q, which is not the form Sign produces (%q)", raw, again)
		}
	})
}

func BenchmarkSignHS256(b *testing.B) {
	k := NewHMACKey([]byte("0123456789abcdef0123456789abcdef"))
	s, _ := NewSigner(k)
	c := testClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(TypeAccess, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, k := range allKeys(b) {
		s, _ := NewSigner(k)
		v, _ := NewVerifier(k)
		raw, _ := s.Sign(TypeAccess, testClaims())
		b.Run("sign/"+k.Alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Sign(TypeAccess, testClaims())
			}
		})
		b.Run("verify/"+k.Alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Parse(raw, testExpect, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	k := NewHMACKey([]byte("0123456789abcdef0123456789abcdef"))
	v, _ := NewVerifier(k)
	hostile := strings.Repeat(".", 8<<10)
	b.Run("many_dots", func(b *testing.B) {
		for b.Loop() {
			v.Parse(hostile, testExpect, time.Now())
		}
	})
}

// FuzzParseAsymmetric feeds the parser tokens for every algorithm with bytes
// changed: whatever it accepts must carry a signature that verifies under the
// key its header names, and claims equal to what was signed.
func FuzzParseAsymmetric(f *testing.F) {
	keys := allKeys(f)
	v, _ := NewVerifier(keys...)
	want := testClaims()
	for i, k := range keys {
		s, _ := NewSigner(k)
		raw, _ := s.Sign(TypeAccess, want)
		f.Add(raw, uint16(0), byte(0), uint8(i))            // valid as is
		f.Add(raw, uint16(len(raw)-1), byte('A'), uint8(i)) // last signature byte
		f.Add(raw, uint16(10), byte('x'), uint8(i))         // inside the header
	}
	f.Fuzz(func(t *testing.T, raw string, pos uint16, b byte, _ uint8) {
		mutated := raw
		if b != 0 && int(pos) < len(raw) {
			mutated = raw[:pos] + string(b) + raw[pos+1:]
		}
		c, err := v.Parse(mutated, testExpect, testNow)
		if err != nil {
			if c != nil {
				t.Fatalf("claims with error %v", err)
			}
			return
		}
		if *c != *want {
			t.Fatalf("Parse accepted %q with claims %+v; only %+v was ever signed", mutated, c, want)
		}
	})
}

// FuzzClaimsJSON: the hand-written claims encoder and encoding/json agree on
// what any claims decode to.
func FuzzClaimsJSON(f *testing.F) {
	f.Add("https://as", "42", "aud", "jti", "client", "read write", "nonce", int64(1), int64(0))
	f.Add("a\"b\\c", "\x00\x1f\x7f", "<>&", "\u2028\u2029", "é", "\xff\xfe", "\xed\xa0\x80", int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, iss, sub, aud, jti, client, scope, nonce string, exp, nbf int64) {
		c := &Claims{Issuer: iss, Subject: sub, Audience: aud, ID: jti, ClientID: client, Scope: scope, Nonce: nonce,
			Expiry: exp, NotBefore: nbf, IssuedAt: exp / 2, AuthTime: nbf, AtHash: scope, AZP: client, SessionID: jti}
		ours := appendClaims(nil, c)
		theirs, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var a, b Claims
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("appendClaims wrote invalid JSON %q: %v", ours, err)
		}
		if err := json.Unmarshal(theirs, &b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("appendClaims %q decodes to %+v; json.Marshal %q to %+v", ours, a, theirs, b)
		}
	})
}
