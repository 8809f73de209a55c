package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"oauth2-api/store/storetest"
)

// The web client of the hostile suite: its name is markup, and it has one
// https redirect URI and one loopback one.
const (
	webRedirect      = "https://app.example.com/cb"
	loopbackRedirect = "http://127.0.0.1/cb"
	evilClientName   = `<script>alert(1)</script>`
)

// hostileFixture is a running server with an admin, a user and two clients,
// and every secret handed out so far.
type hostileFixture struct {
	s        *server
	sec      *secrets
	admin    tokenPair
	user     tokenPair
	userPass string
	cc       client // client_credentials, scope read
	web      client // authorization_code + refresh_token, scopes read write
}

func newHostileFixture(t *testing.T, name string, e env) *hostileFixture {
	t.Helper()
	f := &hostileFixture{sec: &secrets{}, userPass: "User-pass-4b2d8f-e2e"}
	adminPass := "Admin-pass-7c1e9a-e2e"
	createUser(t, e, "admin@e2e.test", "admin", adminPass, true)
	f.cc = createClient(t, e, "--name", "service", "--grant-type", "client_credentials", "--scope", "read")
	f.web = createClient(t, e, "--name", evilClientName, "--redirect-uri", webRedirect,
		"--redirect-uri", loopbackRedirect, "--scope", "read", "--scope", "write")
	f.sec.add(jwtSecret, adminPass, f.userPass, f.cc.Secret, f.web.Secret)
	f.s = startServer(t, name, e)
	f.s.mustRegister(t, "user1@e2e.test", "user1", f.userPass)
	f.admin = f.s.mustLogin(t, "admin", adminPass)
	f.user = f.s.mustLogin(t, "user1", f.userPass)
	f.sec.add(f.admin.AccessToken, f.admin.RefreshToken, f.user.AccessToken, f.user.RefreshToken)
	return f
}

// expect checks the answer to a hostile request: one of want (any 4xx when
// want is empty), never a 5xx, and a body with no stack trace, SQL text or
// secret.
func (f *hostileFixture) expect(t testing.TB, what string, r reply, want ...int) {
	t.Helper()
	switch {
	case r.status >= 500:
		t.Errorf("%s = %v; want a 4xx, never a 5xx", what, r)
	case len(want) == 0 && (r.status < 400 || r.status > 499):
		t.Errorf("%s = %v; want a 4xx", what, r)
	case len(want) > 0 && !slices.Contains(want, r.status):
		t.Errorf("%s = %v; want %v", what, r, want)
	}
	checkBody(t, what, r.body, f.sec.all())
}

// raw sends a hand-made request on a new connection (see rawExchange).
func (f *hostileFixture) raw(t testing.TB, head string, body io.Reader) reply {
	t.Helper()
	resp, b, err := rawExchange(f.s.addr, head, body)
	if err != nil {
		t.Fatalf("raw %q: %v", clip(head, 80), err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// authorizeQuery is a valid authorization request for the web client, with
// the pairs in kv set on top (an empty value deletes the parameter).
func (f *hostileFixture) authorizeQuery(kv ...string) url.Values {
	_, challenge := pkce("hostile")
	q := url.Values{
		"response_type": {"code"}, "client_id": {f.web.ID}, "redirect_uri": {webRedirect}, "scope": {"read"},
		"state": {"st-42"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// expectPage checks an authorization request answered with an error page:
// 400, HTML, and no Location header at all.
func (f *hostileFixture) expectPage(t testing.TB, what string, r reply) {
	t.Helper()
	f.expect(t, what, r, http.StatusBadRequest)
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("%s: Location %q; want none (an error page, not a redirect)", what, loc)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q; want an HTML error page", what, ct)
	}
}

// expectErrorRedirect checks an authorization request answered with a
// redirect to the registered URI carrying error=code.
func (f *hostileFixture) expectErrorRedirect(t testing.TB, what string, r reply, registered, code string) {
	t.Helper()
	if r.status != http.StatusFound {
		t.Errorf("%s = %v; want 302 to the registered redirect URI", what, r)
		return
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, registered+"?") {
		t.Errorf("%s: Location %q; want %s?...", what, loc, registered)
		return
	}
	u, _ := url.Parse(loc)
	if got := u.Query().Get("error"); got != code {
		t.Errorf("%s: Location %q has error=%q; want %q", what, loc, got, code)
	}
}

// TestHostile throws hostile input at a server on SQLite: every case must
// get a clear 4xx (or the answer RFC 6749 prescribes), never a 5xx, with no
// stack trace, SQL text or secret in any body; at the end the server's log
// must hold none of the secrets the test used.
func TestHostile(t *testing.T) {
	f := newHostileFixture(t, "hostile", sqliteEnv(t))
	t.Run("group", func(t *testing.T) {
		t.Run("slowloris", func(t *testing.T) { t.Parallel(); testSlowloris(t, f) })
		t.Run("malformed_json", func(t *testing.T) { t.Parallel(); testMalformedJSON(t, f) })
		t.Run("oversized", func(t *testing.T) { t.Parallel(); testOversized(t, f) })
		t.Run("deep_nesting", func(t *testing.T) { t.Parallel(); testDeepNesting(t, f) })
		t.Run("invalid_utf8", func(t *testing.T) { t.Parallel(); testInvalidUTF8(t, f) })
		t.Run("content_types", func(t *testing.T) { t.Parallel(); testContentTypes(t, f) })
		t.Run("headers", func(t *testing.T) { t.Parallel(); testHeaders(t, f) })
		t.Run("repeated_params", func(t *testing.T) { t.Parallel(); testRepeatedParams(t, f) })
		t.Run("sql_injection", func(t *testing.T) { t.Parallel(); testInjection(t, f) })
		t.Run("stored_markup", func(t *testing.T) { t.Parallel(); testStoredMarkup(t, f) })
		t.Run("pages_and_redirects", func(t *testing.T) { t.Parallel(); testPagesAndRedirects(t, f) })
		t.Run("path_tricks", func(t *testing.T) { t.Parallel(); testPathTricks(t, f) })
		t.Run("methods", func(t *testing.T) { t.Parallel(); testMethods(t, f) })
		t.Run("authorization_garbage", func(t *testing.T) { t.Parallel(); testAuthorizationGarbage(t, f) })
		t.Run("client_secret", func(t *testing.T) { t.Parallel(); testClientSecret(t, f) })
	})
	if !f.s.running() {
		t.Fatalf("the server died during the hostile suite")
	}
	if r := f.s.get(t, "/health", ""); r.status != http.StatusOK {
		t.Errorf("after the hostile suite GET /health = %v; want 200", r)
	}
	checkLog(t, f.s, f.sec.all())
}

// TestHostilePostgres runs the cases whose outcome depends on the database
// (text that reaches SQL) on PostgreSQL, which is stricter than SQLite about
// what a text value may hold, and on MySQL (strict mode) when the suites
// have it.
func TestHostilePostgres(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			f := newHostileFixture(t, "hostile-"+dialect, baseEnv(storetest.URL(t, dialect)))
			t.Run("sql_injection", func(t *testing.T) { testInjection(t, f) })
			t.Run("invalid_utf8", func(t *testing.T) { testInvalidUTF8(t, f) })
			t.Run("stored_markup", func(t *testing.T) { testStoredMarkup(t, f) })
			t.Run("pages_and_redirects", func(t *testing.T) { testPagesAndRedirects(t, f) })
			checkLog(t, f.s, f.sec.all())
		})
	}
}

// testSlowloris opens connections that send a request header one byte at a
// time. The server must cut each one by its ReadHeaderTimeout (5 s; the
// bound here is 10 s, a hang detector) and keep serving everyone else.
func testSlowloris(t *testing.T, f *hostileFixture) {
	const conns = 10
	start := time.Now()
	type result struct {
		after time.Duration
		err   error
	}
	results := make(chan result, conns)
	for range conns {
		go func() {
			c, err := net.DialTimeout("tcp", f.s.addr, 5*time.Second)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, "POST /api/v1/auth/login HTTP/1.1\r\nHost: e2e\r\n"); err != nil {
				results <- result{err: err}
				return
			}
			closed := make(chan struct{})
			go func() {
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						close(closed)
						return
					}
				}
			}()
			trickle := "X-Slow: " + strings.Repeat("a", 4096)
			for i := 0; ; i++ {
				select {
				case <-closed:
					results <- result{after: time.Since(start)}
					return
				case <-time.After(200 * time.Millisecond):
				}
				if time.Since(start) > 15*time.Second {
					results <- result{err: errors.New("connection still open after 15s")}
					return
				}
				c.Write([]byte{trickle[i%len(trickle)]}) // a failed write shows up as a closed read
			}
		}()
	}
	for range 6 {
		time.Sleep(500 * time.Millisecond)
		if r := f.s.get(t, "/health", ""); r.status != http.StatusOK {
			t.Errorf("GET /health during slowloris = %v; want 200", r)
		}
	}
	var slowest time.Duration
	for range conns {
		r := <-results
		if r.err != nil {
			t.Errorf("slowloris connection: %v", r.err)
			continue
		}
		slowest = max(slowest, r.after)
		if r.after > 10*time.Second {
			t.Errorf("slowloris connection closed after %v; want within 10s (ReadHeaderTimeout is 5s)", r.after)
		}
	}
	t.Logf("slowloris: %d trickling connections, all closed by the server within %v", conns, slowest.Round(time.Millisecond))
}

func testMalformedJSON(t *testing.T, f *hostileFixture) {
	bodies := []string{
		`{`, `{"email":`, `{"email":"a@example.com",}`, `{"email":'a'}`, `[]`, `"login"`, `42`, `nul`,
		`{"login":1,"password":2}`, `{"login":"a","password":"b"} {"x":1}`, `{"login":"a","password":"b"}garbage`,
		`{"unknown":"field"}`, "\xef\xbb\xbf{}", `{"login":"a" "password":"b"}`, `{"login":"\u12"}`,
		`{"login":"a","login":{"$ne":null}}`, `{"__proto__":{"admin":true}}`, strings.Repeat(" ", 1000),
	}
	for _, ep := range []struct{ method, path, bearer string }{
		{http.MethodPost, "/api/v1/auth/register", ""},
		{http.MethodPost, "/api/v1/auth/login", ""},
		{http.MethodPost, "/api/v1/auth/refresh", ""},
		{http.MethodPatch, "/api/v1/profile", f.user.AccessToken},
		{http.MethodPost, "/api/v1/auth/logout", f.admin.AccessToken + "x"}, // a bad token: 401 before the body
	} {
		for _, b := range bodies {
			r := f.s.json(t, ep.method, ep.path, ep.bearer, b)
			f.expect(t, fmt.Sprintf("%s %s %q", ep.method, ep.path, clip(b, 40)), r)
		}
	}
	// An empty JSON body is malformed too.
	f.expect(t, "login with an empty body", f.s.do(t, http.MethodPost, "/api/v1/auth/login", "application/json", ""), http.StatusBadRequest)
}

// chunked returns body in HTTP/1.1 chunked encoding, pieces of 32 KiB.
func chunked(body []byte) []byte {
	var buf bytes.Buffer
	w := httputil.NewChunkedWriter(&buf)
	for len(body) > 0 {
		n := min(len(body), 32<<10)
		w.Write(body[:n])
		body = body[n:]
	}
	w.Close()
	buf.WriteString("\r\n") // the empty trailer
	return buf.Bytes()
}

func testOversized(t *testing.T, f *hostileFixture) {
	bigJSON := []byte(`{"email":"` + strings.Repeat("a", 1<<20) + `@example.com","username":"big","password":"Password-123"}`)
	bigForm := []byte("grant_type=client_credentials&scope=" + strings.Repeat("a", 1<<20+10))
	cases := []struct {
		name, method, path, contentType, auth string
		body                                  []byte
		chunked                               bool
	}{
		{"register with Content-Length", "POST", "/api/v1/auth/register", "application/json", "", bigJSON, false},
		{"register chunked", "POST", "/api/v1/auth/register", "application/json", "", bigJSON, true},
		{"login chunked", "POST", "/api/v1/auth/login", "application/json", "", bigJSON, true},
		{"profile patch with Content-Length", "PATCH", "/api/v1/profile", "application/json", "Bearer " + f.user.AccessToken, bigJSON, false},
		{"profile patch chunked", "PATCH", "/api/v1/profile", "application/json", "Bearer " + f.user.AccessToken, bigJSON, true},
		{"token with Content-Length", "POST", "/oauth2/token", "application/x-www-form-urlencoded", basic(f.cc.ID, f.cc.Secret), bigForm, false},
		{"token chunked", "POST", "/oauth2/token", "application/x-www-form-urlencoded", basic(f.cc.ID, f.cc.Secret), bigForm, true},
		{"introspect chunked", "POST", "/oauth2/introspect", "application/x-www-form-urlencoded", basic(f.cc.ID, f.cc.Secret), bigForm, true},
	}
	for _, c := range cases {
		head := c.method + " " + c.path + " HTTP/1.1\r\nHost: e2e\r\nContent-Type: " + c.contentType + "\r\n"
		if c.auth != "" {
			head += "Authorization: " + c.auth + "\r\n"
		}
		body := c.body
		if c.chunked {
			head += "Transfer-Encoding: chunked\r\n"
			body = chunked(body)
		} else {
			head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
		}
		r := f.raw(t, head+"\r\n", bytes.NewReader(body))
		f.expect(t, c.name, r, http.StatusRequestEntityTooLarge)
	}
	// A body of exactly the limit is not refused for its size (it is
	// refused as malformed JSON: it is all spaces and a brace).
	exact := append(bytes.Repeat([]byte(" "), 1<<20-1), '{')
	f.expect(t, "register with exactly 1 MiB", f.s.do(t, "POST", "/api/v1/auth/register", "application/json", string(exact)), http.StatusBadRequest)
}

func testDeepNesting(t *testing.T, f *hostileFixture) {
	deep := []string{
		strings.Repeat("[", 100_000),
		strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000),
		`{"email":` + strings.Repeat("[", 100_000),
		strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000),
		`{"login":"x","password":` + strings.Repeat(`{"p":`, 50_000) + `""` + strings.Repeat("}", 50_000) + "}",
	}
	for _, path := range []string{"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh"} {
		for i, b := range deep {
			f.expect(t, fmt.Sprintf("POST %s deep #%d", path, i), f.s.json(t, "POST", path, "", b), http.StatusBadRequest)
		}
	}
	for i, b := range deep {
		f.expect(t, fmt.Sprintf("PATCH profile deep #%d", i), f.s.json(t, "PATCH", "/api/v1/profile", f.user.AccessToken, b), http.StatusBadRequest)
	}
}

func testInvalidUTF8(t *testing.T, f *hostileFixture) {
	for _, bad := range []string{"\xff", "\xc0\xaf", "\xed\xa0\x80", "a\xe2\x82", "\xf8\x88\x80\x80\x80"} {
		q := strconv.Quote(bad)
		f.expect(t, "register email "+q, f.s.json(t, "POST", "/api/v1/auth/register", "",
			`{"email":"`+bad+`@example.com","username":"utf8","password":"Password-123"}`), http.StatusBadRequest)
		f.expect(t, "register first_name "+q, f.s.json(t, "POST", "/api/v1/auth/register", "",
			`{"email":"utf8@example.com","username":"utf8","password":"Password-123","first_name":"`+bad+`"}`), http.StatusBadRequest)
		f.expect(t, "login "+q, f.s.json(t, "POST", "/api/v1/auth/login", "", `{"login":"`+bad+`","password":"Password-123"}`), http.StatusBadRequest)
		f.expect(t, "login password "+q, f.s.json(t, "POST", "/api/v1/auth/login", "", `{"login":"user1","password":"`+bad+`"}`), http.StatusBadRequest)
		f.expect(t, "profile patch "+q, f.s.json(t, "PATCH", "/api/v1/profile", f.user.AccessToken, `{"first_name":"`+bad+`"}`), http.StatusBadRequest)

		// Form values, percent-encoded and raw, at the token endpoint.
		cc := basic(f.cc.ID, f.cc.Secret)
		for _, body := range []string{
			"grant_type=client_credentials&scope=" + url.QueryEscape(bad),
			"grant_type=client_credentials&scope=" + bad,
			url.QueryEscape(bad) + "=1&grant_type=client_credentials",
			"grant_type=" + url.QueryEscape(bad),
		} {
			r := f.s.form(t, "/oauth2/token", body, "Authorization", cc)
			f.expect(t, "token form "+strconv.Quote(body), r, http.StatusBadRequest)
			if errorCode(r) != "invalid_request" {
				t.Errorf("token form %q: error %q; want invalid_request", body, errorCode(r))
			}
		}
		// Client ids that no row can hold, by every way one arrives.
		f.expect(t, "token client_id "+q, f.s.form(t, "/oauth2/token",
			"grant_type=client_credentials&client_secret=x&client_id="+url.QueryEscape(bad)), http.StatusBadRequest, http.StatusUnauthorized)
		f.expect(t, "token basic id "+q, f.s.form(t, "/oauth2/token", "grant_type=client_credentials",
			"Authorization", basic(bad, "secret")), http.StatusUnauthorized)
		f.expect(t, "introspect basic id "+q, f.s.form(t, "/oauth2/introspect", "token=x",
			"Authorization", basic(bad, "secret")), http.StatusUnauthorized)
		f.expect(t, "revoke basic id "+q, f.s.form(t, "/oauth2/revoke", "token=x",
			"Authorization", basic(bad, "secret")), http.StatusUnauthorized)
		f.expectPage(t, "authorize client_id "+q, f.s.get(t, "/oauth2/authorize?"+f.authorizeQuery("client_id", bad).Encode(), ""))
		f.expectPage(t, "authorize redirect_uri "+q, f.s.get(t, "/oauth2/authorize?"+f.authorizeQuery("redirect_uri", webRedirect+bad).Encode(), ""))
		f.expectErrorRedirect(t, "authorize nonce "+q, f.s.get(t, "/oauth2/authorize?"+f.authorizeQuery("nonce", bad).Encode(), ""), webRedirect, "invalid_request")
		f.expect(t, "end session client_id "+q, f.s.get(t, "/oauth2/logout?post_logout_redirect_uri=https://x.example/&client_id="+url.QueryEscape(bad), ""), http.StatusBadRequest)
		f.expect(t, "users limit "+q, f.s.get(t, "/api/v1/users?limit="+url.QueryEscape(bad), f.admin.AccessToken), http.StatusBadRequest)
		f.expect(t, "delete client "+q, f.s.do(t, "DELETE", "/api/v1/clients/"+url.PathEscape(bad), "", "",
			"Authorization", "Bearer "+f.admin.AccessToken), http.StatusNotFound)
		f.expect(t, "rotate client "+q, f.s.do(t, "POST", "/api/v1/clients/"+url.PathEscape(bad)+"/secret", "", "",
			"Authorization", "Bearer "+f.admin.AccessToken), http.StatusNotFound)
	}
}

func testContentTypes(t *testing.T, f *hostileFixture) {
	login := `{"login":"user1","password":"wrong-password"}`
	for _, ct := range []string{"text/plain", "", "application/x-www-form-urlencoded", "application/jsonx",
		"application/json-patch+json", "multipart/form-data; boundary=x", "application/json; charset=utf-8; x=\"", "text/json", "*/*"} {
		for _, ep := range []struct{ method, path, bearer string }{
			{"POST", "/api/v1/auth/register", ""},
			{"POST", "/api/v1/auth/login", ""},
			{"POST", "/api/v1/auth/refresh", ""},
			{"PATCH", "/api/v1/profile", f.user.AccessToken},
			{"POST", "/api/v1/profile/password", f.user.AccessToken},
			{"PATCH", "/api/v1/users/1", f.admin.AccessToken},
		} {
			var hdr []string
			if ep.bearer != "" {
				hdr = []string{"Authorization", "Bearer " + ep.bearer}
			}
			r := f.s.do(t, ep.method, ep.path, ct, login, hdr...)
			f.expect(t, fmt.Sprintf("%s %s as %q", ep.method, ep.path, ct), r, http.StatusUnsupportedMediaType)
		}
	}
	// The OAuth endpoints take forms (RFC 6749 §3.2): JSON is invalid_request.
	for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		for _, ct := range []string{"application/json", "text/plain", "", "multipart/form-data; boundary=x"} {
			r := f.s.do(t, "POST", path, ct, `{"grant_type":"client_credentials","token":"x"}`, "Authorization", basic(f.cc.ID, f.cc.Secret))
			what := fmt.Sprintf("POST %s as %q", path, ct)
			f.expect(t, what, r, http.StatusBadRequest)
			if errorCode(r) != "invalid_request" {
				t.Errorf("%s: error %q; want invalid_request", what, errorCode(r))
			}
		}
	}
}

func testHeaders(t *testing.T, f *hostileFixture) {
	big := strings.Repeat("a", 100<<10)
	f.expect(t, "a 100 KiB header", f.raw(t, "GET /health HTTP/1.1\r\nHost: e2e\r\nX-Big: "+big+"\r\n\r\n", nil),
		http.StatusRequestHeaderFieldsTooLarge)
	f.expect(t, "a 100 KiB cookie", f.raw(t, "GET /oauth2/authorize HTTP/1.1\r\nHost: e2e\r\nCookie: oauth2_session="+big+"\r\n\r\n", nil),
		http.StatusRequestHeaderFieldsTooLarge)
	f.expect(t, "a 100 KiB Authorization header", f.raw(t, "GET /api/v1/profile HTTP/1.1\r\nHost: e2e\r\nAuthorization: Bearer "+big+"\r\n\r\n", nil),
		http.StatusRequestHeaderFieldsTooLarge)

	var many strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&many, "X-Many-%d: v\r\n", i)
	}
	f.expect(t, "4000 headers", f.raw(t, "GET /health HTTP/1.1\r\nHost: e2e\r\n"+many.String()+"\r\n", nil),
		http.StatusRequestHeaderFieldsTooLarge)

	// Many headers under the size limit: an ordinary answer.
	many.Reset()
	for i := range 500 {
		fmt.Fprintf(&many, "X-Many-%d: v\r\n", i)
	}
	f.expect(t, "500 headers", f.raw(t, "GET /api/v1/profile HTTP/1.1\r\nHost: e2e\r\n"+many.String()+"\r\n", nil),
		http.StatusUnauthorized)
	// The same header many times: a repeated Authorization header is
	// invalid_request (RFC 6750 §3.1), 400.
	many.Reset()
	for range 500 {
		many.WriteString("Authorization: Bearer x\r\n")
	}
	f.expect(t, "500 Authorization headers", f.raw(t, "GET /api/v1/profile HTTP/1.1\r\nHost: e2e\r\n"+many.String()+"\r\n", nil),
		http.StatusBadRequest)
	many.Reset()
	for range 200 {
		many.WriteString("Content-Type: application/json\r\n")
	}
	f.expect(t, "200 Content-Type headers", f.raw(t, "POST /api/v1/auth/login HTTP/1.1\r\nHost: e2e\r\nContent-Length: 2\r\n"+many.String()+"\r\n{}", nil))
}

func testRepeatedParams(t *testing.T, f *hostileFixture) {
	cc := basic(f.cc.ID, f.cc.Secret)
	for _, c := range []struct{ name, body, auth string }{
		{"client_id twice", "grant_type=client_credentials&client_id=" + f.cc.ID + "&client_id=" + f.cc.ID + "&client_secret=" + f.cc.Secret, ""},
		{"client_id twice, different", "grant_type=client_credentials&client_id=" + f.cc.ID + "&client_id=evil&client_secret=" + f.cc.Secret, ""},
		{"client_secret twice", "grant_type=client_credentials&client_id=" + f.cc.ID + "&client_secret=" + f.cc.Secret + "&client_secret=" + f.cc.Secret, ""},
		{"grant_type twice", "grant_type=client_credentials&grant_type=client_credentials", cc},
		{"scope twice", "grant_type=client_credentials&scope=read&scope=read", cc},
		{"refresh_token twice", "grant_type=refresh_token&refresh_token=a&refresh_token=b", basic(f.web.ID, f.web.Secret)},
	} {
		var hdr []string
		if c.auth != "" {
			hdr = []string{"Authorization", c.auth}
		}
		r := f.s.form(t, "/oauth2/token", c.body, hdr...)
		f.expect(t, "token: "+c.name, r, http.StatusBadRequest)
		if errorCode(r) != "invalid_request" {
			t.Errorf("token: %s: error %q; want invalid_request", c.name, errorCode(r))
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("token: %s: Cache-Control %q; want no-store", c.name, r.header.Get("Cache-Control"))
		}
	}
	var many strings.Builder
	many.WriteString("grant_type=client_credentials")
	for i := range 20000 {
		fmt.Fprintf(&many, "&p%d=1", i)
	}
	f.expect(t, "token: 20000 parameters", f.s.form(t, "/oauth2/token", many.String(), "Authorization", cc), http.StatusBadRequest)
	f.expect(t, "revoke: token twice", f.s.form(t, "/oauth2/revoke", "token=a&token=b", "Authorization", cc), http.StatusBadRequest)
	f.expect(t, "introspect: token twice", f.s.form(t, "/oauth2/introspect", "token=a&token=b", "Authorization", cc), http.StatusBadRequest)

	// At the authorization endpoint, a repeated client_id or redirect_uri
	// is an error page; any other repeated parameter goes back to the
	// (registered) redirect URI as invalid_request.
	q := f.authorizeQuery().Encode()
	for _, c := range []struct{ name, query string }{
		{"client_id twice", q + "&client_id=" + f.web.ID},
		{"client_id twice, different", q + "&client_id=" + f.cc.ID},
		{"redirect_uri twice", q + "&redirect_uri=" + url.QueryEscape(webRedirect)},
		{"redirect_uri twice, different", q + "&redirect_uri=" + url.QueryEscape("https://evil.example/cb")},
	} {
		f.expectPage(t, "authorize: "+c.name, f.s.get(t, "/oauth2/authorize?"+c.query, ""))
	}
	for _, c := range []struct{ name, query string }{
		{"scope twice", q + "&scope=write"},
		{"state twice", q + "&state=other"},
		{"code_challenge twice", q + "&code_challenge=" + f.authorizeQuery().Get("code_challenge")},
		{"response_type twice", q + "&response_type=code"},
	} {
		f.expectErrorRedirect(t, "authorize: "+c.name, f.s.get(t, "/oauth2/authorize?"+c.query, ""), webRedirect, "invalid_request")
	}
}

// injections are strings that break naively built SQL, or a C string.
var injections = []string{
	`' OR '1'='1`,
	`"; DROP TABLE users; --`,
	`admin'--`,
	`1; DELETE FROM users WHERE 1=1`,
	`' UNION SELECT password_hash, email FROM users --`,
	`'); DROP TABLE clients;--`,
	`Robert'); DROP TABLE users;--`,
	"\x00",
	"nul\x00byte",
	"%00",
	`\'; --`,
	`$1`,
	`?`,
	"\xff'--",
}

// testInjection sends SQL injection strings in every field that reaches the
// database, then checks that the database still works.
func testInjection(t *testing.T, f *hostileFixture) {
	s := f.s
	admin := "Bearer " + f.admin.AccessToken
	for i, inj := range injections {
		q := strconv.Quote(inj)
		validText := utf8.ValidString(inj)
		// encoding/json would mangle invalid UTF-8: write such bodies by hand.
		js := func(kv ...string) string {
			var b strings.Builder
			b.WriteByte('{')
			for j := 0; j+1 < len(kv); j += 2 {
				if j > 0 {
					b.WriteByte(',')
				}
				k, _ := json.Marshal(kv[j])
				b.Write(k)
				b.WriteByte(':')
				if utf8.ValidString(kv[j+1]) {
					v, _ := json.Marshal(kv[j+1])
					b.Write(v)
				} else {
					b.WriteString(`"` + kv[j+1] + `"`)
				}
			}
			b.WriteByte('}')
			return b.String()
		}
		// wantText is the status for text that is valid UTF-8: invalid UTF-8
		// is refused before anything else, with 400.
		wantText := func(status int) int {
			if !validText {
				return http.StatusBadRequest
			}
			return status
		}
		badJSON := wantText(http.StatusUnprocessableEntity)

		f.expect(t, "register email "+q, s.json(t, "POST", "/api/v1/auth/register", "",
			js("email", inj, "username", fmt.Sprintf("inj-e%d", i), "password", "Password-123")), badJSON)
		f.expect(t, "register username "+q, s.json(t, "POST", "/api/v1/auth/register", "",
			js("email", fmt.Sprintf("inj-u%d@example.com", i), "username", inj, "password", "Password-123")), badJSON)
		f.expect(t, "login "+q, s.json(t, "POST", "/api/v1/auth/login", "", js("login", inj, "password", "Password-123")),
			wantText(http.StatusUnauthorized))
		f.expect(t, "login password "+q, s.json(t, "POST", "/api/v1/auth/login", "", js("login", "user1", "password", inj+"-padding")),
			wantText(http.StatusUnauthorized))
		f.expect(t, "login both "+q, s.json(t, "POST", "/api/v1/auth/login", "", js("login", inj, "password", inj)))

		// Names and passwords are stored: they must come back as sent.
		user, pass := fmt.Sprintf("inj-n%d", i), "pw-"+inj+"-pass"
		r := s.json(t, "POST", "/api/v1/auth/register", "", js("email", user+"@example.com", "username", user, "password", pass, "first_name", inj, "last_name", inj))
		switch {
		case !validText:
			f.expect(t, "register names "+q, r, http.StatusBadRequest)
		case strings.ContainsRune(inj, 0):
			f.expect(t, "register names "+q, r, http.StatusUnprocessableEntity)
		default:
			if r.status != http.StatusCreated {
				t.Errorf("register names %s = %v; want 201", q, r)
				break
			}
			f.sec.add(pass)
			p := s.mustLogin(t, user, pass)
			f.sec.add(p.AccessToken, p.RefreshToken)
			expectNames(t, s, "profile after register "+q, p.AccessToken, inj, inj)
			other := inj + " (patched)"
			if r := s.json(t, "PATCH", "/api/v1/profile", p.AccessToken, map[string]string{"first_name": other}); r.status != http.StatusOK {
				t.Errorf("patch profile %s = %v; want 200", q, r)
			}
			expectNames(t, s, "profile after patch "+q, p.AccessToken, other, inj)
		}
		if !validText || strings.ContainsRune(inj, 0) {
			f.expect(t, "patch profile "+q, s.json(t, "PATCH", "/api/v1/profile", f.user.AccessToken, js("last_name", inj)), badJSON)
		}

		// Numbers and ids in the query, the path and forms.
		f.expect(t, "users limit "+q, s.get(t, "/api/v1/users?limit="+url.QueryEscape(inj), f.admin.AccessToken), http.StatusBadRequest)
		f.expect(t, "users offset "+q, s.get(t, "/api/v1/users?offset="+url.QueryEscape(inj), f.admin.AccessToken), http.StatusBadRequest)
		f.expect(t, "patch user "+q, s.do(t, "PATCH", "/api/v1/users/"+url.PathEscape(inj), "application/json", `{"role":"admin"}`, "Authorization", admin), http.StatusNotFound)
		f.expect(t, "delete user "+q, s.do(t, "DELETE", "/api/v1/users/"+url.PathEscape(inj), "", "", "Authorization", admin), http.StatusNotFound)
		f.expect(t, "delete client "+q, s.do(t, "DELETE", "/api/v1/clients/"+url.PathEscape(inj), "", "", "Authorization", admin), http.StatusNotFound)
		f.expect(t, "rotate client "+q, s.do(t, "POST", "/api/v1/clients/"+url.PathEscape(inj)+"/secret", "", "", "Authorization", admin), http.StatusNotFound)

		f.expect(t, "token client_id "+q, s.form(t, "/oauth2/token", "grant_type=client_credentials&client_secret=x&client_id="+url.QueryEscape(inj)),
			wantText(http.StatusUnauthorized))
		f.expect(t, "token basic id "+q, s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(inj, "x")), http.StatusUnauthorized)
		f.expect(t, "token client_secret "+q, s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(f.cc.ID, inj)), http.StatusUnauthorized)
		f.expect(t, "token grant_type "+q, s.form(t, "/oauth2/token", "grant_type="+url.QueryEscape(inj), "Authorization", basic(f.cc.ID, f.cc.Secret)), http.StatusBadRequest)
		f.expect(t, "token scope "+q, s.form(t, "/oauth2/token", "grant_type=client_credentials&scope="+url.QueryEscape(inj), "Authorization", basic(f.cc.ID, f.cc.Secret)), http.StatusBadRequest)
		web := basic(f.web.ID, f.web.Secret)
		verifier, _ := pkce("inj")
		f.expect(t, "token code "+q, s.form(t, "/oauth2/token", "grant_type=authorization_code&code_verifier="+verifier+"&code="+url.QueryEscape(inj), "Authorization", web), http.StatusBadRequest)
		f.expect(t, "token code_verifier "+q, s.form(t, "/oauth2/token", "grant_type=authorization_code&code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&code_verifier="+url.QueryEscape(inj), "Authorization", web), http.StatusBadRequest)
		f.expect(t, "token refresh_token "+q, s.form(t, "/oauth2/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(inj), "Authorization", web), http.StatusBadRequest)
		f.expect(t, "rest refresh_token "+q, s.json(t, "POST", "/api/v1/auth/refresh", "", js("refresh_token", inj)),
			wantText(http.StatusUnauthorized))
		f.expectPage(t, "authorize client_id "+q, s.get(t, "/oauth2/authorize?"+f.authorizeQuery("client_id", inj).Encode(), ""))
		f.expectPage(t, "authorize redirect_uri "+q, s.get(t, "/oauth2/authorize?"+f.authorizeQuery("redirect_uri", inj).Encode(), ""))

		// RFC 7662 §2.2 and RFC 7009 §2.2: an unknown token is not an error.
		if validText {
			r := s.form(t, "/oauth2/introspect", "token="+url.QueryEscape(inj), "Authorization", basic(f.cc.ID, f.cc.Secret))
			f.expect(t, "introspect token "+q, r, http.StatusOK)
			if !bytes.Contains(r.body, []byte(`"active":false`)) {
				t.Errorf("introspect token %s = %v; want active false", q, r)
			}
			f.expect(t, "revoke token "+q, s.form(t, "/oauth2/revoke", "token="+url.QueryEscape(inj), "Authorization", basic(f.cc.ID, f.cc.Secret)), http.StatusOK)
		}
	}

	// The tables are all still there and working.
	r := s.get(t, "/api/v1/users?limit=100", f.admin.AccessToken)
	var list struct {
		Users []struct{ Username string } `json:"users"`
		Total int                         `json:"total"`
	}
	if err := json.Unmarshal(r.body, &list); r.status != http.StatusOK || err != nil {
		t.Fatalf("GET /api/v1/users after the injections = %v (%v); want 200", r, err)
	}
	var names []string
	for _, u := range list.Users {
		names = append(names, u.Username)
	}
	if !slices.Contains(names, "admin") || !slices.Contains(names, "user1") || list.Total < 2 {
		t.Errorf("after the injections the users are %v (total %d); want admin and user1 among them", names, list.Total)
	}
	s.mustLogin(t, "user1", f.userPass)
	s.mustRegister(t, "after-injection@example.com", "after-injection", "Password-after-1")
	if r := s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(f.cc.ID, f.cc.Secret)); r.status != http.StatusOK {
		t.Errorf("client credentials after the injections = %v; want 200", r)
	} else {
		f.sec.add(decodePair(t, r).AccessToken)
	}
}

// expectNames checks GET /api/v1/profile shows exactly these names.
func expectNames(t testing.TB, s *server, what, access, first, last string) {
	t.Helper()
	r := s.get(t, "/api/v1/profile", access)
	var u struct {
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	if err := json.Unmarshal(r.body, &u); r.status != http.StatusOK || err != nil {
		t.Errorf("%s: GET /api/v1/profile = %v (%v); want 200", what, r, err)
		return
	}
	if u.FirstName != first || u.LastName != last {
		t.Errorf("%s: names %q %q; want %q %q", what, u.FirstName, u.LastName, first, last)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q; want application/json", what, ct)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q; want nosniff", what, r.header.Get("X-Content-Type-Options"))
	}
}

// testStoredMarkup stores markup and SQL in a user's names and reads them
// back byte for byte.
func testStoredMarkup(t *testing.T, f *hostileFixture) {
	const first, last = `<script>alert(1)</script>`, `Robert'); DROP TABLE users;--`
	pass := "Markup-pass-93jd-e2e"
	f.sec.add(pass)
	r := f.s.json(t, "POST", "/api/v1/auth/register", "", map[string]string{
		"email": "bobby@example.com", "username": "bobby.tables", "password": pass, "first_name": first, "last_name": last})
	if r.status != http.StatusCreated {
		t.Fatalf("register bobby = %v; want 201", r)
	}
	var created struct {
		ID        int64  `json:"id"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	if err := json.Unmarshal(r.body, &created); err != nil || created.FirstName != first || created.LastName != last {
		t.Errorf("register bobby answered %v; want the names as sent", r)
	}
	p := f.s.mustLogin(t, "bobby.tables", pass)
	f.sec.add(p.AccessToken, p.RefreshToken)
	expectNames(t, f.s, "bobby", p.AccessToken, first, last)

	// The users table still works, and shows the same bytes to an admin.
	r = f.s.get(t, "/api/v1/users?limit=100", f.admin.AccessToken)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/users = %v; want 200", r)
	}
	var list struct {
		Users []struct {
			ID        int64  `json:"id"`
			FirstName string `json:"first_name"`
			LastName  string `json:"last_name"`
		} `json:"users"`
	}
	json.Unmarshal(r.body, &list)
	found := false
	for _, u := range list.Users {
		if u.ID == created.ID {
			found = true
			if u.FirstName != first || u.LastName != last {
				t.Errorf("admin list shows bobby as %q %q; want %q %q", u.FirstName, u.LastName, first, last)
			}
		}
	}
	if !found {
		t.Errorf("admin list does not show bobby (id %d): %v", created.ID, r)
	}
	s := f.s
	s.mustRegister(t, "after-bobby@example.com", "after-bobby", "Password-after-2")
	s.mustLogin(t, "after-bobby", "Password-after-2")
}

// testPagesAndRedirects walks the authorization code flow with markup in
// the client's name and in the login field, checks it is escaped on the
// login and consent pages, and then tries redirect_uri variants that must
// never be followed, signed out and signed in.
func testPagesAndRedirects(t *testing.T, f *hostileFixture) {
	s, b := f.s, browser(t)
	get := func(q url.Values) reply {
		t.Helper()
		return send(t, b, s.newRequest(t, "GET", "/oauth2/authorize?"+q.Encode(), "", nil))
	}
	post := func(form url.Values) reply {
		t.Helper()
		return send(t, b, s.newRequest(t, "POST", "/oauth2/authorize", "application/x-www-form-urlencoded", strings.NewReader(form.Encode())))
	}
	escaped := func(what string, r reply, markup string) {
		t.Helper()
		if bytes.Contains(bytes.ToLower(r.body), []byte("<script")) {
			t.Errorf("%s: the page holds a <script> tag: %s", what, r.body)
		}
		if !bytes.Contains(r.body, []byte(strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(markup))) {
			t.Errorf("%s: the page does not show %q escaped: %s", what, markup, r.body)
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: Content-Security-Policy %q", what, csp)
		}
		if r.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: X-Frame-Options %q; want DENY", what, r.header.Get("X-Frame-Options"))
		}
		checkBody(t, what, r.body, f.sec.all())
	}

	verifier, _ := pkce("hostile")
	q := f.authorizeQuery("state", `st-"><b>`)
	r := get(q)
	if r.status != http.StatusOK {
		t.Fatalf("GET authorize = %v; want the login page", r)
	}
	escaped("login page", r, evilClientName)
	form := hiddenFields(r.body)
	if form.Get("csrf_token") == "" || form.Get("client_id") != f.web.ID {
		t.Fatalf("login page hidden fields %v; want the request and a csrf_token", form)
	}

	const markupLogin = `"><script>alert(2)</script>`
	form.Set("login", markupLogin)
	form.Set("password", "wrong-password-e2e")
	r = post(form)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("POST authorize with a wrong password = %v; want 401 and the login page", r)
	}
	escaped("login page echoing the login", r, `<script>alert(2)</script>`)
	if bytes.Contains(r.body, []byte(`value="">`)) || !bytes.Contains(r.body, []byte("&#34;&gt;&lt;script&gt;")) {
		t.Errorf("login page: the login is not echoed escaped in its attribute: %s", r.body)
	}

	// The form is refused with another CSRF token; without one it is no
	// form of ours but an authorization request sent by POST (OIDC Core
	// §3.1.2.1), whose login fields sign nobody in: the login page again.
	// The forged token differs from the real one in its first character (a
	// fixed "A" was the real one's own first character 1 time in 64).
	csrf := form.Get("csrf_token")
	forgedFirst := "A"
	if csrf[0] == 'A' {
		forgedFirst = "B"
	}
	for _, token := range []string{"", forgedFirst + csrf[1:]} {
		forged := url.Values{}
		for k, v := range form {
			forged[k] = v
		}
		forged.Set("csrf_token", token)
		forged.Set("login", "user1")
		forged.Set("password", f.userPass)
		if r := post(forged); token != "" {
			f.expect(t, "POST authorize with a forged csrf_token", r, http.StatusForbidden)
		} else if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`name="password"`)) {
			t.Errorf("POST authorize with no csrf_token = %v; want the login page again, nobody signed in", r)
		}
	}

	form.Set("login", "user1")
	form.Set("password", f.userPass)
	r = post(form)
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`value="allow"`)) {
		t.Fatalf("POST authorize with the right password = %v; want the consent page", r)
	}
	escaped("consent page", r, evilClientName)

	consent := hiddenFields(r.body)
	consent.Set("action", "allow")
	r = post(consent)
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, webRedirect+"?") {
		t.Fatalf("POST consent = %v, Location %q; want 303 to %s", r, loc, webRedirect)
	}
	lu, _ := url.Parse(loc)
	code := lu.Query().Get("code")
	if code == "" || lu.Query().Get("state") != `st-"><b>` {
		t.Fatalf("consent redirect %q; want a code and the state as sent", loc)
	}
	f.sec.add(code)
	exchange := "grant_type=authorization_code&code=" + url.QueryEscape(code) + "&redirect_uri=" + url.QueryEscape(webRedirect) + "&code_verifier=" + verifier
	r = s.form(t, "/oauth2/token", exchange, "Authorization", basic(f.web.ID, f.web.Secret))
	if r.status != http.StatusOK {
		t.Fatalf("code exchange = %v; want 200", r)
	}
	p := decodePair(t, r)
	f.sec.add(p.AccessToken, p.RefreshToken)
	r = s.form(t, "/oauth2/token", exchange, "Authorization", basic(f.web.ID, f.web.Secret))
	f.expect(t, "code replay", r, http.StatusBadRequest)
	if errorCode(r) != "invalid_grant" {
		t.Errorf("code replay: error %q; want invalid_grant", errorCode(r))
	}
	// A token granted to an OAuth client cannot manage the account.
	f.expect(t, "an OAuth client's token on /api/v1/profile", s.get(t, "/api/v1/profile", p.AccessToken), http.StatusUnauthorized)

	// Signed in and consented, a good request redirects at once: the
	// control for the variants below, which must never redirect.
	r = get(f.authorizeQuery())
	if loc := r.header.Get("Location"); r.status != http.StatusFound || !strings.HasPrefix(loc, webRedirect+"?code=") {
		t.Fatalf("signed-in authorize = %v, Location %q; want 302 with a code", r, loc)
	} else {
		lu, _ := url.Parse(loc)
		f.sec.add(lu.Query().Get("code"))
	}

	variants := []string{
		"https://evil.com/cb",
		"https://app.example.com.evil.com/cb",
		"https://app.example.com/cb/../x",
		"https://app.example.com/cb/..",
		"https://app.example.com/x/../cb",
		"//evil.com",
		"//evil.com/cb",
		"https:evil.com",
		"https:/evil.com/cb",
		"javascript:alert(1)",
		"javascript://app.example.com/cb%0aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"https://app.example.com@evil.com/cb",
		"https://evil.com@app.example.com/cb",
		"https://app.example.com%40evil.com/cb",
		`https://app.example.com\@evil.com/cb`,
		`https://evil.com\.app.example.com/cb`,
		"HTTPS://APP.EXAMPLE.COM/cb",
		"https://APP.example.com/cb",
		"https://app.example.com/CB",
		"https://app.example.com/cb/",
		"https://app.example.com/cb?",
		"https://app.example.com/cb?x=1",
		"https://app.example.com/cb#",
		"https://app.example.com/cb#frag",
		"https://app.example.com/%63b",
		"https://app.example.com/cb%2f..%2fx",
		"https://app.example.com/cb%00",
		"https://app.example.com/cb%0d%0aSet-Cookie:x=1",
		"https://app.example.com:443/cb",
		"https://app.example.com./cb",
		"http://app.example.com/cb",
		" https://app.example.com/cb",
		"https://app.example.com/cb ",
		"https://app.example.com/cb\t",
		"https://app.example.com/cb\n",
		"/cb",
		"cb",
		"https://app.example.com",
		"https://xn--pp-8ja.example.com/cb",
		"http://127.0.0.1.evil.com/cb",
		"http://127.0.0.1@evil.com/cb",
		"http://127.0.0.1:8080@evil.com/cb",
		"http://evil.com#@127.0.0.1/cb",
		"http://127.0.0.2/cb",
		"http://0x7f.1/cb",
		"http://[::1]/cb",
		"http://127.0.0.1:9999/cb/../x",
		"http://127.0.0.1:9999/cb?x=1",
		"http://127.0.0.1:9999/cb#x",
		"https://127.0.0.1/cb",
	}
	clients := []struct {
		name string
		c    *http.Client
	}{{"signed out", plainClient}, {"signed in", b}}
	for _, v := range variants {
		for _, mut := range []struct {
			name string
			q    url.Values
		}{
			{"", f.authorizeQuery("redirect_uri", v)},
			{" + response_type=token", f.authorizeQuery("redirect_uri", v, "response_type", "token")},
			{" + prompt=none", f.authorizeQuery("redirect_uri", v, "prompt", "none")},
			{" + bad scope", f.authorizeQuery("redirect_uri", v, "scope", "admin")},
		} {
			for _, c := range clients {
				r := send(t, c.c, s.newRequest(t, "GET", "/oauth2/authorize?"+mut.q.Encode(), "", nil))
				f.expectPage(t, fmt.Sprintf("authorize redirect_uri %q%s (%s)", v, mut.name, c.name), r)
			}
		}
	}
	// Every parameter that is stored with the code, with text no database
	// column can hold: a clean answer at the redirect URI, never a 5xx.
	for _, nonce := range []string{"n\x00once", "\x00", strings.Repeat("n", 512), "<script>alert(3)</script>"} {
		r := get(f.authorizeQuery("nonce", nonce))
		loc := r.header.Get("Location")
		if r.status != http.StatusFound || !strings.HasPrefix(loc, webRedirect+"?") {
			t.Errorf("signed-in authorize with nonce %q = %v, Location %q; want 302 to %s (a code or an error)", clip(nonce, 20), r, loc, webRedirect)
			continue
		}
		lu, _ := url.Parse(loc)
		f.sec.add(lu.Query().Get("code"))
	}
	// A state with CR LF cannot split the redirect's headers.
	r = get(f.authorizeQuery("state", "s\r\nSet-Cookie: injected=1", "scope", "nope"))
	injected := slices.ContainsFunc(r.header.Values("Set-Cookie"), func(c string) bool { return strings.Contains(c, "injected") })
	if r.status != http.StatusFound || injected {
		t.Errorf("authorize with CR LF in state = %v, headers %v; want 302 and no injected header", r, r.header)
	}

	// The loopback exception (RFC 8252 §7.3): any port on the registered
	// loopback URI, and nothing else.
	r = get(f.authorizeQuery("redirect_uri", "http://127.0.0.1:9999/cb"))
	if loc := r.header.Get("Location"); r.status != http.StatusFound || !strings.HasPrefix(loc, "http://127.0.0.1:9999/cb?code=") {
		t.Errorf("authorize with a loopback port = %v, Location %q; want 302 to http://127.0.0.1:9999/cb?code=...", r, loc)
	} else {
		lu, _ := url.Parse(loc)
		f.sec.add(lu.Query().Get("code"))
	}
	// Without redirect_uri a client with two registered URIs gets a page.
	f.expectPage(t, "authorize without redirect_uri", get(f.authorizeQuery("redirect_uri", "")))
}

func testPathTricks(t *testing.T, f *hostileFixture) {
	for _, target := range []string{
		"/api/v1/users/../profile",
		"/api/v1/users/%2e%2e",
		"/api/v1/users/%2e%2e/profile",
		"/api/v1/users/%2E%2E%2Fprofile",
		"/api/v1/users/..%2fprofile",
		"/api/v1/users/./1",
		"/api/v1/users/1%2f2",
		"/api/v1/users/%00",
		"/api/v1/users/-1",
		"/api/v1/users/99999999999999999999999",
		"//api/v1/profile",
		"/api/v1//profile",
		"/api//v1/users",
		"///api/v1/profile",
		"/oauth2/../api/v1/profile",
		"/api/v1/profile/",
		"/api/v1/profile%00",
		"/api/v1/profile;x=1",
		"/API/V1/PROFILE",
		"/api/v1/%zz",
		"/%",
		"/./health/..",
		"//evil.com/",
		"//evil.com/%2e%2e",
		"/%2f%2fevil.com",
		"/..//evil.com",
		`/\evil.com`,
		"/.well-known/../.well-known/jwks.json/..",
		"/oauth2/static/../../../../etc/passwd",
		"/oauth2/static/%2e%2e/%2e%2e/go.mod",
		"http://evil.com/api/v1/profile",
		"*",
	} {
		r := f.raw(t, "GET "+target+" HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n", nil)
		what := "GET " + target
		if r.status >= 300 && r.status < 400 {
			loc := r.header.Get("Location")
			if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`) {
				t.Errorf("%s: redirect to %q; want a path on this server", what, loc)
			}
			checkBody(t, what, r.body, f.sec.all())
			continue
		}
		f.expect(t, what, r)
		if bytes.Contains(r.body, []byte("root:")) || bytes.Contains(r.body, []byte("module oauth2-api")) {
			t.Errorf("%s: served a file from outside the static directory: %s", what, r.body)
		}
	}
}

func testMethods(t *testing.T, f *hostileFixture) {
	for _, c := range []struct{ method, path string }{
		{"PUT", "/oauth2/token"},
		{"GET", "/oauth2/token"},
		{"DELETE", "/oauth2/token"},
		{"PATCH", "/oauth2/token"},
		{"OPTIONS", "/oauth2/token"},
		{"TRACE", "/oauth2/token"},
		{"BREW", "/oauth2/token"},
		{"DELETE", "/oauth2/authorize"},
		{"PUT", "/oauth2/revoke"},
		{"GET", "/oauth2/introspect"},
		{"PATCH", "/health"},
		{"POST", "/health"},
		{"POST", "/metrics"},
		{"PUT", "/.well-known/jwks.json"},
		{"DELETE", "/.well-known/oauth-authorization-server"},
		{"PUT", "/api/v1/auth/login"},
		{"GET", "/api/v1/auth/login"},
		{"DELETE", "/api/v1/auth/register"},
		{"PUT", "/api/v1/profile"},
		{"DELETE", "/api/v1/profile"},
		{"POST", "/api/v1/users"},
		{"GET", "/api/v1/users/1"},
		{"TRACE", "/api/v1/profile"},
		{"M-SEARCH", "/"},
	} {
		r := f.s.do(t, c.method, c.path, "application/x-www-form-urlencoded", "grant_type=client_credentials",
			"Authorization", basic(f.cc.ID, f.cc.Secret))
		f.expect(t, c.method+" "+c.path, r, http.StatusMethodNotAllowed, http.StatusNotFound)
	}
}

func testAuthorizationGarbage(t *testing.T, f *hostileFixture) {
	access := f.user.AccessToken
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	r := f.s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(f.cc.ID, f.cc.Secret))
	if r.status != http.StatusOK {
		t.Fatalf("client credentials = %v; want 200", r)
	}
	serviceToken := decodePair(t, r).AccessToken
	f.sec.add(serviceToken)
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + b64([]byte(`{"iss":"x","sub":"1","client_id":"oauth2-api","exp":9999999999}`)) + "."
	garbage := []string{
		"Bearer",
		"Bearer ",
		"Bearer  ",
		"Bearer a.b.c",
		"Bearer ...",
		"Bearer " + strings.Repeat("A", 10<<10),
		"Bearer " + strings.Repeat("a.", 5<<10),
		"Bearer " + strings.Repeat("eyJ", 3<<10) + "." + strings.Repeat("eyJ", 3<<10) + "." + strings.Repeat("A", 3<<10),
		"Bearer " + algNone,
		"Bearer " + access + "x",
		"Bearer " + access[:len(access)-1],
		"Bearer " + flip(access, len(access)-1),
		"Bearer " + flip(access, 0),
		"Bearer " + access + " " + access,
		"Bearer\t" + access,
		"Bearer " + f.user.RefreshToken,
		"Bearer " + serviceToken, // a client's own token cannot act as a user
		"Basic !!!not-base64!!!",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("user1:"+f.userPass)),
		"Basic",
		"Digest username=\"user1\"",
		"Token " + access,
		"Bearer " + strings.Repeat("\xff", 64),
		"Bearer " + jwtSecret,
	}
	for _, path := range []string{"/api/v1/profile", "/api/v1/users", "/oauth2/userinfo"} {
		for _, h := range garbage {
			r := f.s.do(t, "GET", path, "", "", "Authorization", h)
			what := fmt.Sprintf("GET %s with Authorization %q", path, clip(h, 40))
			if path == "/oauth2/userinfo" && h == "Bearer "+serviceToken {
				// A valid token without openid: RFC 6750 §3.1 insufficient_scope.
				f.expect(t, what, r, http.StatusForbidden)
				continue
			}
			f.expect(t, what, r, http.StatusUnauthorized)
			if strings.HasPrefix(path, "/api/") && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q; want a Bearer challenge", what, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	// A token in the query string is not a credential (and must not be logged).
	f.expect(t, "access_token in the query", f.s.get(t, "/api/v1/profile?access_token="+access, ""), http.StatusUnauthorized)
	// The case of the scheme does not matter (RFC 7235 §2.1): the control.
	if r := f.s.do(t, "GET", "/api/v1/profile", "", "", "Authorization", "bEaReR "+access); r.status != http.StatusOK {
		t.Errorf("GET /api/v1/profile with scheme bEaReR = %v; want 200", r)
	}

	// Garbage client authentication at the OAuth endpoints.
	for _, h := range []string{
		"Basic !!!not-base64!!!",
		"Basic",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("no-colon")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(":")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(f.cc.ID+":")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(":"+f.cc.Secret)),
		"Basic " + strings.Repeat("QUFB", 1<<10),
		"Basic " + base64.RawStdEncoding.EncodeToString([]byte(f.cc.ID+":"+f.cc.Secret+"x")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(f.cc.ID+":"+f.cc.Secret)) + "!",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("%zz:"+f.cc.Secret)),
		"Bearer " + serviceToken,
	} {
		for _, path := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
			r := f.s.form(t, path, "grant_type=client_credentials&token=x", "Authorization", h)
			what := fmt.Sprintf("POST %s with Authorization %q", path, clip(h, 40))
			f.expect(t, what, r, http.StatusUnauthorized)
			if errorCode(r) != "invalid_client" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: error %q, WWW-Authenticate %q; want invalid_client with a Basic challenge", what, errorCode(r), r.header.Get("WWW-Authenticate"))
			}
		}
	}
}

// testClientSecret checks, by behaviour, that the whole secret is compared:
// a secret that differs only in its first or only in its last byte is
// refused, however it is sent.
func testClientSecret(t *testing.T, f *hostileFixture) {
	secret := f.cc.Secret
	other := func(c byte) byte {
		if c == 'A' {
			return 'B'
		}
		return 'A'
	}
	last := secret[:len(secret)-1] + string(other(secret[len(secret)-1]))
	first := string(other(secret[0])) + secret[1:]
	wrong := []struct{ name, secret string }{
		{"last byte differs", last},
		{"first byte differs", first},
		{"one byte short", secret[:len(secret)-1]},
		{"one byte long", secret + "A"},
		{"upper case", strings.ToUpper(secret)},
		{"another client's secret", f.web.Secret},
		{"the secret twice", secret + secret},
		{"with a NUL", secret + "\x00"},
		{"with spaces", " " + secret + " "},
	}
	for _, w := range wrong {
		f.sec.add(w.secret)
	}
	for _, w := range wrong {
		for _, how := range []string{"basic", "post"} {
			var r reply
			if how == "basic" {
				r = f.s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(f.cc.ID, w.secret))
			} else {
				r = f.s.form(t, "/oauth2/token", "grant_type=client_credentials&client_id="+f.cc.ID+"&client_secret="+url.QueryEscape(w.secret))
			}
			what := fmt.Sprintf("client secret, %s (%s)", w.name, how)
			f.expect(t, what, r, http.StatusUnauthorized)
			if errorCode(r) != "invalid_client" {
				t.Errorf("%s: error %q; want invalid_client", what, errorCode(r))
			}
		}
		r := f.s.form(t, "/oauth2/introspect", "token=x", "Authorization", basic(f.cc.ID, w.secret))
		f.expect(t, "introspect, "+w.name, r, http.StatusUnauthorized)
	}
	// The control: the right secret, both ways.
	for _, r := range []reply{
		f.s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(f.cc.ID, secret)),
		f.s.form(t, "/oauth2/token", "grant_type=client_credentials&client_id="+f.cc.ID+"&client_secret="+url.QueryEscape(secret)),
	} {
		if r.status != http.StatusOK {
			t.Errorf("client credentials with the right secret = %v; want 200", r)
			continue
		}
		f.sec.add(decodePair(t, r).AccessToken)
	}
}
