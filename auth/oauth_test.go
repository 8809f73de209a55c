package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// --- helpers -------------------------------------------------------------

// OAuth error codes as they appear on the wire (RFC 6749 §5.2, §4.1.2.1;
// OIDC Core §3.1.2.6).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errInvalidScope            = "invalid_scope"
	errAccessDenied            = "access_denied"
	errUnsupportedResponseType = "unsupported_response_type"
	errLoginRequired           = "login_required"
	errConsentRequired         = "consent_required"
	errRequestNotSupported     = "request_not_supported"
)

func (e *env) newClient(spec ClientSpec) (id, secret string) {
	e.t.Helper()
	c, s, err := CreateClient(context.Background(), e.db, 0, spec, false, e.deps.Tokens.Resources, e.clock.Now())
	if err != nil {
		e.t.Fatalf("CreateClient: %v", err)
	}
	return c.ID, e.secret(s)
}

func (e *env) webClient() (id, secret string) {
	return e.newClient(ClientSpec{Name: "Web App", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read", "write"}})
}

type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := token.NewOpaque() + "-._~"
	sum := sha256.Sum256([]byte(v))
	return pkce{v, base64.RawURLEncoding.EncodeToString(sum[:])}
}

// browser keeps cookies between requests, like a person's browser.
type browser struct {
	e       *env
	cookies map[string]string
}

func (e *env) browser() *browser { return &browser{e: e, cookies: map[string]string{}} }

func (b *browser) do(method, target string, form url.Values) *httptest.ResponseRecorder {
	b.e.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = "192.0.2.7:4444"
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	w := httptest.NewRecorder()
	b.e.h.ServeHTTP(w, req)
	b.e.noLeak(method, target, w)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return w
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formOf returns the hidden fields of the page's form, unescaped.
func formOf(t testing.TB, page string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], htmlUnescape(m[2]))
	}
	if v.Get("csrf_token") == "" {
		t.Fatalf("page has no CSRF token:\n%s", page)
	}
	return v
}

func htmlUnescape(s string) string {
	r := strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&#43;", "+")
	return r.Replace(s)
}

func authorizeURL(clientID string, p pkce, extra ...string) string {
	v := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"https://app.example/cb"},
		"state": {"st-123"}, "code_challenge": {p.challenge}, "code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			v.Del(extra[i])
		} else {
			v.Set(extra[i], extra[i+1])
		}
	}
	return "/oauth2/authorize?" + v.Encode()
}

// callback checks a redirect to the client and returns its query.
func callback(t testing.TB, w *httptest.ResponseRecorder, wantStatus int) url.Values {
	t.Helper()
	if w.Code != wantStatus {
		t.Fatalf("status %d; want %d redirect; body %s", w.Code, wantStatus, w.Body.String())
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || loc.Host != "app.example" || loc.Path != "/cb" {
		t.Fatalf("Location = %q; want the client's redirect URI", w.Header().Get("Location"))
	}
	q := loc.Query()
	if q.Get("iss") != testIssuer {
		t.Fatalf("redirect has iss %q; want %q (RFC 9207)", q.Get("iss"), testIssuer)
	}
	return q
}

// signIn drives the login (and consent, if shown) pages and returns the code.
func (b *browser) signIn(authURL, login, password string) string {
	t := b.e.t
	t.Helper()
	w := b.do("GET", authURL, nil)
	if w.Code == http.StatusFound {
		return callback(t, w, http.StatusFound).Get("code")
	}
	if w.Code != http.StatusOK {
		t.Fatalf("GET authorize: %d %s", w.Code, w.Body.String())
	}
	if strings.Contains(w.Body.String(), `name="password"`) { // not signed in yet
		form := formOf(t, w.Body.String())
		form.Set("login", login)
		form.Set("password", password)
		w = b.do("POST", "/oauth2/authorize", form)
		if w.Code == http.StatusSeeOther {
			return callback(t, w, http.StatusSeeOther).Get("code")
		}
	}
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="allow"`) {
		t.Fatalf("POST login: %d %s", w.Code, w.Body.String())
	}
	form := formOf(t, w.Body.String())
	form.Set("action", "allow")
	return callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther).Get("code")
}

// token posts a token request with HTTP Basic client authentication.
func (e *env) token(id, secret string, form url.Values) response {
	e.t.Helper()
	return e.formPost("/oauth2/token", id, secret, form)
}

func (e *env) formPost(path, id, secret string, form url.Values) response {
	e.t.Helper()
	h := []string{"Content-Type", "application/x-www-form-urlencoded"}
	if id != "" {
		h = append(h, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
	return e.request("POST", path, form.Encode(), h...)
}

func (r response) wantOAuthError(status int, code string) response {
	r.t.Helper()
	r.want(status)
	if got := r.Str("error"); got != code {
		r.t.Fatalf("error %q; want %q: %s", got, code, r.Body.String())
	}
	if r.Header().Get("Cache-Control") != "no-store" || r.Header().Get("Pragma") != "no-cache" {
		r.t.Fatalf("OAuth error without no-store/no-cache: %v", r.Header())
	}
	return r
}

// tamper returns s with its last-but-one character changed (never to
// itself): in a JWT, a changed signature.
func tamper(s string) string {
	i := len(s) - 2
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// otherFirst returns s with its first character changed (never to itself).
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}

func codeForm(code string, p pkce) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {p.verifier}}
}

func (e *env) introspect(id, secret, tok string) map[string]any {
	e.t.Helper()
	return e.formPost("/oauth2/introspect", id, secret, url.Values{"token": {tok}}).want(http.StatusOK).JSON()
}

// --- tests ---------------------------------------------------------------

func TestAuthorizationCodeFlow(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, secret := e.webClient()
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		p := newPKCE()
		code := e.browser().signIn(authorizeURL(id, p, "scope", "read"), "ann", "correct horse")
		r := e.token(id, secret, codeForm(e.secret(code), p)).want(http.StatusOK)
		if r.Header().Get("Cache-Control") != "no-store" || r.Header().Get("Pragma") != "no-cache" {
			t.Fatalf("token response headers %v", r.Header())
		}
		body := r.JSON()
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		if body["token_type"] != "Bearer" || body["scope"] != "read" || body["expires_in"] != float64(3600) || rt == "" {
			t.Fatalf("token response %v", body)
		}
		c, err := e.deps.Tokens.Verify(at, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != store.FormatID(u.ID) || c.ClientID != id || c.Scope != "read" || c.Audience != testIssuer || c.Issuer != testIssuer || c.AuthTime == 0 {
			t.Fatalf("claims %+v", c)
		}
		in := e.introspect(rs, rsSecret, at)
		if in["active"] != true || in["sub"] != store.FormatID(u.ID) || in["client_id"] != id || in["scope"] != "read" {
			t.Fatalf("introspection %v", in)
		}
		// The code is single use: a replay fails and revokes what it issued.
		e.token(id, secret, codeForm(code, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if in := e.introspect(rs, rsSecret, at); in["active"] != false {
			t.Fatalf("access token still active after code replay: %v", in)
		}
		e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if !strings.Contains(e.logs.String(), "authorization code refused") {
			t.Fatal("no log line for the replay")
		}
	})
}

func TestAuthorizeErrorPages(t *testing.T) {
	e := newEnv(t, "sqlite")
	id, _ := e.webClient()
	two, _ := e.newClient(ClientSpec{Name: "Two", RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"}})
	p := newPKCE()
	b := e.browser()
	for name, target := range map[string]string{
		"unknown client":     authorizeURL("nope", p),
		"no client":          authorizeURL("", p, "client_id", ""),
		"unregistered uri":   authorizeURL(id, p, "redirect_uri", "https://evil.example/cb"),
		"uri prefix trick":   authorizeURL(id, p, "redirect_uri", "https://app.example/cb/../evil"),
		"uri with userinfo":  authorizeURL(id, p, "redirect_uri", "https://app.example@evil.example/cb"),
		"uri other port":     authorizeURL(id, p, "redirect_uri", "https://app.example:8443/cb"),
		"no uri, several":    authorizeURL(two, p, "redirect_uri", ""),
		"repeated client_id": authorizeURL(id, p) + "&client_id=" + id,
		"repeated uri":       authorizeURL(id, p) + "&redirect_uri=https://app.example/cb",
	} {
		w := b.do("GET", target, nil)
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
			t.Errorf("%s: %d Location=%q; want a 400 error page and no redirect", name, w.Code, w.Header().Get("Location"))
		}
		if !strings.Contains(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: content type %q", name, w.Header().Get("Content-Type"))
		}
	}
	// Omitting redirect_uri is fine with exactly one registered.
	w := b.do("GET", authorizeURL(id, p, "redirect_uri", ""), nil)
	if w.Code != http.StatusOK {
		t.Fatalf("no redirect_uri with one registered: %d", w.Code)
	}
}

// A request_uri with a client_id that no row can hold (a NUL, invalid
// UTF-8) is an unknown one, a 400 page, on every database, at the login
// page and from its forms (whose invalid UTF-8 is refused before, as any
// bad form is, also a 400 page): PostgreSQL refused the lookup outright
// (SQLSTATE 22021), which answered 500.
func TestPushedRequestOfNoStorableClient(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		b := e.browser()
		csrf := formOf(t, b.do("GET", "/oauth2/logout", nil).Body.String()).Get("csrf_token")
		for _, bad := range []string{"\x00", "a\x00", "\xff", "\xc0\xaf"} {
			q := url.Values{"request_uri": {requestURIPrefix + "x"}, "client_id": {bad}}
			if w := b.do("GET", "/oauth2/authorize?"+q.Encode(), nil); w.Code != http.StatusBadRequest {
				t.Errorf("GET with client_id %+q: %d; want a 400 page", bad, w.Code)
			}
			q.Set("csrf_token", csrf)
			if w := b.do("POST", "/oauth2/authorize", q); w.Code != http.StatusBadRequest {
				t.Errorf("POST with client_id %+q: %d; want a 400 page", bad, w.Code)
			}
		}
	})
}

// A state of VSCHAR comes back exactly, through the login and consent
// forms too (RFC 6749 §4.1.2); any other is refused, never altered.
func TestStateRoundTrip(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	id, _ := e.webClient()
	state := ` !"#$%&'()*+,-./09:;<=>?@AZ[\]^_` + "`az{|}~ end "
	p := newPKCE()
	b := e.browser()
	w := b.do("GET", authorizeURL(id, p, "state", state), nil)
	form := formOf(t, w.Body.String())
	form.Set("login", "ann")
	form.Set("password", "correct horse")
	w = b.do("POST", "/oauth2/authorize", form)
	form = formOf(t, w.Body.String())
	form.Set("action", "allow")
	q := callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther)
	e.secret(q.Get("code"))
	if got := q.Get("state"); got != state {
		t.Fatalf("state %q came back through the forms as %q", state, got)
	}
}

func TestAuthorizeRedirectedErrors(t *testing.T) {
	e := newEnv(t, "sqlite")
	id, _ := e.webClient()
	cc, _ := e.newClient(ClientSpec{Name: "svc", RedirectURIs: []string{"https://app.example/cb"}, GrantTypes: []string{"client_credentials"}})
	p := newPKCE()
	b := e.browser()
	for _, tc := range []struct {
		name, target, code string
	}{
		{"response_type token", authorizeURL(id, p, "response_type", "token"), errUnsupportedResponseType},
		{"no response_type", authorizeURL(id, p, "response_type", ""), errInvalidRequest},
		{"response_mode form_post", authorizeURL(id, p, "response_mode", "form_post"), errInvalidRequest}, // a regression test: ignored, the code sent in the query
		{"response_mode fragment", authorizeURL(id, p, "response_mode", "fragment"), errInvalidRequest},
		{"no PKCE", authorizeURL(id, p, "code_challenge", "", "code_challenge_method", ""), errInvalidRequest},
		{"plain PKCE", authorizeURL(id, p, "code_challenge_method", "plain"), errInvalidRequest},
		{"challenge without method", authorizeURL(id, p, "code_challenge_method", ""), errInvalidRequest},
		{"short challenge", authorizeURL(id, p, "code_challenge", "abc"), errInvalidRequest},
		{"unregistered scope", authorizeURL(id, p, "scope", "read admin"), errInvalidScope},
		{"malformed scope", authorizeURL(id, p, "scope", "read\"x"), errInvalidScope},
		{"openid without a signing key", authorizeURL(id, p, "scope", "openid"), errInvalidScope},
		{"repeated state", authorizeURL(id, p) + "&state=again", errInvalidRequest},
		{"client without the code grant", authorizeURL(cc, p), errUnauthorizedClient},
		{"prompt=none, not signed in", authorizeURL(id, p, "prompt", "none"), errLoginRequired},
		{"bad prompt", authorizeURL(id, p, "prompt", "select_account"), errInvalidRequest},
		{"prompt with U+00A0", authorizeURL(id, p, "prompt", "none\u00a0"), errInvalidRequest}, // one byte form: single spaces
		{"prompt after U+2003", authorizeURL(id, p, "prompt", "\u2003none"), errInvalidRequest},
		{"prompt with two spaces", authorizeURL(id, p, "prompt", "login  consent"), errInvalidRequest},
		{"prompt with a trailing space", authorizeURL(id, p, "prompt", "none "), errInvalidRequest},
		// OIDC Core §6.1: an OP that does not support request objects says so.
		{"request object", authorizeURL(id, p, "request", "eyJhbGciOiJub25lIn0.e30."), errRequestNotSupported},
		{"bad max_age", authorizeURL(id, p, "max_age", "-1"), errInvalidRequest},
		{"max_age with a sign", authorizeURL(id, p, "max_age", "+60"), errInvalidRequest},
		{"max_age with a leading zero", authorizeURL(id, p, "max_age", "060"), errInvalidRequest},
		{"state with CR LF", authorizeURL(id, p, "state", "a\r\nb"), errInvalidRequest},
		{"state with a tab", authorizeURL(id, p, "state", "a\tb"), errInvalidRequest},
		{"state with non-ASCII", authorizeURL(id, p, "state", "é"), errInvalidRequest},
		// checkParams' errors went back with the first state unchecked (a regression test).
		{"state with a control character, scope repeated", authorizeURL(id, p, "state", "a\x01b") + "&scope=a&scope=b", errInvalidRequest},
		{"state of 2049 bytes, invalid UTF-8 elsewhere", authorizeURL(id, p, "state", strings.Repeat("s", 2049), "nonce", "\xff"), errInvalidRequest},
		{"nonce with LF", authorizeURL(id, p, "nonce", "a\nb"), errInvalidRequest}, // a form would send it back as CR LF
	} {
		w := b.do("GET", tc.target, nil)
		if w.Code != http.StatusFound {
			t.Errorf("%s: status %d; want 302 to the client", tc.name, w.Code)
			continue
		}
		q := callback(t, w, http.StatusFound)
		if q.Get("error") != tc.code {
			t.Errorf("%s: error=%q; want %q", tc.name, q.Get("error"), tc.code)
		}
		if q.Get("code") != "" {
			t.Errorf("%s: a code came with the error", tc.name)
		}
		if d := q.Get("error_description"); d != httpx.OAuthText(d) { // RFC 6749 §4.1.2.1
			t.Errorf("%s: error_description %q holds what the RFC refuses there", tc.name, d)
		}
		if strings.HasPrefix(tc.name, "state ") && q.Has("state") {
			t.Errorf("%s: state %.20q… echoed; RFC 6749 Appendix A.5 refuses it", tc.name, q.Get("state"))
		} else if !strings.HasPrefix(tc.name, "repeated state") && !strings.HasPrefix(tc.name, "state ") && q.Get("state") != "st-123" {
			t.Errorf("%s: state %q not echoed", tc.name, q.Get("state"))
		}
	}
}

func TestLoginAndConsentPages(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, _ := e.newClient(ClientSpec{Name: `<script>alert("x")</script> App`, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		p := newPKCE()
		b := e.browser()
		w := b.do("GET", authorizeURL(id, p), nil)
		page := w.Body.String()
		csp := w.Header().Get("Content-Security-Policy")
		if w.Code != http.StatusOK || !strings.Contains(page, `name="login"`) || !strings.Contains(page, `name="password"`) {
			t.Fatalf("login page: %d %s", w.Code, page)
		}
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self' https://app.example"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if !strings.Contains(page, `<meta name="referrer" content="no-referrer">`) { // RFC 9700 §4.2, beside the header
			t.Error("the login page has no referrer meta tag")
		}
		if strings.Contains(csp, "script-src") || strings.Contains(page, "<script>") {
			t.Errorf("the page allows or holds script: CSP %q", csp)
		}
		if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("page headers %v", w.Header())
		}
		if !strings.Contains(page, "&lt;script&gt;") {
			t.Error("the client name is not escaped")
		}
		var csrf *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == cookieCSRF {
				csrf = c
			}
		}
		if csrf == nil || !csrf.HttpOnly || csrf.SameSite != http.SameSiteLaxMode {
			t.Fatalf("CSRF cookie %+v", csrf)
		}
		form := formOf(t, page)

		// No or wrong CSRF token: refused, nothing happens.
		bad := url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set("csrf_token", "forged")
		bad.Set("login", "ann")
		bad.Set("password", "correct horse")
		if w := b.do("POST", "/oauth2/authorize", bad); w.Code != http.StatusForbidden {
			t.Fatalf("forged CSRF token: %d", w.Code)
		}
		if w := e.browser().do("POST", "/oauth2/authorize", form); w.Code != http.StatusForbidden {
			t.Fatalf("CSRF token without its cookie: %d", w.Code)
		}

		// Wrong password: the form again, 401, the login kept and escaped.
		form.Set("login", `ann"><img src=x>`)
		form.Set("password", "wrong")
		w = b.do("POST", "/oauth2/authorize", form)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `name="password"`) || strings.Contains(w.Body.String(), `"><img`) {
			t.Fatalf("wrong password: %d %s", w.Code, w.Body.String())
		}
		if !strings.Contains(e.logs.String(), `"msg":"login failed","client_ip":"192.0.2.7"`) {
			t.Fatalf("no fail2ban line for the failed form login:\n%s", e.logs.String())
		}
		// Right password: the consent page with the scopes; deny goes back with access_denied.
		form.Set("login", "ann")
		form.Set("password", "correct horse")
		w = b.do("POST", "/oauth2/authorize", form)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "<code>read</code>") {
			t.Fatalf("consent page: %d %s", w.Code, w.Body.String())
		}
		var session *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == cookieSession {
				session = c
			}
		}
		if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Secure {
			t.Fatalf("session cookie %+v (Secure only in release)", session)
		}
		consent := formOf(t, w.Body.String())
		consent.Set("action", "deny")
		if q := callback(t, b.do("POST", "/oauth2/authorize", consent), http.StatusSeeOther); q.Get("error") != errAccessDenied || q.Get("state") != "st-123" {
			t.Fatalf("deny: %v", q)
		}
		// prompt=none while signed in but without consent: consent_required.
		if q := callback(t, b.do("GET", authorizeURL(id, p, "prompt", "none"), nil), http.StatusFound); q.Get("error") != errConsentRequired {
			t.Fatalf("prompt=none without consent: %v", q)
		}
		consent.Set("action", "allow")
		if q := callback(t, b.do("POST", "/oauth2/authorize", consent), http.StatusSeeOther); q.Get("code") == "" {
			t.Fatalf("allow: %v", q)
		}
		// Consent is remembered: the next request redirects at once, even with prompt=none.
		if q := callback(t, b.do("GET", authorizeURL(id, p, "prompt", "none"), nil), http.StatusFound); q.Get("code") == "" {
			t.Fatalf("second authorization: %v", q)
		}
		// prompt=login shows the login form although signed in; prompt=consent the consent form.
		if w := b.do("GET", authorizeURL(id, p, "prompt", "login"), nil); !strings.Contains(w.Body.String(), `name="password"`) {
			t.Fatal("prompt=login did not show the login form")
		}
		if w := b.do("GET", authorizeURL(id, p, "prompt", "consent"), nil); !strings.Contains(w.Body.String(), `value="allow"`) {
			t.Fatal("prompt=consent did not show the consent form")
		}
		// max_age: a sign-in older than max_age must be repeated.
		e.clock.Add(2 * time.Minute)
		if w := b.do("GET", authorizeURL(id, p, "max_age", "60"), nil); !strings.Contains(w.Body.String(), `name="password"`) {
			t.Fatal("max_age=60 after two minutes did not ask to sign in again")
		}
	})
}

func TestFirstPartySkipsConsent(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	id, secret := e.newClient(ClientSpec{Name: "Ours", RedirectURIs: []string{"https://app.example/cb"}, FirstParty: true})
	p := newPKCE()
	b := e.browser()
	w := b.do("GET", authorizeURL(id, p), nil)
	form := formOf(t, w.Body.String())
	form.Set("login", "ann@example.com")
	form.Set("password", "correct horse")
	q := callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther)
	e.token(id, secret, codeForm(e.secret(q.Get("code")), p)).want(http.StatusOK)
}

func TestLoopbackRedirectAnyPort(t *testing.T) {
	e := newEnv(t, "sqlite")
	id, _ := e.newClient(ClientSpec{Name: "CLI", Public: true, RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb", "http://localhost/cb"}})
	p := newPKCE()
	b := e.browser()
	for uri, ok := range map[string]bool{
		"http://127.0.0.1:49152/cb":     true,
		"http://127.0.0.1/cb":           true,
		"http://[::1]:50000/cb":         true,
		"http://127.0.0.1:49152/other":  false,
		"http://127.0.0.1:49152/cb?x=1": false,
		"https://127.0.0.1:49152/cb":    false,
		"http://localhost:49152/cb":     false, // RFC 8252 §7.3: the any-port rule is for IP literals
		"http://127.0.0.2:49152/cb":     false,
		// The port varies, nothing else; and it must be a port.
		"http://127.0.0.1:49152/cb#":      false,
		"http://127.0.0.1/cb#":            false,
		"http://127.0.0.1:0/cb":           false,
		"http://127.0.0.1:65536/cb":       false,
		"http://127.0.0.1:99999999999/cb": false,
		"http://127.0.0.1:/cb":            false,
		"http://127.0.0.1:049152/cb":      false,
		"http://127.0.0.1:65535/cb":       true,
		"http://127.0.0.1:1/cb":           true,
		"http://127.0.0.1:49152/cb\u00a0": false,
		// Byte for byte but the port (RFC 9700 §2.1; a regression test:
		// the scheme's case and an empty query were read away).
		"HTTP://127.0.0.1:49152/cb":       false,
		"http://127.0.0.1:49152/cb?":      false,
		"http://[::1]:49152/cb\u2028evil": false,
	} {
		w := b.do("GET", authorizeURL(id, p, "redirect_uri", uri), nil)
		if got := w.Code == http.StatusOK; got != ok {
			t.Errorf("redirect_uri %s: status %d; want accepted=%v", uri, w.Code, ok)
		}
	}
}

// A used code ends the session it started only when presented with its
// redirect_uri and verifier (RFC 6749 §4.1.2), also long after its expiry.
// A regression test: the used code was looked at first, so anyone who saw
// a code (browser history, a redirect host's logs, another app) ended the
// user's session at any time while it lived, with any verifier.
func TestUsedCodeEndsItsSessionOnlyWithItsVerifier(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		post := func(f url.Values) response { return e.dpopPost("/oauth2/token", pub, "", f, "") }
		refresh := func(rt string) response {
			return post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		}
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(pub, p), "ann", "Ann-Password-1"))
		r := post(codeForm(code, p)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		rt := e.secret(r.Str("refresh_token"))
		wrongURI := codeForm(code, p)
		wrongURI.Set("redirect_uri", "https://app.example/other")
		for _, later := range []time.Duration{0, 20 * 24 * time.Hour} {
			e.clock.Add(later)
			for name, f := range map[string]url.Values{"a wrong verifier": codeForm(code, newPKCE()), "another redirect_uri": wrongURI} {
				post(f).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
				if r = refresh(rt); r.Code != http.StatusOK {
					t.Fatalf("%v later, the used code with %s, then the owner's refresh: %d %q; want 200", later, name, r.Code, r.Str("error"))
				}
				e.secret(r.Str("access_token"))
				rt = e.secret(r.Str("refresh_token"))
			}
		}
		// With its verifier, even long after its expiry: the session ends.
		post(codeForm(code, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		refresh(rt).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, secret := e.webClient()
		other, otherSecret := e.newClient(ClientSpec{Name: "Other", RedirectURIs: []string{"https://app.example/cb"}})
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(id, p), "ann", "correct horse"))

		// Request-level errors.
		e.request("POST", "/oauth2/token", `{"grant_type":"client_credentials"}`, "Content-Type", "application/json").wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		e.token(id, secret, url.Values{}).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		e.token(id, secret, url.Values{"grant_type": {"password"}}).wantOAuthError(http.StatusBadRequest, errUnsupportedGrantType)
		e.formPost("/oauth2/token", id, secret, nil)
		rep := codeForm(code, p).Encode() + "&code_verifier=" + p.verifier
		e.request("POST", "/oauth2/token", rep, "Content-Type", "application/x-www-form-urlencoded",
			"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(id+":"+secret))).wantOAuthError(http.StatusBadRequest, errInvalidRequest)

		// Client authentication: 401 invalid_client with a Basic challenge.
		for name, r := range map[string]response{
			"wrong secret":   e.token(id, "wrong", codeForm(code, p)),
			"unknown client": e.token("nobody", secret, codeForm(code, p)),
			"no auth":        e.formPost("/oauth2/token", "", "", codeForm(code, p)),
		} {
			r.wantOAuthError(http.StatusUnauthorized, errInvalidClient)
			if !strings.HasPrefix(r.Header().Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: WWW-Authenticate %q", name, r.Header().Get("WWW-Authenticate"))
			}
		}
		both := codeForm(code, p)
		both.Set("client_secret", secret)
		e.token(id, secret, both).wantOAuthError(http.StatusBadRequest, errInvalidRequest)

		// Grant errors: all invalid_grant, and none of them spends the code.
		wrongVerifier := codeForm(code, newPKCE())
		wrongURI := codeForm(code, p)
		wrongURI.Set("redirect_uri", "https://app.example/other")
		noURI := codeForm(code, p)
		noURI.Del("redirect_uri")
		e.token(id, secret, wrongVerifier).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.token(id, secret, wrongURI).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.token(id, secret, noURI).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.token(other, otherSecret, codeForm(code, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.token(id, secret, codeForm(otherFirst(code), p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		noVerifier := codeForm(code, p)
		noVerifier.Del("code_verifier")
		e.token(id, secret, noVerifier).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		// client_secret_post works too, and the code is still good.
		post := codeForm(code, p)
		post.Set("client_id", id)
		post.Set("client_secret", secret)
		r := e.formPost("/oauth2/token", "", "", post).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))

		// An expired code.
		code2 := e.secret(e.browser().signIn(authorizeURL(id, p), "ann", "correct horse"))
		e.clock.Add(codeTTL)
		e.token(id, secret, codeForm(code2, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
}

func TestCodeExchangeRace(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, secret := e.webClient()
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(id, p), "ann", "correct horse"))
		var wg sync.WaitGroup
		codes := make([]int, 6)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.token(id, secret, codeForm(code, p))
				codes[i] = r.Code
				if r.Code == http.StatusOK {
					e.secret(r.Str("access_token"))
					e.secret(r.Str("refresh_token"))
				}
			}()
		}
		wg.Wait()
		ok := 0
		for _, c := range codes {
			if c == http.StatusOK {
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d concurrent exchanges succeeded (%v); want exactly 1", ok, len(codes), codes)
		}
	})
}

func TestRefreshGrant(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, secret := e.webClient()
		other, otherSecret := e.newClient(ClientSpec{Name: "Other", RedirectURIs: []string{"https://app.example/cb"}})
		p := newPKCE()
		code := e.browser().signIn(authorizeURL(id, p, "scope", "read write"), "ann", "correct horse")
		r := e.token(id, secret, codeForm(e.secret(code), p)).want(http.StatusOK)
		rt := e.secret(r.Str("refresh_token"))
		refresh := func(cid, cs, tok, scope string) response {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}
			if scope != "" {
				f.Set("scope", scope)
			}
			return e.token(cid, cs, f)
		}
		// Another client's token: refused and not spent.
		refresh(other, otherSecret, rt, "").wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		// Widening: invalid_scope, not spent.
		refresh(id, secret, rt, "read write admin").wantOAuthError(http.StatusBadRequest, errInvalidScope)
		// Narrowing works.
		r = refresh(id, secret, rt, "read").want(http.StatusOK)
		if r.Str("scope") != "read" {
			t.Fatalf("narrowed scope %q", r.Str("scope"))
		}
		rt2 := e.secret(r.Str("refresh_token"))
		e.secret(r.Str("access_token"))
		// The new refresh token keeps the whole grant (RFC 6749 §6: its
		// scope is identical to the one presented): only the access token
		// was narrowed, and it cannot widen past the grant.
		refresh(id, secret, rt2, "read write admin").wantOAuthError(http.StatusBadRequest, errInvalidScope)
		r = refresh(id, secret, rt2, "").want(http.StatusOK)
		if r.Str("scope") != "read write" {
			t.Fatalf("after a narrowed refresh, scope %q; want the grant's, read write", r.Str("scope"))
		}
		rt3 := e.secret(r.Str("refresh_token"))
		e.secret(r.Str("access_token"))
		// Reuse of a spent token revokes the family: the live one dies.
		refresh(id, secret, rt2, "").wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		refresh(id, secret, rt3, "").wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if !strings.Contains(e.logs.String(), "refresh token reuse") {
			t.Fatal("reuse not logged")
		}
	})
}

func TestClientCredentials(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read", "write"}})
		web, webSecret := e.webClient()
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}})
		cc := url.Values{"grant_type": {"client_credentials"}}
		r := e.token(id, secret, cc).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		if r.Str("refresh_token") != "" || r.Str("scope") != "read write" {
			t.Fatalf("client credentials response %s", r.Body.String())
		}
		c, err := e.deps.Tokens.Verify(at, e.clock.Now())
		if err != nil || c.Subject != id || c.ClientID != id {
			t.Fatalf("claims %+v %v; want sub = client_id (RFC 9068 §2.2)", c, err)
		}
		cc.Set("scope", "write")
		if r := e.token(id, secret, cc).want(http.StatusOK); r.Str("scope") != "write" {
			t.Fatalf("scope %q", r.Str("scope"))
		}
		cc.Set("scope", "admin")
		e.token(id, secret, cc).wantOAuthError(http.StatusBadRequest, errInvalidScope)
		cc.Del("scope")
		e.token(web, webSecret, cc).wantOAuthError(http.StatusBadRequest, errUnauthorizedClient)
		post := url.Values{"grant_type": {"client_credentials"}, "client_id": {pub}}
		e.formPost("/oauth2/token", "", "", post).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		m := httptest.NewRecorder()
		e.deps.Registry.Handler().ServeHTTP(m, httptest.NewRequest("GET", "/metrics", nil))
		if !strings.Contains(m.Body.String(), `oauth2_tokens_issued_total{grant_type="client_credentials"} 2`) {
			t.Fatalf("metrics:\n%s", m.Body.String())
		}
	})
}

func TestRevocationAndIntrospection(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		id, secret := e.webClient()
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}})
		p := newPKCE()
		r := e.token(id, secret, codeForm(e.secret(e.browser().signIn(authorizeURL(id, p), "ann", "correct horse")), p)).want(http.StatusOK)
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))

		// Introspection needs a confidential client.
		e.formPost("/oauth2/introspect", "", "", url.Values{"token": {at}}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		e.formPost("/oauth2/introspect", "", "", url.Values{"token": {at}, "client_id": {pub}}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		e.formPost("/oauth2/introspect", rs, "wrong", url.Values{"token": {at}}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		for name, tok := range map[string]string{
			"forged":    tamper(at),
			"garbage":   "not a token",
			"unknown":   token.NewOpaque(),
			"oversized": strings.Repeat("a.", 5000),
		} {
			if in := e.introspect(rs, rsSecret, tok); len(in) != 1 || in["active"] != false {
				t.Errorf("%s: introspection %v; want only active:false", name, in)
			}
		}
		// A refresh token is introspectable by its own client only, with no
		// token_type: RFC 7662 §2.2's are access token types (RFC 6749 §7.1).
		if in := e.introspect(id, secret, rt); in["active"] != true || in["token_type"] != nil {
			t.Fatalf("own refresh token: %v", in)
		}
		if in := e.introspect(rs, rsSecret, rt); in["active"] != false {
			t.Fatalf("another client's refresh token: %v", in)
		}
		// Revoking someone else's token, or an unknown one: 200, nothing changes.
		e.formPost("/oauth2/revoke", rs, rsSecret, url.Values{"token": {at}}).want(http.StatusOK)
		e.formPost("/oauth2/revoke", rs, rsSecret, url.Values{"token": {"unknown"}}).want(http.StatusOK)
		if in := e.introspect(rs, rsSecret, at); in["active"] != true {
			t.Fatal("another client revoked the token")
		}
		e.formPost("/oauth2/revoke", rs, rsSecret, url.Values{}).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		e.formPost("/oauth2/revoke", id, "wrong", url.Values{"token": {at}}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		// The owner revokes the access token (hint is only a hint), then the refresh token.
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {at}, "token_type_hint": {"refresh_token"}}).want(http.StatusOK)
		if in := e.introspect(rs, rsSecret, at); in["active"] != false {
			t.Fatalf("revoked access token: %v", in)
		}
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {rt}}).want(http.StatusOK)
		e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		// Expired access tokens are inactive.
		cc := e.token(rs, rsSecret, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK)
		cat := e.secret(cc.Str("access_token"))
		e.clock.Add(time.Hour)
		if in := e.introspect(rs, rsSecret, cat); in["active"] != false {
			t.Fatalf("expired token: %v", in)
		}
	})
}

func TestClientDeletionAndRotation(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		cc := url.Values{"grant_type": {"client_credentials"}}
		at := e.secret(e.token(id, secret, cc).want(http.StatusOK).Str("access_token"))
		newSecret, err := RotateClientSecret(context.Background(), e.db, 0, e.deps.Clients, e.deps.Tokens.Revoked, id, time.Hour, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		e.secret(newSecret)
		// 256 random bits (43 base64url characters), of which only the
		// SHA-256 is stored.
		stored, err := e.db.ClientByID(context.Background(), id)
		if err != nil || len(secret) != 43 || len(newSecret) != 43 || stored.SecretHash != token.Hash(newSecret) || strings.Contains(stored.SecretHash, newSecret) {
			t.Fatalf("secrets %d and %d characters, stored %q (%v); want 43 each, and only the new one's hash", len(secret), len(newSecret), stored.SecretHash, err)
		}
		e.token(id, secret, cc).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		if in := e.introspect(rs, rsSecret, at); in["active"] != false {
			t.Fatal("token minted with the old secret still active after rotation")
		}
		// A millisecond later, in the same second: the new token must not be
		// born revoked (cutoffs are to the millisecond; the jti says when a
		// token was minted).
		e.clock.Add(time.Millisecond)
		at2 := e.secret(e.token(id, newSecret, cc).want(http.StatusOK).Str("access_token"))
		if in := e.introspect(rs, rsSecret, at2); in["active"] != true {
			t.Fatal("token minted with the new secret inactive")
		}
		if err := DeleteClient(context.Background(), e.db, 0, e.deps.Clients, e.deps.Tokens.Revoked, id, "", time.Hour, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.token(id, newSecret, cc).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		if in := e.introspect(rs, rsSecret, at2); in["active"] != false {
			t.Fatal("deleted client's token still active")
		}
	})
}

// A client deleted through one instance stays in another's client cache
// until that one's revocation poll: what the other stores for it meanwhile
// (a pushed request, a consent, a code) names a client no longer there,
// which the database refuses (a foreign key). That is an unknown client:
// invalid_client, or for a consent or a code the sign-in page again
// (SaveConsent and CreateCode cannot tell it from a sign-in that ended),
// never a 500.
func TestDeletedClientInAnotherInstancesCache(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			a, b := newEnvOn(t, storetest.OpenURL(t, url)), newEnvOn(t, storetest.OpenURL(t, url))
			b.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			id, secret := b.webClient()
			app, _ := b.newClient(ClientSpec{Name: "App", RedirectURIs: []string{"https://app.example/cb"}, FirstParty: true})
			pk := newPKCE()
			b.secret(b.formPost("/oauth2/par", id, secret, pushForm(pk)).want(http.StatusCreated).Str("request_uri"))
			br := b.browser()
			br.do("GET", authorizeURL(app, pk), nil) // b caches app too
			login := formOf(t, br.do("GET", authorizeURL(id, pk), nil).Body.String())
			login.Set("login", "ann")
			login.Set("password", "Ann-Password-1")
			consent := formOf(t, br.do("POST", "/oauth2/authorize", login).Body.String())
			consent.Set("action", "allow")
			for _, c := range []string{id, app} {
				if err := DeleteClient(context.Background(), a.db, 0, a.deps.Clients, a.deps.Tokens.Revoked, c, "", time.Hour, a.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			b.formPost("/oauth2/par", id, secret, pushForm(pk)).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
			if w := br.do("POST", "/oauth2/authorize", consent); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
				t.Errorf("consent to a deleted client: %d %s; want the sign-in page", w.Code, w.Body.String())
			}
			if w := br.do("GET", authorizeURL(app, pk), nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
				t.Errorf("a code for a deleted client: %d %s; want the sign-in page", w.Code, w.Body.String())
			}
			if strings.Contains(b.logs.String(), "internal error") {
				t.Error("a refused row was logged as an internal error")
			}
		})
	}
}

// A rotated secret's access tokens all stop working, on every instance,
// also those another instance mints with it before it hears of the
// rotation; the new secret's tokens do not, even minted at once. The
// rotation revoked only the tokens minted until its time, so instance b,
// which shares the database and had the clients in its cache, minted with
// the old secrets just after (a client-credentials token of a client
// rotated through the admin path, a refresh of one rotated as the CLI
// does) tokens that lived an access token's lifetime. A regression test:
// both were active (store.SecretRevocation now revokes every token that
// carries the old secret's tag).
func TestSecretRotationRevokesOldSecretTokens(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		svc, svcSecret := e.newClient(ClientSpec{Name: "Batch", GrantTypes: []string{"client_credentials"}})
		web, webSecret := e.newClient(ClientSpec{Name: "Web", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(web, p, "scope", "read"), "ann", "Ann-Password-1"))
		rt := e.secret(e.token(web, webSecret, codeForm(code, p)).want(http.StatusOK).Str("refresh_token"))

		b := newEnvOn(t, e.db, func(d *Deps) { d.Now = e.clock.Now })
		cc := url.Values{"grant_type": {"client_credentials"}}
		b.secret(b.token(svc, svcSecret, cc).want(http.StatusOK).Str("access_token")) // b now has svc in its cache
		b.introspect(web, webSecret, "none")                                          // and web

		svcNew, err := RotateClientSecret(ctx, e.db, 0, e.deps.Clients, e.deps.Tokens.Revoked, svc, e.deps.Tokens.AccessTTL, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		webNew, err := RotateClientSecret(ctx, e.db, 0, nil, nil, web, e.deps.Tokens.AccessTTL, e.clock.Now()) // as `client rotate-secret`
		if err != nil {
			t.Fatal(err)
		}
		e.secret(svcNew)
		e.secret(webNew)
		e.clock.Add(time.Second)
		late := b.secret(b.token(svc, svcSecret, cc).want(http.StatusOK).Str("access_token")) // before b's next poll
		r := b.token(web, webSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).want(http.StatusOK)
		lateRefresh := b.secret(r.Str("access_token"))
		b.secret(r.Str("refresh_token"))
		fresh := e.secret(e.token(svc, svcNew, cc).want(http.StatusOK).Str("access_token"))
		for _, in := range []*env{e, b} { // their polls (the CLI told neither of its rotation)
			if err := in.deps.Tokens.Revoked.Load(ctx, e.db, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		b.token(svc, svcSecret, cc).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		freshB := b.secret(b.token(svc, svcNew, cc).want(http.StatusOK).Str("access_token"))
		for _, in := range []*env{e, b} {
			for name, tok := range map[string]string{"client credentials": late, "refresh": lateRefresh} {
				if m := in.introspect(rs, rsSecret, tok); m["active"] != false {
					t.Errorf("a %s token minted with the old secret after the rotation is active: %v", name, m)
				}
			}
			for name, tok := range map[string]string{"here": fresh, "on the other instance": freshB} {
				if m := in.introspect(rs, rsSecret, tok); m["active"] != true {
					t.Errorf("a token minted with the new secret %s, a second after the rotation, is inactive: %v", name, m)
				}
			}
		}
	})
}

// Two Authorization headers are refused (RFC 6749 §2.3: one client
// authentication method; RFC 6750 §3.1: a repeated parameter is
// invalid_request): the server read the first and ignored the second,
// which a proxy or firewall in front may read instead.
func TestRepeatedAuthorizationHeaderRefused(t *testing.T) {
	e := newEnv(t, "sqlite")
	id, secret := e.newClient(ClientSpec{Name: "Batch", GrantTypes: []string{"client_credentials"}})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header["Authorization"] = []string{basic, "Basic " + base64.StdEncoding.EncodeToString([]byte("other:secret"))}
	e.serveRaw(req).wantOAuthError(http.StatusBadRequest, "invalid_request")
	// The first empty: the second, which a proxy may read, was ignored.
	req = httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header["Authorization"] = []string{"", basic}
	e.serveRaw(req).wantOAuthError(http.StatusBadRequest, "invalid_request")

	e.createUser("ann@example.com", "ann", "Ann-Password-1", "user")
	access, _ := e.login("ann", "Ann-Password-1")
	for _, path := range []string{"/api/v1/profile", "/oauth2/userinfo"} {
		for _, two := range [][]string{{"Bearer " + access, "Bearer x"}, {"", "Bearer " + access}} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header["Authorization"] = two
			r := e.serveRaw(req).want(http.StatusBadRequest)
			if h := r.Header().Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_request"`) {
				t.Errorf("GET %s with Authorization %q: WWW-Authenticate %q; want invalid_request", path, two, h)
			}
		}
	}
	e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusOK)

	// The registration endpoints' bearer tokens (RFC 7591, 7592) the same:
	// they answered 401, as for no token at all.
	e = newEnv(t, "sqlite", withDynamicRegistration(RegistrationToken))
	initial := e.initialToken(time.Hour)
	req = httptest.NewRequest("POST", "/oauth2/register", strings.NewReader(`{"redirect_uris":["https://app.example/cb"]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header["Authorization"] = []string{"Bearer " + initial, "Bearer x"}
	e.serveRaw(req).wantOAuthError(http.StatusBadRequest, "invalid_request")
	reg := e.registerClient(initial, webMetadata()).want(http.StatusCreated)
	req = httptest.NewRequest("GET", "/oauth2/register/"+reg.Str("client_id"), nil)
	req.Header["Authorization"] = []string{"", "Bearer " + reg.Str("registration_access_token")}
	e.serveRaw(req).wantOAuthError(http.StatusBadRequest, "invalid_request")
	e.manage("GET", reg.Str("client_id"), reg.Str("registration_access_token"), nil).want(http.StatusOK)
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, "sqlite")
	r := e.request("GET", "/.well-known/oauth-authorization-server", nil).want(http.StatusOK)
	m := r.JSON()
	if m["issuer"] != testIssuer || m["token_endpoint"] != testIssuer+"/oauth2/token" ||
		m["authorization_endpoint"] != testIssuer+"/oauth2/authorize" || m["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("metadata %v", m)
	}
	b, _ := json.Marshal(m["code_challenge_methods_supported"])
	if string(b) != `["S256"]` {
		t.Fatalf("code_challenge_methods_supported %s", b)
	}
	if _, ok := m["userinfo_endpoint"]; ok {
		t.Fatal("OpenID Connect advertised without a signing key")
	}
	e.request("GET", "/.well-known/openid-configuration", nil).want(http.StatusNotFound)
	if k := e.request("GET", "/.well-known/jwks.json", nil).want(http.StatusOK).Body.String(); strings.TrimSpace(k) != `{"keys":[]}` {
		t.Fatalf("JWKS with only HMAC: %s", k)
	}
}

func TestParseBasic(t *testing.T) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		h, id, secret string
		ok            bool
	}{
		{enc("abc:def"), "abc", "def", true},
		{enc("a%3Ab:c+d%25"), "a:b", "c d%", true}, // RFC 6749 §2.3.1: form-url-decoded
		{"basic " + base64.StdEncoding.EncodeToString([]byte("x:y")), "x", "y", true},
		{enc("nocolon"), "", "", false},
		{enc(":secret"), "", "", false},
		{enc("a%zz:b"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Bearer abc", "", "", false},
		{"Basic " + strings.Repeat("A", 2000), "", "", false},
		{enc("abc:def") + "\u00a0", "", "", false}, // one byte form: nothing trimmed
		{"Basic \v" + base64.StdEncoding.EncodeToString([]byte("abc:def")), "", "", false},
		{"Basic  " + base64.StdEncoding.EncodeToString([]byte("abc:def")), "abc", "def", true}, // 1*SP (RFC 7235 §2.1)
	} {
		id, secret, ok := parseBasic(tc.h)
		if ok != tc.ok || id != tc.id || secret != tc.secret {
			t.Errorf("parseBasic(%q) = %q, %q, %v; want %q, %q, %v", tc.h, id, secret, ok, tc.id, tc.secret, tc.ok)
		}
	}
}

func TestCreateClientValidation(t *testing.T) {
	e := newEnv(t, "sqlite")
	for name, spec := range map[string]ClientSpec{
		"no name":          {RedirectURIs: []string{"https://a/cb"}},
		"fragment":         {Name: "x", RedirectURIs: []string{"https://a/cb#f"}},
		"relative":         {Name: "x", RedirectURIs: []string{"/cb"}},
		"code without uri": {Name: "x", GrantTypes: []string{"authorization_code"}},
		"public cc":        {Name: "x", Public: true, GrantTypes: []string{"client_credentials"}},
		"unknown grant":    {Name: "x", GrantTypes: []string{"password"}},
		"bad scope":        {Name: "x", GrantTypes: []string{"client_credentials"}, Scopes: []string{`a"b`}},
		"empty fragment":   {Name: "x", RedirectURIs: []string{"https://a/cb#"}},
		"javascript":       {Name: "x", RedirectURIs: []string{"javascript:alert(1)"}},
		"data":             {Name: "x", RedirectURIs: []string{"data:text/html,x"}},
		"file":             {Name: "x", RedirectURIs: []string{"file:///etc/passwd"}},
		"no-dot scheme":    {Name: "x", RedirectURIs: []string{"myapp:/cb"}},
		"user info":        {Name: "x", RedirectURIs: []string{"https://u@a.example/cb"}},
		"U+00A0 smuggle":   {Name: "x", RedirectURIs: []string{"https://app.example/cb\u00a0http://evil.example/"}},
		"U+2028 smuggle":   {Name: "x", RedirectURIs: []string{"https://app.example/cb\u2028http://evil.example/"}},
		"U+3000 smuggle":   {Name: "x", PostLogoutRedirectURIs: []string{"https://app.example/bye\u3000http://evil.example/"}},
		"bad escape":       {Name: "x", RedirectURIs: []string{"https://a.example/%zz"}},
		"port 0":           {Name: "x", RedirectURIs: []string{"https://a.example:0/cb"}},
		"empty port":       {Name: "x", RedirectURIs: []string{"https://a.example:/cb"}},
		"bc fragment":      {Name: "x", GrantTypes: []string{"client_credentials"}, BackchannelLogoutURI: "https://rp.example/bc#x"},
		"bc private-use":   {Name: "x", GrantTypes: []string{"client_credentials"}, BackchannelLogoutURI: "com.example.app:/bc"},
		"bc relative":      {Name: "x", GrantTypes: []string{"client_credentials"}, BackchannelLogoutURI: "/bc"},
		"bc smuggle":       {Name: "x", GrantTypes: []string{"client_credentials"}, BackchannelLogoutURI: "https://rp.example/bc\u00a0x"},
		"host with ;":      {Name: "x", RedirectURIs: []string{"https://rp.example;sandbox;report-uri/cb"}}, // CSP's syntax in the pages' header
		"host with ,":      {Name: "x", RedirectURIs: []string{"https://rp.example,x/cb"}},
		"host with !":      {Name: "x", PostLogoutRedirectURIs: []string{"https://rp!.example/bye"}},
		"IPvFuture host":   {Name: "x", RedirectURIs: []string{"http://[v1.x]/cb"}},
	} {
		if _, _, err := CreateClient(context.Background(), e.db, 0, spec, false, e.deps.Tokens.Resources, e.clock.Now()); err == nil {
			t.Errorf("%s: CreateClient accepted %+v", name, spec)
		}
	}
	// Release mode: https or loopback only.
	for uri, ok := range map[string]bool{"https://a.example/cb": true, "http://127.0.0.1/cb": true, "http://[::1]:8/cb": true,
		"http://a.example/cb": false, "com.example.app:/cb": false} {
		_, _, err := CreateClient(context.Background(), e.db, 0, ClientSpec{Name: "x", RedirectURIs: []string{uri}}, true, nil, e.clock.Now())
		if (err == nil) != ok {
			t.Errorf("release mode, %s: err %v; want ok=%v", uri, err, ok)
		}
		_, _, err = CreateClient(context.Background(), e.db, 0, ClientSpec{Name: "x", GrantTypes: []string{"client_credentials"}, BackchannelLogoutURI: uri}, true, nil, e.clock.Now())
		if (err == nil) != (ok && !strings.HasPrefix(uri, "com.")) {
			t.Errorf("release mode, back-channel logout URI %s: err %v", uri, err)
		}
	}
}

// Browsers apply form-action to the redirect after a form's POST, and
// ignore a source that is not CSP's syntax: an origin with no CSP form
// ([::1], a '_' in the host) leaves form-action out, or form-action 'self'
// alone blocked the code's way back to a native app in Chromium. A page
// that leads nowhere has form-action 'self' alone.
func TestPagesFormActionIsCSP(t *testing.T) {
	e := newEnv(t, store.SQLite)
	for uri, want := range map[string]string{
		"https://app.example/cb":     "; form-action 'self' https://app.example",
		"http://127.0.0.1:50000/cb":  "; form-action 'self' http://127.0.0.1:50000",
		"com.example.app:/cb":        "; form-action 'self' com.example.app:",
		"http://[::1]:50000/cb":      "",
		"https://app_1.example/cb":   "",
		"https://app.example:8443/x": "; form-action 'self' https://app.example:8443",
	} {
		id, _ := e.newClient(ClientSpec{Name: "App", RedirectURIs: []string{uri}, Scopes: []string{"read"}})
		w := e.browser().do("GET", authorizeURL(id, newPKCE(), "redirect_uri", uri), nil)
		csp := w.Header().Get("Content-Security-Policy")
		if w.Code != http.StatusOK || !strings.HasSuffix(csp, "frame-ancestors 'none'"+want) {
			t.Errorf("login page for %s: %d, CSP %q; want it to end frame-ancestors 'none'%s", uri, w.Code, csp, want)
		}
	}
	w := e.browser().do("GET", "/oauth2/logout", nil)
	if csp := w.Header().Get("Content-Security-Policy"); w.Code != http.StatusOK || !strings.HasSuffix(csp, "frame-ancestors 'none'; form-action 'self'") {
		t.Errorf("logout page without a target: %d, CSP %q; want form-action 'self' alone", w.Code, csp)
	}
}

// A relying party may open the authorization and logout endpoints in a
// popup (OIDC display=popup): their pages and redirects carry no
// Cross-Origin-Opener-Policy, which cut the popup from its opener (in
// Chromium the callback saw window.opener null), while every other
// response keeps same-origin.
func TestPopupEndpointsKeepTheOpener(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
	id, _ := e.newClient(ClientSpec{Name: "App", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}, FirstParty: true})
	b := e.browser()
	login := b.do("GET", authorizeURL(id, newPKCE()), nil)
	e.secret(b.signIn(authorizeURL(id, newPKCE()), "ann", "correct horse"))
	redirect := b.do("GET", authorizeURL(id, newPKCE()), nil) // signed in, first party: a bare 302
	e.secret(callback(t, redirect, http.StatusFound).Get("code"))
	for name, w := range map[string]*httptest.ResponseRecorder{"login page": login, "redirect": redirect, "logout page": b.do("GET", "/oauth2/logout", nil)} {
		if coop := w.Header().Get("Cross-Origin-Opener-Policy"); coop != "" {
			t.Errorf("%s: %d, Cross-Origin-Opener-Policy %q; want none", name, w.Code, coop)
		}
	}
	if coop := b.do("GET", "/oauth2/device", nil).Header().Get("Cross-Origin-Opener-Policy"); coop != "same-origin" {
		t.Errorf("device page: Cross-Origin-Opener-Policy %q; want same-origin", coop)
	}
}

// prompt=login and max_age ask for a fresh sign-in
// (OIDC Core §3.1.2.1, §3.1.2.3: "the Authorization Server MUST attempt to
// actively re-authenticate the End-User"). The login page they show carries
// the browser's CSRF token, which is the same for every form; posting it
// back as a consent form (action=allow, no login, no password) must not
// yield a code on the old sign-in (a regression test: a consent post needed
// only a sign-in). Nor may a consent form shown for another request: its
// MAC binds the sign-in and the request's fields.
func TestConsentPostCannotSkipReauthentication(t *testing.T) {
	for _, c := range []struct{ name, k, v string }{{"max_age", "max_age", "60"}, {"prompt_login", "prompt", "login"}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, store.SQLite)
			e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
			id, _ := e.webClient()
			b := e.browser()
			// The owner signs in and consents once.
			e.secret(b.signIn(authorizeURL(id, newPKCE()), "ann", "correct horse"))
			e.clock.Add(2 * time.Hour) // the owner walks away; the browser stays signed in

			// The client asks for a fresh sign-in: the login form is shown.
			w := b.do("GET", authorizeURL(id, newPKCE(), c.k, c.v), nil)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
				t.Fatalf("authorize with %s=%s: %d; want the login form", c.k, c.v, w.Code)
			}
			// Whoever sits at the browser turns the login form into a consent form.
			form := formOf(t, w.Body.String())
			form.Set("action", "allow")
			w = b.do("POST", "/oauth2/authorize", form)
			if w.Code == http.StatusSeeOther && strings.Contains(w.Header().Get("Location"), "code=") {
				e.secret(callback(t, w, http.StatusSeeOther).Get("code"))
				t.Fatalf("%s=%s: a code was issued on the 2-hour-old sign-in without a password (Location %s)", c.k, c.v, "…code=…")
			}
			// A consent form shown for another request (of a client not
			// yet consented to), posted with this request's fields.
			other, _ := e.webClient()
			w = b.do("GET", authorizeURL(other, newPKCE()), nil)
			shown := formOf(t, w.Body.String())
			if !shown.Has("consent") {
				t.Fatalf("no consent form for a new client: %d", w.Code)
			}
			form.Set("consent", shown.Get("consent"))
			w = b.do("POST", "/oauth2/authorize", form)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
				t.Fatalf("%s=%s: another request's consent MAC: %d Location %q; want the login form", c.k, c.v, w.Code, w.Header().Get("Location"))
			}
		})
	}
}

// A consent form carries the time it was shown, under its MAC, and is
// refused once older than parSignIn, the time a pushed request serves the
// forms of its sign-in: before, a consent page shown once granted whenever
// it was posted while the sign-in lived (12 hours here). Refused, it shows
// the login page again and issues no code.
func TestConsentFormExpires(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
	b := e.browser()
	first, _ := e.webClient()
	e.secret(b.signIn(authorizeURL(first, newPKCE()), "ann", "correct horse"))
	for _, c := range []struct {
		age time.Duration
		ok  bool
	}{{parSignIn, true}, {parSignIn + time.Second, false}} {
		id, _ := e.webClient() // not consented to yet
		form := formOf(t, b.do("GET", authorizeURL(id, newPKCE()), nil).Body.String())
		if !form.Has("consent") {
			t.Fatalf("no consent form for a new client: %v", form)
		}
		e.clock.Add(c.age)
		form.Set("action", "allow")
		w := b.do("POST", "/oauth2/authorize", form)
		issued := w.Code == http.StatusSeeOther && strings.Contains(w.Header().Get("Location"), "code=")
		if issued {
			e.secret(callback(t, w, http.StatusSeeOther).Get("code"))
		}
		if issued != c.ok || !c.ok && (w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`)) {
			t.Errorf("a consent form posted %v after it was shown: %d, a code %v; want a code %v, else the login page", c.age, w.Code, issued, c.ok)
		}
	}
}

// The consent decision is one of the form's two buttons, spelt as they
// are: any other action is a 400 that decides nothing (it was taken as a
// denial, and the client told access_denied, which the user never chose);
// the form still grants or denies after it.
func TestConsentActionIsOneOfTheButtons(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
	b := e.browser()
	first, _ := e.webClient()
	e.secret(b.signIn(authorizeURL(first, newPKCE()), "ann", "correct horse"))
	id, _ := e.webClient() // not consented to yet
	form := formOf(t, b.do("GET", authorizeURL(id, newPKCE()), nil).Body.String())
	if !form.Has("consent") {
		t.Fatalf("no consent form for a new client: %v", form)
	}
	for _, action := range []string{"ALLOW", "Allow", "allow ", "Deny", "", "yes"} {
		form.Set("action", action)
		if w := b.do("POST", "/oauth2/authorize", form); w.Code != http.StatusBadRequest {
			t.Errorf("action=%q: %d Location %q; want 400, nothing decided", action, w.Code, w.Header().Get("Location"))
		}
	}
	form.Set("action", "deny")
	if q := callback(t, b.do("POST", "/oauth2/authorize", form), http.StatusSeeOther); q.Get("error") != "access_denied" {
		t.Errorf("deny: %v; want access_denied", q)
	}
}

// max_age (OIDC Core §3.1.2.1) counts to the consent decision: a consent
// form shown while the sign-in was young enough but posted once it was not
// (within the form's 10 minutes) issued a code whose auth_time was older
// than max_age allows. It shows the login page instead, issuing nothing,
// and signing in there leads on to the code, the consent kept (it asked
// again, so a max_age shorter than a user's reading of the page sent them
// from sign-in to consent and back for ever); for a pushed request too.
// max_age=0 is prompt=login, met by the sign-in the form was shown for.
func TestConsentRechecksMaxAge(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
	// post fills and posts the page's form: the login's, else the consent's.
	post := func(b *browser, page *httptest.ResponseRecorder) *httptest.ResponseRecorder {
		t.Helper()
		form := formOf(t, page.Body.String())
		if strings.Contains(page.Body.String(), `name="password"`) {
			form.Set("login", "ann")
			form.Set("password", "correct horse")
		} else {
			form.Set("action", "allow")
		}
		return b.do("POST", "/oauth2/authorize", form)
	}
	for _, c := range []struct {
		maxAge string
		wait   time.Duration
		ok     bool
	}{{"300", 300 * time.Second, true}, {"300", 301 * time.Second, false}, {"0", time.Minute, true}} {
		for _, pushed := range []bool{false, true} {
			id, secret := e.webClient() // not consented to yet
			pk := newPKCE()
			start := authorizeURL(id, pk, "max_age", c.maxAge)
			if pushed {
				uri := e.secret(e.formPost("/oauth2/par", id, secret, pushForm(pk, "max_age", c.maxAge)).want(http.StatusCreated).Str("request_uri"))
				start = "/oauth2/authorize?" + url.Values{"client_id": {id}, "request_uri": {uri}}.Encode()
			}
			b := e.browser()
			consent := post(b, b.do("GET", start, nil))
			if !strings.Contains(consent.Body.String(), `value="allow"`) {
				t.Fatalf("max_age=%s, pushed %v: no consent page after the login: %d", c.maxAge, pushed, consent.Code)
			}
			e.clock.Add(c.wait)
			w := post(b, consent)
			issued := w.Code == http.StatusSeeOther && strings.Contains(w.Header().Get("Location"), "code=")
			if issued {
				e.secret(callback(t, w, http.StatusSeeOther).Get("code"))
			}
			if issued != c.ok || !c.ok && (w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`)) {
				t.Errorf("max_age=%s, pushed %v: consent posted %v after the sign-in: %d, a code %v; want a code %v, else the login page", c.maxAge, pushed, c.wait, w.Code, issued, c.ok)
				continue
			}
			if !c.ok { // signing in again there gets the code
				e.secret(callback(t, post(b, w), http.StatusSeeOther).Get("code"))
			}
		}
	}
}

// A query string url.ParseQuery refuses (a bad escape, a semicolon) is an
// error page at the authorization and logout endpoints: url.Query took the
// request without the bad pair, so a parameter sent twice (RFC 6749 §3.1)
// passed when one copy was malformed, and a parameter the request meant to
// send (a state with a raw semicolon) was silently lost.
func TestMalformedQueryRefused(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, _ := e.webClient()
		p := newPKCE()
		b := e.browser()
		for name, target := range map[string]string{
			"state twice, one malformed":  authorizeURL(id, p) + "&state=%zz",
			"prompt=login malformed":      authorizeURL(id, p) + "&prompt=login%2",
			"state with a semicolon":      authorizeURL(id, p, "state", "") + "&state=a;b",
			"logout state twice":          "/oauth2/logout?client_id=" + id + "&state=a&state=%zz",
			"logout hint with semicolon":  "/oauth2/logout?client_id=" + id + "&id_token_hint=a;b",
			"logout client_id bad escape": "/oauth2/logout?client_id=%G1",
		} {
			w := b.do("GET", target, nil)
			if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "malformed") {
				t.Errorf("%s: %d Location=%q; want a 400 page saying the query is malformed", name, w.Code, w.Header().Get("Location"))
			}
		}

		// A POST to the logout endpoint reads its form, but a malformed
		// query is refused there too, as at the authorization endpoint;
		// so is a malformed form. Neither signs the browser out.
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		e.secret(b.signIn(authorizeURL(id, p), "ann", "Ann-Password-1"))
		form := formOf(t, b.do("GET", "/oauth2/logout?client_id="+id, nil).Body.String())
		form.Set("action", "logout")
		for _, c := range []struct{ name, target, body string }{
			{"a malformed form", "/oauth2/logout", form.Encode() + "&state=%zz"},
			{"a malformed query", "/oauth2/logout?state=x&state=%zz", form.Encode()},
		} {
			req := httptest.NewRequest("POST", c.target, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range b.cookies {
				req.AddCookie(&http.Cookie{Name: k, Value: v})
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "malformed") || !b.signedIn(id) {
				t.Errorf("POST /oauth2/logout with %s: %d, signed in %v; want a 400 page saying it is malformed, still signed in", c.name, w.Code, b.signedIn(id))
			}
		}
		if w := b.do("POST", "/oauth2/logout", form); w.Code != http.StatusOK || b.signedIn(id) {
			t.Errorf("the well-formed POST: %d; want 200, signed out", w.Code)
		}
	})
}

// RFC 6749 §3.1, §3.2: a parameter sent without a value is treated as
// omitted, at the authorization endpoint, PAR, the token endpoint and the
// device authorization endpoint alike: an empty request_uri is no pushed
// request, an empty resource names none. A parameter sent twice stays
// refused, one copy empty or not.
func TestEmptyParametersOmitted(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.webClient()
		rs, rsSecret := e.newClient(ClientSpec{Name: "rs", GrantTypes: []string{"client_credentials"}, ResourceServer: true, Scopes: []string{"read"}})
		p := newPKCE()
		b := e.browser()
		empties := "&request_uri=&resource=&scope=&nonce=&prompt=&max_age=&dpop_jkt=&login_hint="
		w := b.do("GET", authorizeURL(id, p)+empties, nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
			t.Fatalf("authorize with empty parameters: %d %s; want the login page", w.Code, w.Body.String())
		}
		if form := formOf(t, w.Body.String()); form.Has("resource") || form.Has("request_uri") {
			t.Fatalf("the login form carries empty parameters: %v", form)
		}
		r := e.token(id, secret, codeForm(e.secret(b.signIn(authorizeURL(id, p)+empties, "ann", "Ann-Password-1")), p)).want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if in := e.introspect(rs, rsSecret, e.secret(r.Str("access_token"))); in["aud"] != testIssuer || in["scope"] != "read write" {
			t.Fatalf("a code asked with empty resource and scope: %v; want the ISSUER's and the registered scopes", in)
		}
		push := pushForm(p)
		push.Set("request_uri", "")
		push.Set("resource", "")
		uri := e.secret(e.formPost("/oauth2/par", id, secret, push).want(http.StatusCreated).Str("request_uri"))
		cc := url.Values{"grant_type": {"client_credentials"}, "resource": {""}, "scope": {""}}
		if in := e.introspect(rs, rsSecret, e.secret(e.token(rs, rsSecret, cc).want(http.StatusOK).Str("access_token"))); in["aud"] != testIssuer {
			t.Fatalf("client credentials with an empty resource: aud %v", in["aud"])
		}
		tv, _ := e.deviceClient("TV", false, false, "read")
		e.secret(e.clientPost("/oauth2/device_authorization", tv, "", url.Values{"resource": {""}, "scope": {""}}).want(http.StatusOK).Str("device_code"))

		// Twice, one copy empty: refused as before.
		if q := callback(t, b.do("GET", authorizeURL(id, p)+"&state=", nil), http.StatusFound); q.Get("error") != errInvalidRequest {
			t.Errorf("state twice, once empty: %v; want invalid_request", q)
		}
		for _, q := range []string{authorizeURL(id, p) + "&request_uri=&request_uri=", "/oauth2/authorize?" + url.Values{"client_id": {id}, "request_uri": {uri, uri}}.Encode()} {
			if w := b.do("GET", q, nil); w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
				t.Errorf("request_uri twice: %d Location=%q; want a 400 page", w.Code, w.Header().Get("Location"))
			}
		}
		cc["resource"] = []string{"", resourceA}
		e.token(rs, rsSecret, cc).wantOAuthError(http.StatusBadRequest, "invalid_target")
		cc = url.Values{"grant_type": {"client_credentials"}, "scope": {"", "read"}}
		e.token(rs, rsSecret, cc).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
	}, withResources)
}

// TestNativeClientAskedEveryTime: a consent given to a public client
// redirecting to a loopback port is not remembered (RFC 8252 §8.6: another
// app on the device can listen there with the same client_id), first-party
// or not, while one given to a public client redirecting to https is.
func TestNativeClientAskedEveryTime(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	for _, c := range []struct {
		uri                    string
		firstParty, remembered bool
	}{{"http://127.0.0.1/cb", false, false}, {"http://127.0.0.1/cb", true, false}, {"https://app.example/cb", false, true}} {
		uri, remembered := c.uri, c.remembered
		id, _ := e.newClient(ClientSpec{Name: "App", Public: true, FirstParty: c.firstParty, RedirectURIs: []string{uri}, Scopes: []string{"read"}})
		p := newPKCE()
		b := e.browser()
		form := formOf(t, b.do("GET", authorizeURL(id, p, "redirect_uri", uri), nil).Body.String())
		form.Set("login", "ann")
		form.Set("password", "correct horse")
		form = formOf(t, b.do("POST", "/oauth2/authorize", form).Body.String())
		form.Set("action", "allow")
		if w := b.do("POST", "/oauth2/authorize", form); !strings.Contains(w.Header().Get("Location"), "code=") {
			t.Fatalf("%s: no code at the first authorization: %d %q", uri, w.Code, w.Header().Get("Location"))
		}
		w := b.do("GET", authorizeURL(id, p, "redirect_uri", uri, "prompt", "none"), nil)
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil || w.Code != http.StatusFound {
			t.Fatalf("%s: prompt=none: %d %q", uri, w.Code, w.Header().Get("Location"))
		}
		if q := loc.Query(); (q.Get("code") != "") != remembered || !remembered && q.Get("error") != errConsentRequired {
			t.Errorf("%s: prompt=none after a consent: %v; want a code: %v, else consent_required", uri, q, remembered)
		}
		e.secret(loc.Query().Get("code"))
	}
}

// TestAuthorizationRequestByPost: a client may send its authorization
// request as a POSTed form (OIDC Core §3.1.2.1: servers MUST take POST). It
// is read as a GET's query; without a CSRF token it is no form of ours, so
// the login fields it carries sign nobody in.
func TestAuthorizationRequestByPost(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	id, secret := e.webClient()
	p := newPKCE()
	target, _ := url.Parse(authorizeURL(id, p))
	request := target.Query()

	b := e.browser()
	if w := b.do("POST", "/oauth2/authorize", request); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
		t.Fatalf("authorization request by POST: %d %s; want the login page", w.Code, w.Body.String())
	}
	withLogin := url.Values{"login": {"ann"}, "password": {"correct horse"}}
	for k, v := range request {
		withLogin[k] = v
	}
	if w := b.do("POST", "/oauth2/authorize", withLogin); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) || b.cookies[cookieSession] != "" {
		t.Fatalf("login fields without a CSRF token: %d, session cookie %q; want the login page, nobody signed in", w.Code, b.cookies[cookieSession])
	}
	// Signed in and consented: the POSTed request gets its code (303).
	e.secret(b.signIn(authorizeURL(id, p), "ann", "correct horse"))
	q := callback(t, b.do("POST", "/oauth2/authorize", request), http.StatusSeeOther)
	if q.Get("state") != "st-123" {
		t.Fatalf("state %q", q.Get("state"))
	}
	e.token(id, secret, codeForm(e.secret(q.Get("code")), p)).want(http.StatusOK)
}

// A public client may name itself by Basic with an empty password, as
// requests-oauthlib and Postman do by default (a regression test: it was
// invalid_client); a secret beside it, or a confidential client's empty
// one, is still refused.
func TestPublicClientByBasicWithoutPassword(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}})
	p := newPKCE()
	code := e.secret(e.browser().signIn(authorizeURL(pub, p), "ann", "Ann-Password-1"))
	e.token(pub, "x", codeForm(code, p)).wantOAuthError(http.StatusUnauthorized, "invalid_client")
	r := e.token(pub, "", codeForm(code, p)).want(http.StatusOK)
	e.secret(r.Str("access_token"))
	e.formPost("/oauth2/revoke", pub, "", url.Values{"token": {e.secret(r.Str("refresh_token"))}}).want(http.StatusOK)
	web, _ := e.webClient()
	e.token(web, "", url.Values{"grant_type": {"client_credentials"}}).wantOAuthError(http.StatusUnauthorized, "invalid_client")
}

// In release mode every cookie the pages set is __Host- (so Secure, Path=/
// and no Domain: no sibling host can set or shadow it), HttpOnly and
// SameSite=Lax. Nothing else tested release mode's cookies: dropping the
// prefix or Secure failed no test.
func TestReleaseModeCookies(t *testing.T) {
	e := newEnv(t, store.SQLite, func(d *Deps) { d.Browser.Release = true })
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	id, _ := e.webClient()
	b := e.browser()
	seen := map[string]bool{}
	check := func(w *httptest.ResponseRecorder) {
		for _, c := range w.Result().Cookies() {
			seen[c.Name] = true
			if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("release-mode cookie %+v; want __Host-, Secure, HttpOnly, Path=/, no Domain, SameSite=Lax", c)
			}
		}
	}
	w := b.do("GET", authorizeURL(id, newPKCE()), nil)
	check(w)
	form := formOf(t, w.Body.String())
	form.Set("login", "ann")
	form.Set("password", "Ann-Password-1")
	check(b.do("POST", "/oauth2/authorize", form))
	if !seen["__Host-"+cookieCSRF] || !seen["__Host-"+cookieSession] {
		t.Fatalf("cookies set: %v; want the CSRF and the session cookie", seen)
	}
}
