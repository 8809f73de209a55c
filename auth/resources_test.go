package auth

import (
	"net/http"
	"net/url"
	"testing"

	"oauth2-api/store"
)

const (
	resourceA = "https://api-a.example.com"
	resourceB = "https://api-b.example.com/v2"
)

func withResources(d *Deps) { d.Tokens.Resources = []string{resourceA, resourceB} }

// RFC 8707: a token asked for a configured resource has it as aud, so the
// server's own routes refuse it; an unknown resource, or several, is
// invalid_target; a refresh may repeat the granted resource but not name
// another, and a refusal spends nothing.
func TestResourceIndicators(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "app", FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		rs, rsSecret := e.newClient(ClientSpec{Name: "rs", GrantTypes: []string{"client_credentials"}, ResourceServer: true, Scopes: []string{"read"}})
		b := e.browser()
		pk := newPKCE()
		code := e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceA), "ann", "Ann-Password-1"))
		r := e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		if in := e.introspect(rs, rsSecret, at); in["active"] != true || in["aud"] != resourceA {
			t.Fatalf("introspection of a token for A: %v", in)
		}
		// Not for this server's own routes.
		e.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)

		refresh := func(resource ...string) response {
			return e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": resource})
		}
		refresh(resourceB).wantOAuthError(http.StatusBadRequest, "invalid_target")
		refresh("https://unknown.example").wantOAuthError(http.StatusBadRequest, "invalid_target")
		refresh(resourceA, resourceB).wantOAuthError(http.StatusBadRequest, "invalid_target")
		r = refresh(resourceA).want(http.StatusOK) // the refusals spent nothing
		rt = e.secret(r.Str("refresh_token"))
		if in := e.introspect(rs, rsSecret, e.secret(r.Str("access_token"))); in["aud"] != resourceA {
			t.Fatalf("refreshed naming A: aud %v", in["aud"])
		}
		r = refresh().want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if in := e.introspect(rs, rsSecret, e.secret(r.Str("access_token"))); in["aud"] != resourceA {
			t.Fatalf("refreshed naming none: aud %v; want the granted A", in["aud"])
		}

		// At the authorize endpoint: unknown, or several.
		for name, extra := range map[string][]string{"unknown": {"resource", "https://evil.example"}, "not absolute": {"resource", "api-a"}} {
			if q := callback(t, b.do("GET", authorizeURL(id, pk, extra...), nil), http.StatusFound); q.Get("error") != "invalid_target" {
				t.Errorf("authorize, %s resource: %v", name, q)
			}
		}
		two := authorizeURL(id, pk, "resource", resourceA) + "&resource=" + url.QueryEscape(resourceB)
		if q := callback(t, b.do("GET", two, nil), http.StatusFound); q.Get("error") != "invalid_target" {
			t.Errorf("authorize, two resources: %v", q)
		}

		// A code for A cannot be exchanged for B; a code for none takes one
		// at the exchange, and its session cannot widen later.
		code = e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceA), "ann", "Ann-Password-1"))
		form := codeForm(code, pk)
		form.Set("resource", resourceB)
		e.token(id, secret, form).wantOAuthError(http.StatusBadRequest, "invalid_target")
		code = e.secret(b.signIn(authorizeURL(id, pk), "ann", "Ann-Password-1"))
		form = codeForm(code, pk)
		form.Set("resource", resourceB)
		r = e.token(id, secret, form).want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if in := e.introspect(rs, rsSecret, e.secret(r.Str("access_token"))); in["aud"] != resourceB {
			t.Fatalf("a code for none, exchanged for B: aud %v", in["aud"])
		}
		code = e.secret(b.signIn(authorizeURL(id, pk), "ann", "Ann-Password-1"))
		r = e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)
		plainAT, plainRT := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		e.request("GET", "/api/v1/profile", nil, bearer(plainAT)...).want(http.StatusOK)
		e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {plainRT}, "resource": {resourceA}}).wantOAuthError(http.StatusBadRequest, "invalid_target")

		// Client credentials.
		cc := url.Values{"grant_type": {"client_credentials"}, "resource": {resourceB}}
		if in := e.introspect(rs, rsSecret, e.secret(e.token(rs, rsSecret, cc).want(http.StatusOK).Str("access_token"))); in["aud"] != resourceB {
			t.Fatalf("client credentials for B: aud %v", in["aud"])
		}
		cc.Set("resource", "https://unknown.example")
		e.token(rs, rsSecret, cc).wantOAuthError(http.StatusBadRequest, "invalid_target")

		// Pushed: validated at the push.
		e.formPost("/oauth2/par", id, secret, pushForm(pk, "resource", "https://unknown.example")).wantOAuthError(http.StatusBadRequest, "invalid_target")
		e.formPost("/oauth2/par", id, secret, pushForm(pk, "resource", resourceA)).want(http.StatusCreated)
	}, withResources)
}
