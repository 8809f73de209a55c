package interop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// JOSE interop with github.com/go-jose/go-jose in both directions, for each
// algorithm `keys generate` makes:
//
//   - theirs verifies ours: go-jose (and go-oidc, for ID tokens) verifies the
//     server's access and ID tokens with the published JWKS alone;
//   - ours verifies theirs: go-jose signs an RFC 9068 access token with the
//     very PEM file the server was given, and the server must accept it at
//     introspection and UserInfo; then every forgery a JOSE parser must
//     refuse (a changed signature, another key, algorithm confusion with the
//     public key as HMAC secret, alg none, the kid of another key, the ID
//     token type) must come back active:false.
//
// The server accepts a JWT only in the exact header form it mints
// ({"alg","kid","typ"} in that order, no whitespace: token/jwt.go); go-jose
// serialises its protected header as a sorted JSON map, so a genuinely valid
// go-jose token has those same bytes. The test checks that byte for byte.
// Likewise it accepts an ES256 signature only in its low-S form (s ≤ n/2),
// the one it mints; go-jose makes either form, so the test brings go-jose's
// ES256 tokens to the low form and checks that the high-S twin is refused.

// TestJOSEInterop runs the go-jose interop checks for RS256, ES256 and EdDSA.
func TestJOSEInterop(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			joseInterop(t, alg)
		})
	}
}

// rfc9068Claims are the claims of an RFC 9068 access token (§2.2).
type rfc9068Claims struct {
	josejwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

func joseInterop(t *testing.T, alg jose.SignatureAlgorithm) {
	current := generateKey(t, string(alg))
	previous := generateKey(t, string(alg)) // configured in SIGNING_KEYS_PREVIOUS: verifies, never signs
	stranger := generateKey(t, string(alg)) // never given to the server
	s := startServer(t, map[string]string{"SIGNING_KEY": current.Path, "SIGNING_KEYS_PREVIOUS": previous.Path})
	rs := s.createClient(t, "--name", "Interop Resource Server", "--grant-type", "client_credentials", "--scope", "introspect", "--resource-server")
	app := s.createClient(t, "--name", "Interop RP "+string(alg), "--redirect-uri", "http://127.0.0.1/cb", "--scope", "openid email")
	u := s.createUser(t, "mary-"+strings.ToLower(string(alg))+"@example.com", "mary_"+strings.ToLower(string(alg)), password)
	ctx := oidcContext(t)

	// The same key files the server loaded, read as any program would.
	priv, prevPriv, strangerPriv := loadPEMKey(t, current.Path), loadPEMKey(t, previous.Path), loadPEMKey(t, stranger.Path)

	// The JWKS: the kid of each key, and go-jose's RFC 7638 thumbprint of it.
	set, kids := jwks(t, s)
	kid := kidFromJWKS(t, set, priv.Public(), alg)
	prevKid := kidFromJWKS(t, set, prevPriv.Public(), alg)
	if !slices.Equal(kids, []string{kid, prevKid}) || kid != current.KID || prevKid != previous.KID {
		t.Errorf("JWKS kids %q; want [%s %s], the kids `keys generate` printed", kids, current.KID, previous.KID)
	}
	strangerKid := thumbprint(t, jose.JSONWebKey{Key: strangerPriv.Public()})

	// Theirs verifies ours: go-jose verifies the server's access token (client
	// credentials) with the JWKS alone.
	serverAT := clientCredentialsToken(t, ctx, s, rs)
	std, all := verifyAccessJWKS(t, s, set, serverAT, alg)
	if std.Subject != rs.ID || all["client_id"] != rs.ID || !sameScope(all["scope"], "introspect") {
		t.Errorf("server access token claims %v; want sub and client_id %s, scope introspect", all, rs.ID)
	}
	checkSignatureLength(t, "the server's access token", serverAT, alg, priv.Public())
	if h := jwtHeader(t, serverAT); h["kid"] != kid {
		t.Errorf("server access token header %v; want kid %s", h, kid)
	}

	// … and go-oidc verifies its ID token (for EdDSA, at_hash is the left
	// half of SHA-512: go-oidc computes it independently).
	provider, err := oidc.NewProvider(ctx, s.URL)
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	var disc struct {
		IDTokenAlgs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&disc); err != nil || !slices.Equal(disc.IDTokenAlgs, []string{string(alg)}) {
		t.Errorf("discovery id_token_signing_alg_values_supported %q (%v); want [%s]", disc.IDTokenAlgs, err, alg)
	}
	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: "http://127.0.0.1/cb",
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email"},
	}
	verifier, nonce := oauth2.GenerateVerifier(), randomHex(16)
	res := newUserAgent(t, s).authorize(cfg.AuthCodeURL(randomHex(8), oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), u.Username, password, "allow")
	s.noLog(res.Query.Get("code"), verifier)
	tok, err := cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	s.noLog(tok.AccessToken, tok.RefreshToken, rawID)
	idt, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refuses the %s ID token: %v", alg, err)
	}
	if idt.Nonce != nonce || idt.Subject != u.Sub() {
		t.Errorf("ID token nonce %q, sub %q; want %q, %s", idt.Nonce, idt.Subject, nonce, u.Sub())
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("go-oidc: at_hash of the %s ID token does not match the access token: %v", alg, err)
	}
	if h := jwtHeader(t, rawID); h["alg"] != string(alg) || h["kid"] != kid || h["typ"] != "JWT" {
		t.Errorf("ID token header %v; want alg %s, kid %s, typ JWT", h, alg, kid)
	}
	checkSignatureLength(t, "the server's ID token", rawID, alg, priv.Public())
	verifyAccessJWKS(t, s, set, tok.AccessToken, alg)

	// Ours verifies theirs: go-jose signs an RFC 9068 access token with the
	// server's own key file.
	now := time.Now()
	claims := rfc9068Claims{
		Claims: josejwt.Claims{
			Issuer: s.URL, Audience: josejwt.Audience{s.URL}, Subject: u.Sub(), ID: randomHex(16),
			IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(5 * time.Minute)),
		},
		ClientID: app.ID, Scope: "openid email",
	}
	valid := goJoseSign(t, alg, priv, kid, "at+jwt", claims)
	s.noLog(valid)
	// The header go-jose wrote is, byte for byte, the one the server mints.
	t.Logf("go-jose protected header: %s", b64Decode(t, segment(valid, 0)))
	if got, want := segment(valid, 0), segment(serverAT, 0); got != want {
		t.Errorf("go-jose's protected header differs from the server's:\n go-jose: %s\n server:  %s", b64Decode(t, got), b64Decode(t, want))
	}
	if in := s.introspect(t, rs, valid); !in.Active || in.Sub != u.Sub() || in.ClientID != app.ID || in.Scope != "openid email" ||
		in.Iss != s.URL || in.Aud != s.URL || in.Jti != claims.ID || in.Exp != claims.Expiry.Time().Unix() {
		t.Errorf("introspection of a valid go-jose %s token (header %s): %+v; want active with sub %s, client_id %s, scope %q, jti %s",
			alg, b64Decode(t, segment(valid, 0)), in, u.Sub(), app.ID, "openid email", claims.ID)
	}
	// A resource endpoint accepts it too: UserInfo answers for the token's user.
	if code, body := userinfoWith(t, s, valid); code != http.StatusOK || body["sub"] != u.Sub() || body["email"] != u.Email {
		t.Errorf("UserInfo with a go-jose %s token: %d %v; want 200 with sub %s and email %s", alg, code, body, u.Sub(), u.Email)
	}
	// A token go-jose signs with the previous key (and its kid) is accepted:
	// rotation does not depend on the server's own signer.
	prevTok := goJoseSign(t, alg, prevPriv, prevKid, "at+jwt", claims)
	s.noLog(prevTok)
	if in := s.introspect(t, rs, prevTok); !in.Active || in.Sub != u.Sub() {
		t.Errorf("introspection of a go-jose token signed by the previous key: %+v; want active", in)
	}

	// What the server must refuse. Each forgery differs from valid in one
	// thing only, and go-jose's own verdict shows that the difference is
	// real: a changed signature or another key does not verify under the
	// server's public key, the header and claims forgeries carry a good
	// signature and are wrong only in what they say, and the HS256 ones are
	// proper HMACs under the public key bytes.
	const (
		unchecked = iota
		badSig    // go-jose refuses it under the server's key
		goodSig   // go-jose verifies it under the server's key
	)
	type forgery struct {
		what string
		raw  string
		sig  int
		hmac []byte // the HS256 secret it was made with
	}
	forgeries := []forgery{
		{"one byte of the signature changed", flipSignatureByte(t, valid), badSig, nil},
		{"signed by another " + string(alg) + " key under the server's kid", goJoseSign(t, alg, strangerPriv, kid, "at+jwt", claims), badSig, nil},
		{"signed by the previous key under the server's kid", goJoseSign(t, alg, prevPriv, kid, "at+jwt", claims), badSig, nil},
		{"signed by the server's key under the kid of the previous key", goJoseSign(t, alg, priv, prevKid, "at+jwt", claims), goodSig, nil},
		{"signed by the server's key under the kid of an unknown key", goJoseSign(t, alg, priv, strangerKid, "at+jwt", claims), goodSig, nil},
		{"typ JWT (an ID token's type) as an access token", goJoseSign(t, alg, priv, kid, "JWT", claims), goodSig, nil},
		{"no typ", goJoseSign(t, alg, priv, kid, "", claims), goodSig, nil},
		{"alg none, no signature", withHeader(t, valid, map[string]string{"alg": "none", "kid": kid, "typ": "at+jwt"}, ""), unchecked, nil},
		{"alg none, the signature kept", withHeader(t, valid, map[string]string{"alg": "none", "kid": kid, "typ": "at+jwt"}, segment(valid, 2)), unchecked, nil},
		{"alg none, no kid, no signature", withHeader(t, valid, map[string]string{"alg": "none", "typ": "at+jwt"}, ""), unchecked, nil},
	}
	if alg == jose.ES256 {
		forgeries = append(forgeries, forgery{"the high-S twin (r, n−s) of the valid signature", ecdsaForm(t, valid, false), goodSig, nil})
	}
	for _, sec := range publicKeySecrets(t, priv.Public()) { // algorithm confusion
		forgeries = append(forgeries, forgery{"HS256 with the public key (" + sec.name + ") as HMAC secret under the server's kid",
			goJoseSign(t, jose.HS256, sec.secret, kid, "at+jwt", claims), badSig, sec.secret})
	}
	expired := claims
	expired.IssuedAt, expired.Expiry = josejwt.NewNumericDate(now.Add(-2*time.Hour)), josejwt.NewNumericDate(now.Add(-time.Hour))
	otherIss := claims
	otherIss.Issuer = "https://issuer.example"
	forgeries = append(forgeries,
		forgery{"exp in the past", goJoseSign(t, alg, priv, kid, "at+jwt", expired), goodSig, nil},
		forgery{"another issuer", goJoseSign(t, alg, priv, kid, "at+jwt", otherIss), goodSig, nil},
	)
	pub := jose.JSONWebKey{Key: priv.Public()}
	for _, f := range forgeries {
		s.noLog(f.raw)
		if f.raw == valid {
			t.Fatalf("%s: the forgery equals the valid token", f.what)
		}
		_, err := verifyWith(f.raw, alg, pub)
		switch {
		case f.sig == badSig && err == nil:
			t.Errorf("go-jose verifies the forgery with %s under the server's key: the case proves nothing", f.what)
		case f.sig == goodSig && err != nil:
			t.Errorf("go-jose cannot verify the forgery with %s under the server's key (%v): it should differ only in its header or claims", f.what, err)
		}
		if f.hmac != nil {
			if _, err := verifyWith(f.raw, jose.HS256, jose.JSONWebKey{Key: f.hmac}); err != nil {
				t.Errorf("go-jose cannot verify the forgery with %s under its HMAC secret: %v", f.what, err)
			}
		}
		if in := s.introspect(t, rs, f.raw); in.Active || in.Sub != "" || in.Scope != "" {
			t.Errorf("introspection of a token with %s (header %s): %+v; want {\"active\":false} only", f.what, b64Decode(t, segment(f.raw, 0)), in)
		}
		if code, _ := userinfoWith(t, s, f.raw); code != http.StatusUnauthorized {
			t.Errorf("UserInfo with a token with %s: %d; want 401", f.what, code)
		}
	}

	// The valid token is still active: the refusals did not depend on state.
	if in := s.introspect(t, rs, valid); !in.Active {
		t.Errorf("the valid go-jose token is no longer active after the forgeries: %+v", in)
	}
}

// loadPEMKey reads the PKCS#8 private key `keys generate` wrote.
func loadPEMKey(t testing.TB, path string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s is not one PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		t.Fatalf("%s: %T is not a crypto.Signer", path, k)
	}
	return signer
}

// kidFromJWKS returns the kid under which the JWKS publishes pub, and checks
// its alg and that the kid is the RFC 7638 thumbprint as go-jose computes it.
func kidFromJWKS(t testing.TB, set jose.JSONWebKeySet, pub crypto.PublicKey, alg jose.SignatureAlgorithm) string {
	t.Helper()
	var found []jose.JSONWebKey
	for _, k := range set.Keys {
		if pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Key) {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the JWKS publishes the %s key of the PEM file %d times; want once", alg, len(found))
	}
	k := found[0]
	if k.Algorithm != string(alg) {
		t.Errorf("JWKS key %s has alg %q; want %s", k.KeyID, k.Algorithm, alg)
	}
	if tp := thumbprint(t, k); k.KeyID != tp {
		t.Errorf("JWKS kid %q is not the key's RFC 7638 thumbprint %q", k.KeyID, tp)
	}
	return k.KeyID
}

func thumbprint(t testing.TB, k jose.JSONWebKey) string {
	t.Helper()
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// goJoseSign signs claims with go-jose as an ordinary JWT issuer would: the
// kid from a JSONWebKey (a WithHeader for an HMAC key, which go-jose gives
// no kid), typ from WithType (none if typ is empty).
func goJoseSign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sk := jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}
	if _, ok := key.([]byte); ok {
		sk.Key = key
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatalf("go-jose NewSigner(%s): %v", alg, err)
	}
	raw, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("go-jose sign %s: %v", alg, err)
	}
	if alg == jose.ES256 {
		// go-jose makes either form of an ECDSA signature, at random; the
		// server accepts only the low-S one, the form it mints itself
		// (token/jwt.go), so that an accepted token has one byte form. The
		// high-S twin is among the forgeries.
		raw = ecdsaForm(t, raw, true)
	}
	return raw
}

// The order of P-256 and its half.
var (
	p256N     = elliptic.P256().Params().N
	p256HalfN = new(big.Int).Rsh(p256N, 1)
)

// ecdsaForm returns raw, an ES256 JWT, with its signature (r, s) replaced,
// if need be, by its twin (r, n−s), which verifies as well: the low form
// (s ≤ n/2) if low, else the high one.
func ecdsaForm(t testing.TB, raw string, low bool) string {
	t.Helper()
	sig, err := base64.RawURLEncoding.DecodeString(segment(raw, 2))
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature of %d bytes (%v); want 64", len(sig), err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	if (s.Cmp(p256HalfN) <= 0) != low {
		s.Sub(p256N, s).FillBytes(sig[32:])
	}
	return raw[:strings.LastIndexByte(raw, '.')+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// verifyWith verifies raw with go-jose under key and returns the payload.
func verifyWith(raw string, alg jose.SignatureAlgorithm, key jose.JSONWebKey) ([]byte, error) {
	sig, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return nil, err
	}
	return sig.Verify(key)
}

// verifyAccessJWKS verifies an access token with go-jose as a resource
// server holding only the JWKS would, for the algorithm alg alone, and
// returns its claims.
func verifyAccessJWKS(t testing.TB, s *server, set jose.JSONWebKeySet, raw string, alg jose.SignatureAlgorithm) (josejwt.Claims, map[string]any) {
	t.Helper()
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("go-jose cannot parse the access token as %s: %v", alg, err)
	}
	h := tok.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("access token typ = %v; want at+jwt", typ)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("access token kid %q matches %d JWKS keys; want 1", h.KeyID, len(keys))
	}
	var std josejwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		t.Fatalf("access token signature does not verify with its JWKS key: %v", err)
	}
	err = std.ValidateWithLeeway(josejwt.Expected{Issuer: s.URL, AnyAudience: josejwt.Audience{s.URL}, Time: time.Now()}, 10*time.Second)
	if err != nil {
		t.Errorf("access token claims: %v", err)
	}
	return std, all
}

// checkSignatureLength checks the JWS signature encoding of RFC 7518 §3 and
// RFC 8037 §3.1: RSA the modulus size, ES256 R||S as two 32-byte integers
// (64 bytes, not ASN.1 DER), Ed25519 64 bytes.
func checkSignatureLength(t testing.TB, what, raw string, alg jose.SignatureAlgorithm, pub crypto.PublicKey) {
	t.Helper()
	sig, err := base64.RawURLEncoding.Strict().DecodeString(segment(raw, 2))
	if err != nil {
		t.Fatalf("%s: signature: %v", what, err)
	}
	want := 64
	switch p := pub.(type) {
	case *rsa.PublicKey:
		want = p.Size()
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		t.Fatalf("unexpected key type %T", pub)
	}
	if len(sig) != want {
		t.Errorf("%s: %s signature of %d bytes; want %d", what, alg, len(sig), want)
	}
}

// secret is a candidate HMAC key for an algorithm confusion attempt.
type secret struct {
	name   string
	secret []byte
}

// publicKeySecrets are the public key's encodings an attacker would try as
// an HS256 secret: SubjectPublicKeyInfo DER and PEM, the PKCS#1 forms for RSA,
// and the raw key bytes for EC and Ed25519.
func publicKeySecrets(t testing.TB, pub crypto.PublicKey) []secret {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	out := []secret{
		{"SubjectPublicKeyInfo DER", der},
		{"PEM text", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})},
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		pk1 := x509.MarshalPKCS1PublicKey(p)
		out = append(out, secret{"PKCS#1 DER", pk1}, secret{"PKCS#1 PEM text", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pk1})})
	case *ecdsa.PublicKey:
		ecdh, err := p.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, secret{"uncompressed point", ecdh.Bytes()})
	case ed25519.PublicKey:
		out = append(out, secret{"raw 32 bytes", []byte(p)})
	}
	return out
}

// segment returns segment i (0 header, 1 payload, 2 signature) of a compact JWS.
func segment(raw string, i int) string {
	parts := strings.SplitN(raw, ".", 3)
	if i >= len(parts) {
		return ""
	}
	return parts[i]
}

func b64Decode(t testing.TB, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "(not base64url: " + seg + ")"
	}
	return string(b)
}

// flipSignatureByte changes one bit of one byte in the middle of the signature.
func flipSignatureByte(t testing.TB, raw string) string {
	t.Helper()
	sig, err := base64.RawURLEncoding.DecodeString(segment(raw, 2))
	if err != nil || len(sig) == 0 {
		t.Fatalf("signature of %.20s…: %v", raw, err)
	}
	sig[len(sig)/2] ^= 0x01
	return segment(raw, 0) + "." + segment(raw, 1) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// withHeader returns raw's payload under another header (marshalled from a
// map, so in the canonical member order) and the signature segment sig.
func withHeader(t testing.TB, raw string, header map[string]string, sig string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + segment(raw, 1) + "." + sig
}

// userinfoWith calls GET /oauth2/userinfo with a bearer token and returns
// the status and the JSON body.
func userinfoWith(t testing.TB, s *server, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
