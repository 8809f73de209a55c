package token

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"math/bits"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The proofs here are built by hand from crypto primitives (not by the
// package's Signer), so that every field can be made wrong.

var proofNow = time.Unix(1_800_000_000, 0)

const proofURL = "https://auth.example.com/oauth2/token"

var proofWant = ProofWant{Method: "POST", URL: proofURL, Now: proofNow}

// proofKeys are one key of each kind, generated once.
var proofKeys = func() map[string]crypto.Signer {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{ES256: ec, RS256: rs, EdDSA: ed, Ed25519: ed}
}()

// publicJWK is the key's public JWK as a JSON object.
func publicJWK(t testing.TB, priv crypto.Signer) map[string]any {
	t.Helper()
	k, err := NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b, _ := json.Marshal(k.JWK())
	json.Unmarshal(b, &m)
	delete(m, "kid")
	delete(m, "use")
	delete(m, "alg")
	return m
}

// proofParts are a proof's header and claims, to be edited before signing.
type proofParts struct {
	header, claims map[string]any
}

func newProofParts(t testing.TB, alg string) proofParts {
	return proofParts{
		header: map[string]any{"typ": TypeDPoP, "alg": alg, "jwk": publicJWK(t, proofKeys[alg])},
		claims: map[string]any{"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": proofURL, "iat": proofNow.Unix()},
	}
}

// sign serialises p, signing with priv as alg says (a MAC with macKey).
func (p proofParts) sign(t testing.TB, alg string, priv crypto.Signer) string {
	t.Helper()
	h, _ := json.Marshal(p.header)
	c, _ := json.Marshal(p.claims)
	return signRaw(t, alg, priv, h, c)
}

func signRaw(t testing.TB, alg string, priv crypto.Signer, header, claims []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	d := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case ES256:
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), d[:]); err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case RS256:
		sig, err = rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case EdDSA, Ed25519:
		sig = ed25519.Sign(priv.(ed25519.PrivateKey), []byte(input))
	case HS256:
		m := hmac.New(sha256.New, []byte("a shared secret of 32 bytes!!!!!"))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

func wantProofErr(t *testing.T, name, raw string, want ProofWant, reason string) {
	t.Helper()
	p, err := ParseProof(raw, want)
	if err == nil || p != nil || !errors.Is(err, ErrProof) || !strings.Contains(err.Error(), reason) {
		t.Errorf("%s: ParseProof = %+v, %v; want an ErrProof about %q", name, p, err, reason)
	}
}

// Each algorithm, Ed25519 under both names: the proof is accepted and
// names its key by the RFC 7638 thumbprint of its public JWK.
func TestProofAccepted(t *testing.T) {
	for _, alg := range ProofAlgs {
		p := newProofParts(t, alg)
		p.claims["nonce"] = "n-1"
		got, err := ParseProof(p.sign(t, alg, proofKeys[alg]), proofWant)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		k, _ := NewPublicKey(proofKeys[alg].Public())
		tp, _ := Thumbprint(k.JWK())
		if got.JKT != tp || got.ID != "e1j3V_bKic8-LAEB" || got.IssuedAt != proofNow.Unix() || got.Nonce != "n-1" {
			t.Errorf("%s: proof %+v; want jkt %s", alg, got, tp)
		}
		// The members WebCrypto's exportKey adds are ignored (RFC 7517
		// §4; a regression test: "ext" was refused as not a string).
		p.header["jwk"].(map[string]any)["ext"] = true
		p.header["jwk"].(map[string]any)["key_ops"] = []string{"verify"}
		if got, err := ParseProof(p.sign(t, alg, proofKeys[alg]), proofWant); err != nil || got.JKT != tp {
			t.Errorf("%s with ext and key_ops: %+v, %v; want accepted, jkt %s", alg, got, err, tp)
		}
	}
}

func TestProofTyp(t *testing.T) {
	for _, typ := range []any{nil, "JWT", "DPoP+jwt", "dpop+jwt ", 1} {
		p := newProofParts(t, ES256)
		p.header["typ"] = typ
		if typ == nil {
			delete(p.header, "typ")
		}
		reason := "typ"
		if typ == nil || typ == 1 {
			reason = "no typ"
		}
		wantProofErr(t, "typ "+string(must(json.Marshal(typ))), p.sign(t, ES256, proofKeys[ES256]), proofWant, reason)
	}
}

func must(b []byte, _ error) []byte { return b }

// alg: never none, never a MAC, never one the key does not fit.
func TestProofAlg(t *testing.T) {
	ec, rs, ed := proofKeys[ES256], proofKeys[RS256], proofKeys[EdDSA]
	for name, tc := range map[string]struct {
		headerAlg, signAlg string
		key                crypto.Signer
	}{
		"none":                {"none", "none", ec},
		"HS256":               {HS256, HS256, ec},
		"ES384":               {"ES384", ES256, ec},
		"RS256 with EC key":   {RS256, ES256, ec},
		"ES256 with RSA key":  {ES256, RS256, rs},
		"EdDSA with EC key":   {EdDSA, ES256, ec},
		"PS256":               {"PS256", RS256, rs},
		"ES256 with OKP key":  {ES256, EdDSA, ed},
		"lower-case es256":    {"es256", ES256, ec},
		"Ed448 (not Ed25519)": {"Ed448", EdDSA, ed},
	} {
		p := newProofParts(t, ES256)
		p.header["alg"] = tc.headerAlg
		p.header["jwk"] = publicJWK(t, tc.key)
		reason := "does not fit the key"
		if name == "none" {
			reason = "base64url" // its empty signature segment
			raw := p.sign(t, tc.signAlg, tc.key)
			wantProofErr(t, "none with a signature", raw+"AAAA", proofWant, "does not fit the key")
		}
		wantProofErr(t, name, p.sign(t, tc.signAlg, tc.key), proofWant, reason)
	}
}

// jwk: public members of a supported key, in canonical form, and nothing
// else in the header.
func TestProofJWK(t *testing.T) {
	ec := proofKeys[ES256].(*ecdsa.PrivateKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	b64 := base64.RawURLEncoding.EncodeToString
	for name, edit := range map[string]func(p proofParts) crypto.Signer{
		"private d": func(p proofParts) crypto.Signer {
			p.header["jwk"].(map[string]any)["d"] = b64(ec.D.FillBytes(make([]byte, 32)))
			return ec
		},
		"symmetric k": func(p proofParts) crypto.Signer {
			p.header["jwk"] = map[string]any{"kty": "oct", "k": b64([]byte("secret"))}
			return ec
		},
		"unknown member": func(p proofParts) crypto.Signer { p.header["jwk"].(map[string]any)["x5u"] = "https://evil/"; return ec },
		"numeric member": func(p proofParts) crypto.Signer { p.header["jwk"].(map[string]any)["kid"] = 7; return ec },
		"numeric x5u":    func(p proofParts) crypto.Signer { p.header["jwk"].(map[string]any)["x5u"] = 7; return ec },
		"short x": func(p proofParts) crypto.Signer {
			j := p.header["jwk"].(map[string]any)
			j["x"] = j["x"].(string)[:40]
			return ec
		},
		"off the curve": func(p proofParts) crypto.Signer {
			j := p.header["jwk"].(map[string]any)
			j["y"] = j["x"]
			return ec
		},
		"P-384 name": func(p proofParts) crypto.Signer { p.header["jwk"].(map[string]any)["crv"] = "P-384"; return ec },
		"RSA 1024": func(p proofParts) crypto.Signer {
			p.header["alg"], p.header["jwk"] = RS256, map[string]any{"kty": "RSA", "n": b64(small.N.Bytes()), "e": "AQAB"}
			return small
		},
		"RSA n with a leading zero": func(p proofParts) crypto.Signer {
			rs := proofKeys[RS256].(*rsa.PrivateKey)
			p.header["alg"], p.header["jwk"] = RS256, map[string]any{"kty": "RSA", "n": b64(append([]byte{0}, rs.N.Bytes()...)), "e": "AQAB"}
			return rs
		},
		"RSA e with a leading zero": func(p proofParts) crypto.Signer {
			rs := proofKeys[RS256].(*rsa.PrivateKey)
			p.header["alg"], p.header["jwk"] = RS256, map[string]any{"kty": "RSA", "n": b64(rs.N.Bytes()), "e": "AAEAAQ"}
			return rs
		},
		"jwk alg differs":    func(p proofParts) crypto.Signer { p.header["jwk"].(map[string]any)["alg"] = RS256; return ec },
		"no jwk":             func(p proofParts) crypto.Signer { delete(p.header, "jwk"); return ec },
		"jwk not an object":  func(p proofParts) crypto.Signer { p.header["jwk"] = "x"; return ec },
		"kid in the header":  func(p proofParts) crypto.Signer { p.header["kid"] = "k1"; return ec },
		"crit in the header": func(p proofParts) crypto.Signer { p.header["crit"] = []string{"exp"}; return ec },
	} {
		p := newProofParts(t, ES256)
		key := edit(p)
		raw := p.sign(t, p.header["alg"].(string), key)
		wantProofErr(t, name, raw, proofWant, "")
		if _, err := ParseProof(raw, proofWant); err != nil && strings.Contains(err.Error(), "signature") {
			t.Errorf("%s: refused only by the signature check (%v); want the key refused first", name, err)
		}
	}
}

// The signature: the header's key must have made it; both ES256 forms.
func TestProofSignature(t *testing.T) {
	p := newProofParts(t, ES256)
	raw := p.sign(t, ES256, proofKeys[ES256])
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wantProofErr(t, "another key's signature", p.sign(t, ES256, other), proofWant, "signature")
	wantProofErr(t, "a changed claim", strings.Replace(raw, ".", ".e30", 1)[:len(raw)], proofWant, "")
	last := raw[len(raw)-2:]
	flipped := raw[:len(raw)-2] + map[bool]string{true: "AA", false: "AQ"}[last != "AA"]
	wantProofErr(t, "a changed signature", flipped, proofWant, "")
	// The high-S twin is accepted as the same proof (the jti then repeats).
	twin := highS(t, raw)
	a, err1 := ParseProof(raw, proofWant)
	b, err2 := ParseProof(twin, proofWant)
	if err1 != nil || err2 != nil || *a != *b {
		t.Fatalf("both ES256 forms: %v, %v; %+v vs %+v", err1, err2, a, b)
	}
}

// An S at or above the group order is no spelling of a signature: lowS
// leaves it high for verify to refuse, where n−S would have made S+n pass
// for S.
func TestLowSOutOfRange(t *testing.T) {
	n := elliptic.P256().Params().N
	for _, s := range []*big.Int{new(big.Int).Set(n), new(big.Int).Add(n, big.NewInt(5))} {
		want := new(big.Int).Set(s)
		if got := lowS(s); got.Cmp(want) != 0 {
			t.Errorf("lowS(%v) = %v; want it left as it is", want, got)
		}
	}
}

// htm and htu: this method and this URL, query and fragment ignored, after
// RFC 3986 normalization.
func TestProofMethodAndURL(t *testing.T) {
	for htu, ok := range map[string]bool{
		proofURL:            true,
		proofURL + "?x=1#f": true,
		"HTTPS://AUTH.example.com:443/oauth2/token":  true,
		"https://auth.example.com/oauth2/token/":     false,
		"http://auth.example.com/oauth2/token":       false,
		"https://auth.example.com:8443/oauth2/token": false,
		"https://auth.example.com/oauth2/introspect": false,
		"https://auth.example.com.evil/oauth2/token": false,
		"https://user@auth.example.com/oauth2/token": false,
		"/oauth2/token": false,
		"https://auth.example.com/oauth2/%74oken":       true, // percent-encoding normalization
		"https://auth.example.com/OAUTH2/token":         false,
		"urn:https://auth.example.com/oauth2/token":     false,
		"https://auth.example.com/oauth2/token\x00":     false,
		"https://auth.example.com:443/oauth2/token?a#b": true,
		// A reserved character and its encoding are different URLs; an
		// unreserved one's encoding is normalized, in either case.
		"https://auth.example.com/oauth2%2Ftoken":         false,
		"https://auth.example.com/oauth2%2ftoken":         false,
		"https://auth.example.com/oauth2/%74%6f%6B%65%6E": true,
		"https://auth.example.com/oauth2/token%3F":        false,
		"https://auth.example.com./oauth2/token":          false, // another host (RFC 3986 §6.2.2 does not drop the dot)
		"https://auth.example.com:/oauth2/token":          true,  // an empty port is the default (§6.2.3)
		"https://auth.example.com/oauth2/./token":         false, // no request path the mux serves has a dot segment
	} {
		p := newProofParts(t, ES256)
		p.claims["htu"] = htu
		_, err := ParseProof(p.sign(t, ES256, proofKeys[ES256]), proofWant)
		if (err == nil) != ok {
			t.Errorf("htu %q: %v; want accepted=%v", htu, err, ok)
		}
	}
	// The request's URL is its path as sent: a %3F in it is no query, a
	// %2F no separator, and a path with them matches only its own htu.
	for request, htu := range map[string]string{
		"https://auth.example.com/api/v1/clients/a%3Fb": "https://auth.example.com/api/v1/clients/a%3fb",
		"https://auth.example.com/api/v1/clients/a%2Fb": "https://auth.example.com/api/v1/clients/a%2Fb",
		"https://auth.example.com/api/v1/clients/%25zz": "https://auth.example.com/api/v1/clients/%25zz",
		"https://auth.example.com/api/v1/clients/a":     "https://auth.example.com/api/v1/clients/%61",
	} {
		for _, h := range []string{htu, "https://auth.example.com/api/v1/clients/a/b", "https://auth.example.com/api/v1/clients/a%3Fc"} {
			p := newProofParts(t, ES256)
			p.claims["htu"] = h
			_, err := ParseProof(p.sign(t, ES256, proofKeys[ES256]), ProofWant{Method: "POST", URL: request, Now: proofNow})
			if ok := h == htu; (err == nil) != ok {
				t.Errorf("htu %q at %q: %v; want accepted=%v", h, request, err, ok)
			}
		}
	}
	p := newProofParts(t, ES256)
	raw := p.sign(t, ES256, proofKeys[ES256])
	for _, m := range []string{"GET", "post", "PUT"} {
		wantProofErr(t, "htm "+m, raw, ProofWant{Method: m, URL: proofURL, Now: proofNow}, "htm")
	}
}

// iat: a JSON integer within ProofWindow before now and Leeway after.
func TestProofIssuedAt(t *testing.T) {
	for name, tc := range map[string]struct {
		iat any
		ok  bool
	}{
		"now":            {proofNow.Unix(), true},
		"59 s old":       {proofNow.Unix() - 59, true},
		"61 s old":       {proofNow.Unix() - 61, false},
		"9 s ahead":      {proofNow.Unix() + 9, true},
		"11 s ahead":     {proofNow.Unix() + 11, false},
		"a string":       {"1800000000", false},
		"a fraction":     {1800000000.5, false},
		"an exponent":    {json.RawMessage("1.8e9"), false},
		"absent":         {nil, false},
		"a huge integer": {json.RawMessage("99999999999999999999"), false},
	} {
		p := newProofParts(t, ES256)
		p.claims["iat"] = tc.iat
		if tc.iat == nil {
			delete(p.claims, "iat")
		}
		_, err := ParseProof(p.sign(t, ES256, proofKeys[ES256]), proofWant)
		if (err == nil) != tc.ok {
			t.Errorf("iat %s: %v; want accepted=%v", name, err, tc.ok)
		}
	}
}

// ath at a resource: the hash of the presented token, exactly.
func TestProofAccessTokenHash(t *testing.T) {
	const at = "eyJhbGciOiJFUzI1NiJ9.e30.sig"
	want := ProofWant{Method: "GET", URL: "https://auth.example.com/oauth2/userinfo", AccessToken: at, Now: proofNow}
	for name, tc := range map[string]struct {
		ath any
		ok  bool
	}{
		"right":        {HashB64(at), true},
		"absent":       {nil, false},
		"another's":    {HashB64(at + "x"), false},
		"padded":       {HashB64(at) + "=", false},
		"the token":    {at, false},
		"not a string": {7, false},
	} {
		p := newProofParts(t, ES256)
		p.claims["htm"], p.claims["htu"], p.claims["ath"] = "GET", want.URL, tc.ath
		if tc.ath == nil {
			delete(p.claims, "ath")
		}
		_, err := ParseProof(p.sign(t, ES256, proofKeys[ES256]), want)
		if (err == nil) != tc.ok {
			t.Errorf("ath %s: %v; want accepted=%v", name, err, tc.ok)
		}
	}
}

// One byte form: strict base64url, no repeated member, names matched
// exactly, jti printable.
func TestProofEncoding(t *testing.T) {
	p := newProofParts(t, ES256)
	raw := p.sign(t, ES256, proofKeys[ES256])
	wantProofErr(t, "padding", raw+"=", proofWant, "base64url")
	wantProofErr(t, "a newline", raw[:10]+"\n"+raw[10:], proofWant, "base64url")
	wantProofErr(t, "two segments", raw[:strings.LastIndex(raw, ".")], proofWant, "segments")
	wantProofErr(t, "too long", raw+strings.Repeat("A", MaxLen), proofWant, "limit")
	h, _ := json.Marshal(p.header)
	c, _ := json.Marshal(p.claims)
	key := proofKeys[ES256]
	wantProofErr(t, "repeated header member", signRaw(t, ES256, key, append(h[:len(h)-1], []byte(`,"typ":"dpop+jwt"}`)...), c), proofWant, "repeated")
	wantProofErr(t, "repeated claim", signRaw(t, ES256, key, h, append(c[:len(c)-1], []byte(`,"htm":"GET"}`)...)), proofWant, "repeated")
	// A name with an escape, in the header, the claims or the JWK, is
	// refused: it would be a second spelling of the name. Values may
	// hold escapes.
	escaped := func(b []byte, name, as string) []byte {
		return bytes.Replace(b, []byte(`"`+name+`"`), []byte(`"`+as+`"`), 1)
	}
	wantProofErr(t, "escaped header name", signRaw(t, ES256, key, escaped(h, "alg", `\u0061lg`), c), proofWant, "escape")
	wantProofErr(t, "escaped JWK name", signRaw(t, ES256, key, escaped(h, "kty", `k\u0074y`), c), proofWant, "escape")
	wantProofErr(t, "escaped claim name", signRaw(t, ES256, key, h, escaped(c, "htu", `ht\u0075`)), proofWant, "escape")
	slashes := bytes.ReplaceAll(c, []byte("/"), []byte(`\/`))
	if _, err := ParseProof(signRaw(t, ES256, key, h, slashes), proofWant); err != nil || !bytes.Contains(slashes, []byte(`https:\/\/`)) {
		t.Errorf("ParseProof(htu with escaped slashes) = %v; want it accepted", err)
	}
	upper := maps.Clone(p.claims)
	upper["JTI"] = upper["jti"]
	delete(upper, "jti")
	wantProofErr(t, "JTI for jti", proofParts{p.header, upper}.sign(t, ES256, key), proofWant, "no jti")
	for _, jti := range []string{"", "a\x00b", "é", strings.Repeat("a", 257)} {
		q := newProofParts(t, ES256)
		q.claims["jti"] = jti
		wantProofErr(t, "jti "+jti[:min(len(jti), 8)], q.sign(t, ES256, key), proofWant, "jti")
	}
}

// FuzzParseProof: no panic; an error never comes with a proof; an accepted
// proof is strict base64url in each segment, with the thumbprint of the
// key its header carries, and any change to it is refused or yields the
// same proof (the ES256 twin).
func FuzzParseProof(f *testing.F) {
	for _, alg := range ProofAlgs {
		p := newProofParts(f, alg)
		raw := p.sign(f, alg, proofKeys[alg])
		f.Add(raw, uint16(0), byte(0))
		f.Add(raw, uint16(5), byte('x'))
		f.Add(raw, uint16(len(raw)-1), byte('A'))
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.", uint16(0), byte(0))
	f.Fuzz(func(t *testing.T, raw string, pos uint16, b byte) {
		original, _ := ParseProof(raw, proofWant)
		mutated := raw
		if b != 0 && int(pos) < len(raw) {
			mutated = raw[:pos] + string(b) + raw[pos+1:]
		}
		p, err := ParseProof(mutated, proofWant)
		if err != nil {
			if p != nil {
				t.Fatalf("a proof with an error: %v", err)
			}
			return
		}
		segs := strings.Split(mutated, ".")
		for _, s := range segs {
			d, err := base64.RawURLEncoding.DecodeString(s)
			if err != nil || base64.RawURLEncoding.EncodeToString(d) != s {
				t.Fatalf("accepted a segment not in canonical base64url: %q", s)
			}
		}
		var h struct{ JWK JWK }
		json.Unmarshal(must(base64.RawURLEncoding.DecodeString(segs[0])), &h)
		if tp, err := Thumbprint(h.JWK); err != nil || tp != p.JKT {
			t.Fatalf("jkt %s is not the header key's thumbprint %s (%v)", p.JKT, tp, err)
		}
		if mutated != raw && original != nil && *original != *p {
			t.Fatalf("a changed proof %q was accepted as %+v (the original is %+v)", mutated, p, original)
		}
	})
}

// FuzzSameHTU: no panic; a URL matches itself; a match names the same
// scheme, host and port (the scheme's default when none is given), and
// the same decoded path (normalization only respells it, never joins two
// paths).
func FuzzSameHTU(f *testing.F) {
	f.Add(proofURL, "HTTPS://auth.example.com:443/oauth2/%74oken")
	f.Add(proofURL, "https://auth.example.net/oauth2/token")
	f.Add(proofURL, "https://auth.example.com/oauth2%2Ftoken") // a reserved character encoded: another path
	f.Add("https://a/%25", "https://a/%")                      // a lone % is no escape
	f.Add("https://a/%7e%7E~", "https://a/~~%7e")
	f.Fuzz(func(t *testing.T, a, b string) {
		if _, ok := normalHTU(a); ok && !sameHTU(a, a) {
			t.Fatalf("%q does not match itself", a)
		}
		if !sameHTU(a, b) {
			return
		}
		ua, _ := url.Parse(a)
		ub, _ := url.Parse(b)
		if cmp.Or(ua.Path, "/") != cmp.Or(ub.Path, "/") {
			t.Fatalf("%q matched %q: paths %q and %q", a, b, ua.Path, ub.Path)
		}
		origin := func(u *url.URL) string {
			scheme := strings.ToLower(u.Scheme)
			return scheme + " " + strings.ToLower(u.Hostname()) + " " + cmp.Or(u.Port(), map[string]string{"https": "443", "http": "80"}[scheme])
		}
		if origin(ua) != origin(ub) {
			t.Fatalf("%q matched %q: scheme, host and port %q and %q", a, b, origin(ua), origin(ub))
		}
	})
}

// BenchmarkParseProof is what a DPoP request adds to the token endpoint
// before its replay check: the strict parse, the key rebuilt from its JWK,
// its thumbprint and the signature. `make bench-load`'s DPoP scenario
// measures the whole request, that check included.
func BenchmarkParseProof(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA, RS256} {
		raw := newProofParts(b, alg).sign(b, alg, proofKeys[alg])
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseProof(raw, proofWant); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A proof under an RSA key whose modulus has a small factor (3q, or an
// even one) proves nothing either: anyone factors n, and so signs under it
// (such proofs were accepted). A prime modulus, which anyone signs under
// too, is not looked for: a probable-prime test costs some 30 signature
// checks a proof (SECURITY.md, Known limits).
func TestProofRefusesRSAKeysWithASmallFactor(t *testing.T) {
	e, one := big.NewInt(65537), big.NewInt(1)
	for _, small := range []int64{2, 3, 1021} {
		for size := 0; ; size++ {
			q, err := rand.Prime(rand.Reader, 2048-bits.Len64(uint64(small))+size%2) // one of the two makes n 2048 bits
			if err != nil {
				t.Fatal(err)
			}
			n := new(big.Int).Mul(big.NewInt(small), q)
			phi := new(big.Int).Mul(big.NewInt(small-1), new(big.Int).Sub(q, one))
			d := new(big.Int).ModInverse(e, phi)
			if d == nil || n.BitLen() != 2048 {
				continue
			}
			if p, err := ParseProof(rsaProofBy(n, d), proofWant); err == nil {
				t.Errorf("a proof under n = %d·q, which anyone factors, was accepted: jkt %s", small, p.JKT)
			}
			break
		}
	}
	// The same forgery under a key a client makes is accepted: the test
	// signs as crypto/rsa does.
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseProof(rsaProofBy(k.N, k.D), proofWant); err != nil {
		t.Fatalf("a proof under a client's RSA key: %v", err)
	}
}

// rsaProofBy is a DPoP proof under the RSA public key (n, 65537) signed
// with d by hand (RFC 8017 §8.2: EMSA-PKCS1-v1_5 of SHA-256, to the d).
func rsaProofBy(n, d *big.Int) string {
	enc := base64.RawURLEncoding
	jwk := map[string]string{"kty": "RSA", "n": enc.EncodeToString(n.Bytes()), "e": "AQAB"}
	h, _ := json.Marshal(map[string]any{"typ": TypeDPoP, "alg": RS256, "jwk": jwk})
	c, _ := json.Marshal(map[string]any{"jti": "by-anyone", "htm": "POST", "htu": proofURL, "iat": proofNow.Unix()})
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	size := (n.BitLen() + 7) / 8
	em := make([]byte, size)
	em[1] = 1
	tail := append(prefix, digest[:]...)
	for i := 2; i < size-len(tail)-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-len(tail):], tail)
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), d, n).FillBytes(make([]byte, size))
	return input + "." + enc.EncodeToString(s)
}

// A proof under an Ed25519 key of small order proves nothing: R = the key
// and S = 0 is a signature crypto/ed25519 verifies, of every message for
// the identity, of one in eight at most for the others (a client grinds
// its jti), made by no one. Each such key, and each second spelling of a
// key (y of p or more), is refused; no key a client makes is.
func TestProofRefusesWeakEd25519Keys(t *testing.T) {
	enc := base64.RawURLEncoding
	le := func(hex string) []byte { // a y coordinate, little-endian, as RFC 8032 spells it
		b, err := base64.StdEncoding.DecodeString(hex)
		if err != nil || len(b) != 32 {
			t.Fatalf("bad key %q", hex)
		}
		return b
	}
	y := func(n *big.Int) []byte {
		b := n.FillBytes(make([]byte, 32))
		slices.Reverse(b)
		return b
	}
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	smallOrder := map[string][]byte{
		"identity (y = 1)":    y(big.NewInt(1)),
		"order 4 (y = 0)":     y(big.NewInt(0)),
		"order 2 (y = p-1)":   y(new(big.Int).Sub(p, big.NewInt(1))),
		"order 8 (libsodium)": le("JuiVj8KyJ7BFw/SJ8u+Y8NXfrAXTxjM5sTgCiG1T/AU="),
		"order 8, the other":  le("xxdqcD1N2E+6PAt2DRBnDyogU/osOczGTsf9d5KsA3o="),
	}
	forge := func(t *testing.T, key []byte) (claims []byte, sig []byte) {
		sig = append(bytes.Clone(key), make([]byte, 32)...)
		for i := range 256 { // the first message its forged signature fits
			c, _ := json.Marshal(map[string]any{"jti": fmt.Sprint("forged-", i), "htm": "POST", "htu": proofURL, "iat": proofNow.Unix()})
			h, _ := json.Marshal(map[string]any{"typ": TypeDPoP, "alg": EdDSA, "jwk": map[string]string{"kty": "OKP", "crv": "Ed25519", "x": enc.EncodeToString(key)}})
			msg := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
			if ed25519.Verify(key, []byte(msg), sig) {
				return []byte(msg), sig
			}
		}
		t.Fatal("no message fits a forged signature: not a key of small order")
		return nil, nil
	}
	for name, key := range smallOrder {
		t.Run(name, func(t *testing.T) {
			msg, sig := forge(t, key)
			if _, err := ParseProof(string(msg)+"."+enc.EncodeToString(sig), proofWant); err == nil {
				t.Fatal("a proof signed by no one was accepted")
			}
			if !weakEd25519(key) {
				t.Fatal("not refused")
			}
		})
	}
	for _, n := range []*big.Int{p, new(big.Int).Add(p, big.NewInt(1)), new(big.Int).Add(p, big.NewInt(3))} {
		if !weakEd25519(y(n)) {
			t.Errorf("y = p + %d, a second spelling, not refused", new(big.Int).Sub(n, p))
		}
	}
	for range 1000 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if weakEd25519(pub) {
			t.Fatalf("a client's key %x refused", pub)
		}
	}
}
