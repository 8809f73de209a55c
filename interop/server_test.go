package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // only to make a fresh schema for the PostgreSQL variant
)

// The server binary: $OAUTH2_API_BIN (make interop builds it), or built once
// from the repository root for this test process.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// serverBinary returns the path of the oauth2-api binary under test.
func serverBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OAUTH2_API_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("OAUTH2_API_BIN: %v", err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("OAUTH2_API_BIN: %v", err)
		}
		return abs
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "oauth2-api-interop-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "oauth2-api")
		cmd := exec.Command("go", "build", "-o", buildBin, ".")
		cmd.Dir = ".." // the repository root: the server's own module
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build the server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// lockedBuffer collects the server's output; the process writes while tests read.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one running oauth2-api process.
type server struct {
	URL    string // the ISSUER, e.g. http://127.0.0.1:41234
	Secret string // JWT_SECRET
	bin    string
	env    map[string]string
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{}

	mu      sync.Mutex
	secrets []string // values that must never appear in the logs
	stopped bool
}

// startServer runs the server binary on a free port with a fresh SQLite
// database in t.TempDir(), a random JWT_SECRET, ISSUER=http://127.0.0.1:PORT
// and rate limits generous enough for tests. env overrides or adds
// variables; an empty value removes one. It returns once GET /health
// answers 200. When the test ends, the server gets SIGTERM and must exit 0;
// if the test failed its logs are printed, and the test fails if any value
// given to noLog appears in them.
func startServer(t testing.TB, env map[string]string) *server {
	t.Helper()
	full := map[string]string{
		"PATH":                os.Getenv("PATH"),
		"HOME":                os.Getenv("HOME"),
		"TMPDIR":              os.TempDir(),
		"APP_MODE":            "debug",
		"LOG_LEVEL":           "debug", // secrets must stay out even at debug
		"LOG_FORMAT":          "json",
		"DATABASE_URL":        filepath.Join(t.TempDir(), "oauth.db"),
		"JWT_SECRET":          randomHex(32),
		"LOGIN_RATE_LIMIT":    "1000/s",
		"LOGIN_RATE_BURST":    "1000",
		"RATE_LIMIT_REQUESTS": "100000",
		"RATE_LIMIT_WINDOW":   "60",
	}
	for k, v := range env {
		full[k] = v
	}
	if full["PORT"] == "" {
		full["PORT"] = strconv.Itoa(freePort(t))
	}
	if full["ISSUER"] == "" {
		full["ISSUER"] = "http://127.0.0.1:" + full["PORT"]
	}
	for k, v := range full {
		if v == "" {
			delete(full, k)
		}
	}
	return launch(t, full)
}

// restart stops s and starts the binary again on the same port and
// database, with env applied over s's environment (an empty value removes a
// variable).
func (s *server) restart(t testing.TB, env map[string]string) *server {
	t.Helper()
	s.stop(t)
	full := make(map[string]string, len(s.env))
	for k, v := range s.env {
		full[k] = v
	}
	for k, v := range env {
		if v == "" {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	return launch(t, full)
}

func launch(t testing.TB, env map[string]string) *server {
	t.Helper()
	s := &server{
		URL: env["ISSUER"], Secret: env["JWT_SECRET"], bin: serverBinary(t), env: env,
		logs: &lockedBuffer{}, exited: make(chan struct{}),
	}
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = s.environ()
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = dieWithParent()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.bin, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop(t)
		logs := s.logs.String()
		s.mu.Lock()
		secrets := s.secrets
		s.mu.Unlock()
		for _, v := range secrets {
			if strings.Contains(logs, v) {
				t.Errorf("the server's logs contain a secret (%.8s…): secrets must never be logged", v)
			}
		}
		if t.Failed() {
			t.Logf("logs of the server at %s:\n%s", s.URL, logs)
		}
	})
	s.waitHealthy(t)
	return s
}

func (s *server) environ() []string {
	var out []string
	for k, v := range s.env {
		out = append(out, k+"="+v)
	}
	return out
}

// waitHealthy polls GET /health until it answers 200.
func (s *server) waitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.exited:
			t.Fatalf("the server exited during startup (%v):\n%s", s.cmd.ProcessState, s.logs.String())
		default:
		}
		resp, err := c.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /health did not answer 200 within 20s (last: %v):\n%s", err, s.logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that the server shuts down cleanly: exit
// status 0 within 30 seconds.
func (s *server) stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	select {
	case <-s.exited:
		t.Errorf("the server had already exited (%v)", s.cmd.ProcessState)
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("the server did not stop within 30s of SIGTERM")
		return
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("after SIGTERM the server exited with status %d; want 0", code)
	}
}

// noLog records values (passwords, secrets, tokens, codes) that must never
// appear in the server's logs.
func (s *server) noLog(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if len(v) >= 8 {
			s.secrets = append(s.secrets, v)
		}
	}
}

// cli runs a subcommand of the binary with the server's configuration, as an
// operator would, and returns its standard output.
func (s *server) cli(t testing.TB, stdin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.environ()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oauth2-api %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// client is what `oauth2-api client create` prints.
type client struct {
	ID           string   `json:"client_id"`
	Secret       string   `json:"client_secret"`
	Name         string   `json:"name"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Scopes       []string `json:"scopes"`
	Public       bool     `json:"public"`
}

// createClient registers a client with `oauth2-api client create`; args are
// its flags.
func (s *server) createClient(t testing.TB, args ...string) client {
	t.Helper()
	out := s.cli(t, "", append([]string{"client", "create"}, args...)...)
	var c client
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(&c); err != nil || dec.More() {
		t.Fatalf("client create printed %q; want one JSON object (err %v)", out, err)
	}
	if c.ID == "" {
		t.Fatalf("client create printed %q: no client_id", out)
	}
	s.noLog(c.Secret)
	return c
}

// user is what `oauth2-api user create` prints, plus the password.
type user struct {
	ID       int64  `json:"id"`
	Email    string `json:"email"`
	Username string `json:"username"`
	Password string `json:"-"`
}

// Sub is the user's subject in tokens: the id as a string (API.md).
func (u user) Sub() string { return strconv.FormatInt(u.ID, 10) }

// createUser registers a user with `oauth2-api user create`, the password on
// standard input; extra holds further flags.
func (s *server) createUser(t testing.TB, email, username, password string, extra ...string) user {
	t.Helper()
	s.noLog(password)
	out := s.cli(t, password+"\n", append([]string{"user", "create", "--email", email, "--username", username}, extra...)...)
	var u user
	if err := json.Unmarshal(out, &u); err != nil || u.ID == 0 {
		t.Fatalf("user create printed %q; want a JSON user (err %v)", out, err)
	}
	if u.Email != email || u.Username != username {
		t.Fatalf("user create printed %q; want email %q and username %q", out, email, username)
	}
	u.Password = password
	return u
}

// metadata is the part of the RFC 8414 document the tests use.
type metadata struct {
	Issuer                   string   `json:"issuer"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint"`
	TokenEndpoint            string   `json:"token_endpoint"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	IntrospectionEndpoint    string   `json:"introspection_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported"`
	TokenAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes               []string `json:"grant_types_supported"`
	ResponseTypes            []string `json:"response_types_supported"`
	AuthorizationResponseIss bool     `json:"authorization_response_iss_parameter_supported"`
}

// metadata fetches /.well-known/oauth-authorization-server and checks the
// properties every client relies on: the issuer equals ISSUER exactly
// (RFC 8414 §3.3) and S256 is the PKCE method.
func (s *server) metadata(t testing.TB) metadata {
	t.Helper()
	var m metadata
	s.getJSON(t, "/.well-known/oauth-authorization-server", &m)
	if m.Issuer != s.URL {
		t.Fatalf("metadata issuer = %q; want exactly the ISSUER %q", m.Issuer, s.URL)
	}
	if m.AuthorizationEndpoint != s.URL+"/oauth2/authorize" || m.TokenEndpoint != s.URL+"/oauth2/token" {
		t.Errorf("metadata endpoints = %q, %q; want %s/oauth2/authorize and /oauth2/token", m.AuthorizationEndpoint, m.TokenEndpoint, s.URL)
	}
	if strings.Join(m.CodeChallengeMethods, " ") != "S256" {
		t.Errorf("code_challenge_methods_supported = %q; want [S256] (plain is refused)", m.CodeChallengeMethods)
	}
	if !m.AuthorizationResponseIss {
		t.Errorf("authorization_response_iss_parameter_supported is false; the server sends iss (RFC 9207)")
	}
	return m
}

func (s *server) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d; want 200", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	ClientID  string `json:"client_id"`
	Sub       string `json:"sub"`
	Aud       string `json:"aud"`
	Iss       string `json:"iss"`
	Jti       string `json:"jti"`
	Exp       int64  `json:"exp"`
	TokenType string `json:"token_type"`
}

// introspect asks POST /oauth2/introspect about tok, authenticating as c
// with HTTP Basic (RFC 7662 §2.1).
func (s *server) introspect(t testing.TB, c client, tok string) introspection {
	t.Helper()
	var in introspection
	body := s.postForm(t, c, "/oauth2/introspect", url.Values{"token": {tok}}, http.StatusOK)
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("introspect: %v in %q", err, body)
	}
	return in
}

// revoke calls POST /oauth2/revoke (RFC 7009) for tok as c; it must answer 200.
func (s *server) revoke(t testing.TB, c client, tok, hint string) {
	t.Helper()
	form := url.Values{"token": {tok}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	s.postForm(t, c, "/oauth2/revoke", form, http.StatusOK)
}

// postForm POSTs a form to path with c's credentials (Basic for a
// confidential client, client_id in the body for a public one) and checks
// the status and the no-store header.
func (s *server) postForm(t testing.TB, c client, path string, form url.Values, want int) []byte {
	t.Helper()
	if c.Secret == "" {
		form.Set("client_id", c.ID)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.Secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret)) // RFC 6749 §2.3.1
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: status %d; want %d; body %s", path, resp.StatusCode, want, body.Bytes())
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("POST %s: Cache-Control %q; want no-store", path, cc)
	}
	return body.Bytes()
}

// testClient is an HTTP client for the client libraries. It checks on every
// token endpoint answer, success or error, the headers RFC 6749 §5.1 asks for.
func testClient(t testing.TB) *http.Client {
	return &http.Client{Timeout: 15 * time.Second, Transport: tokenHeaderCheck{t: t, base: http.DefaultTransport}}
}

type tokenHeaderCheck struct {
	t    testing.TB
	base http.RoundTripper
}

func (c tokenHeaderCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil && req.URL.Path == "/oauth2/token" {
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			c.t.Errorf("token endpoint answered %d with Cache-Control %q; want no-store (RFC 6749 §5.1)", resp.StatusCode, cc)
		}
		if p := resp.Header.Get("Pragma"); p != "no-cache" {
			c.t.Errorf("token endpoint answered %d with Pragma %q; want no-cache", resp.StatusCode, p)
		}
	}
	return resp, err
}

// databases runs f once per backend: SQLite always, and PostgreSQL in a fresh
// schema when TEST_POSTGRES_URL is set (with CI set, it must be).
func databases(t *testing.T, f func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, filepath.Join(t.TempDir(), "oauth.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, postgresURL(t))
	})
}

// postgresURL makes a fresh schema on the server at TEST_POSTGRES_URL and
// returns a DATABASE_URL that uses it; the schema is dropped at the end.
func postgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_POSTGRES_URL unset but CI is set: the PostgreSQL variant must run in CI")
		}
		t.Skip("TEST_POSTGRES_URL unset: skipping PostgreSQL")
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := "interop_" + randomHex(8)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL at TEST_POSTGRES_URL: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
