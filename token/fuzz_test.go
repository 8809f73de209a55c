package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"reflect"
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
// key its header names, claims equal to what was signed, and be in the one
// form Sign makes: the same signing input, and the same signature where
// signing is deterministic (HS256, RS256, EdDSA) or the low-S form where it
// is not (ES256, whose (r, n−s) twin of a valid signature also verifies
// under ecdsa.Verify).
func FuzzParseAsymmetric(f *testing.F) {
	keys := allKeys(f)
	v, _ := NewVerifier(keys...)
	want := testClaims()
	signers := map[string]*Signer{}
	for i, k := range keys {
		s, _ := NewSigner(k)
		signers[k.ID] = s
		raw, _ := s.Sign(TypeAccess, want)
		f.Add(raw, uint16(0), byte(0), uint8(i))            // valid as is
		f.Add(raw, uint16(len(raw)-1), byte('A'), uint8(i)) // last signature byte
		f.Add(raw, uint16(10), byte('x'), uint8(i))         // inside the header
		if k.Alg == ES256 {
			f.Add(highS(f, raw), uint16(0), byte(0), uint8(i)) // the other valid ECDSA form
		}
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
		k := keyOf(t, keys, mutated)
		again, err := signers[k.ID].Sign(TypeAccess, c)
		if err != nil {
			t.Fatal(err)
		}
		input := mutated[:strings.LastIndexByte(mutated, '.')]
		if input != again[:strings.LastIndexByte(again, '.')] {
			t.Fatalf("Parse accepted %q, whose signing input is not the one Sign makes (%q)", mutated, again)
		}
		if k.Alg == ES256 {
			sig, _ := base64.RawURLEncoding.DecodeString(mutated[len(input)+1:])
			if new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfOrder) > 0 {
				t.Fatalf("Parse accepted %q, an ES256 signature in its high-S form", mutated)
			}
		} else if again != mutated {
			t.Fatalf("Parse accepted %q, which is not the form Sign produces (%q)", mutated, again)
		}
	})
}

// keyOf returns the key whose header raw carries.
func keyOf(t testing.TB, keys []*Key, raw string) *Key {
	h, _, _ := strings.Cut(raw, ".")
	for _, k := range keys {
		if k.header(TypeAccess) == h {
			return k
		}
	}
	t.Fatalf("no key for the header of %q", raw)
	return nil
}

// highS returns an ES256 token with its signature's s replaced by n−s: the
// other form of the same valid ECDSA signature.
func highS(t testing.TB, raw string) string {
	i := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %q", raw)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	out := append([]byte{}, sig...)
	s.FillBytes(out[32:])
	return raw[:i+1] + base64.RawURLEncoding.EncodeToString(out)
}

// ES256 signatures are made low-S, and the high-S twin of a valid one, which
// ecdsa.Verify accepts, is refused.
func TestES256LowS(t *testing.T) {
	var k *Key
	for _, key := range allKeys(t) {
		if key.Alg == ES256 {
			k = key
		}
	}
	s, _ := NewSigner(k)
	v, _ := NewVerifier(k)
	for i := 0; i < 64; i++ { // a high s comes out of ecdsa.Sign half the time
		raw, err := s.Sign(TypeAccess, testClaims())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Parse(raw, testExpect, testNow); err != nil {
			t.Fatalf("Parse(Sign()) = %v", err)
		}
		twin := highS(t, raw)
		sig, _ := base64.RawURLEncoding.DecodeString(twin[strings.LastIndexByte(twin, '.')+1:])
		pub := k.pub.(*ecdsa.PublicKey)
		d := sha256.Sum256([]byte(twin[:strings.LastIndexByte(twin, '.')]))
		if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("the high-S twin does not verify under ecdsa.Verify: the test proves nothing")
		}
		if c, err := v.Parse(twin, testExpect, testNow); err == nil || c != nil {
			t.Fatalf("Parse accepted the high-S form of a valid signature: %q", twin)
		}
	}
}

// FuzzClaimsJSON: the hand-written claims encoder and encoding/json agree on
// what any claims decode to.
func FuzzClaimsJSON(f *testing.F) {
	// Plain values, email_verified true, a logout token's events.
	f.Add("https://as", "42", "aud", "jti", "client", "read write", "nonce", int64(1), int64(0), true)
	// Escapes and invalid UTF-8, email_verified false (it must be written).
	f.Add("a\"b\\c", "\x00\x1f\x7f", "<>&", "\u2028\u2029", "é", "\xff\xfe", "\xed\xa0\x80", int64(-1), int64(1<<62), false)
	// A DPoP-bound access token (odd nbf: cnf.jkt).
	f.Add("https://as", "42", "thumbprint", "jti", "client", "read", "", int64(5), int64(1), false)
	// An email without email_verified (nothing written for it).
	f.Add("https://as", "42", "aud", "", "", "openid email", "ann@example.com", int64(3), int64(0), false)
	f.Fuzz(func(t *testing.T, iss, sub, aud, jti, client, scope, nonce string, exp, nbf int64, logout bool) {
		c := &Claims{Issuer: iss, Subject: sub, Audience: aud, ID: jti, ClientID: client, Scope: scope, Nonce: nonce,
			Expiry: exp, NotBefore: nbf, IssuedAt: exp / 2, AuthTime: nbf, AtHash: scope, SessionID: jti, SecretTag: client, Email: nonce}
		if logout {
			c.Events = &Events{}
		}
		if nbf%2 != 0 {
			c.Cnf = &Cnf{JKT: aud}
		}
		// email_verified absent, false or true, by exp: a false must be
		// written (a *bool), an absent one must not.
		if v := exp % 3; v != 0 {
			verified := v > 0
			c.EmailVerified = &verified
		}
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
		if (a.Events == nil) == logout {
			t.Fatalf("appendClaims %q: events %v; want %v", ours, a.Events != nil, logout)
		}
		if !reflect.DeepEqual(a, b) { // compares *EmailVerified and *Events, not the pointers
			t.Fatalf("appendClaims %q decodes to %+v; json.Marshal %q to %+v", ours, a, theirs, b)
		}
	})
}
