package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/httpx"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// userKeys are the fields of a user in API.md; nothing else may appear.
var userKeys = []string{"created_at", "email", "email_verified", "first_name", "id", "is_active", "last_name", "role", "updated_at", "username"}

// wantAPIError checks a REST error answer (API.md): status, code, a JSON body
// with a non-empty message and nothing but error and message.
func wantAPIError(r response, status int, code string) response {
	r.t.Helper()
	r.wantError(status, code)
	m := r.JSON()
	if msg, _ := m["message"].(string); msg == "" {
		r.t.Fatalf("error body %s has no message", r.Body.String())
	}
	if len(m) != 2 {
		r.t.Fatalf("error body %s has fields other than error and message", r.Body.String())
	}
	if ct := r.Header().Get("Content-Type"); ct != "application/json" {
		r.t.Fatalf("error Content-Type %q; want application/json", ct)
	}
	return r
}

// wantUser checks that a JSON object is a user as API.md shows it.
func wantUser(t testing.TB, m map[string]any) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(m))
	if !slices.Equal(keys, userKeys) {
		t.Fatalf("user has fields %q; want %q", keys, userKeys)
	}
	for k, v := range m {
		if s, ok := v.(string); ok && strings.Contains(s, "argon2") {
			t.Fatalf("user field %s holds a password hash", k)
		}
	}
}

// retryAfter returns the Retry-After header in seconds, failing if absent.
func retryAfter(r response) int {
	r.t.Helper()
	n, err := strconv.Atoi(r.Header().Get("Retry-After"))
	if err != nil {
		r.t.Fatalf("Retry-After %q: %v", r.Header().Get("Retry-After"), err)
	}
	return n
}

// serveRaw sends a request built by the test through the whole handler.
func (e *env) serveRaw(req *http.Request) response {
	e.t.Helper()
	req.RemoteAddr = "192.0.2.1:1234"
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return response{w, e.t}
}

// metricsText returns the body of GET /metrics.
func (e *env) metricsText() string {
	e.t.Helper()
	r := e.request("GET", "/metrics", nil).want(http.StatusOK)
	if ct := r.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		e.t.Fatalf("metrics Content-Type %q", ct)
	}
	return r.Body.String()
}

// logLines decodes the JSON log lines written so far.
func (e *env) logLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

func (e *env) register(body map[string]string) response {
	e.t.Helper()
	e.secret(body["password"])
	return e.request("POST", "/api/v1/auth/register", body)
}

func (e *env) refresh(tok string) response {
	e.t.Helper()
	return e.request("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": tok})
}

func (e *env) loginAttempt(login, password string) response {
	e.t.Helper()
	e.secret(password)
	return e.request("POST", "/api/v1/auth/login", map[string]string{"login": login, "password": password})
}

func userPath(id int64) string { return "/api/v1/users/" + strconv.FormatInt(id, 10) }

// --- register ---

func TestRegister(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		pw := "Register-Pass-1"
		r := e.register(map[string]string{"email": "Ann@Example.COM", "username": "Ann_1", "password": pw, "first_name": "Ann", "last_name": "Lee"}).want(http.StatusCreated)
		m := r.JSON()
		wantUser(t, m)
		for k, want := range map[string]any{"email": "ann@example.com", "username": "Ann_1", "first_name": "Ann", "last_name": "Lee", "role": "user", "is_active": true} {
			if m[k] != want {
				t.Errorf("registered user %s = %v; want %v", k, m[k], want)
			}
		}
		if id, _ := m["id"].(float64); id < 1 {
			t.Errorf("registered user id %v", m["id"])
		}
		created, err := time.Parse(time.RFC3339, m["created_at"].(string))
		if err != nil || !created.Equal(e.clock.Now()) {
			t.Errorf("created_at %v (%v); want %v", m["created_at"], err, e.clock.Now())
		}
		if strings.Contains(r.Body.String(), pw) || strings.Contains(r.Body.String(), "password") {
			t.Errorf("register answer mentions the password: %s", r.Body.String())
		}
		// The account works, by either name.
		e.login("ann@example.com", pw)
		e.login("ann_1", pw)
		u, err := e.db.UserByEmail(context.Background(), "ann@example.com")
		if err != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Fatalf("stored user %+v, %v; want an argon2id hash", u, err)
		}

		// Boundaries: 8 and 128 characters, counted in characters, not bytes.
		for i, p := range []string{"eight8ch", strings.Repeat("é", 128), strings.Repeat("p", 128)} {
			e.register(map[string]string{"email": fmt.Sprintf("edge%d@example.com", i), "username": fmt.Sprintf("edge%d", i), "password": p}).want(http.StatusCreated)
		}
	})
}

// TestRegisterExactNames: a member named in another letter case than the
// field's is an unknown field (400), as encoding/json alone would have
// taken "PASSWORD" for password; nothing is registered.
func TestRegisterExactNames(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.secret("Eve-Password-1")
		for _, body := range []string{
			`{"email":"eve@example.com","username":"eve","PASSWORD":"Eve-Password-1"}`,
			`{"Email":"eve@example.com","username":"eve","password":"Eve-Password-1"}`,
			`{"\u0065mail":"eve@example.com","username":"eve","password":"Eve-Password-1"}`, // encoding/json reads it as email
			`{"email":"eve@example.com","username":"eve","pass\u0077ord":"Eve-Password-1"}`,
		} {
			r := e.request("POST", "/api/v1/auth/register", body, "Content-Type", "application/json").wantError(http.StatusBadRequest, "invalid_json")
			if !strings.HasPrefix(r.Str("message"), "unknown field ") {
				t.Errorf("%s: %s; want an unknown field", body, r.Body.String())
			}
		}
		// The same at login, before any password is checked or counted.
		r := e.request("POST", "/api/v1/auth/login", `{"login":"eve","pass\u0077ord":"Eve-Password-1"}`, "Content-Type", "application/json")
		if r.wantError(http.StatusBadRequest, "invalid_json"); !strings.Contains(r.Str("message"), `pass\\u0077ord`) {
			t.Errorf("login with an escaped name: %s; want an unknown field named as sent", r.Body.String())
		}
		if u, err := e.db.UserByEmail(context.Background(), "eve@example.com"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UserByEmail = %+v, %v; want ErrNotFound", u, err)
		}
	})
}

func TestRegisterConflict(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.register(map[string]string{"email": "bo@example.com", "username": "Boz", "password": "Bo-Password-1"}).want(http.StatusCreated)
		for _, body := range []map[string]string{
			{"email": "bo@example.com", "username": "other", "password": "Bo-Password-2"},
			{"email": "BO@EXAMPLE.com", "username": "other", "password": "Bo-Password-2"},
			{"email": "other@example.com", "username": "Boz", "password": "Bo-Password-2"},
			{"email": "other@example.com", "username": "bOZ", "password": "Bo-Password-2"},
		} {
			wantAPIError(e.register(body), http.StatusConflict, "conflict")
		}
		// The first account is untouched, and the name is still free for a distinct user.
		e.login("boz", "Bo-Password-1")
		e.loginAttempt("boz", "Bo-Password-2").want(http.StatusUnauthorized)
		e.register(map[string]string{"email": "other@example.com", "username": "other", "password": "Bo-Password-2"}).want(http.StatusCreated)
	})
}

func TestRegisterValidation(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			field, value, wantField string
		}{
			{"email", "", "email"},
			{"email", "no-at-sign", "email"},
			{"email", "Ann <ann@example.com>", "email"},
			{"email", "ann@example.com\r\nBcc: x@example.com", "email"},
			{"email", strings.Repeat("a", 250) + "@example.com", "email"},
			{"email", "ann@[10.0.0.5]", "email"}, // a domain literal: mail to an internal address
			{"email", "ann@10.0.0.5", "email"},   // the same without brackets
			{"email", "ann@[IPv6:::1]", "email"},
			{"email", "\u00a0Val@Example.com ", "email"}, // nothing trimmed: stored as val@example.com
			{"email", "\u00a0val@example.com", "email"},  // net/mail takes U+00A0 in an atom
			{"email", "val@example.com\u2028", "email"},
			{"email", "val@bücher.example", "email"}, // its A-label, val@xn--bcher-kva.example, is the one form
			{"username", "", "username"},
			{"username", "ab", "username"},
			{"username", strings.Repeat("a", 33), "username"},
			{"username", ".ann", "username"},
			{"username", "ann@example", "username"},
			{"username", "ann lee", "username"},
			{"username", "ännchen", "username"},
			{"password", "", "password"},
			{"password", "7-chars", "password"},
			{"password", strings.Repeat("é", 7), "password"},
			{"password", strings.Repeat("p", 129), "password"},
			{"password", "nul\x00in-password", "password"},
			{"first_name", strings.Repeat("n", 101), "first_name"},
			{"first_name", "Ann\nLee", "first_name"},
			{"last_name", "Lee\x07", "last_name"},
			{"last_name", strings.Repeat("ö", 101), "last_name"},
		} {
			body := map[string]string{"email": "val@example.com", "username": "valid", "password": "Valid-Password-1", "first_name": "Val", "last_name": "Id"}
			body[tc.field] = tc.value
			r := wantAPIError(e.register(body), http.StatusUnprocessableEntity, "validation_failed")
			if msg := r.Str("message"); !strings.HasPrefix(msg, tc.wantField+":") {
				t.Errorf("%s=%.20q: message %q; want it to name %s", tc.field, tc.value, msg, tc.wantField)
			}
		}
		// None of them created the account.
		e.register(map[string]string{"email": "val@example.com", "username": "valid", "password": "Valid-Password-1"}).want(http.StatusCreated)
	})
}

func TestRegisterDisabled(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		wantAPIError(e.register(map[string]string{"email": "no@example.com", "username": "nobody", "password": "No-Password-1"}), http.StatusForbidden, "registration_disabled")
		if _, err := e.db.UserByUsername(context.Background(), "nobody"); err == nil {
			t.Fatal("registration is disabled but the user was created")
		}
	}, func(d *Deps) { d.EnableRegistration = false })
}

func TestRegisterBadBodies(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const good = `{"email":"raw@example.com","username":"raw","password":"Raw-Password-1"}`
		e.secret("Raw-Password-1")
		const path = "/api/v1/auth/register"
		ctJSON := []string{"Content-Type", "application/json"}

		wantAPIError(e.request("POST", path, good), http.StatusUnsupportedMediaType, "unsupported_media_type")
		wantAPIError(e.request("POST", path, good, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "unsupported_media_type")
		wantAPIError(e.request("POST", path, good, "Content-Type", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType, "unsupported_media_type")

		huge := `{"email":"raw@example.com","username":"raw","password":"Raw-Password-1","first_name":"` + strings.Repeat("a", 1<<20) + `"}`
		wantAPIError(e.request("POST", path, huge, ctJSON...), http.StatusRequestEntityTooLarge, "request_too_large")
		// The same without a declared length (chunked): cut while reading.
		req := httptest.NewRequest("POST", path, strings.NewReader(huge))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
		wantAPIError(e.serveRaw(req), http.StatusRequestEntityTooLarge, "request_too_large")

		for _, body := range []string{
			``,
			`{"email":"raw@example.com",`,
			`{"email":"raw@example.com","username":"raw","password":"Raw-Password-1","role":"admin"}`, // no mass assignment
			"{\"email\":\"raw@example.com\",\"username\":\"raw\",\"password\":\"Raw-Password-1\xff\"}",
			good + `{"email":"second@example.com"}`,
			good + `x`,
			`{"email":1,"username":"raw","password":"Raw-Password-1"}`,
			`["raw@example.com"]`,
		} {
			r := wantAPIError(e.request("POST", path, body, ctJSON...), http.StatusBadRequest, "invalid_json")
			if strings.Contains(r.Body.String(), "Raw-Password-1") {
				t.Errorf("error for %.40q echoes the password: %s", body, r.Body.String())
			}
		}
		// None of them created the user; the good body does, as a plain user.
		r := e.request("POST", path, good, ctJSON...).want(http.StatusCreated)
		if r.Str("role") != "user" {
			t.Errorf("role %q", r.Str("role"))
		}
	})
}

// Every REST answer carries no-store, the errors written before a handler
// runs too (ASVS 8.3.1): the caller check's 401, the mux's 404 and 405, the
// body limit's 413, the login budget's 429. None did.
func TestRESTErrorsNoStore(t *testing.T) {
	e := newEnv(t, store.SQLite, func(d *Deps) { d.Creds = ratelimit.New(rate.Every(time.Minute), 2, 100) })
	rs := map[string]response{
		"401": e.request("GET", "/api/v1/profile", nil),
		"404": e.request("GET", "/api/v1/nope", nil),
		"405": e.request("PUT", "/api/v1/profile", "{}", "Content-Type", "application/json"),
		"413": e.request("POST", "/api/v1/auth/login", strings.Repeat("x", 2<<20), "Content-Type", "application/json"),
	}
	for i := 0; i < 20; i++ {
		if r := e.loginAttempt("ghost"+strconv.Itoa(i), "Wrong-Password-1"); r.Code == http.StatusTooManyRequests {
			rs["429"] = r
			break
		}
	}
	for want, r := range rs {
		if strconv.Itoa(r.Code) != want {
			t.Errorf("%s: status %d", want, r.Code)
		}
		if cc, p := r.Header().Get("Cache-Control"), r.Header().Get("Pragma"); cc != "no-store" || p != "no-cache" {
			t.Errorf("%d: Cache-Control %q, Pragma %q; want no-store, no-cache", r.Code, cc, p)
		}
	}
	if len(rs) != 5 {
		t.Errorf("no 429 after 20 failed logins from one address")
	}
}

// --- login ---

func TestLogin(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("bob@example.com", "Bob", "Bob-Password-1", store.RoleUser)
		seen := map[string]bool{}
		for _, login := range []string{"bob@example.com", "BOB@Example.com", "Bob", "bob"} {
			r := e.loginAttempt(login, "Bob-Password-1").want(http.StatusOK)
			if cc, p := r.Header().Get("Cache-Control"), r.Header().Get("Pragma"); cc != "no-store" || p != "no-cache" {
				t.Errorf("login %s: Cache-Control %q, Pragma %q", login, cc, p)
			}
			m := r.JSON()
			access, refresh := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
			if m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) || access == "" || len(refresh) != 43 {
				t.Errorf("login %s: pair %v", login, m)
			}
			if seen[access] || seen[refresh] {
				t.Errorf("login %s: a token was issued twice", login)
			}
			seen[access], seen[refresh] = true, true
			// RFC 9068 claims: sub is the user id, aud and iss the issuer.
			c, err := e.deps.Tokens.Verify(access, e.clock.Now())
			if err != nil || c.Subject != strconv.FormatInt(u.ID, 10) || c.Audience != testIssuer || c.Issuer != testIssuer || c.ClientID != RESTClientID {
				t.Errorf("login %s: claims %+v, %v", login, c, err)
			}
			p := e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusOK)
			if p.Str("username") != "Bob" {
				t.Errorf("profile of the login's token: %s", p.Body.String())
			}
			if p.Header().Get("Cache-Control") != "no-store" { // personal data (ASVS 8.3.1); a regression test: none was sent
				t.Errorf("profile answered without no-store: %v", p.Header())
			}
		}
		wantAPIError(e.request("POST", "/api/v1/auth/login", map[string]string{"login": "bob"}), http.StatusUnprocessableEntity, "validation_failed")
		wantAPIError(e.request("POST", "/api/v1/auth/login", map[string]string{"password": "Bob-Password-1"}), http.StatusUnprocessableEntity, "validation_failed")
		wantAPIError(e.request("POST", "/api/v1/auth/login", `{"login":"bob","password":"Bob-Password-1","scope":"admin"}`, "Content-Type", "application/json"), http.StatusBadRequest, "invalid_json")
	})
}

func TestLoginFailuresIdentical(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("carol@example.com", "carol", "Carol-Password-1", store.RoleUser)
		inactive := e.createUser("dan@example.com", "dan", "Dan-Password-1", store.RoleUser)
		off := false
		root, _ := e.admin()
		if _, _, err := e.db.UpdateUserAdmin(context.Background(), root.ID, inactive.ID, nil, &off, time.Hour, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		wrong := wantAPIError(e.loginAttempt("carol@example.com", "Wrong-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		for name, r := range map[string]response{
			"unknown email":    e.loginAttempt("nobody@example.com", "Wrong-Password-1"),
			"unknown username": e.loginAttempt("nobody", "Carol-Password-1"),
			"inactive user":    e.loginAttempt("dan", "Dan-Password-1"),
		} {
			if r.Code != wrong.Code || r.Body.String() != wrong.Body.String() {
				t.Errorf("%s: %d %q; wrong password: %d %q", name, r.Code, r.Body.String(), wrong.Code, wrong.Body.String())
			}
			h1, h2 := r.Header().Clone(), wrong.Header().Clone()
			h1.Del("X-Request-ID")
			h2.Del("X-Request-ID")
			if fmt.Sprint(h1) != fmt.Sprint(h2) {
				t.Errorf("%s: headers %v; wrong password: %v", name, h1, h2)
			}
		}
	})
}

// An email matches whatever its letter case, non-ASCII letters included,
// and the same on every database (SQLite's lower() folds only ASCII); a
// username is ASCII, so a login with a letter that PostgreSQL's lower()
// would fold into ASCII (the Kelvin sign) names no one.
func TestLoginUnicodeCase(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		r := e.register(map[string]string{"email": "Émile@Example.com", "username": "emile", "password": "Emile-Password-1"}).want(http.StatusCreated)
		if r.Str("email") != "émile@example.com" {
			t.Fatalf("stored email %q; want it folded", r.Str("email"))
		}
		e.secret("Emile-Password-1")
		for _, login := range []string{"ÉMILE@EXAMPLE.COM", "émile@example.com", "Émile@Example.com", "EMILE"} {
			e.login(login, "Emile-Password-1")
		}
		wantAPIError(e.register(map[string]string{"email": "ÉMILE@example.COM", "username": "emile2", "password": "Emile-Password-1"}), http.StatusConflict, "conflict")
		e.createUser("kate@example.com", "kate", "Kate-Password-1", store.RoleUser)
		wantAPIError(e.loginAttempt("\u212Aate", "Kate-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		// Nothing is trimmed: white space of any script around a login
		// names no one, with the right password too.
		for _, login := range []string{" \u00a0kate@example.com\u2028", "kate@example.com\u00a0", "\u3000kate"} {
			wantAPIError(e.loginAttempt(login, "Kate-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		}
	})
}

func TestLoginThrottle(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const good = "Dave-Password-1"
		e.createUser("dave@example.com", "dave", good, store.RoleUser)
		for i := 0; i < e.deps.Throttle.Max; i++ {
			wantAPIError(e.loginAttempt("dave", "Wrong-Password-"+strconv.Itoa(i)), http.StatusUnauthorized, "invalid_credentials")
		}
		// Locked: even the right password answers 429.
		locked := wantAPIError(e.loginAttempt("dave", good), http.StatusTooManyRequests, "too_many_attempts")
		if n := retryAfter(locked); n < 1 || n > 900 {
			t.Errorf("Retry-After %d; want 1 to 900 (the 15 minute window)", n)
		}
		// By the account's other name the password is not checked either,
		// but the answer is a wrong password's, so it does not tell that the
		// two names are one account (TestLockoutDoesNotLinkNames).
		wantAPIError(e.loginAttempt("DAVE@example.com", good), http.StatusUnauthorized, "invalid_credentials")

		// An unknown account locks the same way, with the same answer.
		for i := 0; i < e.deps.Throttle.Max; i++ {
			wantAPIError(e.loginAttempt("ghost@example.com", "Ghost-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		}
		ghost := wantAPIError(e.loginAttempt("ghost@example.com", "Ghost-Password-1"), http.StatusTooManyRequests, "too_many_attempts")
		if ghost.Body.String() != locked.Body.String() || ghost.Header().Get("Retry-After") != locked.Header().Get("Retry-After") {
			t.Errorf("unknown account locked: %q %q; known: %q %q", ghost.Body.String(), ghost.Header().Get("Retry-After"), locked.Body.String(), locked.Header().Get("Retry-After"))
		}

		// The wait counts down on the server's clock.
		e.clock.Add(10 * time.Minute)
		r := wantAPIError(e.loginAttempt("dave", good), http.StatusTooManyRequests, "too_many_attempts")
		if n := retryAfter(r); n < 1 || n > 300 {
			t.Errorf("10 minutes in: Retry-After %d; want at most 300", n)
		}
		// The lock ends with the window.
		e.clock.Add(5 * time.Minute)
		e.login("dave", good)
		wantAPIError(e.loginAttempt("dave", "Wrong-Password-x"), http.StatusUnauthorized, "invalid_credentials")
		e.loginAttempt("ghost@example.com", "Ghost-Password-1").want(http.StatusUnauthorized)
	})
}

func TestLoginThrottleResetAndShared(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const good = "Erin-Password-1"
		e.createUser("erin@example.com", "erin", good, store.RoleUser)
		limit := e.deps.Throttle.Max
		// A success resets the count: max-1 failures, success, max-1 failures, success.
		for round := 0; round < 2; round++ {
			for i := 0; i < limit-1; i++ {
				e.loginAttempt("erin", "Wrong-Password-1").want(http.StatusUnauthorized)
			}
			e.login("erin", good)
		}
		// Email and username count against one account: once its checks
		// are spent, the right password is refused by either name.
		for i := 0; i < limit; i++ {
			login := "erin@example.com"
			if i%2 == 1 {
				login = "ERIN"
			}
			e.loginAttempt(login, "Wrong-Password-1").want(http.StatusUnauthorized)
		}
		wantAPIError(e.loginAttempt("erin", good), http.StatusUnauthorized, "invalid_credentials")
		wantAPIError(e.loginAttempt("erin@example.com", good), http.StatusUnauthorized, "invalid_credentials")
		e.clock.Add(e.deps.Throttle.Window)
		e.login("erin", good)
	})
}

// A login text's count was named by its plain SHA-256 ("login:" and the
// text lower-cased): a copy of the database gave back what was typed to a
// guess, a password typed into the login field included. It is an HMAC
// under a key from JWT_SECRET now: two instances with the same key on one
// database still count together, one with another key apart.
func TestLoginCountsKeyed(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			keyed := func(key string) *env {
				return newEnvOn(t, storetest.OpenURL(t, url), func(d *Deps) { d.Throttle.Key = []byte(key) })
			}
			a, b, other := keyed("one"), keyed("one"), keyed("two")
			const typed = "Typed-Password-1"
			for i := range a.deps.Throttle.Max {
				[]*env{a, b}[i%2].loginAttempt(typed, "Wrong-Password-1").want(http.StatusUnauthorized)
			}
			wantAPIError(b.loginAttempt(typed, "Wrong-Password-1"), http.StatusTooManyRequests, "too_many_attempts")
			var n int
			plain := token.Hash("login:" + strings.ToLower(typed))
			if err := storetest.Raw(t, d, url).QueryRow(`SELECT count(*) FROM login_failures WHERE account = '` + plain + `'`).Scan(&n); err != nil || n != 0 {
				t.Errorf("login_failures rows named by the login text's SHA-256: %d, %v; want none", n, err)
			}
			other.loginAttempt(typed, "Wrong-Password-1").want(http.StatusUnauthorized)
		})
	}
}

// --- refresh ---

func TestRefreshRotation(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("fay@example.com", "fay", "Fay-Password-1", store.RoleUser)
		a1, r1 := e.login("fay", "Fay-Password-1")
		res := e.refresh(r1).want(http.StatusOK)
		if cc, p := res.Header().Get("Cache-Control"), res.Header().Get("Pragma"); cc != "no-store" || p != "no-cache" {
			t.Errorf("refresh: Cache-Control %q, Pragma %q", cc, p)
		}
		a2, r2 := e.secret(res.Str("access_token")), e.secret(res.Str("refresh_token"))
		if m := res.JSON(); m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) {
			t.Errorf("refresh pair %v", m)
		}
		if a2 == "" || a2 == a1 || len(r2) != 43 || r2 == r1 {
			t.Fatalf("refresh did not issue a new pair")
		}
		e.request("GET", "/api/v1/profile", nil, bearer(a2)...).want(http.StatusOK)

		// Another session, to see that reuse revokes only its own family.
		_, other := e.login("fay", "Fay-Password-1")

		// The spent token is refused, and its reuse revokes the family.
		wantAPIError(e.refresh(r1), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(r2), http.StatusUnauthorized, "invalid_token")
		res = e.refresh(other).want(http.StatusOK)
		e.secret(res.Str("access_token"))
		newest := e.secret(res.Str("refresh_token"))

		for _, bad := range []string{"", "x", strings.Repeat("A", 43), newest + "A", newest[:42]} {
			wantAPIError(e.refresh(bad), http.StatusUnauthorized, "invalid_token")
		}
		wantAPIError(e.request("POST", "/api/v1/auth/refresh", `{"refresh_token":1}`, "Content-Type", "application/json"), http.StatusBadRequest, "invalid_json")

		// Refresh tokens expire.
		e.clock.Add(e.deps.Tokens.RefreshTTL + time.Second)
		wantAPIError(e.refresh(newest), http.StatusUnauthorized, "invalid_token")
	})
}

func TestRefreshConcurrent(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("gus@example.com", "gus", "Gus-Password-1", store.RoleUser)
		// Several rounds: each is a race, and one round may happen not to overlap.
		for round := range 4 {
			_, r := e.login("gus", "Gus-Password-1")
			const n = 16
			codes := make([]int, n)
			toks := make([]string, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res := e.refresh(r)
					codes[i] = res.Code
					if res.Code == http.StatusOK {
						var m map[string]string
						json.Unmarshal(res.Body.Bytes(), &m)
						toks[i] = m["access_token"] + " " + m["refresh_token"]
					}
				}()
			}
			close(start)
			wg.Wait()
			for _, tok := range toks {
				for _, s := range strings.Fields(tok) {
					e.secret(s)
				}
			}
			ok := 0
			for i, c := range codes {
				switch c {
				case http.StatusOK:
					ok++
				case http.StatusUnauthorized:
				default:
					t.Errorf("round %d, refresh %d: status %d; want 200 or 401", round, i, c)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of %d concurrent refreshes of one token succeeded (%v); want exactly 1", round, ok, n, codes)
			}
		}
	})
}

// --- logout ---

func TestLogout(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
		e.createUser("ida@example.com", "ida", "Ida-Password-1", store.RoleUser)
		a1, r1 := e.login("hal", "Hal-Password-1")
		a2, r2 := e.login("hal", "Hal-Password-1")
		_, r3 := e.login("ida", "Ida-Password-1")

		r := e.request("POST", "/api/v1/auth/logout", nil, bearer(a1)...).want(http.StatusNoContent)
		if r.Body.Len() != 0 {
			t.Errorf("logout body %q", r.Body.String())
		}
		res := wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(a1)...), http.StatusUnauthorized, "invalid_token")
		if h := res.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q", h)
		}
		wantAPIError(e.refresh(r1), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.request("POST", "/api/v1/auth/logout", nil, bearer(a1)...), http.StatusUnauthorized, "invalid_token")

		// The other session lives on.
		e.request("GET", "/api/v1/profile", nil, bearer(a2)...).want(http.StatusOK)

		// A refresh token named in the body goes too, but only the caller's own.
		a4, r4 := e.login("hal", "Hal-Password-1")
		e.request("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": r4}, bearer(a2)...).want(http.StatusNoContent)
		wantAPIError(e.refresh(r2), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(r4), http.StatusUnauthorized, "invalid_token")
		// Naming a refresh token ends its session: access tokens included.
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(a4)...), http.StatusUnauthorized, "invalid_token")

		a5, _ := e.login("hal", "Hal-Password-1")
		e.request("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": r3}, bearer(a5)...).want(http.StatusNoContent)
		res = e.refresh(r3).want(http.StatusOK) // ida's session is not hal's to end
		e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))

		wantAPIError(e.request("POST", "/api/v1/auth/logout", nil), http.StatusUnauthorized, "unauthorized")
	})
}

// --- bearer challenges ---

func TestBearerChallenges(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("jay@example.com", "jay", "Jay-Password-1", store.RoleUser)
		access, _ := e.login("jay", "Jay-Password-1")
		endpoints := [][2]string{
			{"GET", "/api/v1/profile"}, {"PATCH", "/api/v1/profile"}, {"POST", "/api/v1/profile/password"},
			{"POST", "/api/v1/auth/logout"}, {"GET", "/api/v1/users"}, {"PATCH", "/api/v1/users/1"}, {"DELETE", "/api/v1/users/1"},
		}
		for _, ep := range endpoints {
			for _, auth := range [][]string{nil, {"Authorization", "Basic amF5OnB3"}, {"Authorization", "Bearer"}, {"Authorization", access}} {
				r := wantAPIError(e.request(ep[0], ep[1], map[string]string{}, auth...), http.StatusUnauthorized, "unauthorized")
				if h := r.Header().Get("WWW-Authenticate"); h != `Bearer realm="oauth2-api"` {
					t.Errorf("%s %s with %q: WWW-Authenticate %q; want a bare Bearer realm challenge", ep[0], ep[1], auth, h)
				}
			}
			for _, tok := range []string{"garbage", access + "x", strings.ToUpper(access)} {
				r := wantAPIError(e.request(ep[0], ep[1], map[string]string{}, bearer(tok)...), http.StatusUnauthorized, "invalid_token")
				if h := r.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="oauth2-api"`) || !strings.Contains(h, `error="invalid_token"`) {
					t.Errorf("%s %s with a bad token: WWW-Authenticate %q", ep[0], ep[1], h)
				}
			}
		}
		// The scheme is case-insensitive (RFC 6750 §2.1); the token is what
		// follows its spaces (1*SP, RFC 7235 §2.1), as sent.
		e.request("GET", "/api/v1/profile", nil, "Authorization", "bearer "+access).want(http.StatusOK)
		e.request("GET", "/api/v1/profile", nil, "Authorization", "Bearer  "+access).want(http.StatusOK)
		for _, h := range []string{"Bearer " + access + "\u00a0", "Bearer \v" + access, "Bearer \u2028" + access, "Bearer \t" + access} {
			wantAPIError(e.request("GET", "/api/v1/profile", nil, "Authorization", h), http.StatusUnauthorized, "invalid_token")
		}

		// A token the user granted to an OAuth client cannot call the REST API.
		tok, _, err := e.deps.Tokens.Access(strconv.FormatInt(u.ID, 10), "some-oauth-client", Mint{AuthTime: e.clock.Now()}, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(e.secret(tok))...), http.StatusUnauthorized, "invalid_token")

		// Expired tokens fail.
		e.clock.Add(e.deps.Tokens.AccessTTL + time.Minute)
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(access)...), http.StatusUnauthorized, "invalid_token")

		// Unknown API paths answer JSON too.
		wantAPIError(e.request("GET", "/api/v1/nothing-here", nil), http.StatusNotFound, "not_found")
	})
}

// --- profile ---

func TestProfile(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("kim@example.com", "kim", "Kim-Password-1", store.RoleUser)
		access, _ := e.login("kim", "Kim-Password-1")
		get := func() map[string]any {
			t.Helper()
			m := e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusOK).JSON()
			wantUser(t, m)
			return m
		}
		before := get()
		if before["id"] != float64(u.ID) || before["email"] != "kim@example.com" || before["first_name"] != "" {
			t.Fatalf("profile %v", before)
		}

		e.clock.Add(3 * time.Second)
		m := e.request("PATCH", "/api/v1/profile", map[string]string{"first_name": "Kim"}, bearer(access)...).want(http.StatusOK).JSON()
		wantUser(t, m)
		if m["first_name"] != "Kim" || m["last_name"] != "" || m["created_at"] != before["created_at"] {
			t.Errorf("after PATCH first_name: %v", m)
		}
		updated, err := time.Parse(time.RFC3339, m["updated_at"].(string))
		if err != nil || !updated.Equal(e.clock.Now()) {
			t.Errorf("updated_at %v; want %v", m["updated_at"], e.clock.Now())
		}
		m = e.request("PATCH", "/api/v1/profile", map[string]string{"last_name": "Park"}, bearer(access)...).want(http.StatusOK).JSON()
		if m["first_name"] != "Kim" || m["last_name"] != "Park" {
			t.Errorf("a PATCH of last_name changed first_name: %v", m)
		}
		if got := get(); got["first_name"] != "Kim" || got["last_name"] != "Park" || got["updated_at"] == before["updated_at"] {
			t.Errorf("GET after PATCH: %v", got)
		}

		for _, tc := range []struct{ field, value string }{
			{"first_name", strings.Repeat("k", 101)},
			{"first_name", "Kim\tPark"},
			{"last_name", "Park\u0085"},
		} {
			r := wantAPIError(e.request("PATCH", "/api/v1/profile", map[string]string{tc.field: tc.value}, bearer(access)...), http.StatusUnprocessableEntity, "validation_failed")
			if !strings.HasPrefix(r.Str("message"), tc.field+":") {
				t.Errorf("%s: message %q", tc.field, r.Str("message"))
			}
		}
		// Email and role are not the user's to change here.
		wantAPIError(e.request("PATCH", "/api/v1/profile", map[string]string{"role": "admin"}, bearer(access)...), http.StatusBadRequest, "invalid_json")
		wantAPIError(e.request("PATCH", "/api/v1/profile", map[string]string{"email": "x@example.com"}, bearer(access)...), http.StatusBadRequest, "invalid_json")
		if got := get(); got["role"] != "user" || got["email"] != "kim@example.com" || got["last_name"] != "Park" {
			t.Errorf("a refused PATCH changed the profile: %v", got)
		}
	})
}

// --- password change ---

func TestPasswordChange(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const oldPW, newPW = "Old-Password-1", "New-Password-2"
		e.secret(newPW)
		e.createUser("lee@example.com", "lee", oldPW, store.RoleUser)
		a1, r1 := e.login("lee", oldPW)
		_, r2 := e.login("lee", oldPW)
		const path = "/api/v1/profile/password"

		wantAPIError(e.request("POST", path, map[string]string{"current_password": "Not-The-Password", "new_password": newPW}, bearer(a1)...), http.StatusForbidden, "invalid_current_password")
		e.secret("Not-The-Password")
		r := wantAPIError(e.request("POST", path, map[string]string{"current_password": oldPW, "new_password": "short"}, bearer(a1)...), http.StatusUnprocessableEntity, "validation_failed")
		if !strings.HasPrefix(r.Str("message"), "new_password:") {
			t.Errorf("message %q", r.Str("message"))
		}
		e.login("lee", oldPW) // nothing changed yet
		r = e.request("POST", path, map[string]string{"current_password": oldPW, "new_password": newPW}, bearer(a1)...).want(http.StatusNoContent)
		if r.Body.Len() != 0 {
			t.Errorf("204 with body %q", r.Body.String())
		}

		// The other sessions' refresh tokens are revoked; this session's survives.
		wantAPIError(e.refresh(r2), http.StatusUnauthorized, "invalid_token")
		res := e.refresh(r1).want(http.StatusOK)
		e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))

		wantAPIError(e.loginAttempt("lee", oldPW), http.StatusUnauthorized, "invalid_credentials")
		e.login("lee", newPW)
		e.login("lee@example.com", newPW)
	})
}

// --- admin ---

// adminEnv creates an admin and logs in.
func (e *env) admin() (*store.User, string) {
	e.t.Helper()
	u := e.createUser("root@example.com", "root", "Root-Password-1", store.RoleAdmin)
	a, _ := e.login("root", "Root-Password-1")
	return u, a
}

func TestAdminList(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()
		var ids []float64
		for i := range 4 {
			u := e.createUser(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("user%d", i), "User-Password-1", store.RoleUser)
			ids = append(ids, float64(u.ID))
		}
		userTok, _ := e.login("user0", "User-Password-1")
		wantAPIError(e.request("GET", "/api/v1/users", nil, bearer(userTok)...), http.StatusForbidden, "forbidden")

		list := func(query string) ([]float64, float64) {
			t.Helper()
			r := e.request("GET", "/api/v1/users"+query, nil, bearer(admin)...).want(http.StatusOK)
			m := r.JSON()
			if strings.Contains(r.Body.String(), "argon2") || strings.Contains(r.Body.String(), "password") {
				t.Fatalf("user list leaks password hashes: %s", r.Body.String())
			}
			users, ok := m["users"].([]any)
			if !ok || len(m) != 2 {
				t.Fatalf("GET /api/v1/users%s = %s; want users and total", query, r.Body.String())
			}
			var got []float64
			for _, u := range users {
				um := u.(map[string]any)
				wantUser(t, um)
				got = append(got, um["id"].(float64))
			}
			total, _ := m["total"].(float64)
			return got, total
		}
		got, total := list("")
		if total != 5 || len(got) != 5 || !slices.Equal(got[1:], ids) {
			t.Errorf("list = %v, total %v; want the admin then %v, total 5", got, total, ids)
		}
		got, total = list("?limit=2")
		if total != 5 || len(got) != 2 || got[1] != ids[0] {
			t.Errorf("limit=2: %v, total %v", got, total)
		}
		got, total = list("?limit=2&offset=2")
		if total != 5 || !slices.Equal(got, ids[1:3]) {
			t.Errorf("limit=2&offset=2: %v, total %v; want %v", got, total, ids[1:3])
		}
		got, total = list("?offset=10")
		if total != 5 || len(got) != 0 {
			t.Errorf("offset=10: %v, total %v; want an empty page", got, total)
		}
		for _, q := range []string{"?limit=0", "?limit=101", "?limit=abc", "?offset=-1", "?limit=1.5", "?offset=x"} {
			wantAPIError(e.request("GET", "/api/v1/users"+q, nil, bearer(admin)...), http.StatusBadRequest, "invalid_request")
		}
		got, _ = list("?limit=100")
		if len(got) != 5 {
			t.Errorf("limit=100: %d users", len(got))
		}
	})
}

// A number in a REST request has one form (decimal, no sign, no leading
// zero) and a query parameter comes once: strconv took /users/+5 and
// /users/05 for user 5, limit=020 and offset=-0, and Query().Get took the
// first of limit=5&limit=100.
func TestRESTNumbersHaveOneForm(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()
		ivy := e.createUser("ivy@example.com", "ivy", "Ivy-Password-1", store.RoleUser)
		for _, q := range []string{"limit=+20", "limit=020", "limit=%2B5", "offset=-0", "offset=00", "offset=+1", "limit=5&limit=100", "offset=0&offset=0"} {
			wantAPIError(e.request("GET", "/api/v1/users?"+q, nil, bearer(admin)...), http.StatusBadRequest, "invalid_request")
		}
		for _, q := range []string{"after=+1", "after=01", "after=-0", "limit=010"} {
			wantAPIError(e.request("GET", "/api/v1/audit?"+q, nil, bearer(admin)...), http.StatusUnprocessableEntity, "validation_failed")
		}
		for _, q := range []string{"after=0&after=5", "action=a&action=b", "user=1&user=2"} {
			wantAPIError(e.request("GET", "/api/v1/audit?"+q, nil, bearer(admin)...), http.StatusBadRequest, "invalid_request")
		}
		id := strconv.FormatInt(ivy.ID, 10)
		for _, p := range []string{"+" + id, "0" + id, "00" + id, "%2B" + id} {
			wantAPIError(e.request("PATCH", "/api/v1/users/"+p, map[string]any{"role": "admin"}, bearer(admin)...), http.StatusNotFound, "not_found")
			wantAPIError(e.request("DELETE", "/api/v1/users/"+p, nil, bearer(admin)...), http.StatusNotFound, "not_found")
		}
		// The one form works.
		e.request("GET", "/api/v1/users?limit=20&offset=0", nil, bearer(admin)...).want(http.StatusOK)
		e.request("GET", "/api/v1/audit?after=0&limit=1000", nil, bearer(admin)...).want(http.StatusOK)
		if m := e.request("PATCH", userPath(ivy.ID), map[string]any{"is_active": true}, bearer(admin)...).want(http.StatusOK).JSON(); m["role"] != "user" {
			t.Errorf("ivy after refused PATCHes: %v; want role user", m)
		}
		e.request("DELETE", userPath(ivy.ID), nil, bearer(admin)...).want(http.StatusNoContent)
	})
}

func TestAdminPatchUser(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		root, admin := e.admin()
		ivy := e.createUser("ivy@example.com", "ivy", "Ivy-Password-1", store.RoleUser)
		access, refresh := e.login("ivy", "Ivy-Password-1")

		wantAPIError(e.request("PATCH", userPath(root.ID), map[string]any{"role": "user"}, bearer(access)...), http.StatusForbidden, "forbidden")

		// The role is read from the database on each request.
		m := e.request("PATCH", userPath(ivy.ID), map[string]any{"role": "admin"}, bearer(admin)...).want(http.StatusOK).JSON()
		wantUser(t, m)
		if m["role"] != "admin" || m["id"] != float64(ivy.ID) || m["is_active"] != true {
			t.Errorf("after role=admin: %v", m)
		}
		e.request("GET", "/api/v1/users", nil, bearer(access)...).want(http.StatusOK)
		e.request("PATCH", userPath(ivy.ID), map[string]any{"role": "user"}, bearer(admin)...).want(http.StatusOK)
		wantAPIError(e.request("GET", "/api/v1/users", nil, bearer(access)...), http.StatusForbidden, "forbidden")

		wantAPIError(e.request("PATCH", userPath(ivy.ID), map[string]any{"role": "root"}, bearer(admin)...), http.StatusUnprocessableEntity, "validation_failed")
		wantAPIError(e.request("PATCH", userPath(ivy.ID), map[string]any{"email": "x@example.com"}, bearer(admin)...), http.StatusBadRequest, "invalid_json")
		wantAPIError(e.request("PATCH", userPath(ivy.ID), map[string]any{"is_active": "no"}, bearer(admin)...), http.StatusBadRequest, "invalid_json")
		for _, p := range []string{"/api/v1/users/99999", "/api/v1/users/abc", "/api/v1/users/0", "/api/v1/users/-1"} {
			wantAPIError(e.request("PATCH", p, map[string]any{"role": "user"}, bearer(admin)...), http.StatusNotFound, "not_found")
		}

		// Deactivation: the user's tokens stop at once and logins fail.
		m = e.request("PATCH", userPath(ivy.ID), map[string]any{"is_active": false}, bearer(admin)...).want(http.StatusOK).JSON()
		if m["is_active"] != false {
			t.Errorf("after is_active=false: %v", m)
		}
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(access)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(refresh), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.loginAttempt("ivy", "Ivy-Password-1"), http.StatusUnauthorized, "invalid_credentials")

		// Reactivation does not revive tokens issued before the deactivation.
		e.request("PATCH", userPath(ivy.ID), map[string]any{"is_active": true}, bearer(admin)...).want(http.StatusOK)
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(access)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(refresh), http.StatusUnauthorized, "invalid_token")
		e.clock.Add(2 * time.Second) // revocation covers tokens issued in its second
		fresh, _ := e.login("ivy", "Ivy-Password-1")
		e.request("GET", "/api/v1/profile", nil, bearer(fresh)...).want(http.StatusOK)

		// An admin cannot demote or deactivate themself.
		wantAPIError(e.request("PATCH", userPath(root.ID), map[string]any{"role": "user"}, bearer(admin)...), http.StatusForbidden, "forbidden")
		wantAPIError(e.request("PATCH", userPath(root.ID), map[string]any{"is_active": false}, bearer(admin)...), http.StatusForbidden, "forbidden")
		wantAPIError(e.request("PATCH", userPath(root.ID), map[string]any{"role": "admin", "is_active": false}, bearer(admin)...), http.StatusForbidden, "forbidden")
		e.request("PATCH", userPath(root.ID), map[string]any{"role": "admin"}, bearer(admin)...).want(http.StatusOK)
		if r := e.request("GET", "/api/v1/profile", nil, bearer(admin)...).want(http.StatusOK); r.Str("role") != "admin" || r.JSON()["is_active"] != true {
			t.Errorf("admin after refused self-changes: %s", r.Body.String())
		}
	})
}

// A PATCH that changes nothing (no member, or the values the user has)
// answers the user as it is, writes nothing and appends no event: each
// bumped updated_at and appended user.updated, which read as if the role
// had been set then. An admin demoted meanwhile is still refused. A body
// of null, which encoding/json reads as {}, is not an object: 400.
func TestAdminPatchThatChangesNothing(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()
		ivy := e.createUser("ivy@example.com", "ivy", "Ivy-Password-1", store.RoleUser)
		events := func() (n int) {
			for _, ev := range e.auditTrail() {
				if ev.Action == actUserUpdated {
					n++
				}
			}
			return n
		}
		json := append(bearer(admin), "Content-Type", "application/json")
		wantAPIError(e.request("PATCH", userPath(ivy.ID), "null", json...), http.StatusBadRequest, "invalid_json")
		e.clock.Add(5 * time.Second)
		for _, body := range []string{`{}`, `{"role":"user"}`, `{"is_active":true}`, `{"role":"user","is_active":true}`} {
			if m := e.request("PATCH", userPath(ivy.ID), body, json...).want(http.StatusOK).JSON(); m["role"] != "user" || m["is_active"] != true {
				t.Errorf("PATCH %s: %v; want ivy as she is", body, m)
			}
		}
		if n := events(); n != 0 {
			t.Errorf("%d user.updated events for PATCHes that changed nothing; want none", n)
		}
		if u, err := e.db.UserByID(t.Context(), ivy.ID); err != nil || !u.UpdatedAt.Equal(ivy.UpdatedAt) {
			t.Errorf("updated_at %v, %v; want %v: nothing changed", u.UpdatedAt, err, ivy.UpdatedAt)
		}
		// A change is written and audited, once.
		e.request("PATCH", userPath(ivy.ID), `{"role":"admin"}`, json...).want(http.StatusOK)
		if n := events(); n != 1 {
			t.Errorf("%d user.updated events after a change; want 1", n)
		}
		// Ivy, an admin now, demoted: her PATCH that would change nothing is refused.
		ivyAdmin, _ := e.login("ivy", "Ivy-Password-1")
		e.request("PATCH", userPath(ivy.ID), `{"role":"user"}`, json...).want(http.StatusOK)
		other := e.createUser("ola@example.com", "ola", "Ola-Password-1", store.RoleUser)
		wantAPIError(e.request("PATCH", userPath(other.ID), `{"role":"user"}`, append(bearer(ivyAdmin), "Content-Type", "application/json")...), http.StatusForbidden, "forbidden")
		wantAPIError(e.request("PATCH", "/api/v1/users/99999", `{}`, json...), http.StatusNotFound, "not_found")
	})
}

func TestAdminDeleteUser(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		root, admin := e.admin()
		jo := e.createUser("jo@example.com", "joe", "Jo-Password-1", store.RoleUser)
		access, refresh := e.login("joe", "Jo-Password-1")

		wantAPIError(e.request("DELETE", userPath(root.ID), nil, bearer(access)...), http.StatusForbidden, "forbidden")
		wantAPIError(e.request("DELETE", userPath(root.ID), nil, bearer(admin)...), http.StatusForbidden, "forbidden")
		e.request("GET", "/api/v1/profile", nil, bearer(admin)...).want(http.StatusOK)

		r := e.request("DELETE", userPath(jo.ID), nil, bearer(admin)...).want(http.StatusNoContent)
		if r.Body.Len() != 0 {
			t.Errorf("204 with body %q", r.Body.String())
		}
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(access)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(refresh), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.loginAttempt("joe", "Jo-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		wantAPIError(e.request("DELETE", userPath(jo.ID), nil, bearer(admin)...), http.StatusNotFound, "not_found")
		wantAPIError(e.request("PATCH", userPath(jo.ID), map[string]any{"role": "admin"}, bearer(admin)...), http.StatusNotFound, "not_found")
		wantAPIError(e.request("DELETE", "/api/v1/users/abc", nil, bearer(admin)...), http.StatusNotFound, "not_found")
		if m := e.request("GET", "/api/v1/users", nil, bearer(admin)...).want(http.StatusOK).JSON(); m["total"] != float64(1) {
			t.Errorf("total after delete = %v; want 1", m["total"])
		}

		// The address and the name can sign up again, as a new account.
		m := e.register(map[string]string{"email": "jo@example.com", "username": "joe", "password": "Jo-Password-2"}).want(http.StatusCreated).JSON()
		if m["id"] == float64(jo.ID) {
			t.Errorf("re-registered user reuses id %d", jo.ID)
		}
		fresh, _ := e.login("joe", "Jo-Password-2")
		if p := e.request("GET", "/api/v1/profile", nil, bearer(fresh)...).want(http.StatusOK).JSON(); p["id"] != m["id"] {
			t.Errorf("profile %v; want the new account %v", p["id"], m["id"])
		}
		wantAPIError(e.loginAttempt("joe", "Jo-Password-1"), http.StatusUnauthorized, "invalid_credentials")
	})
}

// --- logs and metrics ---

func TestLogsHoldNoSecrets(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const pw, newPW = "Logged-Never-Pass-1", "Logged-Never-Pass-2"
		e.secret(newPW)
		e.register(map[string]string{"email": "max@example.com", "username": "max", "password": pw}).want(http.StatusCreated)
		access, refresh := e.login("max", pw)
		e.loginAttempt("max", "Wrong-Typed-Password-1").want(http.StatusUnauthorized)
		e.loginAttempt("typed-my-password-here", "Some-Password-1").want(http.StatusUnauthorized)
		e.secret("typed-my-password-here") // a login may be a password typed in the wrong field
		res := e.refresh(refresh).want(http.StatusOK)
		e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))
		e.refresh(refresh).want(http.StatusUnauthorized) // reuse: logged as a warning; the session ends
		e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusUnauthorized)
		access3, refresh3 := e.login("max", pw)
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": pw, "new_password": newPW}, bearer(access3)...).want(http.StatusNoContent)
		e.request("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": refresh3}, bearer(access3)...).want(http.StatusNoContent)

		logs := e.logs.String()
		for _, s := range e.secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("the logs hold a secret (%.8s…)", s)
			}
		}
		if strings.Contains(logs, "Bearer") {
			t.Errorf("the logs mention credentials:\n%s", logs)
		}

		var failed, requests int
		for _, l := range e.logLines() {
			switch l["msg"] {
			case "login failed":
				failed++
				if l["level"] != "WARN" || l["client_ip"] != "192.0.2.1" || l["request_id"] == "" || l["request_id"] == nil {
					t.Errorf("login failed line %v; want WARN with client_ip 192.0.2.1 and a request id", l)
				}
			case "request":
				requests++
				if l["route"] == "/api/v1/auth/login" && l["status"] == float64(200) && l["user_id"] == nil {
					t.Errorf("successful login logged without user_id: %v", l)
				}
			}
		}
		if failed != 2 {
			t.Errorf("%d login failed lines; want 2", failed)
		}
		if requests < 10 {
			t.Errorf("%d access log lines; want one per request", requests)
		}
	})
}

func TestMetricsRoutePattern(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		text := e.metricsText()
		for _, want := range []string{"oauth2_login_failures_total 0", "oauth2_rate_limited_total 0", `oauth2_tokens_issued_total{grant_type="password"} 0`,
			"oauth2_mail_dropped_total 0", `oauth2_mail_failures_total{reason="refused"} 0`, `oauth2_mail_failures_total{reason="error"} 0`} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("fresh metrics lack %q", want)
			}
		}

		_, admin := e.admin()
		e.request("PATCH", "/api/v1/users/123", map[string]any{"role": "user"}).want(http.StatusUnauthorized)
		e.request("PATCH", "/api/v1/users/123", map[string]any{"role": "user"}, bearer(admin)...).want(http.StatusNotFound)
		e.request("DELETE", "/api/v1/users/123", nil, bearer(admin)...).want(http.StatusNotFound)
		e.request("DELETE", "/api/v1/users/456", nil, bearer(admin)...).want(http.StatusNotFound)
		e.request("GET", "/api/v1/users/789", nil, bearer(admin)...).want(http.StatusMethodNotAllowed)
		e.loginAttempt("root", "Wrong-Password-1").want(http.StatusUnauthorized)
		e.loginAttempt("nobody", "Wrong-Password-1").want(http.StatusUnauthorized)

		text = e.metricsText()
		for _, want := range []string{
			`oauth2_http_requests_total{method="PATCH",endpoint="/api/v1/users/{id}",status="401"} 1`,
			`oauth2_http_requests_total{method="PATCH",endpoint="/api/v1/users/{id}",status="404"} 1`,
			`oauth2_http_requests_total{method="DELETE",endpoint="/api/v1/users/{id}",status="404"} 2`,
			`oauth2_http_requests_total{method="GET",endpoint="unmatched",status="405"} 1`,
			`oauth2_http_requests_total{method="POST",endpoint="/api/v1/auth/login",status="200"} 1`,
			`oauth2_http_requests_total{method="POST",endpoint="/api/v1/auth/login",status="401"} 2`,
			`oauth2_http_request_duration_seconds_count{method="DELETE",endpoint="/api/v1/users/{id}"} 2`,
			`oauth2_login_failures_total 2`,
			`oauth2_tokens_issued_total{grant_type="password"} 1`,
		} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("metrics lack %s", want)
			}
		}
		for _, line := range strings.Split(text, "\n") {
			for _, raw := range []string{"/123", "/456", "/789"} {
				if strings.Contains(line, raw) {
					t.Errorf("a raw path became a label: %s", line)
				}
			}
		}
	})
}

func TestCredentialRateLimit(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("nia@example.com", "nia", "Nia-Password-1", store.RoleUser)
		e.login("nia", "Nia-Password-1")
		_, refresh := e.login("nia", "Nia-Password-1")
		r := wantAPIError(e.loginAttempt("nia", "Nia-Password-1"), http.StatusTooManyRequests, "rate_limited")
		if n := retryAfter(r); n < 1 || n > 60 {
			t.Errorf("Retry-After %d; want 1 to 60", n)
		}
		text := e.metricsText()
		if !strings.Contains(text, "oauth2_rate_limited_total 1\n") {
			t.Errorf("oauth2_rate_limited_total is not 1:\n%s", text)
		}
		if !strings.Contains(text, "oauth2_login_failures_total 0\n") {
			t.Error("a rate-limited login counted as a login failure")
		}
		// Register shares the credential budget; the rest of the API does not.
		wantAPIError(e.register(map[string]string{"email": "x@example.com", "username": "xavier", "password": "Xavier-Password-1"}), http.StatusTooManyRequests, "rate_limited")
		res := e.refresh(refresh).want(http.StatusOK)
		e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))
		// The bucket refills on the server's clock.
		e.clock.Add(time.Minute)
		e.login("nia", "Nia-Password-1")
	}, func(d *Deps) { d.Creds = ratelimit.New(rate.Every(time.Minute), 2, 100) })
}

// A body over MaxBody with its length declared is answered on the route's
// own surface, as one cut while it is read already was: RFC 6749 §5.2 JSON
// with no-store at the OAuth endpoints (API.md), a page at the forms. A
// middleware answered every such request in the REST shape
// ({"error":"request_too_large","message"}), without no-store.
func TestOversizedBodyAnsweredOnItsSurface(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		huge := strings.Repeat("a", httpx.MaxBody+1)
		post := func(path, ct string) response {
			req := httptest.NewRequest("POST", path, strings.NewReader(huge))
			req.Header.Set("Content-Type", ct)
			return e.serveRaw(req)
		}
		for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect", "/oauth2/par", "/oauth2/device_authorization"} {
			r := post(path, "application/x-www-form-urlencoded")
			if r.Code != http.StatusRequestEntityTooLarge || r.Str("error") != "invalid_request" || r.Str("error_description") == "" ||
				r.Header().Get("Cache-Control") != "no-store" || r.Header().Get("Pragma") != "no-cache" {
				t.Errorf("%s: %d %v %s; want 413 invalid_request with a description, no-store and no-cache", path, r.Code, r.Header(), r.Body.String())
			}
		}
		for _, path := range []string{"/oauth2/authorize", "/oauth2/device", "/oauth2/logout", "/email/verify"} {
			if r := post(path, "application/x-www-form-urlencoded"); r.Code < 400 || r.Code > 499 || !strings.HasPrefix(r.Header().Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %q; want a 4xx page", path, r.Code, r.Header().Get("Content-Type"))
			}
		}
		wantAPIError(post("/api/v1/auth/login", "application/json"), http.StatusRequestEntityTooLarge, "request_too_large")
	})
}

// The mux's own answers, for a path no route serves (404) or a method its
// routes do not take (405, with their Allow header), are in the error
// table's shapes like every other error, not the mux's text/plain: RFC
// 6749's with no-store under /oauth2/, the REST API's elsewhere. Its
// redirect to a cleaned path stays a redirect.
func TestUnroutedAnswersInTheTableShape(t *testing.T) {
	e := newEnv(t, store.SQLite)
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/oauth2/token", http.StatusMethodNotAllowed, "POST"},
		{"PUT", "/oauth2/revoke", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/oauth2/nope", http.StatusNotFound, ""},
		{"GET", "/nope", http.StatusNotFound, ""},
		{"DELETE", "/.well-known/jwks.json", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/api/v1/profile", http.StatusMethodNotAllowed, "GET, HEAD, PATCH"},
		{"GET", "/api/v1/nothing-here", http.StatusNotFound, ""},
	} {
		what := c.method + " " + c.path
		r := e.request(c.method, c.path, nil)
		if got := r.Header().Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q; want %q", what, got, c.allow)
		}
		if ct := r.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: %d, Content-Type %q, %q; want application/json", what, r.Code, ct, r.Body.String())
		}
		m := r.JSON()
		if strings.HasPrefix(c.path, "/oauth2/") {
			r.wantOAuthError(c.status, "invalid_request")
			if desc, _ := m["error_description"].(string); desc == "" || len(m) != 2 {
				t.Fatalf("%s: %s; want error and error_description", what, r.Body.String())
			}
			continue
		}
		code := map[int]string{http.StatusNotFound: "not_found", http.StatusMethodNotAllowed: "method_not_allowed"}[c.status]
		wantAPIError(r, c.status, code)
	}
	if r := e.request("GET", "/oauth2/../nope", nil); r.Code != http.StatusTemporaryRedirect || r.Header().Get("Location") != "/nope" {
		t.Errorf("GET /oauth2/../nope: %d, Location %q; want the mux's redirect to /nope", r.Code, r.Header().Get("Location"))
	}
}

// A logout's body is optional, and may come of a length not announced
// (chunked, or HTTP/2 without content-length): an empty one was read as a
// body that is not JSON (400), and the session lived on; a JSON one still
// names a refresh token.
func TestLogoutBodyOfUnknownLength(t *testing.T) {
	e := newEnv(t, store.SQLite)
	e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
	logout := func(access, body string) int {
		req := httptest.NewRequest("POST", "/api/v1/auth/logout", strings.NewReader(body))
		req.ContentLength = -1 // as net/http reads a chunked one
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		return w.Code
	}
	a1, r1 := e.login("hal", "Hal-Password-1")
	if code := logout(a1, ""); code != http.StatusNoContent {
		t.Fatalf("logout with an empty body of unknown length: %d; want 204", code)
	}
	wantAPIError(e.refresh(r1), http.StatusUnauthorized, "invalid_token")
	a2, _ := e.login("hal", "Hal-Password-1")
	_, r3 := e.login("hal", "Hal-Password-1")
	if code := logout(a2, `{"refresh_token":"`+r3+`"}`); code != http.StatusNoContent {
		t.Fatalf("logout with a JSON body of unknown length: %d; want 204", code)
	}
	wantAPIError(e.refresh(r3), http.StatusUnauthorized, "invalid_token")
	a4, _ := e.login("hal", "Hal-Password-1")
	if code := logout(a4, "{"); code != http.StatusBadRequest {
		t.Fatalf("logout with a broken body of unknown length: %d; want 400", code)
	}
}
