package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverBin is the oauth2-api binary TestMain builds for the whole package,
// or the one OAUTH2_API_BIN names.
var serverBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "oauth2-api-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "oauth2-api")
	if bin := os.Getenv("OAUTH2_API_BIN"); bin != "" {
		serverBin = bin // oauth2-api-mysql, for the MySQL runs (mysql/test.sh)
	} else if err := buildServer(serverBin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build the server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot returns the directory of the root module's go.mod: the one that
// holds main.go. It asks `go env GOMOD` from this file's directory, so the
// answer does not depend on where `go test` was started.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("runtime.Caller failed")
	}
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Dir = filepath.Dir(file)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		return "", fmt.Errorf("module root %s has no main.go: %w", root, err)
	}
	return root, nil
}

func buildServer(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// jwtSecret is the HMAC key every server here runs with. It is one of the
// secrets that must never show up in a response or a log line.
const jwtSecret = "e2e-jwt-secret-0123456789-abcdefghij-KLMNOP"

// env is a server's configuration.
type env map[string]string

// baseEnv is the configuration tests start from: debug logs in JSON (secrets
// must stay out of the log even at debug level), the known JWT_SECRET, and
// rate limits high enough that only the limits a test sets itself apply.
func baseEnv(databaseURL string) env {
	return env{
		"DATABASE_URL":        databaseURL,
		"JWT_SECRET":          jwtSecret,
		"APP_MODE":            "debug",
		"LOG_LEVEL":           "debug",
		"LOG_FORMAT":          "json",
		"RATE_LIMIT_REQUESTS": "1000000",
		"RATE_LIMIT_WINDOW":   "1",
		"LOGIN_RATE_LIMIT":    "100000/s",
		"LOGIN_RATE_BURST":    "100000",
		"LOGIN_MAX_FAILURES":  "1000000",
	}
}

// sqliteEnv is baseEnv on a fresh SQLite file.
func sqliteEnv(t testing.TB) env {
	t.Helper()
	return baseEnv(filepath.Join(t.TempDir(), "oauth.db"))
}

// list returns the environment of a subprocess: only what the test chose,
// plus what a process needs to run at all. Nothing leaks in from the test's
// own environment (a DATABASE_URL, say).
func (e env) list() []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "TMPDIR=" + os.TempDir()}
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e env) with(kv ...string) env {
	out := env{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// syncBuffer collects a subprocess's output; tests read it while it grows.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// server is one running oauth2-api process.
type server struct {
	name string
	env  env
	cmd  *exec.Cmd
	addr string // 127.0.0.1:port
	base string // http://127.0.0.1:port
	logs *syncBuffer
	done chan struct{} // closed when the process has exited
	exit *os.ProcessState
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := findPort()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return port
}

func findPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs `oauth2-api serve` with e on a free port and returns once
// it logs "listening". The process is killed when the test ends.
func startServer(t testing.TB, name string, e env) *server {
	t.Helper()
	s, err := launch(t, name, e)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return s
}

// launch is startServer returning its error, so that servers may be
// started from several goroutines at once.
func launch(t testing.TB, name string, e env) (*server, error) {
	for attempt := 0; ; attempt++ {
		s, err := tryStart(t, name, e)
		if err != nil && attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue // another process took the port between findPort and Listen
		}
		return s, err
	}
}

func tryStart(t testing.TB, name string, e env) (*server, error) {
	port, err := findPort()
	if err != nil {
		return nil, err
	}
	e = e.with("PORT", strconv.Itoa(port))
	s := &server{
		name: name, env: e, addr: "127.0.0.1:" + strconv.Itoa(port), base: "http://127.0.0.1:" + strconv.Itoa(port),
		logs: &syncBuffer{}, done: make(chan struct{}),
	}
	s.cmd = exec.Command(serverBin, "serve")
	s.cmd.Env = e.list()
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.cmd.Wait()
		s.exit = s.cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() {
		s.kill(t)
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", s.name, tail(s.logs.String(), 40))
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		if strings.Contains(s.logs.String(), `"msg":"listening"`) {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("exited before listening (%v):\n%s", s.exit, s.logs.String())
		case <-deadline:
			s.kill(t)
			return nil, fmt.Errorf("not listening after 30s:\n%s", s.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL unless the process has exited, and waits for it.
func (s *server) kill(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: still running 10s after SIGKILL", s.name)
	}
}

// signal sends sig to the process.
func (s *server) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal %v: %v", s.name, sig, err)
	}
}

// running reports whether the process is still alive.
func (s *server) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// runCLI runs the binary with args and e, feeding stdin, and returns its
// standard output; any failure ends the test.
func runCLI(t testing.TB, e env, stdin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(serverBin, args...)
	cmd.Env = e.list()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oauth2-api %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// createUser makes a user with the CLI (the password goes on stdin).
func createUser(t testing.TB, e env, email, username, password string, admin bool) {
	t.Helper()
	args := []string{"user", "create", "--email", email, "--username", username}
	if admin {
		args = append(args, "--role", "admin")
	}
	runCLI(t, e, password+"\n", args...)
}

// client is what `oauth2-api client create` prints.
type client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
	Name   string `json:"name"`
}

// createClient registers an OAuth client with the CLI.
func createClient(t testing.TB, e env, args ...string) client {
	t.Helper()
	out := runCLI(t, e, "", append([]string{"client", "create"}, args...)...)
	var c client
	if err := json.Unmarshal(out, &c); err != nil || c.ID == "" {
		t.Fatalf("client create printed %q: %v", out, err)
	}
	return c
}

// reply is a whole HTTP response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.status, clip(string(r.body), 300))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// noRedirects makes a client return redirects instead of following them.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// plainClient is the HTTP client of most requests: redirects are returned,
// not followed, and nothing hangs for long.
var plainClient = &http.Client{Timeout: 30 * time.Second, CheckRedirect: noRedirects}

// send makes one request and reads the whole response; a transport error
// ends the test.
func send(t testing.TB, c *http.Client, req *http.Request) reply {
	t.Helper()
	r, err := trySend(c, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return r
}

func trySend(c *http.Client, req *http.Request) (reply, error) {
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read body: %w", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// newRequest builds a request to s; hdr is pairs of header names and values.
func (s *server) newRequest(t testing.TB, method, path, contentType string, body io.Reader, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

// postJSON builds a JSON POST to s. Unlike newRequest it needs no
// testing.TB, so goroutines other than the test's may use it.
func (s *server) postJSON(path, body string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// do sends a request with a raw body.
func (s *server) do(t testing.TB, method, path, contentType, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return send(t, plainClient, s.newRequest(t, method, path, contentType, rd, hdr...))
}

// jsonBody marshals v, or passes a string or []byte through unchanged.
func jsonBody(t testing.TB, v any) string {
	t.Helper()
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return string(b)
}

// json sends a JSON body, with a bearer token if one is given.
func (s *server) json(t testing.TB, method, path, bearer string, body any) reply {
	t.Helper()
	var hdr []string
	if bearer != "" {
		hdr = []string{"Authorization", "Bearer " + bearer}
	}
	return s.do(t, method, path, "application/json", jsonBody(t, body), hdr...)
}

// form posts an application/x-www-form-urlencoded body.
func (s *server) form(t testing.TB, path, body string, hdr ...string) reply {
	t.Helper()
	return s.do(t, http.MethodPost, path, "application/x-www-form-urlencoded", body, hdr...)
}

// get sends a GET with a bearer token if one is given.
func (s *server) get(t testing.TB, path, bearer string) reply {
	t.Helper()
	var hdr []string
	if bearer != "" {
		hdr = []string{"Authorization", "Bearer " + bearer}
	}
	return s.do(t, http.MethodGet, path, "", "", hdr...)
}

// tokenPair is a token response.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token"`
}

// register calls POST /api/v1/auth/register.
func (s *server) register(t testing.TB, email, username, password string) reply {
	t.Helper()
	return s.json(t, http.MethodPost, "/api/v1/auth/register", "", map[string]string{
		"email": email, "username": username, "password": password})
}

// mustRegister registers a user and fails the test unless it answers 201.
func (s *server) mustRegister(t testing.TB, email, username, password string) {
	t.Helper()
	if r := s.register(t, email, username, password); r.status != http.StatusCreated {
		t.Fatalf("register %s = %v; want 201", username, r)
	}
}

// login calls POST /api/v1/auth/login.
func (s *server) login(t testing.TB, login, password string) reply {
	t.Helper()
	return s.json(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"login": login, "password": password})
}

// mustLogin logs in and returns the token pair.
func (s *server) mustLogin(t testing.TB, login, password string) tokenPair {
	t.Helper()
	r := s.login(t, login, password)
	if r.status != http.StatusOK {
		t.Fatalf("login %s = %v; want 200", login, r)
	}
	return decodePair(t, r)
}

func decodePair(t testing.TB, r reply) tokenPair {
	t.Helper()
	var p tokenPair
	if err := json.Unmarshal(r.body, &p); err != nil || p.AccessToken == "" {
		t.Fatalf("token response %v: %v", r, err)
	}
	return p
}

// errorCode returns the "error" member of a JSON error body.
func errorCode(r reply) string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	return e.Error
}

// leakMarkers are texts no response may hold: a Go stack trace, a file and
// line, SQL driver or database error text.
var leakMarkers = []string{"goroutine ", ".go:", "sqlstate", "sql:", "syntax error", "sqlite", "panic(", "runtime error"}

// checkBody fails the test if body shows a stack trace, SQL error text or
// any of the secrets.
func checkBody(t testing.TB, what string, body []byte, secrets []string) {
	t.Helper()
	low := strings.ToLower(string(body))
	for _, m := range leakMarkers {
		if strings.Contains(low, m) {
			t.Errorf("%s: body holds %q: %s", what, m, clip(string(body), 500))
		}
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(body, []byte(s)) {
			t.Errorf("%s: body holds a secret (%s…)", what, clip(s, 6))
		}
	}
}

// checkLog fails the test if the server's output holds any of the secrets.
func checkLog(t testing.TB, s *server, secrets []string) {
	t.Helper()
	logs := s.logs.String()
	if logs == "" {
		t.Errorf("%s: no log output captured", s.name)
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		if strings.Contains(logs, sec) {
			t.Errorf("%s: log holds a secret (%s…)", s.name, clip(sec, 6))
		}
		// The JSON log escapes some characters ('<', '&', quotes); look for
		// that form too.
		b, _ := json.Marshal(sec)
		if esc := string(b[1 : len(b)-1]); esc != sec && strings.Contains(logs, esc) {
			t.Errorf("%s: log holds a secret, JSON-escaped (%s…)", s.name, clip(sec, 6))
		}
	}
}

// secrets collects every credential a test uses, to look for later.
type secrets struct {
	mu   sync.Mutex
	list []string
}

func (s *secrets) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range v {
		if x != "" && !slices.Contains(s.list, x) {
			s.list = append(s.list, x)
		}
	}
}

func (s *secrets) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// refreshHash is how the server stores a refresh token: hex SHA-256.
func refreshHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// pkce returns a code verifier and its S256 challenge (RFC 7636 §4.2).
func pkce(seed string) (verifier, challenge string) {
	v := sha256.Sum256([]byte("verifier " + seed))
	verifier = base64.RawURLEncoding.EncodeToString(v[:]) // 43 unreserved characters
	c := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(c[:])
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects: a person at the authorization endpoint.
func browser(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Jar: jar, CheckRedirect: noRedirects}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// hiddenFields returns a page's hidden form fields, unescaped.
func hiddenFields(page []byte) url.Values {
	v := url.Values{}
	for _, m := range hiddenInput.FindAllSubmatch(page, -1) {
		v.Add(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
	}
	return v
}

// rawExchange sends head (a request line and headers, CRLF-terminated,
// including the blank line) and then body on a new connection, while reading
// one response. Writing goes on in the background so a server that answers
// early (413, 431) is read even while the body is still being sent.
func rawExchange(addr, head string, body io.Reader) (*http.Response, []byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		if body != nil {
			if _, err := io.Copy(w, body); err != nil {
				return
			}
		}
		w.Flush()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// procStatus reads the VmHWM and VmRSS lines of /proc/pid/status, in bytes.
func procStatus(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("unexpected %s line %q", k, line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmHWM" {
			hwm = n << 10
		} else {
			rss = n << 10
		}
	}
	if hwm == 0 || rss == 0 {
		return 0, 0, errors.New("no VmHWM or VmRSS in /proc status")
	}
	return hwm, rss, nil
}

// postgresURL returns TEST_POSTGRES_URL, skipping the test without it (but
// failing it when CI is set: CI must never skip PostgreSQL).
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_POSTGRES_URL unset but CI is set: PostgreSQL tests must run in CI")
		}
		t.Skip("TEST_POSTGRES_URL unset: skipping PostgreSQL")
	}
	return u
}
