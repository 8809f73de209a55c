package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
		if in := e.introspect(id, secret, at); in["active"] != true || in["aud"] != resourceA {
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
		if in := e.introspect(id, secret, e.secret(r.Str("access_token"))); in["aud"] != resourceA {
			t.Fatalf("refreshed naming A: aud %v", in["aud"])
		}
		r = refresh().want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if in := e.introspect(id, secret, e.secret(r.Str("access_token"))); in["aud"] != resourceA {
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
		if in := e.introspect(id, secret, e.secret(r.Str("access_token"))); in["aud"] != resourceB {
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

// RFC 7662 §4: a resource server learns only about the access tokens that
// can be used at it: those whose aud is the resource it registered
// (--resource, here through the admin API, which refuses a resource for a
// client that is no resource server, and one not in RESOURCES), or the
// ISSUER for one registered without. A token for another resource is
// {"active":false}, as an unknown one; so is another client's refresh
// token. The token's own client sees its own, whatever their aud.
func TestIntrospectionAtItsResource(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("adm@example.com", "adm", "Adm-Password-1", store.RoleAdmin)
		admin, _ := e.login("adm", "Adm-Password-1")
		rsSpec := func(resource string, resourceServer bool) map[string]any {
			return map[string]any{"name": "rs", "grant_types": []string{"client_credentials"}, "resource_server": resourceServer, "resource": resource}
		}
		wantAPIError(e.request("POST", "/api/v1/clients", rsSpec(resourceA, false), bearer(admin)...), http.StatusUnprocessableEntity, "validation_failed")
		wantAPIError(e.request("POST", "/api/v1/clients", rsSpec("https://api-c.example.com", true), bearer(admin)...), http.StatusUnprocessableEntity, "validation_failed")
		r := e.request("POST", "/api/v1/clients", rsSpec(resourceA, true), bearer(admin)...).want(http.StatusCreated)
		if r.Str("resource") != resourceA {
			t.Fatalf("the resource server of A shows resource %q", r.Str("resource"))
		}
		rsA, rsASecret := r.Str("client_id"), e.secret(r.Str("client_secret"))
		rsB, rsBSecret := e.newClient(ClientSpec{Name: "B", GrantTypes: []string{"client_credentials"}, ResourceServer: true, Resource: resourceB})
		rs, rsSecret := e.newClient(ClientSpec{Name: "ISSUER's", GrantTypes: []string{"client_credentials"}, ResourceServer: true})

		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "app", FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		b, pk := e.browser(), newPKCE()
		grant := func(extra ...string) (access, refresh string) {
			code := e.secret(b.signIn(authorizeURL(id, pk, extra...), "ann", "Ann-Password-1"))
			r := e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)
			return e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		}
		forA, refreshA := grant("resource", resourceA)
		forIssuer, _ := grant()
		for _, c := range []struct {
			who, id, secret, what, tok string
			active                     bool
		}{
			{"the resource server of B", rsB, rsBSecret, "a token for A", forA, false},
			{"the resource server of A", rsA, rsASecret, "a token for A", forA, true},
			{"a resource server without a resource", rs, rsSecret, "a token for A", forA, false},
			{"a resource server without a resource", rs, rsSecret, "a token for the ISSUER", forIssuer, true},
			{"the resource server of A", rsA, rsASecret, "a token for the ISSUER", forIssuer, false},
			{"the resource server of A", rsA, rsASecret, "a refresh token for A", refreshA, false},
			{"the token's own client", id, secret, "a token for A", forA, true},
			{"the token's own client", id, secret, "a token for the ISSUER", forIssuer, true},
		} {
			in := e.introspect(c.id, c.secret, c.tok)
			if in["active"] != c.active || !c.active && len(in) != 1 {
				t.Errorf("%s introspected %s: %v; want active %v", c.who, c.what, in, c.active)
			}
		}
		// A resource server registered before it could name its resource
		// is set to it (client set-resource), on every instance at its
		// next poll: A's tokens, not the ISSUER's, from then on.
		if err := SetClientResource(t.Context(), e.db, rs, resourceA, e.deps.Tokens.Resources, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.deps.Tokens.Revoked.Load(t.Context(), e.db, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if e.introspect(rs, rsSecret, forA)["active"] != true || e.introspect(rs, rsSecret, forIssuer)["active"] != false {
			t.Error("the resource server set to A: want A's tokens active, the ISSUER's not")
		}
		for _, bad := range []struct{ id, resource string }{{rs, "https://api-c.example.com"}, {id, resourceA}, {"nobody", resourceA}} {
			if err := SetClientResource(t.Context(), e.db, bad.id, bad.resource, e.deps.Tokens.Resources, e.clock.Now()); err == nil {
				t.Errorf("set-resource %s to %s: no error", bad.id, bad.resource)
			}
		}
	}, withResources)
}

// thirdPartyForResources makes the user ann and a third-party client of
// scope read; aud reads the aud of a token response's access token, as the
// server verifies it for revocation and introspection (no one resource
// server learns every aud: TestIntrospectionAtItsResource).
func thirdPartyForResources(e *env) (id, secret string, aud func(response) string) {
	e.t.Helper()
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	id, secret = e.newClient(ClientSpec{Name: "app", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
	return id, secret, func(r response) string {
		e.t.Helper()
		e.secret(r.Str("refresh_token"))
		c, err := e.deps.Tokens.VerifyIssued(e.secret(r.Str("access_token")), e.clock.Now())
		if err != nil {
			e.t.Fatalf("access token: %v", err)
		}
		return c.Audience
	}
}

// Consent is remembered per resource (RFC 8707): a user who let a client
// reach API A has not let it reach B, nor this server (the default
// audience), with the same scope. The consent page names the resource and
// is shown again for each, at the authorization endpoint, for a pushed
// request and at the device page; prompt=none without consent for B is
// consent_required; once allowed, B is not asked again.
func TestConsentPerResource(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret, aud := thirdPartyForResources(e)
		forResource := "This access is for the API at <code>"
		b := e.browser()
		pk := newPKCE()
		code := e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceA), "ann", "Ann-Password-1"))
		if a := aud(e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)); a != resourceA {
			t.Fatalf("consented for A: aud %v", a)
		}

		// B, with the scope consented for A: asked, the page naming B.
		w := b.do("GET", authorizeURL(id, pk, "resource", resourceB), nil)
		wantPage(t, w, http.StatusOK, consentPage, forResource+resourceB+"</code>")
		if q := callback(t, b.do("GET", authorizeURL(id, pk, "resource", resourceB, "prompt", "none"), nil), http.StatusFound); q.Get("error") != errConsentRequired {
			t.Fatalf("prompt=none for B, consented for A only: %v; want consent_required", q)
		}
		form := formOf(t, w.Body.String())
		form.Set("action", "allow")
		code = e.secret(callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther).Get("code"))
		if a := aud(e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)); a != resourceB {
			t.Fatalf("consented for B: aud %v", a)
		}
		code = e.secret(callback(t, b.do("GET", authorizeURL(id, pk, "resource", resourceB, "prompt", "none"), nil), http.StatusFound).Get("code"))
		if code == "" {
			t.Fatal("B asked again after consent for B")
		}

		// Pushed: the default audience is asked too, its page naming no API;
		// B is not.
		push := func(extra ...string) *httptest.ResponseRecorder {
			uri := e.secret(e.formPost("/oauth2/par", id, secret, pushForm(pk, extra...)).want(http.StatusCreated).Str("request_uri"))
			return b.do("GET", "/oauth2/authorize?"+url.Values{"client_id": {id}, "request_uri": {uri}}.Encode(), nil)
		}
		w = push()
		wantPage(t, w, http.StatusOK, consentPage)
		if strings.Contains(w.Body.String(), forResource) {
			t.Fatalf("the default audience's consent page names an API:\n%s", w.Body.String())
		}
		form = formOf(t, w.Body.String())
		form.Set("action", "allow")
		code = e.secret(callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther).Get("code"))
		if a := aud(e.token(id, secret, codeForm(code, pk)).want(http.StatusOK)); a != testIssuer {
			t.Fatalf("consented for the default audience: aud %v", a)
		}
		if code = e.secret(callback(t, push("resource", resourceB), http.StatusFound).Get("code")); code == "" {
			t.Fatal("a pushed request for B asked again after consent for B")
		}

		// The device page, for a device client: asked for A, for A again
		// (the device page always asks: TestDeviceConsentEveryTime), then for B.
		tv, _ := e.deviceClient("TV", false, false, "read")
		device := func(resource string) (deviceCode string, page *httptest.ResponseRecorder) {
			r := e.clientPost("/oauth2/device_authorization", tv, "", url.Values{"resource": {resource}}).want(http.StatusOK)
			return e.secret(r.Str("device_code")), b.enterCode(e.secret(r.Str("user_code")))
		}
		dc, w := device(resourceA)
		wantPage(t, w, http.StatusOK, consentPage, forResource+resourceA+"</code>")
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, donePage)
		if a := aud(e.poll(tv, "", dc).want(http.StatusOK)); a != resourceA {
			t.Fatalf("device consented for A: aud %v", a)
		}
		dc, w = device(resourceA)
		wantPage(t, w, http.StatusOK, consentPage, forResource+resourceA+"</code>")
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, donePage)
		e.secret(e.poll(tv, "", dc).want(http.StatusOK).Str("access_token"))
		_, w = device(resourceB)
		wantPage(t, w, http.StatusOK, consentPage, forResource+resourceB+"</code>")
	}, withResources)
}

// A code for no resource takes one at the token request (RFC 8707 §2.2)
// only where the user consented to the client there: consent at the
// ISSUER is not consent at an API; a device request never does
// (TestDeviceGrantOnlyForWhatItsPageNamed). A refusal spends nothing; a
// first-party client needs no consent (TestResourceIndicators).
func TestTokenRequestResourceNeedsConsent(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret, aud := thirdPartyForResources(e)
		b := e.browser()
		pk := newPKCE()
		forB := codeForm(e.secret(b.signIn(authorizeURL(id, pk), "ann", "Ann-Password-1")), pk)
		forB.Set("resource", resourceB)
		// With a DPoP proof, which the refusal does not spend either (a
		// regression test: the retry was invalid_dpop_proof, used before).
		proof := newDPoPKey(t).proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())
		e.dpopPost("/oauth2/token", id, secret, forB, proof).wantOAuthError(http.StatusBadRequest, "invalid_target")
		forB.Del("resource")
		if a := aud(e.dpopPost("/oauth2/token", id, secret, forB, proof).want(http.StatusOK)); a != testIssuer {
			t.Fatalf("the code exchanged naming none after the refusal: aud %v", a)
		}

		// Consented at B: a code for none may take B.
		e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceB), "ann", "Ann-Password-1"))
		forB = codeForm(e.secret(b.signIn(authorizeURL(id, pk), "ann", "Ann-Password-1")), pk)
		forB.Set("resource", resourceB)
		if a := aud(e.token(id, secret, forB).want(http.StatusOK)); a != resourceB {
			t.Fatalf("a code for none exchanged for B, consented at B: aud %v", a)
		}

		// A device request for none, approved: not for A.
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "Ann-Password-1", "allow"), http.StatusOK, donePage)
		poll := url.Values{"grant_type": {grantDeviceCode}, "device_code": {d.deviceCode}, "resource": {resourceA}}
		e.clientPost("/oauth2/token", tv, "", poll).wantOAuthError(http.StatusBadRequest, "invalid_target")
		if a := aud(e.poll(tv, "", d.deviceCode).want(http.StatusOK)); a != testIssuer {
			t.Fatalf("the device code redeemed naming none after the refusal: aud %v", a)
		}
	}, withResources)
}

// A native app's code for no resource takes none at the token request on
// a consent given before (RFC 8252 §8.6, needsConsent): the page the user
// just allowed named this server, and another app may hold the client_id.
func TestNativeTokenRequestResourceNeedsConsent(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		const cb = "http://127.0.0.1/cb"
		id, _ := e.newClient(ClientSpec{Name: "cli", Public: true, RedirectURIs: []string{cb}, Scopes: []string{"read"}})
		b, pk := e.browser(), newPKCE()
		code := func(extra ...string) string { // signs in (once) and allows
			w := b.do("GET", authorizeURL(id, pk, append([]string{"redirect_uri", cb}, extra...)...), nil)
			form := formOf(t, w.Body.String())
			if strings.Contains(w.Body.String(), `name="password"`) {
				form.Set("login", "ann")
				form.Set("password", "Ann-Password-1")
				form = formOf(t, b.do("POST", "/oauth2/authorize", form).Body.String())
			}
			form.Set("action", "allow")
			loc, _ := url.Parse(b.do("POST", "/oauth2/authorize", form).Header().Get("Location"))
			return e.secret(loc.Query().Get("code"))
		}
		code("resource", resourceB) // consented at B
		forB := url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {code()}, "redirect_uri": {cb}, "code_verifier": {pk.verifier}, "resource": {resourceB}}
		e.clientPost("/oauth2/token", id, "", forB).wantOAuthError(http.StatusBadRequest, "invalid_target")
	}, withResources)
}

// A device request's tokens are for what its consent page named (the page
// is always asked, RFC 8628 §5.4): one for no resource takes none at the
// token request, for a first-party client (which never needs consent
// elsewhere) or on a consent given before at that resource. A refusal
// spends nothing.
func TestDeviceGrantOnlyForWhatItsPageNamed(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, _, aud := thirdPartyForResources(e)
		b := e.browser()
		for _, firstParty := range []bool{true, false} {
			tv, _ := e.deviceClient("TV", false, firstParty, "read")
			r := e.clientPost("/oauth2/device_authorization", tv, "", url.Values{"resource": {resourceB}}).want(http.StatusOK)
			wantPage(t, b.approve(e.secret(r.Str("user_code")), "ann", "Ann-Password-1", "allow"), http.StatusOK, donePage)
			e.secret(e.poll(tv, "", e.secret(r.Str("device_code"))).want(http.StatusOK).Str("access_token"))

			d := e.startDevice(tv, "", "read")
			wantPage(t, b.approve(d.userCode, "ann", "Ann-Password-1", "allow"), http.StatusOK, donePage)
			poll := url.Values{"grant_type": {grantDeviceCode}, "device_code": {d.deviceCode}, "resource": {resourceB}}
			e.clientPost("/oauth2/token", tv, "", poll).wantOAuthError(http.StatusBadRequest, "invalid_target")
			if a := aud(e.poll(tv, "", d.deviceCode).want(http.StatusOK)); a != testIssuer {
				t.Fatalf("first-party %v: the device code redeemed naming none after the refusal: aud %v", firstParty, a)
			}
		}
	}, withResources)
}

// A resource dropped from RESOURCES gets no more tokens: an instance
// started without it (on the same database) refuses a refresh token, by
// either path of Tokens.Rotate, and a code, granted for it, with
// invalid_grant, and introspects the refresh token as inactive (it said
// active: a token the server refuses cannot be used, RFC 7662 §2.2). An
// instance that still has it takes them: the careful path's refusal, and
// the code's, spent nothing.
func TestDroppedResourceMintsNothing(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "app", FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		b, pk := e.browser(), newPKCE()
		r := e.token(id, secret, codeForm(e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceB), "ann", "Ann-Password-1")), pk)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		refresh := func(at *env, rt, scope string) response {
			return at.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope}})
		}
		code := codeForm(e.secret(b.signIn(authorizeURL(id, pk, "resource", resourceB), "ann", "Ann-Password-1")), pk)

		without := newEnvOn(t, e.db, func(d *Deps) { d.Now, d.Tokens.Resources = e.clock.Now, []string{resourceA} })
		rt := e.secret(r.Str("refresh_token"))
		refresh(without, rt, "read").wantOAuthError(http.StatusBadRequest, "invalid_grant")
		without.token(id, secret, code).wantOAuthError(http.StatusBadRequest, "invalid_grant")
		if in := without.introspect(id, secret, rt); in["active"] != false {
			t.Fatalf("the refresh token introspected by the instance without its resource: %v; want inactive", in)
		}
		if in := e.introspect(id, secret, rt); in["active"] != true {
			t.Fatalf("the refresh token introspected by the instance with its resource: %v; want active", in)
		}
		rt = e.secret(refresh(e, rt, "").want(http.StatusOK).Str("refresh_token"))
		e.secret(e.token(id, secret, code).want(http.StatusOK).Str("refresh_token"))
		refresh(without, rt, "").wantOAuthError(http.StatusBadRequest, "invalid_grant")
	}, withResources)
}
