package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// withSigningKey configures an asymmetric SIGNING_KEY (and a retired one), as
// main does: access and ID tokens signed with it, every key verifying.
func withSigningKey(t testing.TB, current, previous *token.Key) func(*Deps) {
	return func(d *Deps) {
		signer, err := token.NewSigner(current)
		if err != nil {
			t.Fatal(err)
		}
		hmacKey := token.NewHMACKey([]byte("test-secret-test-secret-test-secret!"))
		keys := []*token.Key{hmacKey, current}
		d.PublicKeys = []*token.Key{current}
		if previous != nil {
			keys = append(keys, previous)
			d.PublicKeys = append(d.PublicKeys, previous)
		}
		v, err := token.NewVerifier(keys...)
		if err != nil {
			t.Fatal(err)
		}
		d.Tokens.Signer, d.Tokens.Verifier, d.IDTokens = signer, v, signer
	}
}

func ecKey(t testing.TB) *token.Key {
	p, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewSigningKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB) *token.Key {
	p, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewSigningKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestOpenIDConnect(t *testing.T) {
	key := rsaKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "correct horse", "user")
		first := "Ann"
		e.db.UpdateProfile(t.Context(), u.ID, &first, nil, e.clock.Now())
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"},
			PostLogoutRedirectURIs: []string{"https://app.example/bye"}, Scopes: []string{"openid", "profile", "email", "read"}})
		p := newPKCE()
		b := e.browser()
		code := e.secret(b.signIn(authorizeURL(id, p, "scope", "openid profile", "nonce", "n-0S6_WzA2Mj"), "ann", "correct horse"))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		at, idt := e.secret(r.Str("access_token")), r.Str("id_token")
		e.secret(r.Str("refresh_token"))
		if idt == "" {
			t.Fatalf("no id_token: %s", r.Body.String())
		}
		c, err := e.deps.Tokens.Verifier.Parse(idt, token.Expect{Type: token.TypeID, Issuer: testIssuer, Audience: id}, e.clock.Now())
		if err != nil {
			t.Fatalf("id_token: %v", err)
		}
		if c.Subject != store.FormatID(u.ID) || c.Nonce != "n-0S6_WzA2Mj" || c.AuthTime == 0 || c.AtHash != token.HalfHash(token.RS256, at) {
			t.Fatalf("id_token claims %+v", c)
		}
		hdr, _, _ := strings.Cut(idt, ".")
		if !strings.Contains(string(b64Decode(t, hdr)), `"alg":"RS256","kid":"`+key.ID+`","typ":"JWT"`) {
			t.Fatalf("id_token header %s", b64Decode(t, hdr))
		}
		// The access token is RS256 too, and verifies with the published key alone.
		ah, _, _ := strings.Cut(at, ".")
		if !strings.Contains(string(b64Decode(t, ah)), `"alg":"RS256"`) {
			t.Fatalf("access token header %s", b64Decode(t, ah))
		}
		jwks := e.request("GET", "/.well-known/jwks.json", nil).want(http.StatusOK)
		var set struct{ Keys []token.JWK }
		json.Unmarshal(jwks.Body.Bytes(), &set)
		if len(set.Keys) != 1 || set.Keys[0].Kid != key.ID || set.Keys[0].Kty != "RSA" || set.Keys[0].Alg != "RS256" || set.Keys[0].N == "" {
			t.Fatalf("JWKS %s", jwks.Body.String())
		}
		if !strings.Contains(jwks.Header().Get("Cache-Control"), "max-age") {
			t.Fatal("JWKS without cache headers")
		}

		// userinfo: claims by scope; profile but no email.
		ui := e.request("GET", "/oauth2/userinfo", nil, bearer(at)...).want(http.StatusOK).JSON()
		if ui["sub"] != store.FormatID(u.ID) || ui["preferred_username"] != "ann" || ui["given_name"] != "Ann" {
			t.Fatalf("userinfo %v", ui)
		}
		if _, ok := ui["email"]; ok {
			t.Fatalf("email without the email scope: %v", ui)
		}
		e.request("POST", "/oauth2/userinfo", nil, bearer(at)...).want(http.StatusOK)
		r = e.request("GET", "/oauth2/userinfo", nil, bearer(tamper(at))...).want(http.StatusUnauthorized)
		if !strings.Contains(r.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("bad token challenge %q", r.Header().Get("WWW-Authenticate"))
		}
		// A token without openid: 403 insufficient_scope (RFC 6750 §3.1).
		code = e.secret(b.signIn(authorizeURL(id, p, "scope", "read"), "ann", "correct horse"))
		r = e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		plain := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		if r.Str("id_token") != "" {
			t.Fatal("id_token without openid")
		}
		r = e.request("GET", "/oauth2/userinfo", nil, bearer(plain)...).want(http.StatusForbidden)
		if !strings.Contains(r.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Fatalf("insufficient_scope challenge %q", r.Header().Get("WWW-Authenticate"))
		}

		// Discovery lists exactly what is supported.
		d := e.request("GET", "/.well-known/openid-configuration", nil).want(http.StatusOK).JSON()
		algs, _ := json.Marshal(d["id_token_signing_alg_values_supported"])
		if d["issuer"] != testIssuer || d["userinfo_endpoint"] != testIssuer+"/oauth2/userinfo" || string(algs) != `["RS256"]` {
			t.Fatalf("discovery %v", d)
		}
		subj, _ := json.Marshal(d["subject_types_supported"])
		if string(subj) != `["public"]` {
			t.Fatalf("subject_types_supported %s", subj)
		}
		if d["request_parameter_supported"] != false { // request_not_supported (TestAuthorizeRedirectedErrors)
			t.Fatalf("request_parameter_supported %v; want false", d["request_parameter_supported"])
		}
		for claim := range ui { // userinfo's claims are among claims_supported (updated_at was not)
			if !slices.Contains(d["claims_supported"].([]any), any(claim)) {
				t.Errorf("userinfo returns %s, which claims_supported %v does not list", claim, d["claims_supported"])
			}
		}

		// RP-initiated logout with the id_token_hint: the session ends and
		// the browser goes to the registered post-logout URI with state.
		w := b.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://app.example/bye"}, "state": {"s1"}}.Encode(), nil)
		if w.Code != http.StatusFound || w.Header().Get("Location") != "https://app.example/bye?state=s1" {
			t.Fatalf("logout: %d %q", w.Code, w.Header().Get("Location"))
		}
		if q := callback(t, b.do("GET", authorizeURL(id, p, "scope", "openid", "prompt", "none"), nil), http.StatusFound); q.Get("error") != errLoginRequired {
			t.Fatalf("after logout, prompt=none: %v", q)
		}
		// An unregistered post-logout URI is refused, not followed.
		w = b.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode(), nil)
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
			t.Fatalf("unregistered post-logout URI: %d %q", w.Code, w.Header().Get("Location"))
		}
		// Without a hint, a confirmation page (no logout by a plain link).
		w = b.do("GET", "/oauth2/logout", nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) {
			t.Fatalf("logout without hint: %d %s", w.Code, w.Body.String())
		}
		// client_credentials cannot ask for openid.
		cc, ccs := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"openid", "read"}})
		e.token(cc, ccs, url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}).wantOAuthError(http.StatusBadRequest, errInvalidScope)
		if r := e.token(cc, ccs, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK); r.Str("scope") != "read" {
			t.Fatalf("default client_credentials scope %q", r.Str("scope"))
		} else {
			e.secret(r.Str("access_token"))
		}
	}, withSigningKey(t, key, nil))
}

// OIDC Core §3.1.2.1: an OpenID request must name its redirect_uri, even
// where the client has one registered URI; without it the redirect is not
// established, so the error is shown on a page, not sent there. A request
// without scope gets the client's registered scopes, openid with them, and
// is one too; a plain OAuth request may still leave it out.
func TestOpenIDRequiresRedirectURI(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "read"}})
		p := newPKCE()
		b := e.browser()
		for name, target := range map[string]string{
			"openid":   authorizeURL(id, p, "scope", "openid", "redirect_uri", ""),
			"no scope": authorizeURL(id, p, "redirect_uri", ""),
		} {
			w := b.do("GET", target, nil)
			if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "redirect_uri") {
				t.Errorf("%s without redirect_uri: %d Location=%q; want a 400 page naming redirect_uri", name, w.Code, w.Header().Get("Location"))
			}
		}
		e.formPost("/oauth2/par", id, secret, pushForm(p, "scope", "openid", "redirect_uri", "")).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		if w := b.do("GET", authorizeURL(id, p, "scope", "read", "redirect_uri", ""), nil); w.Code != http.StatusOK {
			t.Errorf("an OAuth request without redirect_uri: %d; want the login page", w.Code)
		}
	}, withSigningKey(t, rsaKey(t), nil))
}

// Key rotation: a token signed by the previous key keeps verifying while the
// new key signs, and both are published.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := ecKey(t), ecKey(t)
	before := newEnv(t, "sqlite", withSigningKey(t, oldKey, nil))
	id, secret := before.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
	old := before.token(id, secret, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK).Str("access_token")

	after := newEnv(t, "sqlite", withSigningKey(t, newKey, oldKey))
	if _, err := after.deps.Tokens.Verify(old, before.clock.Now()); err != nil {
		t.Fatalf("token of the previous key rejected after rotation: %v", err)
	}
	var set struct{ Keys []token.JWK }
	json.Unmarshal(after.request("GET", "/.well-known/jwks.json", nil).Body.Bytes(), &set)
	if len(set.Keys) != 2 || set.Keys[0].Kid != newKey.ID || set.Keys[1].Kid != oldKey.ID {
		t.Fatalf("JWKS during rotation: %+v", set.Keys)
	}
	// After retirement, the old key's tokens no longer verify.
	retired := newEnv(t, "sqlite", withSigningKey(t, newKey, nil))
	if _, err := retired.deps.Tokens.Verify(old, before.clock.Now()); err == nil {
		t.Fatal("token of a retired key still verifies")
	}
}

// TestMetadataAlgsDuringRotation: a rotation to another algorithm (README,
// step 1) advertises the next key's algorithm before it signs, so relying
// parties that cached the metadata (an hour) accept its ID tokens after the
// swap; each algorithm once, the signing key's first.
func TestMetadataAlgsDuringRotation(t *testing.T) {
	es, rs := ecKey(t), rsaKey(t)
	for _, tc := range []struct {
		current, previous *token.Key
		want              string
	}{
		{es, rs, `["ES256","RS256"]`},
		{rs, es, `["RS256","ES256"]`},
		{rs, rsaKey(t), `["RS256"]`},
	} {
		e := newEnv(t, "sqlite", withSigningKey(t, tc.current, tc.previous))
		for _, doc := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			algs, _ := json.Marshal(e.request("GET", doc, nil).want(http.StatusOK).JSON()["id_token_signing_alg_values_supported"])
			if string(algs) != tc.want {
				t.Errorf("%s signing %s, %s published: id_token_signing_alg_values_supported %s; want %s", doc, tc.current.Alg, tc.previous.Alg, algs, tc.want)
			}
		}
	}
}

func b64Decode(t testing.TB, s string) []byte {
	t.Helper()
	out, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RP-Initiated Logout 1.0 §2: a POST carrying the logout parameters is read
// like the GET (no CSRF token: it is not our form); only the confirmation
// form's own POST needs one. The confirmation page's CSP allows the
// registered post-logout URI as a form action, or the browser would block
// the redirect after "Sign out".
// A logout request refused for its parameters says why: one not UTF-8 was
// told it repeats a parameter.
func TestLogoutParamsRefusedSayWhy(t *testing.T) {
	e := newEnv(t, store.SQLite)
	for target, want := range map[string]string{"/oauth2/logout?ui_locales=%FF": "UTF-8", "/oauth2/logout?state=a&state=b": "repeated"} {
		if w := e.browser().do("GET", target, nil); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d; want 400 saying %q: %s", target, w.Code, want, w.Body.String())
		}
	}
}

func TestLogoutByPost(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", "user")
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"},
			PostLogoutRedirectURIs: []string{"https://rp.example/bye"}, Scopes: []string{"openid"}})
		b := e.browser()
		p := newPKCE()
		code := e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1"))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		idt := r.Str("id_token")

		// Without a hint: the confirmation page, whose CSP allows the RP.
		w := b.do("POST", "/oauth2/logout", url.Values{"client_id": {id}, "post_logout_redirect_uri": {"https://rp.example/bye"}})
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) {
			t.Fatalf("POST logout without a hint: %d; want the confirmation page", w.Code)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://rp.example") {
			t.Fatalf("confirmation page CSP %q; want form-action to allow https://rp.example", csp)
		}
		if !b.signedIn(id) {
			t.Fatal("signed out without confirming")
		}
		// A state that is not the authorization endpoint's (VSCHAR, 2,048
		// bytes) is refused, neither followed nor echoed, by GET or POST.
		for _, st := range []string{strings.Repeat("s", 2049), "a\x01b", "a\r\nb", "é"} {
			form := url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {st}}
			for _, w := range []*httptest.ResponseRecorder{b.do("POST", "/oauth2/logout", form), b.do("GET", "/oauth2/logout?"+form.Encode(), nil)} {
				if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !b.signedIn(id) {
					t.Fatalf("logout with state %.20q: %d %.40q; want 400, still signed in", st, w.Code, w.Header().Get("Location"))
				}
			}
		}
		// With the user's own hint, by POST as zitadel's rp.EndSession sends it.
		w = b.do("POST", "/oauth2/logout", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {"s2"}})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://rp.example/bye?state=s2" {
			t.Fatalf("POST logout with the hint: %d %q; want 303 to the post-logout URI", w.Code, w.Header().Get("Location"))
		}
		if b.signedIn(id) {
			t.Fatal("still signed in after a POST logout with the user's hint")
		}
		// The confirmation form without its CSRF token is refused.
		if w := b.do("POST", "/oauth2/logout", url.Values{"action": {"logout"}}); w.Code != http.StatusForbidden {
			t.Fatalf("confirmation without CSRF: %d; want 403", w.Code)
		}
	}, withSigningKey(t, key, nil))
}

// RP-Initiated Logout §4: a hint that does not verify, or names another
// client than client_id, is treated as absent. Relying parties keep the ID
// token for their whole session, so a hint signed by a key retired since
// must still let the user sign out, on the confirmation page: a 400 left
// the browser signed in, and prompt=none signed it in again.
func TestLogoutWithAHintThatNoLongerVerifies(t *testing.T) {
	retired := newEnv(t, "sqlite", withSigningKey(t, ecKey(t), nil))
	retired.createUser("ann@example.com", "ann", "Ann-Password-1", "user")
	rid, rsecret := retired.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
	p := newPKCE()
	code := retired.secret(retired.browser().signIn(authorizeURL(rid, p, "scope", "openid"), "ann", "Ann-Password-1"))
	old := retired.token(rid, rsecret, codeForm(code, p)).want(http.StatusOK).Str("id_token")

	e := newEnv(t, "sqlite", withSigningKey(t, ecKey(t), nil))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", "user")
	id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"},
		PostLogoutRedirectURIs: []string{"https://rp.example/bye"}, Scopes: []string{"openid"}})
	p = newPKCE()
	b := e.browser()
	code = e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1"))
	mine := e.token(id, secret, codeForm(code, p)).want(http.StatusOK).Str("id_token")
	other, _ := e.newClient(ClientSpec{Name: "Other", RedirectURIs: []string{"https://app.example/cb"}})
	// A relying party's back end (no cookie) is told, not shown a page it
	// would take for a logout done; a browser without a sign-in (restarted
	// since) is shown the page, which leads on to the relying party.
	hinted := "/oauth2/logout?" + url.Values{"id_token_hint": {old}}.Encode()
	if w := e.request("GET", hinted, nil); w.Code != http.StatusBadRequest {
		t.Fatalf("a back end's logout with a hint that does not verify: %d; want 400", w.Code)
	}
	if w := e.request("GET", hinted, nil, "Sec-Fetch-Mode", "navigate"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) {
		t.Fatalf("a browser's logout, not signed in, with a hint that does not verify: %d; want the confirmation page", w.Code)
	}
	for name, c := range map[string]struct {
		q    url.Values
		then string // where confirming leads
	}{
		"retired key":                 {url.Values{"id_token_hint": {old}, "post_logout_redirect_uri": {"https://rp.example/bye"}}, ""},
		"retired key, with client_id": {url.Values{"id_token_hint": {old}, "client_id": {id}, "post_logout_redirect_uri": {"https://rp.example/bye"}}, "https://rp.example/bye"},
		"another client's client_id":  {url.Values{"id_token_hint": {mine}, "client_id": {other}}, ""},
	} {
		b := e.browser()
		e.secret(b.signIn(authorizeURL(id, newPKCE()), "ann", "Ann-Password-1"))
		w := b.do("GET", "/oauth2/logout?"+c.q.Encode(), nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) || !b.signedIn(id) {
			t.Fatalf("%s: %d %.60q; want the confirmation page, still signed in", name, w.Code, w.Body.String())
		}
		f := formOf(t, w.Body.String())
		f.Set("action", "logout")
		w = b.do("POST", "/oauth2/logout", f)
		if w.Header().Get("Location") != c.then || b.signedIn(id) {
			t.Fatalf("%s, confirmed: %d Location %q, signed in %v; want Location %q, signed out", name, w.Code, w.Header().Get("Location"), b.signedIn(id), c.then)
		}
	}
}

// A shared computer: after a user signs out, the next person goes Back to
// the login form's answer (the consent page) and resends it, password and
// all. The CSRF token the form carried was good for the browser's whole
// life, so the user was signed in again, without a password typed; the
// logout now ends the CSRF cookie too, and the resent form signs nobody in.
func TestResentLoginFormAfterLogoutSignsNobodyIn(t *testing.T) {
	e := newEnv(t, store.SQLite, withSigningKey(t, ecKey(t), nil))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	id, _ := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
	b := e.browser()
	login := formOf(t, b.do("GET", authorizeURL(id, newPKCE(), "scope", "openid", "prompt", "consent"), nil).Body.String())
	login.Set("login", "ann")
	login.Set("password", "Ann-Password-1")
	consent := b.do("POST", "/oauth2/authorize", login)
	if !strings.Contains(consent.Body.String(), `value="allow"`) {
		t.Fatalf("setup: the login form: %d; want the consent page", consent.Code)
	}
	allow := formOf(t, consent.Body.String())
	allow.Set("action", "allow")
	e.secret(callback(t, b.do("POST", "/oauth2/authorize", allow), http.StatusSeeOther).Get("code"))
	out := formOf(t, b.do("GET", "/oauth2/logout", nil).Body.String())
	out.Set("action", "logout")
	if b.do("POST", "/oauth2/logout", out); b.signedIn(id) {
		t.Fatal("setup: still signed in after the logout")
	}
	w := b.do("POST", "/oauth2/authorize", login)
	if strings.Contains(w.Body.String(), `value="allow"`) || b.signedIn(id) {
		t.Fatalf("the login form resent after the logout: %d, signed in %v; want nobody signed in", w.Code, b.signedIn(id))
	}

	// Where the browser's cookies stay as they were (the sign-in expired,
	// or a relying party's back end ended it), a login form is good for
	// parSignIn from when it was shown, as a consent form is.
	login = formOf(t, b.do("GET", authorizeURL(id, newPKCE(), "scope", "openid"), nil).Body.String())
	login.Set("login", "ann")
	login.Set("password", "Ann-Password-1")
	e.secret(callback(t, b.do("POST", "/oauth2/authorize", login), http.StatusSeeOther).Get("code"))
	e.clock.Add(b.e.deps.Browser.SessionTTL + time.Minute)
	if w := b.do("POST", "/oauth2/authorize", login); w.Header().Get("Location") != "" || b.signedIn(id) {
		t.Fatalf("the login form resent after its sign-in expired: %d Location %q; want nobody signed in", w.Code, w.Header().Get("Location"))
	}
}

// An id_token_hint at the authorization endpoint names the user the
// client expects signed in (OIDC Core §3.1.2.1): another user's, with
// prompt=none, is login_required, not a code for whoever is signed in;
// without prompt=none the login form asks; a hint we cannot verify names
// no one, and is answered as another user's.
func TestIDTokenHintAtAuthorization(t *testing.T) {
	e := newEnv(t, store.SQLite, withSigningKey(t, ecKey(t), nil))
	id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
	browsers, hints := map[string]*browser{}, map[string]string{}
	for _, name := range []string{"ann", "bob"} {
		e.createUser(name+"@example.com", name, "Password-of-"+name, store.RoleUser)
		browsers[name] = e.browser()
		p := newPKCE()
		code := e.secret(browsers[name].signIn(authorizeURL(id, p, "scope", "openid"), name, "Password-of-"+name))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		hints[name] = r.Str("id_token")
	}
	ann := browsers["ann"]
	hinted := func(hint string, kv ...string) string {
		return authorizeURL(id, newPKCE(), append([]string{"scope", "openid", "id_token_hint", hint}, kv...)...)
	}
	if q := callback(t, ann.do("GET", hinted(hints["ann"], "prompt", "none"), nil), http.StatusFound); q.Get("code") == "" {
		t.Fatalf("prompt=none with the signed-in user's hint: %v; want a code", q)
	} else {
		e.secret(q.Get("code"))
	}
	if q := callback(t, ann.do("GET", hinted(hints["bob"], "prompt", "none"), nil), http.StatusFound); q.Get("error") != "login_required" || q.Has("code") {
		t.Fatalf("prompt=none with another user's hint: %v; want login_required", q)
	}
	if w := ann.do("GET", hinted(hints["bob"]), nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
		t.Fatalf("another user's hint: %d; want the login form", w.Code)
	}
	if q := callback(t, ann.do("GET", hinted("not.an.idtoken", "prompt", "none"), nil), http.StatusFound); q.Get("error") != "login_required" {
		t.Fatalf("a hint that is not our ID token (one signed by a key since dropped, say): %v; want login_required", q)
	}
	// Nor for another user signing in at the form the hint brought: its
	// user must be signed in, or be signed in by the request (§3.1.2.1).
	// (A regression test: whoever signed in got a code.)
	form := formOf(t, ann.do("GET", hinted(hints["bob"], "prompt", "login"), nil).Body.String())
	form.Set("login", "ann")
	form.Set("password", "Password-of-ann")
	w := ann.do("POST", "/oauth2/authorize", form)
	if w.Code == http.StatusOK && strings.Contains(w.Body.String(), `value="allow"`) {
		form = formOf(t, w.Body.String())
		form.Set("action", "allow")
		w = ann.do("POST", "/oauth2/authorize", form)
	}
	if q := callback(t, w, http.StatusSeeOther); q.Get("error") != "login_required" || q.Has("code") {
		if q.Has("code") {
			e.secret(q.Get("code"))
		}
		t.Fatalf("bob's hint, ann signed in at its form: %v; want login_required", q)
	}
}

// RP-Initiated Logout with an id_token_hint that
// comes without a sign-in cookie ends the sign-in the hint names (by sid),
// and then clears the session cookie of whatever browser sent the request.
// A cross-site form POST carries no SameSite=Lax cookie, so an attacker's
// page that auto-submits a POST to /oauth2/logout with the attacker's own
// ID token (any, even expired) is answered with a Set-Cookie deleting the
// victim's session cookie, which browsers accept on a top-level navigation:
// the victim is signed out by a third-party page, which API.md ("It signs
// out at once only when the hint names the signed-in user; otherwise ... it
// asks the user") and the handler's own comment ("a third-party page cannot
// sign people out") rule out. A regression test: the cookie was cleared
// on every logout answer.
func TestCrossSiteLogoutKeepsBrowserSignedIn(t *testing.T) {
	key := ecKey(t)
	e := newEnv(t, store.SQLite, withSigningKey(t, key, nil))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	e.createUser("mallory@example.com", "mallory", "Mallory-Password-1", store.RoleUser)
	id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})

	// The attacker gets an ID token of her own.
	p := newPKCE()
	code := e.secret(e.browser().signIn(authorizeURL(id, p, "scope", "openid"), "mallory", "Mallory-Password-1"))
	r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
	e.secret(r.Str("access_token"))
	e.secret(r.Str("refresh_token"))
	malloryHint := r.Str("id_token")

	// The victim is signed in at the authorization server.
	victim := e.browser()
	e.secret(victim.signIn(authorizeURL(id, newPKCE(), "scope", "openid"), "ann", "Ann-Password-1"))
	if !victim.signedIn(id) {
		t.Fatal("setup: the victim is not signed in")
	}

	// The attacker's page auto-submits a form to /oauth2/logout in the
	// victim's browser: a cross-site POST, so no Lax cookie goes with it.
	w := e.browser().do("POST", "/oauth2/logout", url.Values{"id_token_hint": {malloryHint}})
	for _, c := range w.Result().Cookies() { // the victim's browser stores the answer's cookies
		if c.MaxAge < 0 {
			delete(victim.cookies, c.Name)
		} else {
			victim.cookies[c.Name] = c.Value
		}
	}
	if !victim.signedIn(id) {
		t.Fatalf("a cross-site POST with another user's id_token_hint signed the victim out (status %d, Set-Cookie %q)",
			w.Code, w.Header().Values("Set-Cookie"))
	}
}
