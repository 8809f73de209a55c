package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"oauth2-api/store"
)

// pushForm is an authorization request's parameters, as pushed.
func pushForm(p pkce, extra ...string) url.Values {
	u, _ := url.Parse(authorizeURL("", p, extra...))
	q := u.Query()
	if q.Get("client_id") == "" {
		q.Del("client_id")
	}
	return q
}

// RFC 9126: the pushed request is validated like the authorize endpoint's
// (errors as JSON), answered with a single-use request_uri for 60 s; the
// authorize endpoint then uses only the pushed request, whatever else comes
// beside request_uri and client_id (RFC 9101 §6.3), and the forms carry
// nothing else.
func TestPushedAuthorizationRequests(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.webClient()
		other, otherSecret := e.webClient()
		pk := newPKCE()
		r := e.formPost("/oauth2/par", id, secret, pushForm(pk, "state", "s-par")).want(http.StatusCreated)
		uri := r.Str("request_uri")
		if !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") || r.JSON()["expires_in"] != float64(60) || r.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("PAR answer %s", r.Body.String())
		}
		e.secret(uri)
		at := "/oauth2/authorize?" + url.Values{"client_id": {id}, "request_uri": {uri}}.Encode()
		b := e.browser()
		w := b.do("GET", at, nil)
		form := formOf(t, w.Body.String())
		if w.Code != http.StatusOK || len(form) != 4 || form.Get("request_uri") != uri || form.Get("client_id") != id || form.Get("shown") == "" {
			t.Fatalf("login page of a pushed request: %d, hidden fields %v; want only client_id, request_uri, the CSRF token and when it was shown", w.Code, form)
		}
		form.Set("login", "ann")
		form.Set("password", "Ann-Password-1")
		w = b.do("POST", "/oauth2/authorize", form)
		if w.Code == http.StatusOK { // consent
			consent := formOf(t, w.Body.String())
			if len(consent) != 4 || !consent.Has("consent") { // client_id, request_uri, csrf_token, and the form's own consent MAC
				t.Fatalf("consent page fields %v", consent)
			}
			consent.Set("action", "allow")
			w = b.do("POST", "/oauth2/authorize", consent)
		}
		q := callback(t, w, http.StatusSeeOther)
		if q.Get("state") != "s-par" {
			t.Fatalf("callback %v; want the pushed state", q)
		}
		tr := e.token(id, secret, codeForm(e.secret(q.Get("code")), pk)).want(http.StatusOK)
		e.secret(tr.Str("access_token"))
		e.secret(tr.Str("refresh_token"))

		// Used: refused, for the same browser and any other.
		for _, br := range []*browser{b, e.browser()} {
			if w := br.do("GET", at, nil); w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
				t.Fatalf("a used request_uri: %d %q; want a 400 page", w.Code, w.Header().Get("Location"))
			}
		}
		// Another client's request_uri, or other parameters beside it.
		uri2 := e.secret(e.formPost("/oauth2/par", id, secret, pushForm(pk)).want(http.StatusCreated).Str("request_uri"))
		if w := e.browser().do("GET", "/oauth2/authorize?"+url.Values{"client_id": {other}, "request_uri": {uri2}}.Encode(), nil); w.Code != http.StatusBadRequest {
			t.Fatalf("another client's request_uri: %d", w.Code)
		}
		// Parameters beside it are ignored (a regression test: a client
		// that repeated scope=openid, as openid-client does, was refused),
		// our forms' own fields too, when a client sends them.
		beside := url.Values{"client_id": {id}, "request_uri": {uri2}, "scope": {"write"}, "redirect_uri": {"https://evil.example/cb"}, "action": {"allow"}, "consent": {"x"}}
		w = e.browser().do("GET", "/oauth2/authorize?"+beside.Encode(), nil)
		if form := formOf(t, w.Body.String()); w.Code != http.StatusOK || len(form) != 4 || form.Get("request_uri") != uri2 {
			t.Fatalf("parameters beside request_uri: %d, hidden fields %v; want the pushed request's login page", w.Code, form)
		}
		// Expired after 60 s.
		uri3 := e.secret(e.formPost("/oauth2/par", id, secret, pushForm(pk)).want(http.StatusCreated).Str("request_uri"))
		e.clock.Add(61e9)
		if w := e.browser().do("GET", "/oauth2/authorize?"+url.Values{"client_id": {id}, "request_uri": {uri3}}.Encode(), nil); w.Code != http.StatusBadRequest {
			t.Fatalf("an expired request_uri: %d", w.Code)
		}

		// Errors come back as JSON at once.
		for name, tc := range map[string]struct {
			form url.Values
			code string
		}{
			"unregistered redirect_uri": {pushForm(pk, "redirect_uri", "https://evil.example/cb"), "invalid_request"},
			"no PKCE":                   {pushForm(pk, "code_challenge", ""), "invalid_request"},
			"unknown scope":             {pushForm(pk, "scope", "admin"), "invalid_scope"},
			"a request_uri pushed":      {pushForm(pk, "request_uri", "urn:x"), "invalid_request"},
			"a request object":          {pushForm(pk, "request", "eyJhbGciOiJub25lIn0.e30."), "request_not_supported"}, // OIDC Core §6.1
		} {
			if r := e.formPost("/oauth2/par", id, secret, tc.form); r.Code != http.StatusBadRequest || r.Str("error") != tc.code {
				t.Errorf("%s: %d %s; want 400 %s", name, r.Code, r.Body.String(), tc.code)
			}
		}
		e.formPost("/oauth2/par", id, "wrong-secret", pushForm(pk)).wantOAuthError(http.StatusUnauthorized, "invalid_client")
		e.formPost("/oauth2/par", id, secret, pushForm(pk, "client_id", other)).wantOAuthError(http.StatusUnauthorized, "invalid_client")
		_ = otherSecret
	})
}

// --require-par and REQUIRE_PAR: a request that was not pushed is sent
// back with invalid_request; a public client pushes by its client_id; a
// DPoP proof at PAR binds the code to its key.
func TestRequirePAR(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RequirePAR: true, FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		pk := newPKCE()
		if q := callback(t, e.browser().do("GET", authorizeURL(id, pk), nil), http.StatusFound); q.Get("error") != "invalid_request" {
			t.Fatalf("an unpushed request of a --require-par client: %v", q)
		}
		k := newDPoPKey(t)
		r := e.dpopPost("/oauth2/par", id, "", pushForm(pk), k.proof(t, "POST", "/oauth2/par", "", "", e.clock.Now())).want(http.StatusCreated)
		code := e.secret(e.browser().signIn("/oauth2/authorize?"+url.Values{"client_id": {id}, "request_uri": {e.secret(r.Str("request_uri"))}}.Encode(), "ann", "Ann-Password-1"))
		form := codeForm(code, pk)
		e.dpopPost("/oauth2/token", id, "", form, "").wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
	e := newEnv(t, "sqlite", func(d *Deps) { d.RequirePAR = true })
	id, _ := e.webClient()
	if q := callback(t, e.browser().do("GET", authorizeURL(id, newPKCE()), nil), http.StatusFound); q.Get("error") != "invalid_request" {
		t.Fatalf("REQUIRE_PAR, an unpushed request: %v", q)
	}
	if m := e.request("GET", "/.well-known/oauth-authorization-server", nil).JSON(); m["require_pushed_authorization_requests"] != true ||
		m["pushed_authorization_request_endpoint"] != testIssuer+"/oauth2/par" {
		t.Fatalf("metadata %v", m)
	}
}

// RFC 9126 §7.3 and API.md's "single use": a request_uri, once a browser
// has taken it, serves only that browser's forms. Another browser, with a
// CSRF token of its own from any page, cannot sign in to it and get a code
// carrying the victim's state and PKCE challenge for its own account (a
// regression test: the taken request was found by request_uri and client
// alone). The browser that took it still signs in.
func TestPushedRequestBoundToBrowser(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("victim@example.com", "victim", "Victim-Password-1", store.RoleUser)
		e.createUser("mallory@example.com", "mallory", "Mallory-Password-1", store.RoleUser)
		id, _ := e.newClient(ClientSpec{Name: "spa", Public: true, FirstParty: true, RequirePAR: true,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		pk := newPKCE()
		push := pushForm(pk, "state", "victims-state")
		push.Set("client_id", id)
		uri := e.secret(e.formPost("/oauth2/par", "", "", push).want(http.StatusCreated).Str("request_uri"))
		victim := e.browser()
		w := victim.do("GET", "/oauth2/authorize?"+url.Values{"client_id": {id}, "request_uri": {uri}}.Encode(), nil)
		if w.Code != http.StatusOK {
			t.Fatalf("victim's GET: %d %s", w.Code, w.Body.String())
		}
		victimForm := formOf(t, w.Body.String())

		mallory := e.browser()
		csrf := formOf(t, mallory.do("GET", "/oauth2/device", nil).Body.String()).Get("csrf_token")
		w = mallory.do("POST", "/oauth2/authorize", url.Values{"csrf_token": {csrf}, "client_id": {id}, "request_uri": {uri},
			"login": {"mallory"}, "password": {"Mallory-Password-1"}})
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
			t.Fatalf("another browser posted the victim's taken request: %d Location %q", w.Code, w.Header().Get("Location"))
		}

		victimForm.Set("login", "victim")
		victimForm.Set("password", "Victim-Password-1")
		q := callback(t, victim.do("POST", "/oauth2/authorize", victimForm), http.StatusSeeOther)
		if e.secret(q.Get("code")) == "" || q.Get("state") != "victims-state" {
			t.Fatalf("the browser that took the request: %v", q)
		}
	})
}

// prompt and max_age had no bound: a pushed request stored them as sent,
// up to the 1 MiB body, for any client (a public one is named by its id
// alone), and on MySQL, whose TEXT holds 64 KiB, the push failed with 500.
// A regression test: both are bounded, as state and nonce are.
func TestPushedRequestBounded(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret := e.webClient()
		pk := newPKCE()
		for _, kv := range [][2]string{{"prompt", strings.Repeat("login ", 15_000) + "login"}, {"max_age", strings.Repeat("0", 90_000) + "1"},
			{"id_token_hint", strings.Repeat("A", 90_000)}} {
			e.formPost("/oauth2/par", id, secret, pushForm(pk, kv[0], kv[1])).wantError(http.StatusBadRequest, "invalid_request")
		}
		e.formPost("/oauth2/par", id, secret, pushForm(pk, "prompt", "login consent", "max_age", "3600")).want(http.StatusCreated)
		// Checked as at the authorization endpoint (RFC 9126 §2.1): a
		// response_mode but query was taken, and answered in the query.
		for _, m := range []string{"fragment", "form_post"} {
			e.formPost("/oauth2/par", id, secret, pushForm(pk, "response_mode", m)).wantError(http.StatusBadRequest, "invalid_request")
		}
		e.formPost("/oauth2/par", id, secret, pushForm(pk, "response_mode", "query")).want(http.StatusCreated)
	})
}

// A pushed request's DPoP proof is spent only once the request checks out,
// as at the token endpoint (a regression test: it was spent before the
// request was validated, so a refused push stored it and the client's
// corrected push with the same proof was refused as a replay). It is still
// accepted once.
func TestPARProofSpentWithItsRequest(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret := e.webClient()
		pk := newPKCE()
		p := newDPoPKey(t).proof(t, "POST", "/oauth2/par", "", "", e.clock.Now())
		e.dpopPost("/oauth2/par", id, secret, pushForm(pk, "redirect_uri", "https://evil.example/cb"), p).wantOAuthError(http.StatusBadRequest, "invalid_request")
		e.secret(e.dpopPost("/oauth2/par", id, secret, pushForm(pk), p).want(http.StatusCreated).Str("request_uri"))
		e.dpopPost("/oauth2/par", id, secret, pushForm(pk), p).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
	})
}
