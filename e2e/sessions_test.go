package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"oauth2-api/store/storetest"
)

// The properties of API.md "Sessions and revocation" that cross instances:
// two servers on one PostgreSQL schema.

const e2eRedirect = "http://127.0.0.1:9/cb"

// authorizeQuery is an authorization request of c with a fresh PKCE pair.
func authorizeQuery(c client, seed string) (query, verifier string) {
	verifier, challenge := pkce(seed)
	return url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {e2eRedirect},
		"state": {"st"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}.Encode(), verifier
}

// browserSignIn signs in at s's authorization endpoint with a new browser
// (login form, then consent) and returns the browser and the code.
func browserSignIn(t testing.TB, s *server, c client, login, pass string) (*http.Client, string) {
	t.Helper()
	b := browser(t)
	q, _ := authorizeQuery(c, login)
	page := send(t, b, s.newRequest(t, http.MethodGet, "/oauth2/authorize?"+q, "", nil))
	if page.status != http.StatusOK || !bytes.Contains(page.body, []byte(`name="password"`)) {
		t.Fatalf("%s: authorize = %v; want the login page", s.name, page)
	}
	post := func(form url.Values) reply {
		return send(t, b, s.newRequest(t, http.MethodPost, "/oauth2/authorize", "application/x-www-form-urlencoded", strings.NewReader(form.Encode())))
	}
	form := hiddenFields(page.body)
	form.Set("login", login)
	form.Set("password", pass)
	r := post(form)
	if r.status == http.StatusOK && bytes.Contains(r.body, []byte(`value="allow"`)) {
		consent := hiddenFields(r.body)
		consent.Set("action", "allow")
		r = post(consent)
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("%s: sign-in = %v; want 303 with a code", s.name, r)
	}
	return b, loc.Query().Get("code")
}

// browserSignedOut: the browser's sign-in at s has ended, so the
// authorization endpoint shows the login form again (not a code).
func browserSignedOut(s *server, b *http.Client, c client, whose string) probe {
	return probe{what: whose + " browser sign-in ended (login form shown)", s: s, run: func(t testing.TB) (verdict, string) {
		q, _ := authorizeQuery(c, "probe")
		r := send(t, b, s.newRequest(t, http.MethodGet, "/oauth2/authorize?"+q, "", nil))
		switch {
		case r.status == http.StatusOK && bytes.Contains(r.body, []byte(`name="password"`)):
			return holds, "login form"
		case r.status == http.StatusFound:
			return notYet, "302 with a code: still signed in"
		}
		return broken, "want the login form or (not yet) 302; got " + r.String()
	}}
}

// codeRefused: exchanging code at s fails with invalid_grant.
func codeRefused(s *server, c client, code, verifier, whose string) probe {
	return probe{what: whose + " pending code refused", s: s, run: func(t testing.TB) (verdict, string) {
		body := "grant_type=authorization_code&code=" + url.QueryEscape(code) + "&redirect_uri=" + url.QueryEscape(e2eRedirect) + "&code_verifier=" + verifier
		r := s.form(t, "/oauth2/token", body, "Authorization", basic(c.ID, c.Secret))
		if r.status == http.StatusBadRequest && errorCode(r) == "invalid_grant" {
			return holds, r.String()
		}
		return broken, "want 400 invalid_grant (a code is spent by trying it); got " + r.String()
	}}
}

// TestLoginChecksBoundedAcrossInstances fires 60 logins at once for one
// account, half at each of two instances on one shared database, one of them
// with the right password: at most LOGIN_MAX_FAILURES of them may have
// their password checked (answered 200 or 401) before a success, and as
// many after it; the others answer 429.
func TestLoginChecksBoundedAcrossInstances(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			e := baseEnv(storetest.URL(t, dialect)).with("LOGIN_MAX_FAILURES", "5", "LOGIN_LOCKOUT", "15m")
			a := startServer(t, "A", e)
			b := startServer(t, "B", e)
			const pass = "Kim-pass-e2e-1"
			a.mustRegister(t, "kim@e2e.test", "kim", pass)
			const n = 60
			statuses := make([]int, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := []*server{a, b}[i%2]
					pw := fmt.Sprintf("Wrong-pass-e2e-%d", i)
					if i == n/2 {
						pw = pass
					}
					req, err := s.postJSON("/api/v1/auth/login", `{"login":"kim","password":"`+pw+`"}`)
					if err != nil {
						t.Error(err)
						return
					}
					<-start
					r, err := trySend(plainClient, req)
					if err != nil {
						t.Errorf("login %d: %v", i, err)
						return
					}
					statuses[i] = r.status
				}()
			}
			close(start)
			wg.Wait()
			checked, throttled := 0, 0
			for i, s := range statuses {
				switch s {
				case http.StatusOK, http.StatusUnauthorized:
					checked++
				case http.StatusTooManyRequests:
					throttled++
				default:
					t.Errorf("login %d: status %d", i, s)
				}
			}
			t.Logf("%d parallel logins on two instances: %d password checks, %d throttled (the right password: %d)", n, checked, throttled, statuses[n/2])
			// A success clears the count (API.md), so the attempts counted after it
			// get checks of their own: LOGIN_MAX_FAILURES more at most.
			limit := 5
			if statuses[n/2] == http.StatusOK {
				limit *= 2
			}
			if checked > limit {
				t.Fatalf("%d password checks of one account; want at most %d", checked, limit)
			}
		})
	}
}

// TestRevocationWithDatabaseCut: instance A reaches its database
// (PostgreSQL, MySQL) through a proxy the test cuts. A revocation or logout made while A's database is
// away answers 503 and changes nothing, not even on A; its retry, once the
// database is back, answers success and reaches instance B.
func TestRevocationWithDatabaseCut(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			raw := storetest.URL(t, dialect)
			proxy, viaProxy := storetest.NewProxy(t, raw)
			e := baseEnv(raw).with("ISSUER", "http://auth.e2e.test")
			b := startServer(t, "B", e)
			a := startServer(t, "A", e.with("DATABASE_URL", viaProxy))
			in := &instances{a: a, b: b, sec: &secrets{}}
			in.sec.add(jwtSecret)
			in.rs = createClient(t, e, "--name", "resource-server", "--grant-type", "client_credentials", "--resource-server")
			svc := createClient(t, e, "--name", "svc", "--grant-type", "client_credentials")
			in.sec.add(in.rs.Secret, svc.Secret)
			const pass = "Ray-pass-e2e-1"
			a.mustRegister(t, "ray@e2e.test", "ray", pass)
			tok := in.mustCCToken(t, a, svc)
			p := a.mustLogin(t, "ray", pass)
			in.sec.add(p.AccessToken, p.RefreshToken)
			in.atOnce(t, "before", in.active(a, tok, "svc's"), in.active(b, tok, "svc's"), profileWorks(b, p.AccessToken, "ray's"))

			proxy.Cut()
			if r := a.form(t, "/oauth2/revoke", "token="+url.QueryEscape(tok), "Authorization", basic(svc.ID, svc.Secret)); r.status != http.StatusServiceUnavailable {
				t.Fatalf("A: revoke with the database away = %v; want 503", r)
			}
			if r := a.json(t, http.MethodPost, "/api/v1/auth/logout", p.AccessToken, ""); r.status != http.StatusServiceUnavailable {
				t.Fatalf("A: logout with the database away = %v; want 503", r)
			}
			// Nothing was stored, so nothing took effect: not even on A, where a
			// retry must not look done while B still accepts the token.
			in.atOnce(t, "failed revocation", in.active(a, tok, "svc's"))
			proxy.Restore()

			retry(t, "A: revoke after the database is back", http.StatusOK, func() reply {
				return a.form(t, "/oauth2/revoke", "token="+url.QueryEscape(tok), "Authorization", basic(svc.ID, svc.Secret))
			})
			since := time.Now()
			retry(t, "A: logout after the database is back", http.StatusNoContent, func() reply {
				return a.json(t, http.MethodPost, "/api/v1/auth/logout", p.AccessToken, "")
			})
			in.reaches(t, "retried revocation and logout on A", since, in.inactive(b, tok, "svc's"), profileRefused(b, p.AccessToken, "ray's"),
				in.refreshFails(b, p.RefreshToken, "ray's"))
			in.stays(t, "retried revocation and logout on A", in.inactive(a, tok, "svc's"), in.inactive(b, tok, "svc's"),
				profileRefused(a, p.AccessToken, "ray's"), profileRefused(b, p.AccessToken, "ray's"))
			checkLog(t, a, in.sec.all())
			checkLog(t, b, in.sec.all())
		})
	}
}

// retry calls f, as a client would after a 503, until it answers want; any
// other answer, or none within 15 s, fails the test.
func retry(t testing.TB, what string, want int, f func() reply) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := f()
		switch {
		case r.status == want:
			return
		case r.status != http.StatusServiceUnavailable:
			t.Fatalf("%s = %v; want %d (or 503 while the database reconnects)", what, r, want)
		case time.Now().After(deadline):
			t.Fatalf("%s: still %v after 15 s", what, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBackchannelAcrossInstances: a browser sign-in made on A that gave a
// code to a relying party with a back-channel logout URI is announced to it
// when it ends on B (a password change there): which clients a sign-in
// reached is shared state, in the database.
func TestBackchannelAcrossInstances(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			e := baseEnv(storetest.URL(t, dialect)).with("ISSUER", "http://auth.e2e.test")
			key := t.TempDir() + "/signing.pem"
			runCLI(t, e, "", "keys", "generate", "--alg", "ES256", "--out", key)
			e = e.with("SIGNING_KEY", key)
			got := make(chan url.Values, 4)
			rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ParseForm() == nil {
					got <- r.PostForm
				}
			}))
			defer rp.Close()
			web := createClient(t, e, "--name", "rp", "--redirect-uri", e2eRedirect, "--backchannel-logout-uri", rp.URL+"/bc")
			const pass = "Ann-pass-e2e-bc-1"
			createUser(t, e, "ann@e2e.test", "ann", pass, false)
			a, b := startServer(t, "A", e), startServer(t, "B", e)

			browserSignIn(t, a, web, "ann", pass)
			session := b.mustLogin(t, "ann", pass)
			r := b.json(t, http.MethodPost, "/api/v1/profile/password", session.AccessToken,
				map[string]string{"current_password": pass, "new_password": "Ann-pass-e2e-bc-2"})
			if r.status != http.StatusNoContent {
				t.Fatalf("B: password change = %v; want 204", r)
			}
			var form url.Values
			select {
			case form = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no logout token reached the relying party after the password change on B")
			}
			parts := strings.Split(form.Get("logout_token"), ".")
			if len(parts) != 3 {
				t.Fatalf("logout_token %q: not a JWT", form.Get("logout_token"))
			}
			header, _ := base64.RawURLEncoding.DecodeString(parts[0])
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var c struct {
				Iss, Aud, Sid, Sub string
				Events             map[string]json.RawMessage
			}
			if err := json.Unmarshal(payload, &c); err != nil || c.Iss != "http://auth.e2e.test" || c.Aud != web.ID || c.Sid == "" || c.Sub == "" ||
				c.Events["http://schemas.openid.net/event/backchannel-logout"] == nil || !strings.Contains(string(header), `"typ":"logout+jwt"`) {
				t.Fatalf("logout token %s.%s: want iss, aud %s, sid, sub and the back-channel event (%v)", header, payload, web.ID, err)
			}
			// Stopped, each instance has sent every logout token it queued
			// (serve drains the queue): a second one, however late, is here.
			for _, s := range []*server{a, b} {
				s.signal(t, syscall.SIGTERM)
				select {
				case <-s.done:
				case <-time.After(30 * time.Second):
					t.Fatalf("%s has not exited 30s after SIGTERM", s.name)
				}
			}
			select {
			case more := <-got:
				t.Fatalf("a second logout token for one sign-in: %v", more)
			default:
			}
		})
	}
}
