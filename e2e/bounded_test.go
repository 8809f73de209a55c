package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/store/storetest"
)

// TestConnectionCap: the real binary with MAX_CONNECTIONS=20. Connections
// in the middle of a request hold their places: beyond 20 of them /health
// is still answered while anything else is refused with 503, and once they
// close new ones are served again. Idle keep-alive connections do not: one
// client's 20 (the old code kept them until IdleTimeout, and a request a
// minute keeps them for ever) are closed from 18 open (7/8), and a new
// client is served.
func TestConnectionCap(t *testing.T) {
	s := startServer(t, "capped", sqliteEnv(t).with("MAX_CONNECTIONS", "20"))
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn, path string) int {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// 20 logins in progress: each has its 100 Continue, so its handler is
	// reading the body, which never comes. The server's ReadTimeout (15 s)
	// would end them; the checks below take far less.
	var held []net.Conn
	for i := 0; i < 20; i++ {
		c := dial()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(c, "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("login %d of 20: %q, %v; want 100 Continue", i, line, err)
		}
		held = append(held, c)
	}
	if st := get(dial(), "/api/v1/profile"); st != http.StatusServiceUnavailable {
		t.Fatalf("a 21st connection's request: %d; want 503", st)
	}
	if st := get(dial(), "/health"); st != http.StatusOK {
		t.Fatalf("/health on a 21st connection: %d; want 200", st)
	}
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(dial(), "/api/v1/profile") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("new connections still refused after the held ones closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One client's 20 idle keep-alive connections (/livez is answered even
	// beyond the limit, so all 20 get their answer on the old code too).
	for i := 0; i < 20; i++ {
		if st := get(dial(), "/livez"); st != http.StatusOK {
			t.Fatalf("idle connection %d of 20: %d; want 200", i, st)
		}
	}
	if st := get(dial(), "/api/v1/profile"); st != http.StatusUnauthorized {
		t.Fatalf("a new client beside 20 idle connections: %d; want 401 (served)", st)
	}
	// At least the one refused above (more if a retry came before the
	// server saw the held connections close), and both saturations.
	r := s.get(t, "/metrics", "")
	if r.status != http.StatusOK || !regexp.MustCompile(`(?m)^oauth2_connections_refused_total [1-9]`).Match(r.body) {
		t.Errorf("oauth2_connections_refused_total not counted: %s", clip(string(r.body), 200))
	}
	if !regexp.MustCompile(`(?m)^oauth2_connections_saturated_total [2-9]`).Match(r.body) {
		t.Errorf("oauth2_connections_saturated_total: want 2 (the logins, the idle connections): %s", clip(string(r.body), 200))
	}
}

// TestTablesBounded drives the real binary for 30 s with short lifetimes
// (access tokens 30 s, refresh tokens 20 s, lockout 2 s): logins, rotations,
// reuse, logouts, failed logins, browser sign-ins with code exchanges and
// sign-outs, forgot-password requests and verification links asked again; then it stops and checks that
// every table of per-request rows returns to (near) zero once the
// lifetimes have passed and the janitor has run. Reset and verification
// links are kept an hour (the per-account limits count them), so those
// tables are checked against their bound instead: 3 per account. Both databases, side by side.
func TestTablesBounded(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			url := storetest.URL(t, dialect)
			sink, _ := smtptest.Start(t, smtptest.Plain, false)
			e := baseEnv(url).with("ACCESS_TOKEN_TTL", "30s", "REFRESH_TOKEN_TTL", "20s", "LOGIN_LOCKOUT", "2s",
				"LOGIN_MAX_FAILURES", "3", "ENABLE_PASSWORD_RESET", "true", "SMTP_HOST", "127.0.0.1",
				"SMTP_PORT", strconv.Itoa(sink.Port()), "SMTP_TLS", "none", "SMTP_FROM", "auth@e2e.test")
			s := startServer(t, "bounded-"+dialect, e)
			const users = 6
			for i := 0; i < users; i++ {
				createUser(t, e, fmt.Sprintf("user%d@e2e.test", i), fmt.Sprintf("user%d", i), "Pass-bounded-1", false)
			}
			web := createClient(t, e, "--name", "web", "--redirect-uri", e2eRedirect)
			raw := storetest.Raw(t, dialect, url)
			// The first seven go to (near) zero; the links are kept an hour.
			tables := []string{"token_families", "refresh_tokens", "auth_codes", "sessions", "session_clients", "login_failures", "revocations",
				"reset_tokens", "email_verification_tokens"}
			counts := func() map[string]int {
				m := map[string]int{}
				for _, tb := range tables {
					var n int
					if err := raw.QueryRow("SELECT count(*) FROM " + tb).Scan(&n); err != nil {
						t.Errorf("count %s: %v", tb, err)
					}
					m[tb] = n
				}
				return m
			}

			stop := time.Now().Add(30 * time.Second)
			var wg sync.WaitGroup
			var ops atomic.Int64
			for w := 0; w < users; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					who := fmt.Sprintf("user%d", w)
					for i := 0; time.Now().Before(stop); i++ {
						boundedRound(t, s, web, who, i)
						ops.Add(1)
					}
				}()
			}
			peak := map[string]int{}
			for time.Now().Before(stop) {
				time.Sleep(5 * time.Second)
				for k, v := range counts() {
					peak[k] = max(peak[k], v)
				}
			}
			wg.Wait()
			t.Logf("%s: %d rounds of load; peak rows %v", dialect, ops.Load(), peak)

			// Revocations live longest: an access token's lifetime and a
			// minute after the last; the janitor runs every 15 s.
			deadline := time.Now().Add(150 * time.Second)
			for {
				c := counts()
				done := c["reset_tokens"] <= 3*users && c["email_verification_tokens"] <= 3*users
				for _, tb := range tables[:7] {
					done = done && c[tb] <= 2
				}
				if done {
					t.Logf("%s: rows %v, %v after the load stopped", dialect, c, time.Since(stop).Round(time.Second))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: rows %v 150 s after the load stopped; want every table near zero (the links at most %d)", dialect, c, 3*users)
				}
				time.Sleep(5 * time.Second)
			}
			mails := map[bool]int{}
			for _, m := range sink.Messages() {
				mails[strings.Contains(m.Data, "Subject: Verify your email address")]++
			}
			for verify, what := range map[bool]string{false: "reset", true: "verification"} {
				if n := mails[verify]; n == 0 || n > 3*users {
					t.Errorf("%d %s mails for %d accounts; want some, at most 3 each", n, what, users)
				}
			}
		})
	}
}

// boundedRound is one user's round of the load: a REST session that
// rotates, is reused and logs out; failed logins; a browser sign-in with a
// code exchange, a refresh and a sign-out; a forgot-password request.
func boundedRound(t testing.TB, s *server, web client, who string, i int) {
	pass := "Pass-bounded-1"
	post := func(path, body string) reply {
		req, err := s.postJSON(path, body)
		if err != nil {
			t.Error(err)
			return reply{}
		}
		r, err := trySend(plainClient, req)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
		return r
	}
	r := post("/api/v1/auth/login", `{"login":"`+who+`","password":"`+pass+`"}`)
	if r.status == http.StatusOK {
		var p tokenPair
		json.Unmarshal(r.body, &p)
		if i%5 == 1 {
			req, _ := s.postJSON("/api/v1/auth/verify-email/resend", "")
			req.Header.Set("Authorization", "Bearer "+p.AccessToken)
			trySend(plainClient, req)
		}
		r2 := post("/api/v1/auth/refresh", `{"refresh_token":"`+p.RefreshToken+`"}`)
		if i%3 == 0 {
			post("/api/v1/auth/refresh", `{"refresh_token":"`+p.RefreshToken+`"}`) // reuse: the session ends
		} else if r2.status == http.StatusOK {
			var p2 tokenPair
			json.Unmarshal(r2.body, &p2)
			req, _ := s.postJSON("/api/v1/auth/logout", "")
			req.Header.Set("Authorization", "Bearer "+p2.AccessToken)
			trySend(plainClient, req)
		}
	}
	if i%4 == 0 {
		post("/api/v1/auth/login", `{"login":"`+who+`","password":"wrong-password-1"}`)
	}
	if i%5 == 0 {
		post("/api/v1/auth/password/forgot", `{"email":"`+who+`@e2e.test"}`)
	}
	if i%2 == 0 {
		boundedBrowser(t, s, web, who, pass)
	}
}

// boundedBrowser signs in with a browser, exchanges the code, refreshes
// once and signs out through the logout confirmation page.
func boundedBrowser(t testing.TB, s *server, web client, who, pass string) {
	b := browser(t)
	verifier, challenge := pkce(who + strconv.FormatInt(time.Now().UnixNano(), 10))
	q := url.Values{"response_type": {"code"}, "client_id": {web.ID}, "redirect_uri": {e2eRedirect}, "state": {"st"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}}.Encode()
	get := func(path string) (reply, error) {
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		return trySend(b, req)
	}
	post := func(path string, form url.Values) (reply, error) {
		req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return trySend(b, req)
	}
	page, err := get("/oauth2/authorize?" + q)
	if err != nil || page.status != http.StatusOK {
		return
	}
	form := hiddenFields(page.body)
	form.Set("login", who)
	form.Set("password", pass)
	r, err := post("/oauth2/authorize", form)
	if err == nil && r.status == http.StatusOK && strings.Contains(string(r.body), `value="allow"`) {
		consent := hiddenFields(r.body)
		consent.Set("action", "allow")
		r, err = post("/oauth2/authorize", consent)
	}
	if err != nil || r.status != http.StatusSeeOther {
		return
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	code := loc.Query().Get("code")
	tr := s.form(t, "/oauth2/token", "grant_type=authorization_code&code="+url.QueryEscape(code)+"&redirect_uri="+url.QueryEscape(e2eRedirect)+"&code_verifier="+verifier,
		"Authorization", basic(web.ID, web.Secret))
	if tr.status == http.StatusOK {
		var p tokenPair
		json.Unmarshal(tr.body, &p)
		s.form(t, "/oauth2/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(p.RefreshToken), "Authorization", basic(web.ID, web.Secret))
	}
	out, err := get("/oauth2/logout")
	if err == nil && out.status == http.StatusOK {
		f := hiddenFields(out.body)
		f.Set("action", "logout")
		post("/oauth2/logout", f)
	}
}
