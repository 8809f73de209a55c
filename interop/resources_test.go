package interop

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

// TestResourceIndicators is RFC 8707 as two resource servers see it: each
// verifies access tokens with golang-jwt against the JWKS alone and
// requires aud to be its own URI, so a token asked for resource A is
// accepted by A and refused by B; asked by introspection, the resource
// server registered --resource A learns it is active, the one of B that it
// is not (RFC 7662 §4). A refresh that names another resource
// (widening), an unknown resource, and two resource parameters of which
// one is unknown are all invalid_target, through golang.org/x/oauth2.
func TestResourceIndicators(t *testing.T) {
	const apiA, apiB = "https://api-a.example.com", "https://api-b.example.com"
	key := generateKey(t, "RS256")
	databases(t, func(t *testing.T, databaseURL string) {
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL, "SIGNING_KEY": key.Path, "RESOURCES": apiA + "," + apiB})
		const redirectURI = "http://127.0.0.1/callback"
		app := s.createClient(t, "--name", "Two APIs", "--redirect-uri", redirectURI, "--scope", "read")
		s.createUser(t, "ada@example.com", "ada", password)
		meta := s.metadata(t)
		ctx := oauthContext(t)
		cfg := &oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: redirectURI, Scopes: []string{"read"},
			Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader}}

		var set jose.JSONWebKeySet
		s.getJSON(t, "/.well-known/jwks.json", &set)
		if len(set.Keys) != 1 {
			t.Fatalf("JWKS holds %d keys; want 1", len(set.Keys))
		}
		pub, ok := set.Keys[0].Key.(*rsa.PublicKey)
		if !ok {
			t.Fatalf("JWKS key %T; want RSA", set.Keys[0].Key)
		}
		// accepts is a resource server at audience: the JWKS, the issuer, RS256, and its own aud.
		accepts := func(audience, raw string) error {
			_, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithIssuer(s.URL),
				jwt.WithAudience(audience), jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired())
			return err
		}

		verifier := oauth2.GenerateVerifier()
		res := newUserAgent(t, s).authorize(cfg.AuthCodeURL(randomHex(8), oauth2.S256ChallengeOption(verifier),
			oauth2.SetAuthURLParam("resource", apiA)), "ada", password, "allow")
		code := res.Query.Get("code")
		if code == "" {
			t.Fatalf("no code: %v", res.Query)
		}
		s.noLog(code, verifier)
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		s.noLog(tok.AccessToken, tok.RefreshToken)
		if err := accepts(apiA, tok.AccessToken); err != nil {
			t.Fatalf("resource server A refuses a token asked for A: %v", err)
		}
		if err := accepts(apiB, tok.AccessToken); err == nil {
			t.Fatal("resource server B accepts a token asked for A")
		}
		if err := accepts(s.URL, tok.AccessToken); err == nil {
			t.Fatal("a token for A passes as a token for the server itself")
		}
		rsA := s.createClient(t, "--name", "API A", "--grant-type", "client_credentials", "--resource-server", "--resource", apiA)
		rsB := s.createClient(t, "--name", "API B", "--grant-type", "client_credentials", "--resource-server", "--resource", apiB)
		if in := s.introspect(t, rsA, tok.AccessToken); !in.Active || in.Aud != apiA {
			t.Fatalf("resource server A introspected a token for A: %+v; want active", in)
		}
		if in := s.introspect(t, rsB, tok.AccessToken); in != (introspection{}) {
			t.Fatalf("resource server B introspected a token for A: %+v; want inactive", in)
		}
		// Nor does the server's own API take it.
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		if resp, err := testClient(t).Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("userinfo with a token for A: %v, %v; want 401", resp, err)
		} else {
			resp.Body.Close()
		}

		// A refresh that names B widens: refused, and the token is not spent.
		refresh := func(resource ...string) (*oauth2.Token, error) {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "resource": resource}
			return postToken(t, s, app, form)
		}
		if _, err := refresh(apiB); err == nil || err.Error() != "invalid_target" {
			t.Fatalf("refresh naming B: %v; want invalid_target", err)
		}
		if _, err := refresh(apiA, "https://unknown.example"); err == nil || err.Error() != "invalid_target" {
			t.Fatalf("refresh naming A and an unknown one: %v; want invalid_target", err)
		}
		next, err := refresh(apiA)
		if err != nil {
			t.Fatalf("refresh naming A after the refusals: %v", err)
		}
		s.noLog(next.AccessToken, next.RefreshToken)
		if err := accepts(apiA, next.AccessToken); err != nil {
			t.Fatalf("the refreshed token is not for A: %v", err)
		}

		// At the authorization endpoint: an unknown resource, or one known
		// and one unknown, go back to the client as invalid_target.
		for name, resources := range map[string][]string{"unknown": {"https://unknown.example"}, "known and unknown": {apiA, "https://unknown.example"}} {
			u, _ := url.Parse(cfg.AuthCodeURL(randomHex(8), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := u.Query()
			q["resource"] = resources
			u.RawQuery = q.Encode()
			res := newUserAgent(t, s).authorize(u.String(), "ada", password, "allow")
			if res.Query.Get("error") != "invalid_target" {
				t.Errorf("authorize with %s resources: %v; want error=invalid_target", name, res.Query)
			}
		}
	})
}

// postToken posts a token request with the client's credentials (Basic)
// and returns the token, or an error whose text is the OAuth error code.
func postToken(t testing.TB, s *server, c client, form url.Values) (*oauth2.Token, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Error        string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errorString(body.Error)
	}
	return &oauth2.Token{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken}, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }
