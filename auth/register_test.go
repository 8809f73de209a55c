package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// withDynamicRegistration turns on ENABLE_DYNAMIC_REGISTRATION in mode,
// with a per-address budget large enough not to matter.
func withDynamicRegistration(mode string) func(*Deps) {
	return func(d *Deps) {
		d.DynamicRegistration = mode
		d.Registration = ratelimit.New(rate.Limit(1000), 1000, 1000)
	}
}

// initialToken makes an initial access token as `client registration-token` does.
func (e *env) initialToken(ttl time.Duration) string {
	e.t.Helper()
	tok, _, err := NewRegistrationToken(context.Background(), e.db, ttl, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return e.secret(tok)
}

// registerClient POSTs metadata (a value sent as JSON, or a string sent as is
// with Content-Type application/json) with an optional initial access token.
func (e *env) registerClient(initial string, metadata any) response {
	e.t.Helper()
	h := []string{"Content-Type", "application/json"}
	if initial != "" {
		h = append(h, "Authorization", "Bearer "+initial)
	}
	if _, ok := metadata.(string); !ok {
		b, err := json.Marshal(metadata)
		if err != nil {
			e.t.Fatal(err)
		}
		metadata = string(b)
	}
	r := e.request("POST", "/oauth2/register", metadata, h...)
	if r.Code == http.StatusCreated {
		e.secret(r.Str("client_secret"))
		e.secret(r.Str("registration_access_token"))
	}
	return r
}

// manage sends an RFC 7592 request for id with a registration access token.
func (e *env) manage(method, id, rat string, metadata any) response {
	e.t.Helper()
	h := []string{"Authorization", "Bearer " + rat}
	if metadata != nil {
		h = append(h, "Content-Type", "application/json")
		if _, raw := metadata.(string); !raw {
			b, _ := json.Marshal(metadata)
			metadata = string(b)
		}
	}
	r := e.request(method, "/oauth2/register/"+id, metadata, h...)
	if r.Code == http.StatusOK {
		e.secret(r.Str("registration_access_token"))
	}
	return r
}

// wantRegistrationError checks an RFC 7591 §3.2.2 error: status, code, a
// description, no-store.
func (r response) wantRegistrationError(status int, code string) response {
	r.t.Helper()
	r.wantOAuthError(status, code)
	if r.Str("error_description") == "" {
		r.t.Fatalf("error without error_description: %s", r.Body.String())
	}
	return r
}

func strList(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func webMetadata() map[string]any {
	return map[string]any{
		"client_name": "Agent", "redirect_uris": []string{"https://app.example/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "client_secret_post",
		"scope": "read write",
	}
}

// In token mode: a registration needs a live initial access token, spends
// it once (and only when the client is stored), and answers RFC 7591
// §3.2.1; the client then runs the code flow, reads, updates and deletes
// itself with its registration access token (RFC 7592), after which its
// tokens stop working.
func TestDynamicRegistrationToken(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		meta := e.request("GET", "/.well-known/oauth-authorization-server", nil).want(http.StatusOK).JSON()
		if meta["registration_endpoint"] != testIssuer+"/oauth2/register" {
			t.Fatalf("registration_endpoint = %v", meta["registration_endpoint"])
		}

		r := e.registerClient("", webMetadata()).want(http.StatusUnauthorized)
		if !strings.HasPrefix(r.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("401 without a Bearer challenge: %v", r.Header())
		}
		e.registerClient("not-a-token", webMetadata()).wantOAuthError(http.StatusUnauthorized, "invalid_token")
		initial := e.initialToken(time.Hour)
		e.registerClient(initial, map[string]any{"client_name": "x", "redirect_uris": []string{"javascript:alert(1)"}}).
			wantRegistrationError(http.StatusBadRequest, "invalid_redirect_uri")

		r = e.registerClient(initial, webMetadata()).want(http.StatusCreated) // the refusal above spent nothing
		if r.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("registration answer without no-store: %v", r.Header())
		}
		m := r.JSON()
		id, secret, rat := r.Str("client_id"), r.Str("client_secret"), r.Str("registration_access_token")
		if id == "" || len(secret) < 43 || len(rat) < 43 || secret == rat {
			t.Fatalf("registration answer %v: want a client_id, a secret and a registration access token", m)
		}
		if m["client_secret_expires_at"] != 0.0 || m["client_id_issued_at"] != float64(e.clock.Now().Unix()) ||
			m["registration_client_uri"] != testIssuer+"/oauth2/register/"+id || m["token_endpoint_auth_method"] != "client_secret_post" ||
			m["scope"] != "read write" || m["client_name"] != "Agent" ||
			!slices.Equal(strList(m["grant_types"]), []string{"authorization_code", "refresh_token"}) ||
			!slices.Equal(strList(m["response_types"]), []string{"code"}) ||
			!slices.Equal(strList(m["redirect_uris"]), []string{"https://app.example/cb"}) {
			t.Fatalf("registration answer %v", m)
		}
		e.registerClient(initial, webMetadata()).wantOAuthError(http.StatusUnauthorized, "invalid_token") // used once

		expiring := e.initialToken(time.Minute)
		e.clock.Add(time.Minute)
		e.registerClient(expiring, webMetadata()).wantOAuthError(http.StatusUnauthorized, "invalid_token")

		c, err := e.db.ClientByID(context.Background(), id)
		if err != nil || c.FirstParty || c.ResourceServer || !c.Registered() || c.Public() {
			t.Fatalf("stored client %+v, %v; want registered, confidential, neither first-party nor a resource server", c, err)
		}

		// The code flow with the new credentials (client_secret_post), with consent.
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(id, p, "scope", "read"), "ann", "Ann-Password-1"))
		form := codeForm(code, p)
		form.Set("client_id", id)
		form.Set("client_secret", secret)
		tok := e.formPost("/oauth2/token", "", "", form).want(http.StatusOK)
		at, rt := e.secret(tok.Str("access_token")), e.secret(tok.Str("refresh_token"))
		if at == "" || rt == "" {
			t.Fatalf("token response %s", tok.Body.String())
		}
		if in := e.introspect(rs, rsSecret, at); in["active"] != true || in["client_id"] != id {
			t.Fatalf("introspection of the registered client's token: %v", in)
		}

		// Read (RFC 7592 §2.1): the metadata, no secret, and the
		// registration access token it was read with (§3: REQUIRED).
		got := e.manage("GET", id, rat, nil).want(http.StatusOK)
		if got.Header().Get("Cache-Control") != "no-store" || got.Str("client_id") != id || got.Str("client_secret") != "" ||
			got.Str("registration_access_token") != rat || got.Str("registration_client_uri") != testIssuer+"/oauth2/register/"+id {
			t.Fatalf("read: %s %v", got.Body.String(), got.Header())
		}
		other := e.registerClient("", nil) // token mode: refused before anything
		other.want(http.StatusUnauthorized)
		second := e.registerClient(e.initialToken(time.Hour), map[string]any{"client_name": "Other", "redirect_uris": []string{"https://other.example/cb"}, "token_endpoint_auth_method": "none"}).want(http.StatusCreated)
		for name, try := range map[string]response{
			"a wrong token":              e.manage("GET", id, "wrong", nil),
			"another client's token":     e.manage("GET", id, second.Str("registration_access_token"), nil),
			"its token for another id":   e.manage("GET", second.Str("client_id"), rat, nil),
			"an access token":            e.manage("GET", id, at, nil),
			"the client secret":          e.manage("GET", id, secret, nil),
			"a wrong token, for PUT":     e.manage("PUT", id, "wrong", map[string]any{"client_id": id, "client_name": "x"}),
			"a wrong token, for DELETE":  e.manage("DELETE", id, "wrong", nil),
			"no token, for DELETE":       e.request("DELETE", "/oauth2/register/"+id, nil),
			"the initial token, for PUT": e.manage("PUT", id, initial, map[string]any{"client_id": id, "client_name": "x"}),
			"its token and a U+00A0":     e.manage("GET", id, rat+"\u00a0", nil), // one byte form: nothing trimmed
			"its token after a \\v":      e.manage("GET", id, "\v"+rat, nil),
		} {
			if try.Code != http.StatusUnauthorized || !strings.HasPrefix(try.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %d %s; want 401 with a Bearer challenge", name, try.Code, try.Body.String())
			}
		}

		// Update (RFC 7592 §2.2): replaced metadata, a new token; the old one is dead.
		upd := webMetadata()
		upd["client_id"] = id
		upd["client_secret"] = secret
		upd["client_name"] = "Agent 2"
		upd["redirect_uris"] = []string{"https://app.example/cb", "https://app.example/cb2"}
		upd["registration_access_token"] = "ignored" // RFC 7592 §2.2: ignored
		e.manage("PUT", id, rat, map[string]any{"client_name": "x", "redirect_uris": []string{"https://app.example/cb"}}).
			wantRegistrationError(http.StatusBadRequest, "invalid_client_metadata") // no client_id
		bad := with(upd, "client_secret", "wrong-secret")
		e.manage("PUT", id, rat, bad).wantRegistrationError(http.StatusBadRequest, "invalid_client_metadata")
		e.manage("PUT", id, rat, with(upd, "token_endpoint_auth_method", "none")).wantRegistrationError(http.StatusBadRequest, "invalid_client_metadata")
		e.manage("PUT", id, rat, with(upd, "redirect_uris", []string{"https://app.example/cb#x"})).wantRegistrationError(http.StatusBadRequest, "invalid_redirect_uri")
		u := e.manage("PUT", id, rat, upd).want(http.StatusOK)
		rat2 := u.Str("registration_access_token")
		if rat2 == "" || rat2 == rat || u.Str("client_name") != "Agent 2" || len(strList(u.JSON()["redirect_uris"])) != 2 || u.Str("client_secret") != "" {
			t.Fatalf("update answer %s", u.Body.String())
		}
		e.manage("GET", id, rat, nil).wantOAuthError(http.StatusUnauthorized, "invalid_token")
		if e.manage("GET", id, rat2, nil).want(http.StatusOK).Str("client_name") != "Agent 2" {
			t.Fatal("read after update: old name")
		}
		e.manage("PUT", id, rat, upd).wantOAuthError(http.StatusUnauthorized, "invalid_token") // the rotated token
		// The secret did not change; the code flow goes on with the new redirect URI registered.
		e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).want(http.StatusOK)

		// Delete (RFC 7592 §2.3): 204, then nothing of the client works.
		e.manage("DELETE", id, rat2, nil).want(http.StatusNoContent)
		e.manage("GET", id, rat2, nil).wantOAuthError(http.StatusUnauthorized, "invalid_token")
		e.manage("DELETE", id, rat2, nil).wantOAuthError(http.StatusUnauthorized, "invalid_token")
		if in := e.introspect(rs, rsSecret, at); in["active"] != false {
			t.Fatalf("the deleted client's access token is still active: %v", in)
		}
		form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}, "client_secret": {secret}}
		e.formPost("/oauth2/token", "", "", form).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		if _, err := e.db.ClientByID(context.Background(), id); err == nil {
			t.Fatal("the deleted client is still stored")
		}
	}, withDynamicRegistration(RegistrationToken))
}

// with returns a copy of m with key set to v.
func with(m map[string]any, key string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		out[k] = x
	}
	out[key] = v
	return out
}

// In open mode anyone registers (an Authorization header is not looked
// at); a public client gets no secret and no client_secret_expires_at. An
// administrator sees it marked registered in the client list and can
// delete it.
func TestDynamicRegistrationOpen(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		r := e.registerClient("", map[string]any{"client_name": "CLI", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none"}).
			want(http.StatusCreated)
		m := r.JSON()
		if _, ok := m["client_secret"]; ok {
			t.Fatalf("a public client got a secret: %v", m)
		}
		if _, ok := m["client_secret_expires_at"]; ok {
			t.Fatalf("client_secret_expires_at without a secret: %v", m)
		}
		if !slices.Equal(strList(m["grant_types"]), []string{"authorization_code"}) || m["token_endpoint_auth_method"] != "none" {
			t.Fatalf("defaults: %v; want grant_types [authorization_code] (RFC 7591 §2)", m)
		}
		e.registerClient("whatever", map[string]any{"client_name": "Second", "redirect_uris": []string{"https://b.example/cb"}}).want(http.StatusCreated)
		admin, _ := e.newClient(ClientSpec{Name: "admin-made", GrantTypes: []string{"client_credentials"}})

		e.createUser("root@example.com", "root", "Root-Password-1", store.RoleAdmin)
		tok, _ := e.login("root", "Root-Password-1")
		list := e.request("GET", "/api/v1/clients", nil, bearer(tok)...).want(http.StatusOK)
		var body struct{ Clients []ClientJSON }
		if err := json.Unmarshal(list.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		marked := map[string]bool{}
		for _, c := range body.Clients {
			marked[c.ClientID] = c.Registered
		}
		if len(marked) != 3 || !marked[r.Str("client_id")] || marked[admin] {
			t.Fatalf("client list marks %v; want the two registered clients marked and %s not", marked, admin)
		}
		e.request("DELETE", "/api/v1/clients/"+r.Str("client_id"), nil, bearer(tok)...).want(http.StatusNoContent)
		e.manage("GET", r.Str("client_id"), r.Str("registration_access_token"), nil).wantOAuthError(http.StatusUnauthorized, "invalid_token")
	}, withDynamicRegistration(RegistrationOpen))
}

// Off (the default): no route, nothing in the metadata.
func TestDynamicRegistrationOff(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.registerClient("", webMetadata()).want(http.StatusNotFound)
	if _, ok := e.request("GET", "/.well-known/oauth-authorization-server", nil).JSON()["registration_endpoint"]; ok {
		t.Fatal("registration_endpoint advertised while registration is off")
	}
}

// Hostile and malformed registrations are refused with the RFC 7591
// §3.2.2 codes (or 413, 415, 400 for the body's form), and store nothing.
// Members the server does not use are ignored and not stored.
func TestDynamicRegistrationHostileInput(t *testing.T) {
	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprintf("https://app.example/cb/%d", i)
	}
	base := func(kv ...any) map[string]any {
		m := map[string]any{"client_name": "x", "redirect_uris": []string{"https://app.example/cb"}}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	eachEnv(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"10,000 redirect URIs", base("redirect_uris", many), http.StatusRequestEntityTooLarge, "invalid_request"},
			{"11 redirect URIs", base("redirect_uris", many[:11]), http.StatusBadRequest, "invalid_client_metadata"},
			{"11 post-logout URIs", base("post_logout_redirect_uris", many[:11]), http.StatusBadRequest, "invalid_client_metadata"},
			{"javascript: URI", base("redirect_uris", []string{"javascript:alert(document.cookie)"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"data: URI", base("redirect_uris", []string{"data:text/html,<script>alert(1)</script>"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"fragment", base("redirect_uris", []string{"https://app.example/cb#frag"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"empty fragment", base("redirect_uris", []string{"https://app.example/cb#"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"relative URI", base("redirect_uris", []string{"/cb"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"smuggled URI", base("redirect_uris", []string{"https://app.example/cb\u00a0https://evil.example/"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"post-logout javascript:", base("post_logout_redirect_uris", []string{"javascript:x"}), http.StatusBadRequest, "invalid_redirect_uri"},
			{"code without redirect URIs", map[string]any{"client_name": "x"}, http.StatusBadRequest, "invalid_redirect_uri"},
			{"1 MiB client name", base("client_name", strings.Repeat("A", 1<<20)), http.StatusRequestEntityTooLarge, "invalid_request"}, // over MaxBody too
			{"a 16 KiB client name", base("client_name", strings.Repeat("A", 16<<10)), http.StatusRequestEntityTooLarge, "invalid_request"},
			{"101-character client name", base("client_name", strings.Repeat("é", 101)), http.StatusBadRequest, "invalid_client_metadata"},
			{"no client name", base("client_name", ""), http.StatusBadRequest, "invalid_client_metadata"},
			{"control character in the name", base("client_name", "a\u0007b"), http.StatusBadRequest, "invalid_client_metadata"},
			{"unknown auth method", base("token_endpoint_auth_method", "private_key_jwt"), http.StatusBadRequest, "invalid_client_metadata"},
			{"tls_client_auth", base("token_endpoint_auth_method", "tls_client_auth"), http.StatusBadRequest, "invalid_client_metadata"},
			{"password grant", base("grant_types", []string{"authorization_code", "password"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"implicit grant", base("grant_types", []string{"implicit"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"client_credentials", base("grant_types", []string{"client_credentials"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"empty grant types cannot reach client_credentials", map[string]any{"client_name": "x", "grant_types": []string{}}, http.StatusBadRequest, "invalid_redirect_uri"},
			{"refresh without code", base("grant_types", []string{"refresh_token"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"token response type", base("response_types", []string{"code", "token"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"response types without code", base("response_types", []string{}), http.StatusBadRequest, "invalid_client_metadata"},
			{"bad scope", base("scope", `read "write"`), http.StatusBadRequest, "invalid_client_metadata"},
			{"two spaces in scope", base("scope", "read  write"), http.StatusBadRequest, "invalid_client_metadata"},
			{"jwks_uri", base("jwks_uri", "https://169.254.169.254/latest/meta-data/"), http.StatusBadRequest, "invalid_client_metadata"},
			{"jwks", base("jwks", map[string]any{"keys": []any{}}), http.StatusBadRequest, "invalid_client_metadata"},
			{"sector_identifier_uri", base("sector_identifier_uri", "http://127.0.0.1:6379/"), http.StatusBadRequest, "invalid_client_metadata"},
			{"request_uris", base("request_uris", []string{"https://evil.example/r"}), http.StatusBadRequest, "invalid_client_metadata"},
			{"backchannel_logout_uri", base("backchannel_logout_uri", "http://10.0.0.1/admin"), http.StatusBadRequest, "invalid_client_metadata"},
			{"pairwise subjects", base("subject_type", "pairwise"), http.StatusBadRequest, "invalid_client_metadata"},
			{"wrong type", base("redirect_uris", "https://app.example/cb"), http.StatusBadRequest, "invalid_client_metadata"},
			{"name of the wrong type", base("client_name", 7), http.StatusBadRequest, "invalid_client_metadata"},
			{"a repeated key", `{"client_name":"x","redirect_uris":["https://a.example/cb"],"redirect_uris":["https://evil.example/cb"]}`, http.StatusBadRequest, "invalid_request"},
			{"invalid UTF-8", "{\"client_name\":\"\xff\",\"redirect_uris\":[\"https://a.example/cb\"]}", http.StatusBadRequest, "invalid_request"},
			{"trailing data", `{"client_name":"x","redirect_uris":["https://a.example/cb"]} {}`, http.StatusBadRequest, "invalid_request"},
			{"not an object", `["https://a.example/cb"]`, http.StatusBadRequest, "invalid_request"},
			{"not JSON", `client_name=x`, http.StatusBadRequest, "invalid_request"},
		} {
			r := e.registerClient("", tc.body)
			if tc.code == "" {
				if r.Code != tc.status {
					t.Errorf("%s: %d %s; want %d", tc.name, r.Code, r.Body.String(), tc.status)
				}
				continue
			}
			if r.Code != tc.status || r.Str("error") != tc.code || r.Str("error_description") == "" || r.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %d %s; want %d %s with a description and no-store", tc.name, r.Code, r.Body.String(), tc.status, tc.code)
			}
		}
		// A member of the wrong type is named as the client sent it, whichever
		// struct of ours holds the field (the request embeds its metadata).
		for member, v := range map[string]any{"client_name": 7, "redirect_uris": "https://app.example/cb", "scope": []string{"a"}} {
			want := member + " has the wrong type"
			if r := e.registerClient("", base(member, v)); r.Str("error_description") != want {
				t.Errorf("%s of the wrong type: %s; want the description %q", member, r.Body.String(), want)
			}
		}
		form := e.request("POST", "/oauth2/register", "client_name=x", "Content-Type", "application/x-www-form-urlencoded")
		form.wantOAuthError(http.StatusUnsupportedMediaType, "invalid_request")
		if _, n, _ := e.db.ListClients(context.Background(), 1, 0); n != 0 {
			t.Fatalf("refused registrations stored %d clients", n)
		}

		// Members we do not use are ignored and not stored; roles cannot be asked for.
		r := e.registerClient("", base("logo_uri", "https://evil.example/logo.png", "client_uri", "http://127.0.0.1/", "contacts", []string{"a@b"},
			"software_statement", "eyJ.x.y", "first_party", true, "resource_server", true, "backchannel_logout_uri", nil, "x-unknown", map[string]any{"a": 1})).
			want(http.StatusCreated)
		for _, k := range []string{"logo_uri", "client_uri", "contacts", "software_statement", "first_party", "resource_server"} {
			if _, ok := r.JSON()[k]; ok {
				t.Errorf("the answer echoes %s", k)
			}
		}
		c, err := e.db.ClientByID(context.Background(), r.Str("client_id"))
		if err != nil || c.FirstParty || c.ResourceServer || c.BackchannelLogoutURI != "" {
			t.Fatalf("stored %+v, %v; want neither first-party nor a resource server", c, err)
		}
		if strings.Contains(e.logs.String(), "evil.example") {
			t.Fatal("a URI a client sent appears in the logs")
		}
	}, withDynamicRegistration(RegistrationOpen))
}

// TestDynamicRegistrationExactNames: a member named in another letter case
// than ours is a member we do not know, and ignored (RFC 7591 §2; JSON
// names are case-sensitive, RFC 8259); encoding/json alone would read
// "REDIRECT_URIS" as redirect_uris, and "Token_Endpoint_Auth_Method" as the
// method. Beside the member it imitates, it is still ignored: the two are
// different names, not one name twice.
func TestDynamicRegistrationExactNames(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.registerClient("", `{"client_name":"x","REDIRECT_URIS":["https://evil.example/cb"]}`).
			wantOAuthError(http.StatusBadRequest, "invalid_redirect_uri") // no redirect_uris: none was sent
		r := e.registerClient("", `{"client_name":"x","redirect_uris":["https://a.example/cb"],"REDIRECT_URIS":["https://evil.example/cb"],`+
			`"Token_Endpoint_Auth_Method":"none","Grant_Types":["refresh_token","authorization_code"]}`).want(http.StatusCreated)
		c, err := e.db.ClientByID(context.Background(), r.Str("client_id"))
		if err != nil || !slices.Equal(c.RedirectURIs, []string{"https://a.example/cb"}) || c.Public() || !slices.Equal(c.GrantTypes, []string{grantAuthorizationCode}) {
			t.Fatalf("stored %+v, %v; want only https://a.example/cb, a confidential client, the default grant", c, err)
		}
		// A name with an escape is the member (RFC 8259), in a second
		// byte form: refused, neither read nor ignored, whichever member.
		for _, body := range []string{
			`{"client_name":"x","redirect_\u0075ris":["https://evil.example/cb"]}`,
			`{"client_name":"x","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_\u006dethod":"none"}`,
			`{"client_name":"x","redirect_uris":["https://a.example/cb"],"logo_\u0075ri":"https://a.example/logo"}`,
		} {
			e.registerClient("", body).wantOAuthError(http.StatusBadRequest, "invalid_client_metadata")
		}
		// The update (RFC 7592) reads its body the same way.
		update := map[string]any{"client_id": c.ID, "client_secret": r.Str("client_secret"), "client_name": "x",
			"redirect_uris": []string{"https://a.example/cb"}, "Redirect_Uris": []string{"https://evil.example/cb"}}
		rat := e.manage("PUT", c.ID, r.Str("registration_access_token"), update).want(http.StatusOK).Str("registration_access_token")
		if c, err := e.db.ClientByID(context.Background(), c.ID); err != nil || !slices.Equal(c.RedirectURIs, []string{"https://a.example/cb"}) {
			t.Fatalf("after the update, stored %+v, %v; want only https://a.example/cb", c, err)
		}
		escaped := fmt.Sprintf(`{"client_id":%q,"client_name":"x","redirect_\u0075ris":["https://evil.example/cb"]}`, c.ID)
		e.manage("PUT", c.ID, rat, escaped).wantOAuthError(http.StatusBadRequest, "invalid_client_metadata")
		if c, err := e.db.ClientByID(context.Background(), c.ID); err != nil || !slices.Equal(c.RedirectURIs, []string{"https://a.example/cb"}) {
			t.Fatalf("after an update with an escaped name, stored %+v, %v; want it unchanged", c, err)
		}
	}, withDynamicRegistration(RegistrationOpen))
}

// Each address has its own registration budget (RegistrationBurst, then
// RegistrationRate): 429 in the OAuth shape with Retry-After, while another
// address still registers. Wrong registration tokens spend the address's
// login budget, as wrong client secrets do.
func TestDynamicRegistrationBudget(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		md := map[string]any{"client_name": "x", "redirect_uris": []string{"https://app.example/cb"}}
		var last response
		for i := range RegistrationBurst {
			last = e.registerClient("", md)
			if last.Code != http.StatusCreated {
				t.Fatalf("registration %d of the burst: %d %s", i, last.Code, last.Body.String())
			}
		}
		r := e.registerClient("", md).wantOAuthError(http.StatusTooManyRequests, "rate_limited")
		if r.Header().Get("Retry-After") == "" || r.Str("error_description") == "" {
			t.Fatalf("429 without Retry-After or description: %v %s", r.Header(), r.Body.String())
		}
		// Another address is not held back.
		b, _ := json.Marshal(md)
		req := httptest.NewRequest("POST", "/oauth2/register", strings.NewReader(string(b)))
		req.RemoteAddr = "198.51.100.9:5555"
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			t.Fatalf("another address: %d %s", w.Code, w.Body.String())
		}
		var other map[string]string
		json.Unmarshal(w.Body.Bytes(), &other)
		e.secret(other["registration_access_token"])
		// The refill: one more after 3 minutes.
		e.clock.Add(3 * time.Minute)
		e.registerClient("", md).want(http.StatusCreated)
		e.registerClient("", md).want(http.StatusTooManyRequests)

		// Management is budgeted by the API budget; wrong tokens by the login budget.
		id, rat := last.Str("client_id"), last.Str("registration_access_token")
		limited := 0
		for range 20 {
			switch c := e.manage("GET", id, base64.RawURLEncoding.EncodeToString([]byte("guess")), nil).Code; c {
			case http.StatusTooManyRequests:
				limited++
			case http.StatusUnauthorized:
			default:
				t.Fatalf("a wrong registration token: %d", c)
			}
		}
		if limited < 10 {
			t.Fatalf("%d of 20 wrong registration tokens from one address were limited; want all after the login burst of 10", limited)
		}
		e.manage("GET", id, rat, nil).want(http.StatusOK) // the right token is not held back
	}, withDynamicRegistration(RegistrationOpen), withDefaultBudgets, func(d *Deps) {
		d.Registration = ratelimit.New(RegistrationRate, RegistrationBurst, 1000)
	})
}

// RFC 9700 §4.11.2: a dynamically registered client's redirect URI is not
// trusted (anyone may register one on their own site), so the authorization
// endpoint shows an error for it on its own page until the user has acted
// on one of its forms; after that (a denied consent) the error is
// redirected as RFC 6749 §4.1.2.1 says. A regression test: a link on our
// origin sent any browser straight to the registered URI.
func TestRegisteredClientErrorsShownBeforeUserActs(t *testing.T) {
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	r := e.registerClient("", map[string]any{"client_name": "Totally Legit", "redirect_uris": []string{"https://app.example/cb"},
		"token_endpoint_auth_method": "none"}).want(http.StatusCreated)
	id := r.Str("client_id")
	e.secret(r.Str("registration_access_token"))
	pk := newPKCE()
	for name, q := range map[string]url.Values{
		"no PKCE":           {"client_id": {id}, "response_type": {"code"}},
		"bad response_type": {"client_id": {id}, "response_type": {"token"}},
		"prompt=none":       {"client_id": {id}, "response_type": {"code"}, "code_challenge": {pk.challenge}, "code_challenge_method": {"S256"}, "prompt": {"none"}},
	} {
		q.Set("redirect_uri", "https://app.example/cb")
		w := e.browser().do("GET", "/oauth2/authorize?"+q.Encode(), nil) // nobody signed in, nothing consented
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "Invalid request") {
			t.Errorf("%s: %d Location %q, want the error page", name, w.Code, w.Header().Get("Location"))
		}
	}
	// Signed in, the user denies consent: the error goes to the client.
	b := e.browser()
	page := b.do("GET", authorizeURL(id, pk), nil)
	f := formOf(t, page.Body.String())
	f.Set("login", "ann")
	f.Set("password", "Ann-Password-1")
	consent := b.do("POST", "/oauth2/authorize", f)
	f = formOf(t, consent.Body.String())
	f.Set("action", "deny")
	if q := callback(t, b.do("POST", "/oauth2/authorize", f), http.StatusSeeOther); q.Get("error") != "access_denied" {
		t.Fatalf("a denial after the user acted: %v", q)
	}
}

// The same at RP-initiated logout: a registered client's
// post_logout_redirect_uri, with an ID token its registrant got for their
// own account, is not followed for a browser that is not signed in; the
// user who is signed in as the hint's user, or who confirms, is sent there.
func TestLogoutDoesNotFollowRegisteredURIUnasked(t *testing.T) {
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen), withSigningKey(t, ecKey(t), nil))
	e.createUser("mallory@example.com", "mallory", "Mallory-Password-1", store.RoleUser)
	r := e.registerClient("", map[string]any{"client_name": "Totally Legit", "redirect_uris": []string{"https://app.example/cb"},
		"post_logout_redirect_uris": []string{"https://evil.example/bye"}, "scope": "openid",
		"token_endpoint_auth_method": "client_secret_post"}).want(http.StatusCreated)
	id, secret := r.Str("client_id"), e.secret(r.Str("client_secret"))
	pk := newPKCE()
	mallory := e.browser()
	code := e.secret(mallory.signIn(authorizeURL(id, pk, "scope", "openid"), "mallory", "Mallory-Password-1"))
	tr := e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)
	e.secret(tr.Str("access_token"))
	e.secret(tr.Str("refresh_token"))
	q := url.Values{"id_token_hint": {e.secret(tr.Str("id_token"))}, "post_logout_redirect_uri": {"https://evil.example/bye"}}
	if w := mallory.do("GET", "/oauth2/logout?"+q.Encode(), nil); w.Code != http.StatusFound || w.Header().Get("Location") != "https://evil.example/bye" {
		t.Errorf("logout of the hint's own sign-in: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	w := e.browser().do("GET", "/oauth2/logout?"+q.Encode(), nil) // the victim: not signed in here
	if w.Code != http.StatusOK || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "Signed out") {
		t.Errorf("logout of a browser not signed in: %d Location %q, want the signed-out page", w.Code, w.Header().Get("Location"))
	}
	// Without a hint the user is asked, and one click sends them to the
	// registrant's URI: the page says where, and for whom (a regression
	// test: it said only "Sign out of this server?").
	q = url.Values{"client_id": {id}, "post_logout_redirect_uri": {"https://evil.example/bye"}}
	if page := e.browser().do("GET", "/oauth2/logout?"+q.Encode(), nil).Body.String(); !strings.Contains(page, "<code>evil.example</code>, for <strong><bdi>Totally Legit</bdi>") {
		t.Errorf("the confirmation page does not name the host and client it leads to:\n%s", page)
	}
}

// RFC 7591 §5: a client_name is shown to users on the login, consent and
// device pages, so it may hold no format character (category Cf) that
// would make it read as another name or turn the page's words around it:
// bidi controls, zero-width spaces, a byte order mark. ZWNJ and ZWJ, which
// scripts and emoji need, stay (a regression test: only Cc was refused).
func TestClientNameRefusesFormatCharacters(t *testing.T) {
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen))
	for _, name := range []string{"\u202Eelgoo\u0047", "Acme\u200B Portal", "Acme\u2066 Portal", "\uFEFFAcme", "Acme\u00ADPortal"} {
		r := e.registerClient("", map[string]any{"client_name": name, "redirect_uris": []string{"https://app.example/cb"}})
		if r.Code != http.StatusBadRequest || r.Str("error") != "invalid_client_metadata" {
			t.Errorf("client_name %+q: %d %s", name, r.Code, r.Body.String())
		}
	}
	for _, name := range []string{"می\u200cخواهم", "Team 👩\u200d💻", "Acme Portal"} {
		r := e.registerClient("", map[string]any{"client_name": name, "redirect_uris": []string{"https://app.example/cb"}})
		if r.Code != http.StatusCreated {
			t.Errorf("client_name %+q refused: %d %s", name, r.Code, r.Body.String())
			continue
		}
		e.secret(r.Str("client_secret"))
		e.secret(r.Str("registration_access_token"))
		page := e.browser().do("GET", authorizeURL(r.Str("client_id"), newPKCE()), nil).Body.String()
		if !strings.Contains(page, "<bdi>"+name+"</bdi>") {
			t.Errorf("client_name %+q not shown isolated in <bdi> on the login page", name)
		}
	}
}

// A deleted client's tokens all stop working, on every instance, however
// they were minted. Its revocation revoked only the tokens minted before
// the deletion's time, so two kinds outlived it by an access token's
// lifetime: one minted by another instance that had not yet heard of the
// deletion (its client cache, refreshed by the next revocation poll), and
// one minted by an instance whose clock runs a little ahead. Here instance
// b, which shares the database, mints each (a client-credentials token of
// an administrator's client just after its deletion; a refresh of a
// dynamically registered client's session just before its RFC 7592
// DELETE, on a clock one second ahead), then polls. A regression test:
// both were active (store.ClientDeletion now revokes every token of the
// id, which is never reused).
func TestClientDeletionRevokesEveryToken(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		svc, svcSecret := e.newClient(ClientSpec{Name: "Batch", GrantTypes: []string{"client_credentials"}})
		reg := e.registerClient("", webMetadata()).want(http.StatusCreated)
		id, secret, rat := reg.Str("client_id"), reg.Str("client_secret"), reg.Str("registration_access_token")
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(id, p, "scope", "read"), "ann", "Ann-Password-1"))
		rt := e.secret(e.token(id, secret, codeForm(code, p)).want(http.StatusOK).Str("refresh_token"))

		b := newEnvOn(t, e.db, withDynamicRegistration(RegistrationOpen), func(d *Deps) {
			d.Now = func() time.Time { return e.clock.Now().Add(time.Second) } // a clock a second ahead
		})
		cc := url.Values{"grant_type": {"client_credentials"}}
		b.secret(b.token(svc, svcSecret, cc).want(http.StatusOK).Str("access_token")) // b now has svc in its cache
		r := b.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).want(http.StatusOK)
		ahead := b.secret(r.Str("access_token"))
		b.secret(r.Str("refresh_token"))

		e.manage("DELETE", id, rat, nil).want(http.StatusNoContent)
		if err := DeleteClient(ctx, e.db, 0, e.deps.Clients, e.deps.Tokens.Revoked, svc, "", e.deps.Tokens.AccessTTL, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(time.Second)
		late := b.secret(b.token(svc, svcSecret, cc).want(http.StatusOK).Str("access_token")) // before b's next poll
		// b's poll.
		if err := b.deps.Tokens.Revoked.Load(ctx, e.db, b.deps.Now()); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{"minted by a clock ahead": ahead, "minted after the deletion": late} {
			for _, in := range []*env{e, b} {
				if m := in.introspect(rs, rsSecret, tok); m["active"] != false {
					t.Errorf("a deleted client's token %s is active: %v", name, m)
				}
			}
		}
	}, withDynamicRegistration(RegistrationOpen))
}

// registrationInstances are two instances on one database of dialect d,
// with open registration and one clock, and ann as a user.
func registrationInstances(t *testing.T, d string) (a, b *env) {
	dbURL := storetest.URL(t, d)
	a = newEnvOn(t, storetest.OpenURL(t, dbURL), withDynamicRegistration(RegistrationOpen))
	b = newEnvOn(t, storetest.OpenURL(t, dbURL), withDynamicRegistration(RegistrationOpen), func(d *Deps) { d.Now = a.clock.Now })
	a.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	return a, b
}

// An RFC 7592 update reaches every instance at its revocation poll, as a
// deletion or a secret rotation does. It recorded nothing: another
// instance kept the old metadata in its client cache for the cache's
// minute, and a redirect URI removed as compromised still took
// authorization requests there (a regression test). The update revokes
// none of the client's tokens. Two instances on one database.
func TestRegistrationUpdateReachesOtherInstances(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			a, b := registrationInstances(t, d)
			rs, rsSecret := a.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
			meta := webMetadata()
			meta["token_endpoint_auth_method"] = "client_secret_basic"
			meta["redirect_uris"] = []string{"https://app.example/cb", "https://app.example/old"}
			reg := a.registerClient("", meta).want(http.StatusCreated)
			id, secret, rat := reg.Str("client_id"), a.secret(reg.Str("client_secret")), a.secret(reg.Str("registration_access_token"))
			at, _ := a.codeGrant(a.browser(), id, secret, "ann", "Ann-Password-1")
			removed := authorizeURL(id, newPKCE(), "redirect_uri", "https://app.example/old")
			if w := b.browser().do("GET", removed, nil); w.Code != http.StatusOK { // b caches the client
				t.Fatalf("before the update, b answers the authorization request to the URI it removes %d; want the login page", w.Code)
			}

			meta["client_id"], meta["redirect_uris"] = id, []string{"https://app.example/cb"}
			a.manage("PUT", id, rat, meta).want(http.StatusOK)
			if err := b.deps.Tokens.Revoked.Load(t.Context(), b.db, b.deps.Now()); err != nil { // b's poll
				t.Fatal(err)
			}
			for name, in := range map[string]*env{"this": a, "the other": b} {
				if w := in.browser().do("GET", removed, nil); w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
					t.Errorf("after the update and a poll, %s instance answers an authorization request to the removed URI %d (Location %q); want 400",
						name, w.Code, w.Header().Get("Location"))
				}
				if got := in.introspect(rs, rsSecret, at); got["active"] != true {
					t.Errorf("after the update, %s instance: the client's access token %v; want active", name, got)
				}
			}
			b.secrets = append(b.secrets, a.secrets...)
		})
	}
}

// A consent form shown before an RFC 7592 update grants nothing after it: a
// request that omits redirect_uri takes the client's at each step, so the
// form that named app.example to the user granted, and kept, consent to the
// host the update brought, and prompt=none then sent codes there unasked.
func TestConsentFormShownBeforeAnUpdateGrantsNothing(t *testing.T) {
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	meta := webMetadata()
	reg := e.registerClient("", meta).want(http.StatusCreated)
	id, rat := reg.Str("client_id"), reg.Str("registration_access_token")
	b := e.browser()
	f := formOf(t, b.do("GET", authorizeURL(id, newPKCE(), "redirect_uri", ""), nil).Body.String())
	f.Set("login", "ann")
	f.Set("password", "Ann-Password-1")
	consent := b.do("POST", "/oauth2/authorize", f)
	if !strings.Contains(consent.Body.String(), "app.example") {
		t.Fatalf("setup: the consent page does not name app.example: %d %s", consent.Code, consent.Body.String())
	}
	f = formOf(t, consent.Body.String())
	meta["client_id"], meta["redirect_uris"] = id, []string{"https://evil.example/cb"}
	e.manage("PUT", id, rat, meta).want(http.StatusOK)
	f.Set("action", "allow")
	if w := b.do("POST", "/oauth2/authorize", f); w.Header().Get("Location") != "" || w.Code != http.StatusOK {
		t.Fatalf("Allow on the page shown before the update: %d Location %q; want the sign-in form again", w.Code, w.Header().Get("Location"))
	}
	// A registered client's errors before the user acts are shown here, not sent.
	w := b.do("GET", authorizeURL(id, newPKCE(), "redirect_uri", "", "prompt", "none"), nil)
	if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "consent") {
		t.Fatalf("prompt=none after it: %d Location %q; want the consent_required page, nothing consented", w.Code, w.Header().Get("Location"))
	}
}

// The same on an instance whose cache has not heard of the update yet (it
// polls every 2 s): its form's MAC matches the client it cached, so the
// store saves a consent only for the client as the page showed it.
func TestConsentFormOnAnInstanceBehindAnUpdate(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			a, b := registrationInstances(t, d)
			meta := webMetadata()
			reg := a.registerClient("", meta).want(http.StatusCreated)
			id, rat := reg.Str("client_id"), a.secret(reg.Str("registration_access_token"))
			br := b.browser()
			f := formOf(t, br.do("GET", authorizeURL(id, newPKCE(), "redirect_uri", ""), nil).Body.String())
			f.Set("login", "ann")
			f.Set("password", "Ann-Password-1")
			f = formOf(t, br.do("POST", "/oauth2/authorize", f).Body.String())
			meta["client_id"], meta["redirect_uris"] = id, []string{"https://evil.example/cb"}
			a.manage("PUT", id, rat, meta).want(http.StatusOK)
			f.Set("action", "allow")
			if w := br.do("POST", "/oauth2/authorize", f); w.Header().Get("Location") != "" || w.Code != http.StatusOK {
				t.Fatalf("Allow on B before its poll: %d Location %q; want the sign-in form again", w.Code, w.Header().Get("Location"))
			}
			if err := b.deps.Tokens.Revoked.Load(t.Context(), b.db, b.deps.Now()); err != nil { // b's poll
				t.Fatal(err)
			}
			w := br.do("GET", authorizeURL(id, newPKCE(), "redirect_uri", "", "prompt", "none"), nil)
			if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "consent") {
				t.Fatalf("prompt=none after the poll: %d Location %q; want the consent_required page", w.Code, w.Header().Get("Location"))
			}
			b.secrets = append(b.secrets, a.secrets...)
		})
	}
}

// A registration body is at most 16 KiB, which bounds what a stranger
// stores, but the URI lists were stored as JSON with '&' escaped as
// \u0026, six bytes for one: redirect URIs whose queries were mostly '&'
// stored about 85 KiB from a 15 KiB body, which MySQL's TEXT (64 KiB)
// refused with 500. A regression test: the lists are stored unescaped.
func TestRegistrationStoresWhatItWasSent(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			e := newEnvOn(t, storetest.OpenURL(t, url), withDynamicRegistration(RegistrationOpen))
			var uris []string
			for i := range maxRegisteredURIs {
				uris = append(uris, fmt.Sprintf("https://app.example/cb%d?", i)+strings.Repeat("&", 1400))
			}
			body := `{"client_name":"x","token_endpoint_auth_method":"none","redirect_uris":["` + strings.Join(uris, `","`) + `"]}`
			id := e.registerClient("", body).want(http.StatusCreated).Str("client_id")
			var stored int
			if err := storetest.Raw(t, d, url).QueryRow(`SELECT length(redirect_uris) FROM clients`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored > len(body) {
				t.Errorf("a %d-byte registration stored %d bytes of redirect URIs", len(body), stored)
			}
			if c, err := e.db.ClientByID(context.Background(), id); err != nil || !slices.Equal(c.RedirectURIs, uris) {
				t.Errorf("redirect URIs read back: %v", err)
			}
		})
	}
}

// OpenID Connect Dynamic Registration has no scope member: a relying party
// registered by it sends none, and at an OpenID Provider gets the OpenID
// Connect scopes, so that it can ask for openid (a regression test: it got
// none, and every request for openid was invalid_scope). A server without
// ID tokens registers no default.
func TestRegisteredWithoutScopeGetsOpenIDScopes(t *testing.T) {
	noScope := map[string]any{"client_name": "RP", "redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none"}
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen), withSigningKey(t, ecKey(t), nil))
	r := e.registerClient("", noScope).want(http.StatusCreated)
	e.secret(r.Str("registration_access_token"))
	if r.Str("scope") != "email openid profile" {
		t.Errorf("registered without scope at an OpenID Provider: scope %q; want email openid profile", r.Str("scope"))
	}
	if w := e.browser().do("GET", authorizeURL(r.Str("client_id"), newPKCE(), "scope", "openid"), nil); w.Code != http.StatusOK {
		t.Errorf("the registered RP asking for openid: %d; want the login page", w.Code)
	}
	plain := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen))
	r = plain.registerClient("", noScope).want(http.StatusCreated)
	plain.secret(r.Str("registration_access_token"))
	if r.Str("scope") != "" {
		t.Errorf("registered without scope at a server without ID tokens: scope %q; want none", r.Str("scope"))
	}
}

// A registered client sends codes to one host, loopback aside: the consent
// page names it, and consent is kept per client, so a client registered
// with a second (which anyone may list) got codes there by prompt=none from
// users who had allowed the first (a regression test). By RFC 7592 too.
func TestRegisteredRedirectURIsOnOneHost(t *testing.T) {
	e := newEnv(t, store.SQLite, withDynamicRegistration(RegistrationOpen))
	two := webMetadata()
	two["redirect_uris"] = []string{"https://wiki.acme.example/cb", "https://evil.example/cb"}
	e.registerClient("", two).wantOAuthError(http.StatusBadRequest, "invalid_redirect_uri")
	one := webMetadata()
	loopback := webMetadata() // a confidential client's too: it is not asked every time
	loopback["redirect_uris"] = []string{"https://evil.example/cb", "http://127.0.0.1/cb"}
	e.registerClient("", loopback).wantOAuthError(http.StatusBadRequest, "invalid_redirect_uri")
	native := webMetadata() // every loopback address and port is the one device
	native["redirect_uris"] = []string{"http://127.0.0.1/cb", "http://[::1]/cb", "http://localhost:8080/cb", "http://localhost:8081/cb"}
	e.secret(e.registerClient("", native).want(http.StatusCreated).Str("client_secret"))
	// One byte form: HTTP:// would lose the loopback any-port rule; and the
	// host the consent page names is the one a browser reaches (a
	// regression test: %D0%B0pple.com was shown as аpple.com, Cyrillic,
	// which a browser reaches as xn--pple-43d.com; appIe.com as it is,
	// reached as appie.com).
	for _, u := range []string{"HTTP://127.0.0.1/cb", "https://%D0%B0pple.com/cb", "https://appIe.com/cb"} {
		upper := webMetadata()
		upper["redirect_uris"] = []string{u}
		e.registerClient("", upper).wantOAuthError(http.StatusBadRequest, "invalid_redirect_uri")
	}
	one["redirect_uris"] = []string{"https://app.example/cb", "https://app.example/other"}
	r := e.registerClient("", one).want(http.StatusCreated)
	e.secret(r.Str("client_secret"))
	one["client_id"], one["redirect_uris"] = r.Str("client_id"), two["redirect_uris"]
	e.manage("PUT", r.Str("client_id"), e.secret(r.Str("registration_access_token")), one).wantOAuthError(http.StatusBadRequest, "invalid_redirect_uri")
}
