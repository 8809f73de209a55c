package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/ratelimit"
	"oauth2-api/store"
)

// withDefaultBudgets sets the budgets of the contract's defaults:
// RATE_LIMIT_REQUESTS 100 per hour (API and pages, separately),
// LOGIN_RATE_LIMIT 5/m with a burst of 10, CLIENT_RATE_LIMIT 100/s with a
// burst of 200, ten times that for a public client over all addresses.
func withDefaultBudgets(d *Deps) {
	d.API = ratelimit.New(rate.Limit(100.0/3600), 100, 1000)
	d.Pages = ratelimit.New(rate.Limit(100.0/3600), 100, 1000)
	d.Creds = ratelimit.New(rate.Limit(5.0/60), 10, 1000)
	d.PerClient = ratelimit.NewNamed(100, 200, 1000)
	d.PublicClients = ratelimit.NewNamed(100*PublicClientShares, 200*PublicClientShares, 1000)
}

// A back end calls the OAuth back channel for all its users from one
// address: 2,000 introspections and userinfo requests at 100 a second (the
// default per-client budget) from one address get no 429, where the per-IP
// budget of the REST API (100 an hour) would have refused 1,900 of them.
// Failed client authentication, though, spends the address's login budget:
// after its burst, 429 in the OAuth shape.
func TestBudgets(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "read"}})
		rs, rsSecret := e.newClient(ClientSpec{Name: "gateway", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		p := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(id, p, "scope", "openid read"), "ann", "Ann-Password-1"))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		for i := 0; i < 2000; i++ {
			e.clock.Add(10 * time.Millisecond) // 100 a second
			if c := e.formPost("/oauth2/introspect", rs, rsSecret, url.Values{"token": {at}}).Code; c != http.StatusOK {
				t.Fatalf("introspection %d: %d; want 200 (the per-client budget allows 100/s)", i, c)
			}
			if c := e.request("GET", "/oauth2/userinfo", nil, bearer(at)...).Code; c != http.StatusOK {
				t.Fatalf("userinfo %d: %d; want 200", i, c)
			}
		}
		limited := 0
		for i := 0; i < 200; i++ {
			r := e.formPost("/oauth2/introspect", rs, "wrong-secret", url.Values{"token": {at}})
			switch r.Code {
			case http.StatusUnauthorized:
			case http.StatusTooManyRequests:
				limited++
				if r.Str("error") != "rate_limited" || r.Str("error_description") == "" || r.Header().Get("Retry-After") == "" {
					t.Fatalf("429 %s %v; want an RFC 6749-shaped body and Retry-After", r.Body.String(), r.Header())
				}
			default:
				t.Fatalf("failed client authentication %d: %d", i, r.Code)
			}
		}
		if limited < 180 {
			t.Fatalf("%d of 200 failed client authentications from one address were limited; want all but the burst of 10 (and a few refilled)", limited)
		}
		// The client that authenticates is not held back by them.
		e.formPost("/oauth2/introspect", rs, rsSecret, url.Values{"token": {at}}).want(http.StatusOK)
	}, withSigningKey(t, key, nil), withDefaultBudgets)
}

// A web page anyone visits can send form-encoded POSTs to the back channel
// with no preflight (fetch, mode no-cors): five failed client
// authentications from the visitor's browser had the fail2ban jail
// (mode=aggressive) ban their address. A request whose Origin is another
// site's is refused before any credential is read, not logged as a failed
// authentication; the ISSUER's own origin, CORS_ORIGINS' and a browser
// extension's (no web page's: it needs no CORS to read the answer) go on.
func TestOtherSitesCannotFailClientAuthentication(t *testing.T) {
	const spa = "https://spa.example"
	e := newEnv(t, store.SQLite, func(d *Deps) { d.CORSOrigins = []string{spa} })
	id, _ := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"wrong"}}.Encode()
	for _, path := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/par", "/oauth2/device_authorization"} {
		for _, origin := range []string{"https://evil.example", "null", e.deps.Tokens.Issuer + ".evil.example"} {
			before := strings.Count(e.logs.String(), "client authentication failed")
			e.request("POST", path, form, "Content-Type", "application/x-www-form-urlencoded", "Origin", origin).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
			if strings.Count(e.logs.String(), "client authentication failed") != before {
				t.Fatalf("POST %s from a page of %s logged a failed client authentication", path, origin)
			}
		}
		for _, origin := range []string{"", e.deps.Tokens.Issuer, spa, "chrome-extension://abcdefghijklmnopabcdefghijklmnop", "moz-extension://0b1c2d3e"} {
			e.request("POST", path, form, "Content-Type", "application/x-www-form-urlencoded", "Origin", origin).wantOAuthError(http.StatusUnauthorized, "invalid_client")
		}
		// Two Origin headers, an allowed one first: a proxy in front may
		// read the other, so refused (no browser sends two; the first was
		// read alone, and the request went on).
		req := httptest.NewRequest("POST", path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header["Origin"] = []string{spa, "https://evil.example"}
		e.serveRaw(req).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
	}
}

// Any page its visitor opens can have their browser POST to the routes on
// the login budget (no-cors, no preflight): ten such, and the visitor (and
// everyone behind their NAT) could not sign in for minutes. Such a request
// never checks a password (no SameSite=Lax cookie, no preflight, no
// Authorization header), so it no longer spends that budget: POST
// /oauth2/authorize (a client's page may send its authorization request by
// POST) spends the pages' instead, every other such route refuses it. A
// page of a CORS_ORIGINS origin spends it as before.
func TestOtherSitesCannotSpendTheLoginBudget(t *testing.T) {
	const spa = "https://spa.example"
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, _ := e.webClient()
		fromPage := func(path, site, origin string) int {
			req := httptest.NewRequest("POST", path, strings.NewReader("login=ann&password=guess&csrf_token=z"))
			req.RemoteAddr = "192.0.2.7:5555" // the visitor's browser's (browser.do)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", site)
			req.Header.Set("Origin", origin)
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			return w.Code
		}
		for _, path := range []string{"/oauth2/authorize", "/oauth2/device", "/email/verify", "/api/v1/auth/login",
			"/api/v1/auth/register", "/api/v1/auth/verify-email", "/api/v1/profile/password"} {
			for _, from := range [][2]string{{"cross-site", "https://evil.example"}, {"cross-site", "null"}, {"same-site", "https://blog.example.com"}} {
				for range 5 {
					code := fromPage(path, from[0], from[1])
					if code == http.StatusTooManyRequests || path != "/oauth2/authorize" && code != http.StatusForbidden {
						t.Fatalf("POST %s from a page of %s (%s): %d; want 403, or the pages' budget at /oauth2/authorize", path, from[1], from[0], code)
					}
				}
			}
		}
		e.browser().signIn(authorizeURL(id, newPKCE()), "ann", "Ann-Password-1") // the visitor's own
		// A page of CORS_ORIGINS spends it: its script reads the answers.
		limited := false
		for i := 0; i < 20 && !limited; i++ {
			limited = fromPage("/api/v1/auth/login", "cross-site", spa) == http.StatusTooManyRequests
		}
		if !limited {
			t.Fatal("a CORS_ORIGINS page's logins never spent the login budget")
		}
	}, withDefaultBudgets, func(d *Deps) { d.CORSOrigins = []string{spa} })
}

// Sec-Fetch-Site is the client's to write: a program that took the login
// form (its cookie and CSRF token) and posts it saying another site sent
// it was budgeted as a page, and had 99 passwords checked from one address
// at once against LOGIN_RATE_LIMIT's burst of 10, spread over accounts (a
// regression test). Our forms post from our own pages: such a post is
// refused, and the login budget holds.
func TestSpoofedSecFetchSiteChecksNoPassword(t *testing.T) {
	e := newEnv(t, store.SQLite, withDefaultBudgets)
	id, _ := e.webClient()
	for i := range 30 { // guesses spread over accounts: the per-account throttle does not bite
		e.createUser(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("user%d", i), "Right-Password-1", store.RoleUser)
	}
	b := e.browser()
	form := formOf(t, b.do("GET", authorizeURL(id, newPKCE()), nil).Body.String())
	checked := 0
	for i := range 30 {
		form.Set("login", fmt.Sprintf("user%d", i))
		form.Set("password", "wrong-guess")
		req := httptest.NewRequest("POST", "/oauth2/authorize", strings.NewReader(form.Encode()))
		req.RemoteAddr = "192.0.2.7:4444"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		for k, v := range b.cookies {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		if w := e.serveRaw(req); w.Code == http.StatusUnauthorized || strings.Contains(w.Body.String(), "Wrong email, username or password") {
			checked++
		} else if w.Code != http.StatusForbidden {
			t.Fatalf("guess %d: %d; want 403", i, w.Code)
		}
	}
	if checked > 0 {
		t.Fatalf("%d passwords checked for a form a browser would say another site posted; want none", checked)
	}
	// The same form from our own page is checked, on the login budget.
	form.Set("login", "user0")
	form.Set("password", "Right-Password-1")
	if w := b.do("POST", "/oauth2/authorize", form); w.Code == http.StatusForbidden || w.Code == http.StatusTooManyRequests {
		t.Fatalf("the form from our own page: %d", w.Code)
	}
}
