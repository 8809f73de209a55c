package interop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// OpenID Connect (API.md: "OpenID Connect") with github.com/coreos/go-oidc,
// and RS256 access tokens checked with github.com/go-jose/go-jose against the
// published JWKS. The server signs with SIGNING_KEY, made with the
// binary's own `keys generate`.

// signingKey is a key file made by `oauth2-api keys generate`.
type signingKey struct {
	Path string
	KID  string
}

// generateKey runs `oauth2-api keys generate --alg alg --out FILE` and
// returns the file and the kid it reports.
func generateKey(t testing.TB, alg string) signingKey {
	t.Helper()
	path := filepath.Join(t.TempDir(), strings.ToLower(alg)+".pem")
	cmd := exec.Command(serverBinary(t), "keys", "generate", "--alg", alg, "--out", path)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keys generate: %v\n%s", err, out)
	}
	// "wrote RS256 key <kid> to <path>"
	f := strings.Fields(string(out))
	if len(f) != 6 || f[0] != "wrote" || f[1] != alg || f[2] != "key" || f[5] != path {
		t.Fatalf("keys generate printed %q; want \"wrote %s key KID to %s\"", out, alg, path)
	}
	return signingKey{Path: path, KID: f[3]}
}

// oidcContext returns a context that makes go-oidc and x/oauth2 use testClient.
func oidcContext(t testing.TB) context.Context {
	return oidc.ClientContext(oauthContext(t), testClient(t))
}

// jwtHeader decodes the JOSE header of a compact JWT.
func jwtHeader(t testing.TB, raw string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	var h map[string]any
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		t.Fatalf("JWT header of %.20s…: %v", raw, err)
	}
	return h
}

// jwks fetches the server's key set and checks that it publishes only
// public signing keys, and returns their kids in order.
func jwks(t testing.TB, s *server) (jose.JSONWebKeySet, []string) {
	t.Helper()
	var set jose.JSONWebKeySet
	s.getJSON(t, "/.well-known/jwks.json", &set)
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.KeyID == "" || k.Algorithm == "" {
			t.Errorf("JWKS key %q: public %v, use %q, alg %q; want a public signing key with kid and alg", k.KeyID, k.IsPublic(), k.Use, k.Algorithm)
		}
		kids = append(kids, k.KeyID)
	}
	return set, kids
}

// TestOpenIDConnect is the OIDC code flow through go-oidc: discovery, PKCE
// with a nonce, the ID token verified with the provider's keys (nonce and
// at_hash checked), UserInfo, and the RS256 access token verified with
// go-jose against the JWKS alone.
func TestOpenIDConnect(t *testing.T) {
	key := generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key.Path})
	app := s.createClient(t, "--name", "Interop RP", "--redirect-uri", "http://127.0.0.1/oidc/cb", "--scope", "openid profile email")
	svc := s.createClient(t, "--name", "Interop Service", "--grant-type", "client_credentials", "--scope", "read")
	kj := s.createUser(t, "katherine@example.com", "katherine", password, "--first-name", "Katherine", "--last-name", "Johnson")
	ctx := oidcContext(t)

	provider, err := oidc.NewProvider(ctx, s.URL) // checks that the discovered issuer is s.URL
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	var disc struct {
		Issuer            string   `json:"issuer"`
		AuthEndpoint      string   `json:"authorization_endpoint"`
		TokenEndpoint     string   `json:"token_endpoint"`
		UserinfoEndpoint  string   `json:"userinfo_endpoint"`
		JWKSURI           string   `json:"jwks_uri"`
		IDTokenAlgs       []string `json:"id_token_signing_alg_values_supported"`
		SubjectTypes      []string `json:"subject_types_supported"`
		ScopesSupported   []string `json:"scopes_supported"`
		ClaimsSupported   []string `json:"claims_supported"`
		CodeChallengeAlgs []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	meta := s.metadata(t)
	if disc.Issuer != meta.Issuer || disc.AuthEndpoint != meta.AuthorizationEndpoint || disc.TokenEndpoint != meta.TokenEndpoint || disc.JWKSURI != meta.JWKSURI {
		t.Errorf("discovery %+v differs from RFC 8414 metadata %+v", disc, meta)
	}
	if !slices.Contains(disc.IDTokenAlgs, "RS256") || !slices.Equal(disc.SubjectTypes, []string{"public"}) ||
		!slices.Contains(disc.ScopesSupported, "openid") || disc.UserinfoEndpoint != s.URL+"/oauth2/userinfo" {
		t.Errorf("discovery %+v; want RS256 ID tokens, subject_types [public], openid, the userinfo endpoint", disc)
	}
	for _, c := range []string{"sub", "nonce", "at_hash", "auth_time", "email", "preferred_username"} {
		if !slices.Contains(disc.ClaimsSupported, c) {
			t.Errorf("claims_supported %q lacks %q", disc.ClaimsSupported, c)
		}
	}

	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: "http://127.0.0.1/oidc/cb",
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}
	ua := newUserAgent(t, s)

	// prompt=none before signing in: login_required, and no page.
	state := randomHex(8)
	res := ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")), "katherine", password, "allow")
	if len(res.Pages) != 0 || res.Query.Get("error") != "login_required" || res.Query.Get("state") != state {
		t.Errorf("prompt=none without a session: pages %q, query %v; want error=login_required at once", res.Pages, res.Query)
	}

	verifier, nonce := oauth2.GenerateVerifier(), randomHex(16)
	state = randomHex(16)
	started := time.Now().Truncate(time.Second)
	res = ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), "katherine", password, "allow")
	if res.Query.Get("state") != state || res.Query.Get("iss") != s.URL || res.Query.Get("code") == "" {
		t.Fatalf("redirect query %v; want a code, state and iss", res.Query)
	}
	s.noLog(res.Query.Get("code"), verifier)
	tok, err := cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		t.Fatalf("no id_token in the token response for scope openid")
	}
	s.noLog(tok.AccessToken, tok.RefreshToken, rawID)

	// The ID token, as a relying party checks it (OIDC Core §3.1.3.7).
	idt, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refuses the ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("ID token nonce %q; want %q", idt.Nonce, nonce)
	}
	if idt.Subject != kj.Sub() || idt.Issuer != s.URL || !slices.Equal(idt.Audience, []string{app.ID}) {
		t.Errorf("ID token sub %q, iss %q, aud %q; want %s, %s, [%s]", idt.Subject, idt.Issuer, idt.Audience, kj.Sub(), s.URL, app.ID)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash does not match the access token: %v", err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken + "x"); err == nil {
		t.Errorf("at_hash matches a different access token")
	}
	var idClaims struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := idt.Claims(&idClaims); err != nil || idClaims.AuthTime < started.Unix() || idClaims.AuthTime > time.Now().Unix()+10 {
		t.Errorf("ID token auth_time %d (%v); want the sign-in time, at or after %d", idClaims.AuthTime, err, started.Unix())
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: svc.ID}).Verify(ctx, rawID); err == nil {
		t.Errorf("the ID token verifies for another client's audience")
	}
	if h := jwtHeader(t, rawID); h["kid"] != key.KID || h["alg"] != "RS256" {
		t.Errorf("ID token header %v; want alg RS256 and kid %s", h, key.KID)
	}

	// UserInfo (OIDC Core §5.3) with the claims the scopes allow.
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("UserInfo: %v", err)
	}
	var profile struct {
		PreferredUsername string `json:"preferred_username"`
		GivenName         string `json:"given_name"`
		FamilyName        string `json:"family_name"`
	}
	if err := info.Claims(&profile); err != nil {
		t.Fatal(err)
	}
	if info.Subject != idt.Subject || info.Email != kj.Email || info.EmailVerified ||
		profile != (struct {
			PreferredUsername string `json:"preferred_username"`
			GivenName         string `json:"given_name"`
			FamilyName        string `json:"family_name"`
		}{"katherine", "Katherine", "Johnson"}) {
		t.Errorf("UserInfo sub %q, email %q (verified %v), profile %+v; want %s, %s (false), katherine Katherine Johnson",
			info.Subject, info.Email, info.EmailVerified, profile, idt.Subject, kj.Email)
	}

	// A token without openid is refused by UserInfo: 403 insufficient_scope (RFC 6750 §3.1).
	svcTok := clientCredentialsToken(t, ctx, s, svc)
	req, _ := http.NewRequest(http.MethodGet, disc.UserinfoEndpoint, nil)
	req.Header.Set("Authorization", "Bearer "+svcTok)
	resp, err := testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("UserInfo with a token without openid: %d, WWW-Authenticate %q; want 403 insufficient_scope", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// The access token is RS256 under SIGNING_KEY: a resource server verifies it with the JWKS alone.
	set, kids := jwks(t, s)
	if !slices.Equal(kids, []string{key.KID}) {
		t.Errorf("JWKS kids %q; want [%s]", kids, key.KID)
	}
	std, all := verifyAccessJWKS(t, s, set, tok.AccessToken, jose.RS256)
	if std.Subject != kj.Sub() || all["client_id"] != app.ID || !sameScope(all["scope"], "openid profile email") {
		t.Errorf("access token claims %v; want sub %s, client_id %s, scope %q", all, kj.Sub(), app.ID, "openid profile email")
	}

	// prompt=none once signed in and consented: a code at once, no page.
	res = ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")), "katherine", password, "allow")
	if len(res.Pages) != 0 || res.Query.Get("code") == "" {
		t.Errorf("prompt=none with a session and consent: pages %q, query %v; want a code at once", res.Pages, res.Query)
	}
	s.noLog(res.Query.Get("code"))

	// max_age=0: the session is too old, so the user signs in again, and the
	// new ID token says when.
	time.Sleep(time.Second) // auth_time has a resolution of one second
	verifier, state = oauth2.GenerateVerifier(), randomHex(16)
	relogin := time.Now().Truncate(time.Second)
	res = ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("max_age", "0")), "katherine", password, "allow")
	if len(res.Pages) == 0 || res.Pages[0] != "login" || res.Query.Get("code") == "" {
		t.Fatalf("max_age=0 with a session: pages %q, query %v; want the login page again, then a code", res.Pages, res.Query)
	}
	s.noLog(res.Query.Get("code"))
	tok, err = cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange after max_age=0: %v", err)
	}
	rawID, _ = tok.Extra("id_token").(string)
	s.noLog(tok.AccessToken, tok.RefreshToken, rawID)
	idt, err = provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("ID token after max_age=0: %v", err)
	}
	if err := idt.Claims(&idClaims); err != nil || idClaims.AuthTime < relogin.Unix() {
		t.Errorf("ID token auth_time after max_age=0 is %d (%v); want the new sign-in, at or after %d", idClaims.AuthTime, err, relogin.Unix())
	}
}

// clientCredentialsToken gets a client credentials access token for c.
func clientCredentialsToken(t testing.TB, ctx context.Context, s *server, c client) string {
	t.Helper()
	tok, err := (&oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, Endpoint: oauth2.Endpoint{TokenURL: s.URL + "/oauth2/token"}}).
		Exchange(ctx, "", oauth2.SetAuthURLParam("grant_type", "client_credentials"))
	if err != nil {
		t.Fatalf("client credentials for %s: %v", c.Name, err)
	}
	s.noLog(tok.AccessToken)
	return tok.AccessToken
}

// TestSigningKeyRotation rotates SIGNING_KEY the way the README tells an
// operator to: restart with the new key and the old one in
// SIGNING_KEYS_PREVIOUS. A resource server that keeps one go-oidc
// RemoteKeySet never sees a failed verification: tokens signed before the
// rotation still verify (the old key stays in the JWKS), and tokens signed
// after it carry the new kid, which RemoteKeySet fetches when it first sees
// it. Once the old key is dropped, its tokens stop working.
func TestSigningKeyRotation(t *testing.T) {
	key1, key2 := generateKey(t, "RS256"), generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key1.Path})
	app := s.createClient(t, "--name", "Interop RP", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "openid", "--scope", "email")
	lin := s.createUser(t, "lin@example.com", "lin", password)
	ctx := oidcContext(t)
	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: "http://127.0.0.1/cb", Scopes: []string{"openid", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: s.URL + "/oauth2/authorize", TokenURL: s.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
	}
	ua := newUserAgent(t, s)
	login := func(s *server) (*oauth2.Token, string) {
		t.Helper()
		verifier, nonce := oauth2.GenerateVerifier(), randomHex(8)
		res := ua.authorize(cfg.AuthCodeURL(randomHex(8), oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), "lin", password, "allow")
		s.noLog(res.Query.Get("code"))
		tok, err := cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		id, _ := tok.Extra("id_token").(string)
		s.noLog(tok.AccessToken, tok.RefreshToken, id)
		return tok, id
	}
	rs := oidc.NewRemoteKeySet(ctx, s.URL+"/.well-known/jwks.json") // one resource server, for the whole test
	verify := func(what, raw, kid string) {
		t.Helper()
		if h := jwtHeader(t, raw); h["kid"] != kid {
			t.Errorf("%s has kid %v; want %s", what, h["kid"], kid)
		}
		payload, err := rs.VerifySignature(ctx, raw)
		if err != nil {
			t.Errorf("the resource server cannot verify %s: %v", what, err)
			return
		}
		var c struct {
			Sub string `json:"sub"`
		}
		if err := json.Unmarshal(payload, &c); err != nil || c.Sub != lin.Sub() {
			t.Errorf("%s: sub %q (%v); want %s", what, c.Sub, err, lin.Sub())
		}
	}
	userinfo := func(s *server, tok string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := testClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	old, oldID := login(s)
	verify("the access token before rotation", old.AccessToken, key1.KID)

	// Rotate: key2 signs, key1 only verifies.
	s = s.restart(t, map[string]string{"SIGNING_KEY": key2.Path, "SIGNING_KEYS_PREVIOUS": key1.Path})
	if _, kids := jwks(t, s); !slices.Equal(kids, []string{key2.KID, key1.KID}) {
		t.Errorf("JWKS kids after rotation %q; want the new key first, then the old: [%s %s]", kids, key2.KID, key1.KID)
	}
	old.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := cfg.TokenSource(ctx, old).Token() // a refresh token from before the rotation
	if err != nil {
		t.Fatalf("refresh after rotation: %v", err)
	}
	s.noLog(refreshed.AccessToken, refreshed.RefreshToken)
	verify("an access token refreshed after rotation", refreshed.AccessToken, key2.KID)
	verify("the access token from before rotation", old.AccessToken, key1.KID)
	fresh := oidc.NewRemoteKeySet(ctx, s.URL+"/.well-known/jwks.json") // a resource server that starts now
	if _, err := fresh.VerifySignature(ctx, old.AccessToken); err != nil {
		t.Errorf("a new resource server cannot verify a token signed before rotation: %v", err)
	}
	if code := userinfo(s, old.AccessToken); code != http.StatusOK {
		t.Errorf("UserInfo with a token signed by the previous key: %d; want 200", code)
	}

	provider, err := oidc.NewProvider(ctx, s.URL)
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	idv := provider.Verifier(&oidc.Config{ClientID: app.ID})
	if _, err := idv.Verify(ctx, oldID); err != nil {
		t.Errorf("an ID token from before rotation no longer verifies: %v", err)
	}
	tok, id := login(s)
	verify("an access token issued after rotation", tok.AccessToken, key2.KID)
	if h := jwtHeader(t, id); h["kid"] != key2.KID {
		t.Errorf("ID token after rotation has kid %v; want %s", h["kid"], key2.KID)
	}
	if _, err := idv.Verify(ctx, id); err != nil {
		t.Errorf("go-oidc cannot verify an ID token signed by the new key: %v", err)
	}

	// Retire key1: its tokens stop working and it leaves the JWKS.
	s = s.restart(t, map[string]string{"SIGNING_KEYS_PREVIOUS": ""})
	if _, kids := jwks(t, s); !slices.Equal(kids, []string{key2.KID}) {
		t.Errorf("JWKS kids after retiring the old key %q; want [%s]", kids, key2.KID)
	}
	if code := userinfo(s, old.AccessToken); code != http.StatusUnauthorized {
		t.Errorf("UserInfo with a token of a retired key: %d; want 401", code)
	}
	if code := userinfo(s, tok.AccessToken); code != http.StatusOK {
		t.Errorf("UserInfo with a token of the current key: %d; want 200", code)
	}
}
