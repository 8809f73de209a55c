package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

var (
	testNow    = time.Unix(1_800_000_000, 0)
	testIss    = "https://auth.example.com"
	testExpect = Expect{Type: TypeAccess, Issuer: testIss, Audience: testIss}
)

func testClaims() *Claims {
	return &Claims{
		Issuer: testIss, Subject: "42", Audience: testIss,
		IssuedAt: testNow.Unix(), Expiry: testNow.Add(time.Hour).Unix(),
		ID: "jti-1", ClientID: "client-1", Scope: "read write",
	}
}

func hmacKey(t testing.TB) *Key {
	t.Helper()
	return NewHMACKey([]byte("0123456789abcdef0123456789abcdef"))
}

func mustSign(t testing.TB, k *Key, typ string, c *Claims) string {
	t.Helper()
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Sign(typ, c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustVerifier(t testing.TB, keys ...*Key) *Verifier {
	t.Helper()
	v, err := NewVerifier(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 7515 Appendix A.1: the HMAC SHA-256 example. Its header is not in our
// canonical form, so this checks the MAC computation, not Parse.
func TestHS256RFC7515A1(t *testing.T) {
	k := NewHMACKey(b64("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"))
	input := "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
	want := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	sig, err := k.sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(sig); got != want {
		t.Fatalf("HS256 MAC = %s; want %s", got, want)
	}
	if !k.verify([]byte(input), b64(want)) {
		t.Fatal("verify rejected the RFC 7515 A.1 MAC")
	}
	bad := b64(want)
	bad[0] ^= 1
	if k.verify([]byte(input), bad) {
		t.Fatal("verify accepted a changed MAC")
	}
	// The RFC's token is valid JWS but not our canonical header: Parse refuses it.
	raw := input + "." + want
	if _, err := mustVerifier(t, k).Parse(raw, Expect{Type: TypeID}, time.Unix(1300819000, 0)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse(RFC 7515 A.1) = %v; want ErrInvalid (non-canonical header)", err)
	}
}

// RFC 8037 Appendix A.4 (Ed25519 signing) and A.3 (its thumbprint).
func TestEdDSARFC8037(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(b64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
	if got := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)); got != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Fatalf("public key x = %s", got)
	}
	k, err := NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("kid = %s; want the RFC 8037 A.3 thumbprint", k.ID)
	}
	input := "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
	want := "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	sig, err := k.sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(sig); got != want {
		t.Fatalf("Ed25519 signature = %s; want %s", got, want)
	}
	if !k.verify([]byte(input), sig) {
		t.Fatal("verify rejected the RFC 8037 A.4 signature")
	}
}

func allKeys(t testing.TB) []*Key {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []*Key{hmacKey(t)}
	for _, s := range []any{rk, ek, edk} {
		var k *Key
		switch s := s.(type) {
		case *rsa.PrivateKey:
			k, err = NewSigningKey(s)
		case *ecdsa.PrivateKey:
			k, err = NewSigningKey(s)
		case ed25519.PrivateKey:
			k, err = NewSigningKey(s)
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestRoundTrip(t *testing.T) {
	keys := allKeys(t)
	v := mustVerifier(t, keys...)
	for _, k := range keys {
		t.Run(k.Alg, func(t *testing.T) {
			want := testClaims()
			raw := mustSign(t, k, TypeAccess, want)
			got, err := v.Parse(raw, testExpect, testNow)
			if err != nil {
				t.Fatalf("Parse(Sign(c)) = %v", err)
			}
			if *got != *want {
				t.Fatalf("Parse(Sign(c)) = %+v; want %+v", got, want)
			}
			// The header names the algorithm, the key and the type, in one form.
			h, _, _ := strings.Cut(raw, ".")
			var hdr map[string]string
			if err := json.Unmarshal(b64(h), &hdr); err != nil {
				t.Fatal(err)
			}
			if hdr["alg"] != k.Alg || hdr["kid"] != k.ID || hdr["typ"] != "at+jwt" || len(hdr) != 3 {
				t.Fatalf("header = %v", hdr)
			}
			// Any changed byte, anywhere, is refused.
			for i := 0; i < len(raw); i++ {
				for _, c := range []byte{'A', '_', '.'} {
					if raw[i] == c {
						continue
					}
					mut := raw[:i] + string(c) + raw[i+1:]
					if _, err := v.Parse(mut, testExpect, testNow); err == nil {
						t.Fatalf("Parse accepted %q with byte %d changed to %q", mut, i, c)
					}
				}
			}
			// Retired keys verify; a verifier without the key does not.
			other := mustVerifier(t, NewHMACKey([]byte("another secret that is long enough!")))
			if _, err := other.Parse(raw, testExpect, testNow); !errors.Is(err, ErrInvalid) {
				t.Fatalf("verifier without the key: %v; want ErrInvalid", err)
			}
		})
	}
}

// An RSA key over 4096 bits (API.md sets no upper bound) verifies its
// tokens: its signature, 513 bytes here, once overran a 512-byte buffer, and
// Parse panicked on every token of such a key, valid or forged.
func TestLargeRSAKey(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 4104)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSigningKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	raw := mustSign(t, k, TypeAccess, testClaims())
	if _, err := mustVerifier(t, k).Parse(raw, testExpect, testNow); err != nil {
		t.Fatalf("Parse(token of a 4104-bit key) = %v", err)
	}
	forged := raw[:strings.LastIndexByte(raw, '.')+1] + strings.Repeat("A", len(raw)-strings.LastIndexByte(raw, '.')-1)
	if _, err := mustVerifier(t, k).Parse(forged, testExpect, testNow); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse(forged signature) = %v; want ErrInvalid", err)
	}
}

func TestTimeChecks(t *testing.T) {
	k := hmacKey(t)
	v := mustVerifier(t, k)
	c := testClaims()
	raw := mustSign(t, k, TypeAccess, c)
	exp := time.Unix(c.Expiry, 0)
	for _, tc := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"exp-1h", exp.Add(-time.Hour), true},
		{"exp-1ns", exp.Add(-time.Nanosecond), true},
		{"exp", exp, true}, // inside the leeway
		{"exp+leeway-1s", exp.Add(Leeway - time.Second), true},
		{"exp+leeway", exp.Add(Leeway), false},
		{"exp+1h", exp.Add(time.Hour), false},
		{"iat-leeway", time.Unix(c.IssuedAt, 0).Add(-Leeway), true},
		{"iat-leeway-1s", time.Unix(c.IssuedAt, 0).Add(-Leeway - time.Second), false},
	} {
		_, err := v.Parse(raw, testExpect, tc.now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Parse = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
	nbf := testClaims()
	nbf.NotBefore = testNow.Add(time.Minute).Unix()
	raw = mustSign(t, k, TypeAccess, nbf)
	if _, err := v.Parse(raw, testExpect, testNow); err == nil {
		t.Error("Parse accepted a token before its nbf")
	}
	if _, err := v.Parse(raw, testExpect, testNow.Add(time.Minute-Leeway)); err != nil {
		t.Errorf("Parse at nbf-leeway = %v", err)
	}
	noExp := testClaims()
	noExp.Expiry = 0
	if _, err := v.Parse(mustSign(t, k, TypeAccess, noExp), testExpect, testNow); err == nil {
		t.Error("Parse accepted a token without exp")
	}
}

func TestClaimChecks(t *testing.T) {
	k := hmacKey(t)
	v := mustVerifier(t, k)
	raw := mustSign(t, k, TypeAccess, testClaims())
	for _, want := range []Expect{
		{Type: TypeAccess, Issuer: "https://evil.example", Audience: testIss},
		{Type: TypeAccess, Issuer: testIss, Audience: "https://api.other"},
		{Type: TypeID, Issuer: testIss, Audience: testIss}, // an access token is not an ID token
	} {
		if _, err := v.Parse(raw, want, testNow); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse with %+v = %v; want ErrInvalid", want, err)
		}
	}
	id := mustSign(t, k, TypeID, testClaims())
	if _, err := v.Parse(id, testExpect, testNow); !errors.Is(err, ErrInvalid) {
		t.Errorf("an ID token accepted as an access token: %v", err)
	}
}

// forge builds a token with an arbitrary header, MACed with key.
func forge(header string, c *Claims, macKey []byte) string {
	p, _ := json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(p)
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestRejectsHostileForms(t *testing.T) {
	keys := allKeys(t)
	hk, rk := keys[0], keys[1]
	v := mustVerifier(t, keys...)
	good := mustSign(t, hk, TypeAccess, testClaims())
	h, rest, _ := strings.Cut(good, ".")
	p, s, _ := strings.Cut(rest, ".")
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(rk.pub)
	secret := []byte("0123456789abcdef0123456789abcdef")
	cases := map[string]string{
		"empty":            "",
		"two segments":     h + "." + p,
		"four segments":    good + ".",
		"trailing LF":      good + "\n",
		"CR inside":        h + ".\r" + p + "." + s,
		"padding":          h + "." + p + "=." + s,
		"std base64":       good[:len(good)-1] + "+",
		"empty payload":    h + ".." + s,
		"oversized":        strings.Repeat("a", MaxLen) + "." + p + "." + s,
		"many dots":        strings.Repeat(".", 8<<10),
		"alg none":         base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"`+hk.ID+`","typ":"at+jwt"}`)) + "." + p + ".",
		"header reordered": forge(`{"typ":"at+jwt","alg":"HS256","kid":"`+hk.ID+`"}`, testClaims(), secret),
		"header spaced":    forge(`{"alg":"HS256", "kid":"`+hk.ID+`","typ":"at+jwt"}`, testClaims(), secret),
		"crit":             forge(`{"alg":"HS256","crit":["exp"],"kid":"`+hk.ID+`","typ":"at+jwt"}`, testClaims(), secret),
		"no kid":           forge(`{"alg":"HS256","typ":"at+jwt"}`, testClaims(), secret),
		// Algorithm confusion: an HS256 MAC keyed with the RSA public key, naming the RSA kid.
		"alg confusion DER": forge(`{"alg":"HS256","kid":"`+rk.ID+`","typ":"at+jwt"}`, testClaims(), rsaPubDER),
		// kid swap: the HMAC header's kid replaced by the RSA key's.
		"kid swap": forge(`{"alg":"RS256","kid":"`+hk.ID+`","typ":"at+jwt"}`, testClaims(), secret),
	}
	for name, raw := range cases {
		c, err := v.Parse(raw, testExpect, testNow)
		if !errors.Is(err, ErrInvalid) || c != nil {
			t.Errorf("%s: Parse = %v, %v; want nil, ErrInvalid", name, c, err)
		}
	}
	// A correct MAC over the canonical header is accepted: forge itself is right.
	if _, err := v.Parse(forge(`{"alg":"HS256","kid":"`+hk.ID+`","typ":"at+jwt"}`, testClaims(), secret), testExpect, testNow); err != nil {
		t.Fatalf("canonical forge rejected: %v", err)
	}
}

func TestKeyChecks(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigningKey(small); err == nil {
		t.Error("accepted a 1024-bit RSA key")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigningKey(p384); err == nil {
		t.Error("accepted a P-384 key")
	}
	k := hmacKey(t)
	if _, err := NewVerifier(k, k); err == nil {
		t.Error("NewVerifier accepted a duplicate kid")
	}
	pub, _ := NewPublicKey(p384Public(t))
	if pub != nil {
		t.Error("NewPublicKey accepted P-384")
	}
	// An RSA key of ours (SIGNING_KEY, SIGNING_KEYS_PREVIOUS) has e = 65537:
	// e = 3 is what Bleichenbacher's PKCS#1 v1.5 forgery targets at lax
	// verifiers of our tokens (it was taken).
	e3 := rsaKeyWithE(t, 3)
	if _, err := NewSigningKey(e3); err == nil {
		t.Error("accepted an RSA key with e = 3")
	}
	if pem, err := MarshalPrivateKeyPEM(e3); err != nil {
		t.Fatal(err)
	} else if _, err := ParsePrivateKeyPEM(pem); err == nil {
		t.Error("ParsePrivateKeyPEM accepted an RSA key with e = 3")
	}
}

// rsaKeyWithE is a valid 2048-bit RSA private key whose public exponent is
// e, which crypto/rsa does not generate.
func rsaKeyWithE(t testing.TB, e int) *rsa.PrivateKey {
	t.Helper()
	E, one := big.NewInt(int64(e)), big.NewInt(1)
	prime := func() *big.Int {
		for {
			p, err := rand.Prime(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			if new(big.Int).GCD(nil, nil, E, new(big.Int).Sub(p, one)).Cmp(one) == 0 {
				return p
			}
		}
	}
	for {
		p, q := prime(), prime()
		n := new(big.Int).Mul(p, q)
		if n.BitLen() != 2048 || p.Cmp(q) == 0 {
			continue
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: new(big.Int).ModInverse(E, phi), Primes: []*big.Int{p, q}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			t.Fatal(err)
		}
		return k
	}
}

func p384Public(t testing.TB) any {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	return &k.PublicKey
}

func TestPEM(t *testing.T) {
	for _, k := range allKeys(t)[1:] {
		der, err := MarshalPrivateKeyPEM(k.priv)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParsePrivateKeyPEM(der)
		if err != nil {
			t.Fatalf("%s: ParsePrivateKeyPEM = %v", k.Alg, err)
		}
		if got.ID != k.ID || got.Alg != k.Alg || !got.CanSign() {
			t.Fatalf("%s: round trip gave %s %s", k.Alg, got.Alg, got.ID)
		}
	}
	if _, err := ParsePrivateKeyPEM([]byte("not pem")); err == nil {
		t.Error("accepted garbage")
	}
}

func TestOpaque(t *testing.T) {
	a, b := NewOpaque(), NewOpaque()
	if len(a) != OpaqueLen || a == b {
		t.Fatalf("NewOpaque = %q, %q", a, b)
	}
	if Hash(a) == Hash(b) || len(Hash(a)) != 64 {
		t.Fatal("Hash collides or has the wrong length")
	}
	s := Secret("hunter2")
	for _, got := range []string{s.String(), s.GoString(), s.LogValue().String()} {
		if got != "REDACTED" {
			t.Fatalf("Secret printed as %q", got)
		}
	}
	j, _ := json.Marshal(struct{ P Secret }{s})
	if strings.Contains(string(j), "hunter2") {
		t.Fatalf("json.Marshal revealed the secret: %s", j)
	}
}

func TestTimedID(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_123)
	id := NewTimedID(at)
	ms, ok := TimedIDTime(id)
	if !ok || ms != at.UnixMilli() || len(id) != 22 {
		t.Fatalf("TimedIDTime(NewTimedID(%d)) = %d, %v (%q)", at.UnixMilli(), ms, ok, id)
	}
	if NewTimedID(at) == id {
		t.Fatal("two ids for the same millisecond are equal")
	}
	for _, bad := range []string{"", "short", id + "A", id[:21] + "+", NewOpaque()} {
		if _, ok := TimedIDTime(bad); ok {
			t.Errorf("TimedIDTime(%q) accepted", bad)
		}
	}
}
