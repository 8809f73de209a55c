package interop

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// registration is the RFC 7591 §3.2.1 / RFC 7592 §3 client information response.
type registration struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at"`
	RegistrationAccessToken string   `json:"registration_access_token"`
	RegistrationClientURI   string   `json:"registration_client_uri"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
}

// registrationCall sends an RFC 7591/7592 request as a client application
// would with nothing but net/http: JSON in and out, a Bearer token when
// given. It checks the status and, on every answer with a body, no-store.
func registrationCall(t testing.TB, method, url, bearer string, body any, want int) []byte {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d; want %d; body %s", method, url, resp.StatusCode, want, out.Bytes())
	}
	if out.Len() > 0 && !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Errorf("%s %s: Cache-Control %q; want no-store", method, url, resp.Header.Get("Cache-Control"))
	}
	if want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s %s: 401 with WWW-Authenticate %q; want a Bearer challenge", method, url, resp.Header.Get("WWW-Authenticate"))
	}
	return out.Bytes()
}

func decodeRegistration(t testing.TB, b []byte) registration {
	t.Helper()
	var r registration
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("registration answer %s: %v", b, err)
	}
	return r
}

// TestRegisterSelf is a client that registers itself (RFC 7591, with an
// initial access token from `oauth2-api client registration-token`), signs
// a user in with code + PKCE through golang.org/x/oauth2 using the
// credentials it was given, reads and updates its registration (RFC 7592),
// and deletes itself, after which its tokens stop working: introspection by
// a resource server says inactive and the token endpoint refuses the
// refresh token.
func TestRegisterSelf(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL, "ENABLE_DYNAMIC_REGISTRATION": "token"})
		rs := s.createClient(t, "--name", "Resource Server", "--grant-type", "client_credentials", "--resource-server")
		s.createUser(t, "ada@example.com", "ada", password)
		var meta struct {
			RegistrationEndpoint string `json:"registration_endpoint"`
		}
		s.getJSON(t, "/.well-known/oauth-authorization-server", &meta)
		if meta.RegistrationEndpoint != s.URL+"/oauth2/register" {
			t.Fatalf("registration_endpoint = %q; want %s/oauth2/register", meta.RegistrationEndpoint, s.URL)
		}
		m := s.metadata(t)

		var it struct {
			Token string `json:"initial_access_token"`
		}
		if out := s.cli(t, "", "client", "registration-token", "--ttl", "10m"); json.Unmarshal(out, &it) != nil || it.Token == "" {
			t.Fatalf("client registration-token printed %q", out)
		}
		s.noLog(it.Token)

		const redirectURI = "http://127.0.0.1/callback"
		request := map[string]any{
			"client_name": "Self-registered Agent", "redirect_uris": []string{redirectURI},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "client_secret_post", "scope": "read write",
			"logo_uri": "http://127.0.0.1:1/never-fetched.png", "software_id": "interop",
		}
		registrationCall(t, http.MethodPost, meta.RegistrationEndpoint, "", request, http.StatusUnauthorized)
		reg := decodeRegistration(t, registrationCall(t, http.MethodPost, meta.RegistrationEndpoint, it.Token, request, http.StatusCreated))
		s.noLog(reg.ClientSecret, reg.RegistrationAccessToken)
		if reg.ClientID == "" || reg.ClientSecret == "" || reg.RegistrationAccessToken == "" || reg.ClientSecretExpiresAt == nil || *reg.ClientSecretExpiresAt != 0 ||
			reg.RegistrationClientURI != s.URL+"/oauth2/register/"+reg.ClientID || reg.TokenEndpointAuthMethod != "client_secret_post" ||
			strings.Join(reg.GrantTypes, " ") != "authorization_code refresh_token" || strings.Join(reg.ResponseTypes, " ") != "code" ||
			time.Since(time.Unix(reg.ClientIDIssuedAt, 0)) > time.Minute {
			t.Fatalf("registration answer %+v", reg)
		}
		// The initial access token was single use.
		registrationCall(t, http.MethodPost, meta.RegistrationEndpoint, it.Token, request, http.StatusUnauthorized)

		// Code + PKCE with the new credentials (client_secret_post, as registered).
		ctx := oauthContext(t)
		cfg := &oauth2.Config{
			ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, RedirectURL: redirectURI, Scopes: []string{"read"},
			Endpoint: oauth2.Endpoint{AuthURL: m.AuthorizationEndpoint, TokenURL: m.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		}
		verifier, state := oauth2.GenerateVerifier(), randomHex(16)
		res := newUserAgent(t, s).authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), "ada", password, "allow")
		if strings.Join(res.Pages, ",") != "login,consent" {
			t.Errorf("pages = %q; want login then consent (a registered client is never first-party)", res.Pages)
		}
		code := res.Query.Get("code")
		if code == "" || res.Query.Get("state") != state {
			t.Fatalf("redirect query %v; want a code and the state", res.Query)
		}
		s.noLog(code, verifier)
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange with the registered credentials: %v", err)
		}
		s.noLog(tok.AccessToken, tok.RefreshToken)
		if in := s.introspect(t, rs, tok.AccessToken); !in.Active || in.ClientID != reg.ClientID || in.Scope != "read" {
			t.Fatalf("introspection of the registered client's token = %+v", in)
		}

		// Read (RFC 7592 §2.1).
		read := decodeRegistration(t, registrationCall(t, http.MethodGet, reg.RegistrationClientURI, reg.RegistrationAccessToken, nil, http.StatusOK))
		if read.ClientID != reg.ClientID || read.ClientName != "Self-registered Agent" || read.Scope != "read write" || read.ClientSecret != "" {
			t.Fatalf("read %+v", read)
		}
		registrationCall(t, http.MethodGet, reg.RegistrationClientURI, reg.ClientSecret, nil, http.StatusUnauthorized)

		// Update (RFC 7592 §2.2): the whole metadata with client_id; the token rotates.
		update := map[string]any{"client_id": reg.ClientID}
		for k, v := range request {
			update[k] = v
		}
		update["client_name"] = "Renamed Agent"
		update["redirect_uris"] = []string{redirectURI, "http://127.0.0.1/other"}
		upd := decodeRegistration(t, registrationCall(t, http.MethodPut, reg.RegistrationClientURI, reg.RegistrationAccessToken, update, http.StatusOK))
		s.noLog(upd.RegistrationAccessToken)
		if upd.ClientName != "Renamed Agent" || len(upd.RedirectURIs) != 2 || upd.RegistrationAccessToken == "" || upd.RegistrationAccessToken == reg.RegistrationAccessToken {
			t.Fatalf("update answer %+v; want the new name, two redirect URIs and a new registration access token", upd)
		}
		registrationCall(t, http.MethodGet, reg.RegistrationClientURI, reg.RegistrationAccessToken, nil, http.StatusUnauthorized)
		if got := decodeRegistration(t, registrationCall(t, http.MethodGet, reg.RegistrationClientURI, upd.RegistrationAccessToken, nil, http.StatusOK)); got.ClientName != "Renamed Agent" {
			t.Fatalf("read after update: %+v", got)
		}
		// The secret is unchanged: the client refreshes as before.
		tok.Expiry = time.Now().Add(-time.Minute)
		tok2, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatalf("refresh after the update: %v", err)
		}
		s.noLog(tok2.AccessToken, tok2.RefreshToken)

		// Delete (RFC 7592 §2.3): then none of its tokens works.
		registrationCall(t, http.MethodDelete, reg.RegistrationClientURI, upd.RegistrationAccessToken, nil, http.StatusNoContent)
		registrationCall(t, http.MethodGet, reg.RegistrationClientURI, upd.RegistrationAccessToken, nil, http.StatusUnauthorized)
		for _, at := range []string{tok.AccessToken, tok2.AccessToken} {
			if in := s.introspect(t, rs, at); in.Active {
				t.Errorf("introspection after the client deleted itself = %+v; want active:false", in)
			}
		}
		tok2.Expiry = time.Now().Add(-time.Minute)
		_, err = cfg.TokenSource(ctx, tok2).Token()
		wantGrantError(t, "refresh after the client deleted itself", err, "invalid_client", http.StatusUnauthorized)
	})
}

// TestRegisterOpen: with ENABLE_DYNAMIC_REGISTRATION=open a public client
// registers without any token and runs code + PKCE; hostile metadata is
// refused with RFC 7591's error codes.
func TestRegisterOpen(t *testing.T) {
	s := startServer(t, map[string]string{"ENABLE_DYNAMIC_REGISTRATION": "open"})
	s.createUser(t, "ada@example.com", "ada", password)
	m := s.metadata(t)
	const redirectURI = "http://127.0.0.1/callback"
	endpoint := s.URL + "/oauth2/register"
	reg := decodeRegistration(t, registrationCall(t, http.MethodPost, endpoint, "", map[string]any{
		"client_name": "CLI", "redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": "none",
	}, http.StatusCreated))
	s.noLog(reg.RegistrationAccessToken)
	if reg.ClientSecret != "" || reg.ClientSecretExpiresAt != nil || strings.Join(reg.GrantTypes, " ") != "authorization_code" {
		t.Fatalf("public registration %+v; want no secret and grant_types [authorization_code]", reg)
	}
	for _, bad := range []struct {
		body map[string]any
		code string
	}{
		{map[string]any{"client_name": "x", "redirect_uris": []string{"javascript:alert(1)"}}, "invalid_redirect_uri"},
		{map[string]any{"client_name": "x", "redirect_uris": []string{redirectURI + "#f"}}, "invalid_redirect_uri"},
		{map[string]any{"client_name": "x", "redirect_uris": []string{redirectURI}, "jwks_uri": "http://127.0.0.1:1/jwks"}, "invalid_client_metadata"},
		{map[string]any{"client_name": "x", "redirect_uris": []string{redirectURI}, "grant_types": []string{"client_credentials"}}, "invalid_client_metadata"},
	} {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		json.Unmarshal(registrationCall(t, http.MethodPost, endpoint, "", bad.body, http.StatusBadRequest), &e)
		if e.Error != bad.code || e.Description == "" {
			t.Errorf("registration %v: %+v; want %s with a description", bad.body, e, bad.code)
		}
	}

	ctx := oauthContext(t)
	cfg := &oauth2.Config{ClientID: reg.ClientID, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: m.AuthorizationEndpoint, TokenURL: m.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	res := newUserAgent(t, s).authorize(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), "ada", password, "allow")
	s.noLog(res.Query.Get("code"), verifier)
	tok, err := cfg.Exchange(ctx, res.Query.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange by the public registered client: %v", err)
	}
	s.noLog(tok.AccessToken)
	if tok.RefreshToken != "" {
		t.Errorf("a refresh token for a client registered without refresh_token")
	}
}
