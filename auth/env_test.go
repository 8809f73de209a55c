package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// testArgon2 is cheap: these tests check behaviour, not cost.
var testArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

const testIssuer = "https://auth.example.com"

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a whole server (NewHandler) over a real database.
type env struct {
	t       testing.TB
	db      *store.DB
	h       http.Handler
	deps    Deps
	logs    *syncBuffer
	clock   *clock
	mu      sync.Mutex
	secrets []string // every secret a test sent or received: none may be logged
}

// newEnv builds the server on a fresh database of the dialect. edit may
// change the dependencies before the handler is built.
func newEnv(t testing.TB, dialect string, edit ...func(*Deps)) *env {
	t.Helper()
	return newEnvOn(t, storetest.Open(t, dialect), edit...)
}

// newEnvOn builds the server on db.
func newEnvOn(t testing.TB, db *store.DB, edit ...func(*Deps)) *env {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := &clock{t: time.Now().Truncate(time.Second)}
	key := token.NewHMACKey([]byte("test-secret-test-secret-test-secret!"))
	signer, _ := token.NewSigner(key)
	verifier, _ := token.NewVerifier(key)
	reg := metrics.NewRegistry()
	d := Deps{
		Log: log, DB: db,
		Tokens: &Tokens{Issuer: testIssuer, AccessTTL: time.Hour, RefreshTTL: 30 * 24 * time.Hour, MaxAge: 90 * 24 * time.Hour,
			Signer: signer, Verifier: verifier, Revoked: NewRevocations(nil)},
		Passwords: NewPasswords(testArgon2, 2, 10*time.Second),
		Throttle:  Throttle{Max: 5, Window: 15 * time.Minute},
		Metrics:   NewMetrics(reg), HTTP: httpx.NewMetrics(reg), Registry: reg,
		API:           ratelimit.New(rate.Limit(1000), 1000, 1000),
		Pages:         ratelimit.New(rate.Limit(1000), 1000, 1000),
		Creds:         ratelimit.New(rate.Limit(1000), 1000, 1000),
		PerClient:     ratelimit.NewNamed(rate.Limit(1000), 1000, 1000),
		PublicClients: ratelimit.NewNamed(rate.Limit(1000), 1000, 1000),
		Now:           clk.Now, Version: "test", Started: clk.Now(),
		EnableRegistration:   true,
		EmailVerificationTTL: 24 * time.Hour,
		Clients:              NewClients(db, time.Minute, 100, 1<<20),
	}
	b, err := NewBrowser(false, []byte("cookie-key"), 12*time.Hour, log)
	if err != nil {
		t.Fatal(err)
	}
	d.Browser = b
	d.Tokens.Revoked = NewRevocations(d.Clients.Forget)
	for _, f := range edit {
		f(&d)
	}
	e := &env{t: t, db: db, deps: d, logs: logs, clock: clk, h: NewHandler(d)}
	t.Cleanup(e.checkLogs)
	return e
}

// eachEnv runs f on a fresh server over every dialect.
func eachEnv(t *testing.T, f func(t *testing.T, e *env), edit ...func(*Deps)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) { f(t, newEnv(t, d, edit...)) })
	}
}

// checkLogs fails the test if any secret the test used appears in the logs,
// or if the logs hold a stack trace.
func (e *env) checkLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	logs := e.logs.String()
	for _, s := range e.secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret (%.12s…) appears in the logs", s)
		}
	}
	if st := regexp.MustCompile(`goroutine \d+ \[|\.go:\d+ \+0x`).FindString(logs); st != "" {
		e.t.Errorf("the logs hold a stack trace (%q)", st)
	}
}

// secret records s as something that must never be logged, and returns it.
func (e *env) secret(s string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
	return s
}

type response struct {
	*httptest.ResponseRecorder
	t testing.TB
}

// JSON decodes the body into a map.
func (r response) JSON() map[string]any {
	r.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body.Bytes(), &m); err != nil {
		r.t.Fatalf("body is not a JSON object: %v: %q", err, r.Body.String())
	}
	return m
}

// Str returns a string field of the JSON body.
func (r response) Str(key string) string {
	s, _ := r.JSON()[key].(string)
	return s
}

// request sends a request through the whole handler. body may be a string
// (sent as is) or a value (sent as JSON). headers are name, value pairs.
func (e *env) request(method, target string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req := httptest.NewRequest(method, target, rd)
	req.RemoteAddr = "192.0.2.1:1234"
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	e.noLeak(method, target, w)
	return response{w, e.t}
}

// noLeak fails the test if a response body shows the server's insides: a
// database error, a source line, a goroutine dump.
func (e *env) noLeak(method, target string, w *httptest.ResponseRecorder) {
	e.t.Helper()
	for _, bad := range []string{"sql:", ".go:", "goroutine ", "SQLSTATE", "sqlite"} {
		if strings.Contains(w.Body.String(), bad) {
			e.t.Errorf("%s %s: body leaks %q: %s", method, target, bad, w.Body.String())
		}
	}
}

// want fails the test unless the response has the status.
func (r response) want(status int) response {
	r.t.Helper()
	if r.Code != status {
		r.t.Fatalf("status %d; want %d; body %s", r.Code, status, r.Body.String())
	}
	return r
}

// wantError checks status and the REST error code.
func (r response) wantError(status int, code string) response {
	r.t.Helper()
	r.want(status)
	if got := r.Str("error"); got != code {
		r.t.Fatalf("error %q; want %q (body %s)", got, code, r.Body.String())
	}
	return r
}

// createUser registers a user directly in the store with a real hash.
func (e *env) createUser(email, username, password, role string) *store.User {
	e.t.Helper()
	e.secret(password)
	u, err := Register(context.Background(), e.db, e.deps.Passwords, email, username, password, "", "", role, false, e.clock.Now())
	if err != nil {
		e.t.Fatalf("Register(%s): %v", email, err)
	}
	return u
}

// login returns the token pair of a REST login.
func (e *env) login(login, password string) (access, refresh string) {
	e.t.Helper()
	r := e.request("POST", "/api/v1/auth/login", map[string]string{"login": login, "password": password}).want(http.StatusOK)
	return e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
}

// resetLink stores a reset link for the user, as a forgot-password request
// would mail it, and returns its token.
func (e *env) resetLink(userID int64) string {
	e.t.Helper()
	tok := e.secret(token.NewOpaque())
	if err := e.db.ReplaceResetToken(context.Background(), token.Hash(tok), userID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
