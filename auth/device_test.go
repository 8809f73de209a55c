package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// --- helpers -------------------------------------------------------------

const (
	errAuthorizationPending = "authorization_pending"
	errSlowDown             = "slow_down"
	errExpiredToken         = "expired_token"
)

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// deviceClient registers a client of the device grant (and refresh
// tokens), public unless secret is wanted.
func (e *env) deviceClient(name string, confidential, firstParty bool, scopes ...string) (id, secret string) {
	return e.newClient(ClientSpec{Name: name, Public: !confidential, FirstParty: firstParty, Scopes: scopes,
		GrantTypes: []string{grantDeviceCode, grantRefreshToken}})
}

// clientPost posts form to path as the client: Basic with a secret,
// client_id in the body without one.
func (e *env) clientPost(path, id, secret string, form url.Values) response {
	e.t.Helper()
	if secret == "" {
		form = cloneValues(form)
		form.Set("client_id", id)
		return e.formPost(path, "", "", form)
	}
	return e.formPost(path, id, secret, form)
}

// deviceAuth is a device authorization response.
type deviceAuth struct {
	deviceCode, userCode, uri, complete string
}

// startDevice asks for a device code and checks the answer's form.
func (e *env) startDevice(id, secret, scope string) deviceAuth {
	e.t.Helper()
	form := url.Values{}
	if scope != "" {
		form.Set("scope", scope)
	}
	r := e.clientPost("/oauth2/device_authorization", id, secret, form).want(http.StatusOK)
	m := r.JSON()
	d := deviceAuth{e.secret(r.Str("device_code")), e.secret(r.Str("user_code")), r.Str("verification_uri"), r.Str("verification_uri_complete")}
	if len(d.deviceCode) != token.OpaqueLen || !userCodeRE.MatchString(d.userCode) ||
		d.uri != testIssuer+"/oauth2/device" || d.complete != d.uri+"?user_code="+d.userCode ||
		m["expires_in"] != 600.0 || m["interval"] != 5.0 {
		e.t.Fatalf("device authorization response %s", r.Body.String())
	}
	if r.Header().Get("Cache-Control") != "no-store" {
		e.t.Fatalf("device authorization without no-store: %v", r.Header())
	}
	return d
}

// poll is one device token request.
func (e *env) poll(id, secret, deviceCode string) response {
	e.t.Helper()
	return e.clientPost("/oauth2/token", id, secret, url.Values{"grant_type": {grantDeviceCode}, "device_code": {deviceCode}})
}

// pageForm GETs the device page (from the verification_uri_complete when
// complete is set) and returns its form.
func (b *browser) pageForm(target string) url.Values {
	b.e.t.Helper()
	w := b.do("GET", target, nil)
	if w.Code != http.StatusOK {
		b.e.t.Fatalf("GET %s: %d %s", target, w.Code, w.Body.String())
	}
	return formOf(b.e.t, w.Body.String())
}

// enterCode types code into the device page and returns the answer.
func (b *browser) enterCode(code string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	form := b.pageForm("/oauth2/device")
	form.Set("user_code", code)
	return b.do("POST", "/oauth2/device", form)
}

// post submits the page's form with fields set.
func (b *browser) post(page *httptest.ResponseRecorder, fields ...string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	form := formOf(b.e.t, page.Body.String())
	for i := 0; i+1 < len(fields); i += 2 {
		form.Set(fields[i], fields[i+1])
	}
	return b.do("POST", "/oauth2/device", form)
}

func wantPage(t testing.TB, w *httptest.ResponseRecorder, status int, shows ...string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d; want %d: %s", w.Code, status, w.Body.String())
	}
	for _, s := range shows {
		if !strings.Contains(w.Body.String(), s) {
			t.Fatalf("page does not show %q:\n%s", s, w.Body.String())
		}
	}
}

const (
	loginPage   = `name="password"`
	consentPage = `value="allow"`
	devicePage  = `name="user_code" type="text"`
	donePage    = "You may return to your device"
)

// approve drives a browser through the device page: the code, the login
// if asked, the consent with action if asked; it returns the last page.
func (b *browser) approve(code, login, password, action string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	w := b.enterCode(code)
	if strings.Contains(w.Body.String(), loginPage) {
		w = b.post(w, "login", login, "password", password)
	}
	if strings.Contains(w.Body.String(), consentPage) {
		w = b.post(w, "action", action)
	}
	return w
}

// --- tests ---------------------------------------------------------------

// The whole flow: device authorization, polls while the user decides, the
// page (code typed loosely, sign-in, consent naming the client and its
// scopes, the end page), then the tokens, as for a code: a session with a
// refresh token, an ID token for openid whose sid is the browser sign-in,
// userinfo. The code is redeemed once: a second redemption is
// invalid_grant and ends the session it started.
func TestDeviceFlow(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		id, _ := e.deviceClient("Living Room TV", false, false, "openid", "profile", "read")

		meta := e.request("GET", "/.well-known/oauth-authorization-server", nil).want(http.StatusOK).JSON()
		grants, _ := meta["grant_types_supported"].([]any)
		if meta["device_authorization_endpoint"] != testIssuer+"/oauth2/device_authorization" || !slices.Contains(grants, any(grantDeviceCode)) {
			t.Fatalf("metadata %v; want device_authorization_endpoint and the device grant", meta)
		}

		d := e.startDevice(id, "", "openid read")
		e.poll(id, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)

		// The link with the code fills it in; the user still sends it.
		b := e.browser()
		form := b.pageForm(strings.TrimPrefix(d.complete, testIssuer))
		if form.Get("csrf_token") == "" {
			t.Fatal("device page without a CSRF token")
		}
		w := b.do("GET", strings.TrimPrefix(d.complete, testIssuer), nil)
		wantPage(t, w, http.StatusOK, `value="`+d.userCode+`"`)
		if csp := w.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "form-action 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			w.Header().Get("X-Frame-Options") != "DENY" {
			t.Fatalf("device page headers %v", w.Header())
		}

		// Typed loosely: lower case, spaces instead of the dash.
		loose := strings.ToLower(d.userCode[:4]) + "  " + strings.ToLower(d.userCode[5:]) + " "
		w = b.enterCode(loose)
		wantPage(t, w, http.StatusOK, loginPage, "Living Room TV", `action="/oauth2/device"`, `name="user_code" value="`+d.userCode+`"`)
		e.clock.Add(5 * time.Second)
		e.poll(id, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)
		w = b.post(w, "login", "ann", "password", "correct horse")
		wantPage(t, w, http.StatusOK, consentPage, "Living Room TV", "<code>openid</code>", "<code>read</code>", "<code>"+d.userCode+"</code>", "Allow only if this code is displayed on a device in front of you")
		if strings.Contains(w.Body.String(), "profile") {
			t.Fatal("the consent page shows a scope the device did not ask for")
		}
		w = b.post(w, "action", "allow")
		wantPage(t, w, http.StatusOK, "Device connected", "Living Room TV", donePage)

		e.clock.Add(5 * time.Second)
		r := e.poll(id, "", d.deviceCode).want(http.StatusOK)
		at, rt, idt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token")), e.secret(r.Str("id_token"))
		if r.Str("token_type") != "Bearer" || r.Str("scope") != "openid read" || rt == "" || idt == "" || r.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("token response %s %v", r.Body.String(), r.Header())
		}
		c := e.claimsOf(at)
		if c.Subject != store.FormatID(u.ID) || c.ClientID != id || c.SessionID == "" || c.AuthTime == 0 {
			t.Fatalf("access token claims %+v", c)
		}
		ic, err := e.deps.Tokens.Verifier.Parse(idt, token.Expect{Type: token.TypeID, Issuer: testIssuer, Audience: id}, e.clock.Now())
		if err != nil {
			t.Fatalf("id_token: %v", err)
		}
		sess, _, _ := currentSession(context.Background(), e.db, e.deps.Browser, cookieRequest(b), e.clock.Now())
		if sess == nil || ic.Subject != c.Subject || ic.SessionID != sess.SID || ic.Nonce != "" || ic.AuthTime != c.AuthTime || ic.AtHash != token.HalfHash(token.ES256, at) {
			t.Fatalf("id_token claims %+v (browser sign-in %+v)", ic, sess)
		}
		if ui := e.request("GET", "/oauth2/userinfo", nil, bearer(at)...).want(http.StatusOK).JSON(); ui["sub"] != c.Subject {
			t.Fatalf("userinfo %v", ui)
		}
		r = e.clientPost("/oauth2/token", id, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).want(http.StatusOK)
		at2 := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))

		// Redeemed once: again is invalid_grant, and the session it started ends.
		e.clock.Add(5 * time.Second)
		e.poll(id, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		for _, tok := range []string{at, at2} {
			e.request("GET", "/oauth2/userinfo", nil, bearer(tok)...).want(http.StatusUnauthorized)
		}
		// The code cannot be entered again either.
		wantPage(t, b.enterCode(d.userCode), http.StatusBadRequest, "wrong or has expired")
	}, withSigningKey(t, key, nil))
}

// cookieRequest is a request carrying the browser's cookies.
func cookieRequest(b *browser) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for k, v := range b.cookies {
		r.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	return r
}

// Every refusal: at the device authorization endpoint (a client not
// registered for the grant, bad client authentication, scopes), and at the
// token endpoint (no code, an unknown one, another client's, a denial, an
// expiry, the user deactivated or signed out before the redemption).
func TestDeviceErrors(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read", "write")
		cli, cliSecret := e.deviceClient("CLI", true, false, "read")
		web, webSecret := e.webClient()

		// Device authorization.
		e.clientPost("/oauth2/device_authorization", web, webSecret, url.Values{}).wantOAuthError(http.StatusBadRequest, errUnauthorizedClient)
		e.clientPost("/oauth2/device_authorization", cli, "wrong", url.Values{}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		e.clientPost("/oauth2/device_authorization", cli, "", url.Values{}).wantOAuthError(http.StatusUnauthorized, errInvalidClient) // confidential: its secret is required
		e.clientPost("/oauth2/device_authorization", "no-such-client", "", url.Values{}).wantOAuthError(http.StatusUnauthorized, errInvalidClient)
		e.clientPost("/oauth2/device_authorization", tv, "", url.Values{"scope": {"admin"}}).wantOAuthError(http.StatusBadRequest, errInvalidScope)
		e.startDevice(cli, cliSecret, "") // a confidential client, by its secret
		tvOpenID, _ := e.deviceClient("TV2", false, false, "openid")
		e.clientPost("/oauth2/device_authorization", tvOpenID, "", url.Values{"scope": {"openid"}}).wantOAuthError(http.StatusBadRequest, errInvalidScope) // no signing key

		// The token endpoint.
		d := e.startDevice(tv, "", "read")
		e.clientPost("/oauth2/token", tv, "", url.Values{"grant_type": {grantDeviceCode}}).wantOAuthError(http.StatusBadRequest, errInvalidRequest)
		e.poll(tv, "", "x").wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.poll(tv, "", token.NewOpaque()).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.poll(web, webSecret, d.deviceCode).wantOAuthError(http.StatusBadRequest, errUnauthorizedClient) // not registered for the grant
		e.poll(cli, cliSecret, d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)       // another client's
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)

		// Denied: access_denied, on every later poll too; the page says so.
		b := e.browser()
		wantPage(t, b.approve(d.userCode, "ann", "correct horse", "deny"), http.StatusOK, "Access denied", "TV", donePage)
		e.clock.Add(5 * time.Second)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAccessDenied)
		e.clock.Add(5 * time.Second)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAccessDenied)
		wantPage(t, b.enterCode(d.userCode), http.StatusBadRequest, "wrong or has expired")

		// Expired, still pending: expired_token; the page refuses the code.
		d = e.startDevice(tv, "", "read")
		e.clock.Add(600 * time.Second)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errExpiredToken)
		wantPage(t, b.enterCode(d.userCode), http.StatusBadRequest, "wrong or has expired")

		// Approved, but not redeemed in time: expired_token.
		d = e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.clock.Add(599 * time.Second)
		e.poll(tv, "", d.deviceCode).want(http.StatusOK) // at 599 s it still works
		d = e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.clock.Add(600 * time.Second)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errExpiredToken)

		// Approved, then the browser sign-in ends before the redemption (a
		// password change ends every other session): the approval goes with it.
		d = e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		at, _ := e.login("ann", "correct horse")
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "correct horse", "new_password": "battery staple"}, bearer(at)...).want(http.StatusNoContent)
		e.secret("battery staple")
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)

		// Approved, then the user deactivated: invalid_grant.
		b = e.browser()
		d = e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "battery staple", "allow"), http.StatusOK, "Device connected")
		u, _ := e.db.UserByUsername(context.Background(), "ann")
		inactive := false
		root, _ := e.admin()
		if _, _, err := e.db.UpdateUserAdmin(context.Background(), root.ID, u.ID, nil, &inactive, time.Hour, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
}

// A device request approved in a sign-in's last minutes outlives the
// sign-in's row, which the purge takes at its expiry; a password change
// then ends the approval too. A regression test: the device got tokens
// after the change.
func TestDeviceApprovalOfPurgedSignInEndsWithPasswordChange(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		b := e.browser()
		wantPage(t, b.approve(e.startDevice(tv, "", "read").userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.clock.Add(e.deps.Browser.SessionTTL - time.Minute) // the sign-in's last minute
		d := e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "", "", "allow"), http.StatusOK, "Device connected")
		e.clock.Add(2 * time.Minute)
		if err := e.db.Purge(context.Background(), store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: 90 * 24 * time.Hour}, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		at, _ := e.login("ann", "correct horse")
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "correct horse", "new_password": e.secret("battery staple")}, bearer(at)...).want(http.StatusNoContent)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
}

// Another client cannot redeem a code, before or after approval, and its
// polls neither count for nor disturb the code's own client; the code is
// redeemed once, and concurrent redemptions give one pair.
func TestDeviceRedemption(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		other, otherSecret := e.deviceClient("Other", true, false, "read")
		d := e.startDevice(tv, "", "")
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)
		e.poll(other, otherSecret, d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.poll(other, otherSecret, d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		wantPage(t, e.browser().approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.poll(other, otherSecret, d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.clock.Add(5 * time.Second) // the other client's polls did not count as the TV's
		results := make(chan response, 8)
		for range 8 {
			go func() { results <- e.poll(tv, "", d.deviceCode) }()
		}
		ok := 0
		for range 8 {
			r := <-results
			switch r.Code {
			case http.StatusOK:
				ok++
				e.secret(r.Str("access_token"))
				e.secret(r.Str("refresh_token"))
			case http.StatusBadRequest:
				if r.Str("error") != errInvalidGrant {
					t.Errorf("concurrent redemption: %s", r.Body.String())
				}
			default:
				t.Errorf("concurrent redemption: %d %s", r.Code, r.Body.String())
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 8 concurrent redemptions got tokens; want exactly 1", ok)
		}
	})
}

// Polling faster than the interval is slow_down, and the interval grows by
// 5 s each time (RFC 8628 §3.5), with a second of slack; the first poll is
// free.
func TestDeviceSlowDown(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "")
		steps := []struct {
			after time.Duration
			want  string
			says  string
		}{
			{0, errAuthorizationPending, ""},         // the first poll, at once
			{time.Second, errSlowDown, "10 seconds"}, // 1 s < 5 s: the interval becomes 10 s
			{6 * time.Second, errSlowDown, "15 seconds"},
			{14 * time.Second, errAuthorizationPending, ""}, // 15 s less the second of slack
			{14*time.Second - time.Millisecond, errSlowDown, "20 seconds"},
			{20 * time.Second, errAuthorizationPending, ""},
			{25 * time.Second, errAuthorizationPending, ""},
		}
		for i, s := range steps {
			e.clock.Add(s.after)
			r := e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, s.want)
			if !strings.Contains(r.Str("error_description"), s.says) {
				t.Fatalf("step %d: %s; want it to say %q", i, r.Body.String(), s.says)
			}
		}
		// Once decided, the pace no longer matters: a denial is answered at once.
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		e.browser().approve(d.userCode, "ann", "correct horse", "deny")
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAccessDenied)
	})
}

// A run of wrong user codes is throttled, per address and per browser,
// whatever the browser: 1,000 wrong codes from one address, each from a
// fresh browser, get 20 answers and then 429 with Retry-After, and so does
// the right code from there; another address is not held back; the count
// counts only wrong codes; it ends with the LOGIN_LOCKOUT window.
func TestDeviceUserCodeGuessing(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "")
		const attacker = "198.51.100.9"

		// Right codes are not counted: 30 of them from one browser pass.
		b := e.browser()
		for i := 0; i < 30; i++ {
			wantPage(t, b.enterCode(d.userCode), http.StatusOK, loginPage)
		}

		answered, limited := 0, 0
		for i := 0; i < 1000; i++ {
			w := e.guess(attacker, wrongCode(d.userCode, i))
			switch w.Code {
			case http.StatusBadRequest:
				answered++
				if limited > 0 {
					t.Fatalf("guess %d answered after the throttle began", i)
				}
			case http.StatusTooManyRequests:
				limited++
				if w.Header().Get("Retry-After") == "" {
					t.Fatalf("429 without Retry-After")
				}
			default:
				t.Fatalf("guess %d: %d %s", i, w.Code, w.Body.String())
			}
		}
		if answered != deviceMaxWrongPerAddress || limited != 1000-deviceMaxWrongPerAddress {
			t.Fatalf("%d guesses answered, %d throttled; want %d answered", answered, limited, deviceMaxWrongPerAddress)
		}
		// Throttled, the right code is refused too: nothing is revealed. (A
		// second passes first, so that the per-IP request budget, 1,000 a
		// second here, is not what answers.)
		e.clock.Add(time.Second)
		wantPage(t, e.guess(attacker, d.userCode), http.StatusTooManyRequests, "Too many wrong codes")
		// Another address (the person's own browser) goes on.
		wantPage(t, b.enterCode(d.userCode), http.StatusOK, loginPage)

		// Per browser: 5 wrong codes, then 429 from that browser, even with
		// the right code, while a fresh browser at the same address goes on.
		for i := 0; i < deviceMaxWrongPerBrowser; i++ {
			wantPage(t, b.enterCode(wrongCode(d.userCode, i)), http.StatusBadRequest, "wrong or has expired")
		}
		wantPage(t, b.enterCode(d.userCode), http.StatusTooManyRequests)
		wantPage(t, e.browser().enterCode(d.userCode), http.StatusOK, loginPage)

		// After the window, the address may try again.
		e.clock.Add(e.deps.Throttle.Window)
		d = e.startDevice(tv, "", "")
		wantPage(t, e.guess(attacker, d.userCode), http.StatusOK, loginPage)
	})
}

// guess posts code to the device page from addr, as a fresh browser (a
// new CSRF cookie, made the way the server makes them, without a GET).
func (e *env) guess(addr, code string) *httptest.ResponseRecorder {
	e.t.Helper()
	cookie := token.NewOpaque()
	form := url.Values{"user_code": {code}, "csrf_token": {e.deps.Browser.csrfFor(cookie)}}
	req := httptest.NewRequest("POST", "/oauth2/device", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = addr + ":5555"
	req.AddCookie(&http.Cookie{Name: cookieCSRF, Value: cookie})
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

// wrongCode is the i-th well-formed code other than right.
func wrongCode(right string, i int) string {
	const a = token.UserCodeAlphabet
	c := []byte{a[i%20], a[i/20%20], a[i/400%20], 'B', 'C', 'D', 'F', 'G'}
	if s := string(c[:4]) + "-" + string(c[4:]); s != right {
		return s
	}
	return "ZZZZ-ZZZZ"
}

// Typed codes are forgiven case, dashes and spaces, nothing else.
func TestNormalizeUserCode(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"BCDF-GHJK", "BCDFGHJK"},
		{"bcdf-ghjk", "BCDFGHJK"},
		{" bcdf ghjk ", "BCDFGHJK"},
		{"BcDfGhJk", "BCDFGHJK"},
		{"B-C-D-F-G-H-J-K", "BCDFGHJK"},
		{"BCDF\u2013GHJK", "BCDFGHJK"}, // an en dash, as a word processor makes it
		{"BCDF\u00a0GHJK", "BCDFGHJK"}, // a no-break space
		{"BCDF\tGHJK\n", "BCDFGHJK"},
		{"BCDF-GHJ", ""},                           // 7 letters
		{"BCDF-GHJKL", ""},                         // 9
		{"BCDF-GHJA", ""},                          // a vowel is not in the alphabet
		{"BCDF-GHJ1", ""},                          // nor a digit
		{"BCDF_GHJK", ""},                          // an underscore is not a dash
		{"\uff22CDF-GHJK", ""},                     // a fullwidth B
		{"BCDF-GHJ\u017f", ""},                     // a long s, which Unicode upper-cases to S
		{"BCDF-GHJ\u212a", ""},                     // the Kelvin sign, which lower-cases to k
		{"", ""},                                   //
		{strings.Repeat(" ", 70) + "BCDFGHJK", ""}, // too long to look at
	} {
		got, ok := normalizeUserCode(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("normalizeUserCode(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		c := token.NewUserCode()
		if n, ok := normalizeUserCode(c); !ok || n != c {
			t.Fatalf("NewUserCode() = %q, which does not normalize to itself", c)
		}
		seen[c] = true
	}
	if len(seen) < 1999 {
		t.Fatalf("2000 user codes, %d distinct", len(seen))
	}
}

// The page's forms need their CSRF token: without it, or with another
// browser's, the answer is 403 and the code is neither looked up nor
// counted; a malformed code is not counted either.
func TestDevicePageCSRF(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "")
		b, other := e.browser(), e.browser()
		otherForm := other.pageForm("/oauth2/device")
		form := b.pageForm("/oauth2/device")
		for i := 0; i < 30; i++ {
			for _, f := range []url.Values{
				{"user_code": {wrongCode(d.userCode, i)}},
				{"user_code": {wrongCode(d.userCode, i)}, "csrf_token": {otherForm.Get("csrf_token")}},
				{"user_code": {d.userCode}, "csrf_token": {"x"}},
			} {
				wantPage(t, b.do("POST", "/oauth2/device", f), http.StatusForbidden, "Request refused")
			}
			form.Set("user_code", "not a code")
			wantPage(t, b.do("POST", "/oauth2/device", form), http.StatusBadRequest, "Enter the 8 letters")
		}
		// None of that counted: the right code goes through, then the login
		// and consent forms need their tokens too.
		w := b.enterCode(d.userCode)
		wantPage(t, w, http.StatusOK, loginPage)
		f := formOf(t, w.Body.String())
		f.Set("login", "ann")
		f.Set("password", "correct horse")
		f.Del("csrf_token")
		wantPage(t, b.do("POST", "/oauth2/device", f), http.StatusForbidden)
		w = b.post(w, "login", "ann", "password", "correct horse")
		wantPage(t, w, http.StatusOK, consentPage)
		f = formOf(t, w.Body.String())
		f.Set("action", "allow")
		f.Set("csrf_token", otherForm.Get("csrf_token"))
		wantPage(t, b.do("POST", "/oauth2/device", f), http.StatusForbidden)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, "Device connected")
	})
}

// Sign-in is the authorization endpoint's (a signed-in browser is not
// asked again, a wrong password is throttled as there), but consent is
// asked every time (RFC 8628 §3.3.1, §5.4): a verification_uri_complete
// mailed by someone else, opened in a signed-in browser and sent as filled
// in, must not approve their device in one click. So neither a consent
// given before nor a first-party client skips the consent page, which
// names the client, the account and the scopes and shows the user code;
// only its POST approves. A grant is still remembered, for the
// authorization endpoint.
func TestDeviceConsentEveryTime(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ann := e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read", "write")
		b := e.browser()
		d := e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.secret(e.poll(tv, "", d.deviceCode).want(http.StatusOK).Str("access_token"))

		// Signed in and consented: the code, sent as the link fills it in
		// (TestDeviceFlow), shows the consent page with the code; its form
		// without the consent field approves nothing; the page's own POST
		// does.
		d = e.startDevice(tv, "", "read")
		w := b.enterCode(d.userCode)
		wantPage(t, w, http.StatusOK, consentPage, "<bdi>TV</bdi>", "<bdi>ann</bdi>", "<code>read</code>", "<code>"+d.userCode+"</code>")
		forged := formOf(t, w.Body.String())
		forged.Del("consent")
		forged.Set("action", "allow")
		wantPage(t, b.do("POST", "/oauth2/device", forged), http.StatusOK, loginPage)
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, errAuthorizationPending)
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, "Device connected", "TV", "ann", donePage)
		e.clock.Add(5 * time.Second)
		e.secret(e.poll(tv, "", d.deviceCode).want(http.StatusOK).Str("access_token"))

		// Denied there, after that consent: the device gets access_denied.
		d = e.startDevice(tv, "", "read")
		wantPage(t, b.approve(d.userCode, "", "", "deny"), http.StatusOK, "Access denied")
		e.poll(tv, "", d.deviceCode).wantOAuthError(http.StatusBadRequest, "access_denied")

		// More scopes: the page names them; the grant is remembered as the
		// authorization endpoint remembers consent.
		d = e.startDevice(tv, "", "read write")
		w = b.enterCode(d.userCode)
		wantPage(t, w, http.StatusOK, consentPage, "<code>write</code>", d.userCode)
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, "Device connected")
		e.secret(e.poll(tv, "", d.deviceCode).want(http.StatusOK).Str("access_token"))
		if granted, ok, err := e.db.ConsentedScope(context.Background(), ann.ID, tv, ""); err != nil || !ok || granted != "read write" {
			t.Fatalf("consent %q, %v, %v; want read write", granted, ok, err)
		}

		// First-party: the consent page too, signed in or not; a prompt=none
		// sent along means nothing at the device page.
		ours, _ := e.deviceClient("Our CLI", false, true, "read")
		d = e.startDevice(ours, "", "")
		form := b.pageForm("/oauth2/device")
		form.Set("user_code", d.userCode)
		form.Set("prompt", "none")
		w = b.do("POST", "/oauth2/device", form)
		wantPage(t, w, http.StatusOK, consentPage, "<bdi>Our CLI</bdi>", "<bdi>ann</bdi>", d.userCode)
		wantPage(t, b.post(w, "action", "allow"), http.StatusOK, "Device connected", "Our CLI")
		e.secret(e.poll(ours, "", d.deviceCode).want(http.StatusOK).Str("access_token"))
		d = e.startDevice(ours, "", "")
		fresh := e.browser()
		w = fresh.enterCode(d.userCode)
		wantPage(t, w, http.StatusOK, loginPage)
		w = fresh.post(w, "login", "ann", "password", "correct horse")
		wantPage(t, w, http.StatusOK, consentPage, "<bdi>Our CLI</bdi>", d.userCode)
		wantPage(t, fresh.post(w, "action", "allow"), http.StatusOK, "Device connected")

		// A wrong password is the login form's answer, throttled as there.
		d = e.startDevice(tv, "", "read")
		mallory := e.browser()
		w = mallory.enterCode(d.userCode)
		for i := 0; i < e.deps.Throttle.Max; i++ {
			w = mallory.post(w, "login", "ann", "password", "wrong horse")
			wantPage(t, w, http.StatusUnauthorized, "Wrong email, username or password")
		}
		e.secret("wrong horse")
		wantPage(t, mallory.post(w, "login", "ann", "password", "wrong horse"), http.StatusTooManyRequests)
	})
}

// A DPoP proof at the device token request binds the tokens as at any
// grant: cnf.jkt in the access token, token_type DPoP, and a public
// client's refresh token usable only with the key.
func TestDeviceDPoP(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "")
		e.browser().approve(d.userCode, "ann", "correct horse", "allow")
		k := newDPoPKey(t)
		form := url.Values{"grant_type": {grantDeviceCode}, "device_code": {d.deviceCode}}
		redeemed := k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())
		r := e.dpopPost("/oauth2/token", tv, "", form, redeemed).want(http.StatusOK)
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		if c := e.claimsOf(at); r.Str("token_type") != "DPoP" || c.Cnf == nil || c.Cnf.JKT != k.jkt {
			t.Fatalf("token response %s, claims %+v; want a DPoP-bound token", r.Body.String(), c)
		}
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		e.dpopPost("/oauth2/token", tv, "", refresh, "").wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		// The redemption spent its proof: not again with the refresh token,
		// nor with the device code (a replayed request: the session goes on).
		e.dpopPost("/oauth2/token", tv, "", refresh, redeemed).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		e.dpopPost("/oauth2/token", tv, "", form, redeemed).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		r = e.dpopPost("/oauth2/token", tv, "", refresh, k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		rt = e.secret(r.Str("refresh_token"))
		// The device code again with a fresh proof is a replay of the grant:
		// it ends the session it started.
		e.dpopPost("/oauth2/token", tv, "", form, k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		refresh.Set("refresh_token", rt)
		e.dpopPost("/oauth2/token", tv, "", refresh, k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	})
}

// Registering the device grant: with refresh_token and without redirect
// URIs; nothing else about the rules changes.
func TestDeviceClientRegistration(t *testing.T) {
	e := newEnv(t, store.SQLite)
	now := e.clock.Now()
	for _, c := range []struct {
		spec ClientSpec
		ok   bool
	}{
		{ClientSpec{Name: "TV", Public: true, GrantTypes: []string{grantDeviceCode}}, true},
		{ClientSpec{Name: "TV", Public: true, GrantTypes: []string{grantDeviceCode, grantRefreshToken}}, true},
		{ClientSpec{Name: "TV", GrantTypes: []string{grantDeviceCode, grantRefreshToken}}, true},
		{ClientSpec{Name: "TV", GrantTypes: []string{grantRefreshToken}}, false},
		{ClientSpec{Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device"}}, false},
	} {
		_, _, err := CreateClient(context.Background(), e.db, 0, c.spec, false, nil, now)
		if (err == nil) != c.ok {
			t.Errorf("CreateClient(%v) = %v; want ok %v", c.spec.GrantTypes, err, c.ok)
		}
	}
}

// The keyed hashes a browser or a stored row holds are those of earlier
// releases: a change would refuse every CSRF token and consent form in
// flight, lose every pending device request (stored by userCodeMAC), and
// refuse the DPoP nonces instances not yet upgraded hand out.
func TestKeyedHashesUnchanged(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	b := &Browser{Key: key}
	ts := &Tokens{NonceKey: key}
	for _, c := range []struct{ what, got, want string }{
		{"csrfFor", b.csrfFor("cookie"), "eCdjwiJynOe-K4zcvuUTAPaWf8KwuN0BI8nMnRjY-eQ"},
		{"userCodeMAC", b.userCodeMAC("BCDFGHJK"), "9ccb481c62b9a727b99bdeb9336248d9d6f5c1bafbf84f127ef4163aeb95a98d"},
		{"dpopNonce", ts.dpopNonce(time.Unix(1_700_000_000, 0)), "r8GmXMcL1yGxPd-NsYkphLWP"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s; want %s", c.what, c.got, c.want)
		}
	}
}

// HEAD /oauth2/device, which the GET route takes (on the pages' budget),
// is never a form: it signed in with a posted login and password past an
// address's spent LOGIN_RATE_LIMIT, which only POST (the forms' budget)
// counts.
func TestDevicePageHEADIsNotAPost(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, _ := e.deviceClient("TV", false, false, "read")
		d := e.startDevice(tv, "", "")
		b := e.browser()
		login := b.enterCode(d.userCode)
		wantPage(t, login, http.StatusOK, loginPage)
		limited := false
		for i := 0; i < 50 && !limited; i++ {
			limited = b.post(login, "login", "user"+strconv.Itoa(i), "password", "guess").Code == http.StatusTooManyRequests
		}
		if !limited {
			t.Fatal("POST logins never reached LOGIN_RATE_LIMIT")
		}
		form := formOf(t, login.Body.String())
		form.Set("login", "ann")
		form.Set("password", "correct horse")
		w := b.do("HEAD", "/oauth2/device", form)
		if _, ok := b.cookies[cookieSession]; ok || strings.Contains(w.Body.String(), consentPage) {
			t.Fatalf("HEAD /oauth2/device with a login form: %d, signed in past the spent LOGIN_RATE_LIMIT", w.Code)
		}
	}, withDefaultBudgets)
}

// A device form that is malformed, too large or repeats a parameter is
// answered as such (400, 413), as at the authorization endpoint, whatever
// its CSRF token: it was a 403 "the form expired" page, which sent the user
// to reload a page that was not at fault.
func TestDevicePageMalformedForm(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	e := newEnv(t, store.SQLite, withReset(t, sink, nil, SMTPNoTLS))
	b := e.browser()
	csrf := "csrf_token=" + url.QueryEscape(b.pageForm("/oauth2/device").Get("csrf_token"))
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"a repeated user_code", csrf + "&user_code=BCDF-GHJK&user_code=BCDF-GHJK", http.StatusBadRequest},
		{"invalid UTF-8", csrf + "&user_code=%FF", http.StatusBadRequest},
		{"a body over the limit", csrf + "&user_code=" + strings.Repeat("A", httpx.MaxBody), http.StatusRequestEntityTooLarge},
	} {
		for _, path := range []string{"/oauth2/authorize", "/oauth2/device", "/password/reset"} {
			req := httptest.NewRequest("POST", path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.RemoteAddr = "192.0.2.7:4444"
			for k, v := range b.cookies {
				req.AddCookie(&http.Cookie{Name: k, Value: v})
			}
			if w := e.serveRaw(req); w.Code != c.want {
				t.Errorf("%s with %s: %d; want %d", path, c.name, w.Code, c.want)
			}
		}
	}
}

// The device flow's own 429s (a request over its address's share, user
// codes guessed past their throttle) count in oauth2_rate_limited_total,
// as every other budget's do: an operator alerting on it saw 0 through a
// flood of guesses.
func TestDeviceRateLimitsCounted(t *testing.T) {
	e := newEnv(t, store.SQLite)
	tv, _ := e.deviceClient("TV", false, false, "read")
	for range deviceMaxLivePerAddress {
		e.startDevice(tv, "", "")
	}
	e.clientPost("/oauth2/device_authorization", tv, "", url.Values{}).wantOAuthError(http.StatusTooManyRequests, "rate_limited")
	limited := 1
	for i := range 50 {
		if e.guess("198.51.100.9", wrongCode("ZZZZ-ZZZZ", i)).Code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 2 {
		t.Fatal("no user-code guess was throttled")
	}
	if want := fmt.Sprintf("oauth2_rate_limited_total %d\n", limited); !strings.Contains(e.metricsText(), want) {
		t.Fatalf("%d answers 429 rate_limited; metrics want %q:\n%s", limited, strings.TrimSpace(want), e.metricsText())
	}
}
