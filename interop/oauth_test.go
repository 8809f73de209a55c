package interop

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const password = "correct horse battery staple"

// oauthContext returns a context that makes x/oauth2 use testClient.
func oauthContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return context.WithValue(ctx, oauth2.HTTPClient, testClient(t))
}

// retrieveError returns the RFC 6749 §5.2 error a token request failed with.
func retrieveError(t testing.TB, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("token request error %v (%T); want an *oauth2.RetrieveError", err, err)
	}
	return re
}

// wantGrantError checks that a token request failed with code and status.
func wantGrantError(t testing.TB, what string, err error, code string, status int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded; want %s", what, code)
	}
	re := retrieveError(t, err)
	if re.ErrorCode != code || re.Response.StatusCode != status {
		t.Fatalf("%s: error %q, HTTP %d; want %q, HTTP %d (body %s)", what, re.ErrorCode, re.Response.StatusCode, code, status, re.Body)
	}
}

// accessClaims verifies an HS256 access token as a resource server holding
// JWT_SECRET would, with golang-jwt, and returns its claims. It checks the
// RFC 9068 profile: typ at+jwt, iss and aud the ISSUER, and every required
// claim present.
func accessClaims(t testing.TB, s *server, raw string) jwt.MapClaims {
	t.Helper()
	parse := func(secret string) (*jwt.Token, error) {
		return jwt.Parse(raw, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithIssuer(s.URL), jwt.WithAudience(s.URL), jwt.WithValidMethods([]string{"HS256"}),
			jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	}
	if _, err := parse(randomHex(32)); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("access token verified under a random key (err %v); the check proves nothing", err)
	}
	tok, err := parse(s.Secret)
	if err != nil {
		t.Fatalf("golang-jwt refuses the access token: %v", err)
	}
	if typ := tok.Header["typ"]; typ != "at+jwt" {
		t.Errorf("access token typ = %v; want at+jwt (RFC 9068 §2.1)", typ)
	}
	c := tok.Claims.(jwt.MapClaims)
	for _, name := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id"} {
		if _, ok := c[name]; !ok {
			t.Errorf("access token lacks the %q claim (RFC 9068 §2.2): %v", name, c)
		}
	}
	exp, _ := c.GetExpirationTime()
	iat, _ := c.GetIssuedAt()
	if exp == nil || iat == nil {
		t.Fatalf("access token exp %v, iat %v; want both", exp, iat)
	}
	if d := exp.Sub(iat.Time); d != time.Hour {
		t.Errorf("access token exp − iat = %v; want 1h (TOKEN_EXPIRY_HOURS default)", d)
	}
	if d := time.Since(iat.Time); d < -15*time.Second || d > time.Minute {
		t.Errorf("access token iat %v is %v away from now", iat, d)
	}
	return c
}

// sameScope reports whether scope (a string claim) holds exactly the scope
// tokens of want, in any order (RFC 6749 §3.3: the order does not matter).
func sameScope(scope any, want string) bool {
	s, _ := scope.(string)
	got, exp := strings.Fields(s), strings.Fields(want)
	slices.Sort(got)
	slices.Sort(exp)
	return slices.Equal(got, exp)
}

func claim(c jwt.MapClaims, name string) string {
	s, _ := c[name].(string)
	return s
}

// TestAuthorizationCodePKCE is RFC 6749 §4.1 with PKCE through
// golang.org/x/oauth2: metadata discovery, login and consent, the code
// exchange, the RFC 9068 token checked with golang-jwt, introspection,
// revocation, and refresh token rotation with reuse detection.
func TestAuthorizationCodePKCE(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL})
		const redirectURI = "http://127.0.0.1/callback"
		app := s.createClient(t, "--name", "Interop Web App", "--redirect-uri", redirectURI, "--scope", "read write")
		rs := s.createClient(t, "--name", "Resource Server", "--grant-type", "client_credentials", "--scope", "introspect", "--resource-server")
		if app.Secret == "" || app.Public {
			t.Fatalf("client create without --public gave %+v; want a confidential client with a secret", app)
		}
		ada := s.createUser(t, "ada@example.com", "ada", password)
		meta := s.metadata(t)
		ctx := oauthContext(t)

		cfg := &oauth2.Config{
			ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: redirectURI, Scopes: []string{"read"},
			Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
		}
		verifier, state := oauth2.GenerateVerifier(), randomHex(16)
		res := newUserAgent(t, s).authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "ada", password, "allow")
		if strings.Join(res.Pages, ",") != "login,consent" {
			t.Errorf("pages on the way = %q; want login then consent", res.Pages)
		}
		if res.Status != http.StatusSeeOther {
			t.Errorf("redirect after the consent POST: status %d; want 303 (RFC 9700 §4.12)", res.Status)
		}
		if got := res.Location.Scheme + "://" + res.Location.Host + res.Location.Path; got != redirectURI {
			t.Errorf("redirected to %s; want %s", res.Location, redirectURI)
		}
		if res.Query.Get("state") != state {
			t.Errorf("state = %q; want %q", res.Query.Get("state"), state)
		}
		if res.Query.Get("iss") != s.URL {
			t.Errorf("iss = %q; want %q (RFC 9207)", res.Query.Get("iss"), s.URL)
		}
		code := res.Query.Get("code")
		if code == "" {
			t.Fatalf("no code in the redirect %s", res.Location)
		}
		s.noLog(code, verifier)

		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		s.noLog(tok.AccessToken, tok.RefreshToken)
		if tok.TokenType != "Bearer" || tok.RefreshToken == "" {
			t.Errorf("token type %q, refresh token %q; want Bearer and a refresh token", tok.TokenType, tok.RefreshToken)
		}
		if d := time.Until(tok.Expiry); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("token expires in %v; want about 1h (expires_in)", d)
		}
		if got := tok.Extra("scope"); got != "read" {
			t.Errorf("token response scope = %v; want read", got)
		}
		c := accessClaims(t, s, tok.AccessToken)
		if claim(c, "sub") != ada.Sub() || claim(c, "client_id") != app.ID || claim(c, "scope") != "read" || claim(c, "jti") == "" {
			t.Errorf("access token claims %v; want sub %s, client_id %s, scope read and a jti", c, ada.Sub(), app.ID)
		}

		// Introspection (RFC 7662) by a resource server, then revocation (RFC 7009).
		in := s.introspect(t, rs, tok.AccessToken)
		if !in.Active || in.Sub != ada.Sub() || in.ClientID != app.ID || in.Scope != "read" || in.Jti != claim(c, "jti") || in.Iss != s.URL {
			t.Errorf("introspection of a fresh access token = %+v; want active, sub %s, client_id %s, scope read", in, ada.Sub(), app.ID)
		}
		s.revoke(t, rs, tok.RefreshToken, "refresh_token") // another client's token: 200, and nothing happens
		s.revoke(t, app, tok.AccessToken, "access_token")
		if in := s.introspect(t, rs, tok.AccessToken); in.Active {
			t.Errorf("introspection after revocation = %+v; want active:false", in)
		}

		// Refresh token rotation (RFC 9700 §4.14.2) through the token source.
		first := tok.RefreshToken
		tok.Expiry = time.Now().Add(-time.Minute)
		tok2, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatalf("refresh (the revocation by another client must not have touched it): %v", err)
		}
		s.noLog(tok2.AccessToken, tok2.RefreshToken)
		if tok2.RefreshToken == "" || tok2.RefreshToken == first {
			t.Fatalf("refresh returned refresh token %q; want a new one (rotation)", tok2.RefreshToken)
		}
		c2 := accessClaims(t, s, tok2.AccessToken)
		if claim(c2, "sub") != ada.Sub() || claim(c2, "scope") != "read" || claim(c2, "jti") == claim(c, "jti") {
			t.Errorf("refreshed access token claims %v; want the same sub and scope and a new jti", c2)
		}
		if in := s.introspect(t, app, tok2.RefreshToken); !in.Active || in.ClientID != app.ID {
			t.Errorf("introspection of the current refresh token by its client = %+v; want active", in)
		}

		expired := func(rt string) oauth2.TokenSource {
			return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Minute)})
		}
		_, err = expired(first).Token()
		wantGrantError(t, "refresh with the spent refresh token", err, "invalid_grant", http.StatusBadRequest)
		_, err = expired(tok2.RefreshToken).Token()
		wantGrantError(t, "refresh with the newest refresh token after reuse (family revoked)", err, "invalid_grant", http.StatusBadRequest)
		if in := s.introspect(t, app, tok2.RefreshToken); in.Active {
			t.Errorf("introspection of a refresh token of a revoked family = %+v; want active:false", in)
		}

		// Asked again (prompt=consent), the user denies: access_denied goes back to the client.
		state = randomHex(16)
		res = newUserAgent(t, s).authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "consent")), "ada", password, "deny")
		if res.Query.Get("error") != "access_denied" || res.Query.Get("code") != "" || res.Query.Get("state") != state || res.Query.Get("iss") != s.URL {
			t.Errorf("after Deny: redirect query %v; want error=access_denied, no code, state %q and iss", res.Query, state)
		}
	})
}

// TestClientCredentials is RFC 6749 §4.4 through
// golang.org/x/oauth2/clientcredentials, with both ways of sending the
// client's credentials (RFC 6749 §2.3.1).
func TestClientCredentials(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL})
		svc := s.createClient(t, "--name", "Batch Job", "--grant-type", "client_credentials", "--scope", "read", "--scope", "write")
		meta := s.metadata(t)
		for _, style := range []struct {
			name  string
			style oauth2.AuthStyle
		}{{"basic", oauth2.AuthStyleInHeader}, {"post", oauth2.AuthStyleInParams}} {
			t.Run(style.name, func(t *testing.T) {
				ctx := oauthContext(t)
				cc := clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: meta.TokenEndpoint, AuthStyle: style.style}

				cc.Scopes = []string{"write"}
				tok, err := cc.Token(ctx)
				if err != nil {
					t.Fatalf("Token: %v", err)
				}
				s.noLog(tok.AccessToken)
				if tok.RefreshToken != "" {
					t.Errorf("client credentials gave a refresh token; want none (RFC 6749 §4.4.3)")
				}
				c := accessClaims(t, s, tok.AccessToken)
				if claim(c, "sub") != svc.ID || claim(c, "client_id") != svc.ID || !sameScope(c["scope"], "write") {
					t.Errorf("claims %v; want sub = client_id = %s (RFC 9068 §2.2) and scope write", c, svc.ID)
				}

				cc.Scopes = nil // no scope: the registered ones
				tok, err = cc.Token(ctx)
				if err != nil {
					t.Fatalf("Token without scope: %v", err)
				}
				if got := accessClaims(t, s, tok.AccessToken)["scope"]; !sameScope(got, "read write") {
					t.Errorf("scope without asking = %v; want the registered %q", got, "read write")
				}

				cc.Scopes = []string{"admin"}
				_, err = cc.Token(ctx)
				wantGrantError(t, "an unregistered scope", err, "invalid_scope", http.StatusBadRequest)

				cc.Scopes = nil
				for _, bad := range []struct{ what, id, secret string }{
					{"a wrong secret", svc.ID, randomHex(16)},
					{"an unknown client", "no-such-client", svc.Secret},
				} {
					cc.ClientID, cc.ClientSecret = bad.id, bad.secret
					_, err = cc.Token(ctx)
					wantGrantError(t, bad.what, err, "invalid_client", http.StatusUnauthorized)
					if h := retrieveError(t, err).Response.Header.Get("WWW-Authenticate"); h == "" {
						t.Errorf("%s: 401 without WWW-Authenticate (RFC 6749 §5.2)", bad.what)
					}
				}
			})
		}
	})
}

// TestPublicClientPKCE is a native app (RFC 8252): a public client with no
// secret, a loopback redirect URI on an ephemeral port, PKCE, and a replayed
// code that must fail and revoke what the first exchange issued.
func TestPublicClientPKCE(t *testing.T) {
	s := startServer(t, nil)
	app := s.createClient(t, "--name", "Interop CLI", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "read", "--public")
	if app.Secret != "" || !app.Public {
		t.Fatalf("client create --public gave %+v; want a public client without a secret", app)
	}
	rs := s.createClient(t, "--name", "Resource Server", "--grant-type", "client_credentials", "--scope", "introspect", "--resource-server")
	bob := s.createUser(t, "bob@example.com", "bob", password)
	meta := s.metadata(t)
	ctx := oauthContext(t)
	ua := newUserAgent(t, s)

	cfg := &oauth2.Config{
		ClientID: app.ID, RedirectURL: "http://127.0.0.1:53682/cb", // any port on a loopback literal (RFC 8252 §7.3)
		Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}

	// Without PKCE, or with plain, the request is refused back to the client.
	for _, c := range []struct {
		what string
		opts []oauth2.AuthCodeOption
	}{
		{"no PKCE", nil},
		{"plain PKCE", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("code_challenge_method", "plain")}},
	} {
		state := randomHex(8)
		res := ua.authorize(cfg.AuthCodeURL(state, c.opts...), "bob", password, "allow")
		if res.Query.Get("error") != "invalid_request" || res.Query.Get("code") != "" || res.Query.Get("state") != state {
			t.Errorf("%s: redirected with %v; want error=invalid_request, no code, state echoed", c.what, res.Query)
		}
	}

	verifier, state := oauth2.GenerateVerifier(), randomHex(16)
	res := ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "bob", password, "allow")
	if got := res.Location.Host; got != "127.0.0.1:53682" {
		t.Errorf("redirected to host %q; want the port the client asked for", got)
	}
	code := res.Query.Get("code")
	if code == "" || res.Query.Get("state") != state || res.Query.Get("iss") != s.URL {
		t.Fatalf("redirect query %v; want a code, state %q and iss %q", res.Query, state, s.URL)
	}
	s.noLog(code, verifier)
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	s.noLog(tok.AccessToken, tok.RefreshToken)
	c := accessClaims(t, s, tok.AccessToken)
	if claim(c, "sub") != bob.Sub() || claim(c, "client_id") != app.ID || claim(c, "scope") != "read" {
		t.Errorf("claims %v; want sub %s, client_id %s, scope read", c, bob.Sub(), app.ID)
	}
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token for a public client with the default grants")
	}

	_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantGrantError(t, "the same code again", err, "invalid_grant", http.StatusBadRequest)
	if in := s.introspect(t, rs, tok.AccessToken); in.Active {
		t.Errorf("the access token of a replayed code is still active: %+v (RFC 6749 §4.1.2)", in)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	_, err = cfg.TokenSource(ctx, tok).Token()
	wantGrantError(t, "refresh with the refresh token of a replayed code", err, "invalid_grant", http.StatusBadRequest)

	// A fresh code with the wrong verifier.
	verifier, state = oauth2.GenerateVerifier(), randomHex(16)
	res = ua.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "bob", password, "allow")
	if res.Query.Get("code") == "" {
		t.Fatalf("second authorization: redirect query %v; want a code", res.Query)
	}
	s.noLog(res.Query.Get("code"))
	_, err = cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantGrantError(t, "a code with the wrong code_verifier", err, "invalid_grant", http.StatusBadRequest)
}
