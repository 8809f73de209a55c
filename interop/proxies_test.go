package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The relying parties of deploy/examples, run for real with the files as
// shipped: the test replaces the placeholders, registers the client with the
// recipe's own `oauth2-api client create` command, starts the proxy with the
// resulting configuration and nothing else, in front of a small app, and
// signs people in and out through Chromium.

// oauth2ProxyBinary returns the oauth2-proxy to test: $OAUTH2_PROXY_BIN
// (scripts/oauth2-proxy.sh builds it and prints its path), else the one
// that script left in its cache, else one on PATH. Without one the
// test skips, except when CI is set.
func oauth2ProxyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OAUTH2_PROXY_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OAUTH2_PROXY_BIN: %v", err)
		}
		return p
	}
	if p := cachedOAuth2Proxy(t); p != "" {
		return p
	}
	if p, err := exec.LookPath("oauth2-proxy"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("oauth2-proxy not found but CI is set: .ci/run builds it (OAUTH2_PROXY_BIN=$(scripts/oauth2-proxy.sh))")
	}
	t.Skip("oauth2-proxy not found: skipping; run with OAUTH2_PROXY_BIN=$(../scripts/oauth2-proxy.sh), which builds v7 once (a few minutes)")
	return ""
}

// cachedOAuth2Proxy returns the binary scripts/oauth2-proxy.sh leaves in
// its cache ($OAUTH2_PROXY_CACHE, or oauth2-api-interop in the user's cache
// directory) for the version it names, or "" if there is none.
func cachedOAuth2Proxy(t testing.TB) string {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("..", "scripts", "oauth2-proxy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	version := ""
	for line := range strings.Lines(string(script)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VERSION="); ok {
			version = v
			break
		}
	}
	if version == "" {
		t.Fatal("scripts/oauth2-proxy.sh names no VERSION")
	}
	dir := os.Getenv("OAUTH2_PROXY_CACHE")
	if dir == "" {
		cache, err := os.UserCacheDir() // $XDG_CACHE_HOME or ~/.cache, as the script
		if err != nil {
			return ""
		}
		dir = filepath.Join(cache, "oauth2-api-interop")
	}
	p := filepath.Join(dir, "oauth2-proxy-"+version, "oauth2-proxy")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// apacheModules is where Debian's apache2 keeps its modules.
const apacheModules = "/usr/lib/apache2/modules"

// apache returns the path of Debian's apache2, with mod_auth_openidc
// installed. Without them the test skips, except when CI is set.
func apache(t testing.TB) string {
	t.Helper()
	bin := ""
	for _, p := range []string{"/usr/sbin/apache2", "apache2"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	_, err := os.Stat(filepath.Join(apacheModules, "mod_auth_openidc.so"))
	if bin != "" && err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal("apache2 or mod_auth_openidc not found but CI is set: apt-get install apache2 libapache2-mod-auth-openidc")
	}
	t.Skip("apache2 or mod_auth_openidc not found: skipping (apt-get install apache2 libapache2-mod-auth-openidc)")
	return ""
}

// recipe is a file of deploy/examples being filled in.
type recipe struct {
	name string
	text string
}

func readRecipe(t testing.TB, name string) *recipe {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return &recipe{name: name, text: string(b)}
}

// fill replaces placeholders, given as old, new pairs; each must occur.
// Pairs are tried in order at each position, so a longer placeholder
// (https://id.example.com) must come before a shorter one it contains.
func (r *recipe) fill(t testing.TB, pairs ...string) {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(r.text, pairs[i]) {
			t.Fatalf("%s: no placeholder %q", r.name, pairs[i])
		}
	}
	r.text = strings.NewReplacer(pairs...).Replace(r.text)
}

// done checks that no placeholder is left.
func (r *recipe) done(t testing.TB, placeholders ...string) {
	t.Helper()
	for _, p := range append(placeholders, "example.com") {
		if strings.Contains(r.text, p) {
			t.Fatalf("%s: placeholder %q left after filling in:\n%s", r.name, p, r.text)
		}
	}
}

// clientCreate returns the flags of the recipe's `oauth2-api client create`
// command: the comment lines from that command to the last one
// ending in a backslash, split as a shell splits them.
func (r *recipe) clientCreate(t testing.TB) []string {
	t.Helper()
	var cmd strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(r.text))
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#"))
		if !in && !strings.HasPrefix(line, "oauth2-api client create ") {
			continue
		}
		in = true
		more := strings.HasSuffix(line, `\`)
		cmd.WriteString(strings.TrimSuffix(line, `\`) + " ")
		if !more {
			break
		}
	}
	words := shellWords(t, cmd.String())
	if len(words) < 4 || words[0] != "oauth2-api" || words[1] != "client" || words[2] != "create" {
		t.Fatalf("%s: no `oauth2-api client create` command in a comment", r.name)
	}
	return words[3:]
}

// shellWords splits s at blanks outside single or double quotes (no escapes
// inside quotes, which the recipes do not use).
func shellWords(t testing.TB, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	quote, inWord := rune(0), false
	for _, c := range s {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(c)
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// commentLine returns the first comment line of the recipe holding s,
// without the comment sign and blanks.
func (r *recipe) commentLine(t testing.TB, s string) string {
	t.Helper()
	for line := range strings.Lines(r.text) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") && strings.Contains(line, s) {
			return strings.TrimSpace(strings.TrimPrefix(line, "#"))
		}
	}
	t.Fatalf("%s: no comment line with %q", r.name, s)
	return ""
}

func (r *recipe) write(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, r.name)
	if err := os.WriteFile(path, []byte(r.text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// appRequest is one request the app behind a proxy received.
type appRequest struct {
	path   string
	header http.Header
}

// app is the application behind the proxy: it records what it receives and
// answers with a page that shows the email address the proxy passed in
// emailHeader.
type app struct {
	URL  string
	mu   sync.Mutex
	seen []appRequest
}

func newApp(t testing.TB, emailHeader string) *app {
	t.Helper()
	a := &app{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, appRequest{r.URL.RequestURI(), r.Header.Clone()})
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// No favicon: a browser would fetch it after the page, racing the test's next step.
		fmt.Fprintf(w, `<!doctype html><title>The app</title><link rel="icon" href="data:,"><h1 id="app">The app</h1><p id="email">%s</p>`,
			html.EscapeString(r.Header.Get(emailHeader)))
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// requests returns what the app has received so far.
func (a *app) requests() []appRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

// last returns the last request the app received for path, or fails.
func (a *app) last(t testing.TB, path string) appRequest {
	t.Helper()
	reqs := a.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].path == path {
			return reqs[i]
		}
	}
	t.Fatalf("the app never received %s (it received %d requests)", path, len(reqs))
	return appRequest{}
}

// process is a relying party's process (oauth2-proxy, apache2).
type process struct {
	name   string
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{}
}

// startProcess runs bin; when the test ends it gets SIGTERM (then SIGKILL
// after 15 s) and, if the test failed, its output is logged.
func startProcess(t testing.TB, name, bin string, args, env []string, attr *syscall.SysProcAttr) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), logs: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = attr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("%s did not stop within 15s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.logs.String())
		}
	})
	return p
}

// waitHTTP polls url, as a browser (Accept: text/html), until it answers
// with status want (redirects are not followed).
func (p *process) waitHTTP(t testing.TB, u string, want int) {
	t.Helper()
	c := noRedirects()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited during startup (%v):\n%s", p.name, p.cmd.ProcessState, p.logs.String())
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html") // mod_auth_openidc answers others 401
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s did not answer %d within 20s (last: %v):\n%s", p.name, u, want, err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func noRedirects() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// authorizationRequest follows the relying party's redirects from start,
// as a browser that accepts cookies would, up to the first one to the
// issuer, and checks it: an authorization request for client c, at
// redirectURI, for the scopes, with PKCE S256.
func authorizationRequest(t testing.TB, s *server, start string, c client, redirectURI string, scopes ...string) url.Values {
	t.Helper()
	hc := noRedirects()
	u := start
	for range 5 {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html") // a browser: mod_auth_openidc answers others 401
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("GET %s: status %d, no redirect (%v); want one to %s", u, resp.StatusCode, err, s.URL)
		}
		if !strings.HasPrefix(loc.String(), s.URL+"/") {
			u = loc.String()
			continue
		}
		q := loc.Query()
		if loc.Path != "/oauth2/authorize" || q.Get("response_type") != "code" || q.Get("client_id") != c.ID ||
			q.Get("redirect_uri") != redirectURI || q.Get("code_challenge_method") != "S256" ||
			len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || !sameScope(q.Get("scope"), strings.Join(scopes, " ")) {
			t.Fatalf("the relying party sends people to %s; want /oauth2/authorize with response_type code, client_id %s, redirect_uri %s, scope %q, a state and an S256 code_challenge",
				loc, c.ID, redirectURI, strings.Join(scopes, " "))
		}
		return q
	}
	t.Fatalf("no redirect to %s within 5 steps from %s", s.URL, start)
	return nil
}

// watchCodes records the authorization codes the browser carries to
// callbackPrefix, so that the test can check none reached the server's logs.
func watchCodes(t testing.TB, ctx context.Context, callbackPrefix string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var codes []string
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && strings.HasPrefix(e.Request.URL, callbackPrefix) {
			if u, err := url.Parse(e.Request.URL); err == nil && u.Query().Get("code") != "" {
				mu.Lock()
				codes = append(codes, u.Query().Get("code"))
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(codes)
	}
}

// forgeHeaders makes the browser send headers on every request, as an
// attacker would to pose as someone else to the app behind the proxy.
func forgeHeaders(t testing.TB, ctx context.Context, h map[string]string) {
	t.Helper()
	hs := network.Headers{}
	for k, v := range h {
		hs[k] = v
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: hs}); err != nil {
		t.Fatalf("set extra headers: %v", err)
	}
}

// signIn is a person on oauth2-api's login page (where the relying party
// sent the browser): they type their username and password and press Sign
// in. If consentShows is not nil, the consent page must come next and show
// each of its strings; they press Allow. It returns the response of the
// page the browser lands on after the redirects.
func signIn(t testing.TB, ctx context.Context, s *server, u user, consentShows []string) *network.Response {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`input[name=login]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=login]`), u.Username),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.Password),
	)
	if err != nil {
		t.Fatalf("login page: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, s.URL+"/oauth2/authorize?") {
		t.Fatalf("the login page is at %q; want %s/oauth2/authorize?…", loc, s.URL)
	}
	submit := chromedp.Click(chromedp.CSS(`button[type=submit]`))
	if consentShows == nil {
		resp, err := chromedp.RunResponse(ctx, submit)
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		return resp
	}
	if err := chromedp.Do(ctx, submit, chromedp.WaitVisible(chromedp.CSS(`button[name=action][value=allow]`))); err != nil {
		loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
		t.Fatalf("sign in: no consent page (%v); the browser is at %q", err, loc)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatalf("consent page text: %v", err)
	}
	for _, want := range consentShows {
		if !strings.Contains(text, want) {
			t.Errorf("consent page does not show %q:\n%s", want, text)
		}
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[name=action][value=allow]`)))
	if err != nil {
		t.Fatalf("press Allow: %v", err)
	}
	return resp
}

// atLoginPage waits until the browser shows oauth2-api's login page.
func atLoginPage(t testing.TB, ctx context.Context, s *server, why string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`input[name=login]`))); err != nil {
		loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
		t.Fatalf("%s: no login page (%v); the browser is at %q", why, err, loc)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, s.URL+"/oauth2/authorize?") {
		t.Fatalf("%s: the browser is at %q; want oauth2-api's login page, %s/oauth2/authorize?…", why, loc, s.URL)
	}
}

// atApp waits until the browser shows the app's page at want (the URL the
// person first asked for) and returns the email address the page shows.
func atApp(t testing.TB, ctx context.Context, want string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("app"))); err != nil {
		loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
		t.Fatalf("the app's page did not load (%v); the browser is at %q", err, loc)
	}
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != want {
		t.Errorf("the browser is at %q (%v); want %s, the page first asked for", loc, err, want)
	}
	email, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("email")))
	if err != nil {
		t.Fatal(err)
	}
	return email
}

// metric returns the value of one sample of the server's /metrics.
func (s *server) metric(t testing.TB, sample string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q", line)
			}
			return f
		}
	}
	return 0
}

// waitMetric polls sample until it reaches want (back-channel logout runs
// off the request path).
func (s *server) waitMetric(t testing.TB, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := s.metric(t, sample)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s = %v; want %v", sample, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOAuth2ProxyRecipe runs oauth2-proxy v7 with deploy/examples/oauth2-proxy.cfg
// as shipped (placeholders filled in) in front of an app, and in Chromium:
// a person with a verified address signs in at oauth2-api and reaches the
// app, which sees their address from the proxy and not the one the
// browser forged; the recipe's sign-out link ends both the proxy's and
// oauth2-api's sessions; a person whose address is not verified is
// refused by the proxy and never reaches the app.
func TestOAuth2ProxyRecipe(t *testing.T) {
	t.Parallel()
	chromium(t)
	bin := oauth2ProxyBinary(t)
	key := generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key.Path})
	ann := s.createUser(t, "ann@example.com", "ann", password, "--email-verified")
	bob := s.createUser(t, "bob@example.net", "bob", password) // not verified
	a := newApp(t, "X-Forwarded-Email")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	appURL := "http://" + listen // where people reach the app: the proxy
	// As the recipe says: openssl rand -base64 32 | tr -- '+/' '-_'
	secret := make([]byte, 32)
	rand.Read(secret)
	cookieSecret := strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(secret))

	r := readRecipe(t, "oauth2-proxy.cfg")
	r.fill(t,
		"https%253A%252F%252Fapp.example.com%252F", url.QueryEscape(url.QueryEscape(appURL+"/")),
		"https%3A%2F%2Fid.example.com", url.QueryEscape(s.URL),
		"https://id.example.com", s.URL,
		"https://app.example.com", appURL,
		"id.example.com", strings.TrimPrefix(s.URL, "http://"),
		"127.0.0.1:4180", listen,
		"http://127.0.0.1:3000/", a.URL+"/",
	)
	c := s.createClient(t, r.clientCreate(t)...)
	if !slices.Equal(c.RedirectURIs, []string{appURL + "/oauth2/callback"}) {
		t.Fatalf("the recipe registers redirect URIs %q; want [%s/oauth2/callback]", c.RedirectURIs, appURL)
	}
	r.fill(t, "CLIENT_ID", c.ID, "CLIENT_SECRET", c.Secret, "COOKIE_SECRET", cookieSecret)
	r.done(t, "CLIENT_ID", "CLIENT_SECRET", "COOKIE_SECRET", "4180", "3000")
	s.noLog(cookieSecret)

	// The sign-out link the recipe documents, with the placeholders filled in.
	signOut := r.commentLine(t, "/oauth2/sign_out?rd=")
	so, err := url.Parse(signOut)
	if err != nil || so.Path != "/oauth2/sign_out" {
		t.Fatalf("the recipe's sign-out link %q (%v); want /oauth2/sign_out?rd=…", signOut, err)
	}
	wantRD := s.URL + "/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=" + url.QueryEscape(appURL+"/")
	if rd := so.Query().Get("rd"); rd != wantRD {
		t.Fatalf("the recipe's sign-out link sends the browser to %q; want %q", rd, wantRD)
	}

	dir := t.TempDir()
	cfg := r.write(t, dir)
	proxy := startProcess(t, "oauth2-proxy", bin, []string{"--config", cfg},
		[]string{"PATH=/usr/bin:/bin", "HOME=" + dir}, dieWithParent())
	proxy.waitHTTP(t, appURL+"/ping", http.StatusOK)

	// Without a browser: the proxy sends people to oauth2-api with PKCE S256.
	authorizationRequest(t, s, appURL+"/", c, appURL+"/oauth2/callback", "openid", "email", "profile")

	ctx := startBrowser(t)
	codes := watchCodes(t, ctx, appURL+"/oauth2/callback?")
	const mallory = "mallory@evil.example"
	forgeHeaders(t, ctx, map[string]string{"X-Forwarded-Email": mallory, "X-Forwarded-User": "mallory"})

	// ann signs in and reaches the app, which sees her address.
	if err := chromedp.Do(ctx, chromedp.Navigate(appURL+"/hello?x=1")); err != nil {
		t.Fatal(err)
	}
	atLoginPage(t, ctx, s, "the proxy, signed out")
	signIn(t, ctx, s, ann, []string{"ann", "openid", "email", "profile", "127.0.0.1"})
	if shown := atApp(t, ctx, appURL+"/hello?x=1"); shown != ann.Email {
		t.Errorf("the app's page shows %q; want ann's address %s", shown, ann.Email)
	}
	got := a.last(t, "/hello?x=1").header
	if v := got.Values("X-Forwarded-Email"); len(v) != 1 || v[0] != ann.Email ||
		len(got.Values("X-Forwarded-User")) != 1 || got.Get("X-Forwarded-User") != ann.Sub() || got.Get("X-Forwarded-Preferred-Username") != "ann" {
		t.Errorf("the app received X-Forwarded-Email %q, X-Forwarded-User %q, X-Forwarded-Preferred-Username %q; want [%s], %s, ann (not the forged %s)",
			got.Values("X-Forwarded-Email"), got.Values("X-Forwarded-User"), got.Values("X-Forwarded-Preferred-Username"), ann.Email, ann.Sub(), mallory)
	}
	for k := range got {
		if strings.Contains(strings.ToLower(k), "token") || k == "Authorization" {
			t.Errorf("the app received %s; the recipe passes no token", k)
		}
	}

	// The recipe's sign-out link: the proxy forgets ann, oauth2-api ends her
	// sign-in at once (the id_token_hint names her) and sends the browser to
	// the post-logout URI, the app, where the proxy sends it to sign in.
	// Only the login page (and not the app, or the consent page) shows both ended.
	before := len(a.requests())
	if err := chromedp.Do(ctx, chromedp.Navigate(appURL+signOut)); err != nil {
		t.Fatal(err)
	}
	atLoginPage(t, ctx, s, "after the recipe's sign-out link")
	if n := len(a.requests()); n != before {
		t.Errorf("the app received %d requests during sign-out; want none", n-before)
	}

	// bob's address is not verified: the proxy refuses him.
	resp := signIn(t, ctx, s, bob, []string{"bob", "openid", "email"})
	if resp.Status != http.StatusForbidden || !strings.HasPrefix(resp.URL, appURL+"/oauth2/callback?") {
		t.Errorf("bob (unverified) got %d at %s; want 403 from the proxy's callback", resp.Status, resp.URL)
	}
	if text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`))); !strings.Contains(text, "Forbidden") {
		t.Errorf("the proxy's page for bob:\n%s", text)
	}
	for _, req := range a.requests() {
		if req.header.Get("X-Forwarded-Email") == bob.Email {
			t.Errorf("the app received %s as bob, whose address is not verified", req.path)
		}
	}
	if !strings.Contains(proxy.logs.String(), "email in id_token ("+bob.Email+") isn't verified") {
		t.Errorf("oauth2-proxy did not log that bob's address is not verified")
	}

	// At least ann's and bob's (the browser may ask for a favicon on the
	// proxy's error page, which starts another sign-in for bob).
	cs := codes()
	if len(cs) < 2 {
		t.Errorf("the browser carried %d authorization codes to the proxy; want 2 or more (ann, bob)", len(cs))
	}
	s.noLog(cs...)
}

// apacheConf is an httpd.conf around the recipe for Debian's apache2: its
// files in dir, the modules the recipe needs, and one virtual host on
// listen that includes the recipe.
func apacheConf(dir, listen, recipePath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %q\nServerName 127.0.0.1\nListen %s\n", dir, listen)
	fmt.Fprintf(&b, "PidFile %q\nDefaultRuntimeDir %q\nMutex file:%s default\n", filepath.Join(dir, "httpd.pid"), dir, dir)
	fmt.Fprintf(&b, "ErrorLog %q\nLogLevel warn auth_openidc:info\n", filepath.Join(dir, "error.log"))
	fmt.Fprintf(&b, "LogFormat \"%%h \\\"%%r\\\" %%>s\" short\nCustomLog %q short\n", filepath.Join(dir, "access.log"))
	for _, m := range []string{"mpm_event", "authn_core", "authz_core", "authz_user", "proxy", "proxy_http", "auth_openidc"} {
		fmt.Fprintf(&b, "LoadModule %s_module %s\n", m, filepath.Join(apacheModules, "mod_"+m+".so"))
	}
	fmt.Fprintf(&b, "<VirtualHost %s>\n    ServerName %s\n    Include %q\n</VirtualHost>\n", listen, listen, recipePath)
	return b.String()
}

// TestModAuthOpenIDCRecipe runs Debian's apache2 with mod_auth_openidc and
// deploy/examples/mod_auth_openidc.conf as shipped (placeholders filled in)
// in front of an app, and in Chromium: a person with a verified address
// signs in at oauth2-api and reaches the app, which sees their claims and
// an access token oauth2-api vouches for, and not the claims the browser
// forged; when they sign out at oauth2-api, its back-channel logout token
// ends Apache's session too; the recipe's sign-out link ends both
// sessions; a person whose address is not verified is refused by Apache
// and never reaches the app.
func TestModAuthOpenIDCRecipe(t *testing.T) {
	t.Parallel()
	chromium(t)
	httpd := apache(t)
	key := generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key.Path})
	ann := s.createUser(t, "ann@example.com", "ann", password, "--email-verified")
	bob := s.createUser(t, "bob@example.net", "bob", password) // not verified
	a := newApp(t, "OIDC_CLAIM_email")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	appURL := "http://" + listen // where people reach the app: Apache
	passphrase := randomHex(32)

	r := readRecipe(t, "mod_auth_openidc.conf")
	r.fill(t,
		"https%3A%2F%2Fapp.example.com%2F", url.QueryEscape(appURL+"/"),
		"https://id.example.com", s.URL,
		"https://app.example.com", appURL,
		"http://127.0.0.1:3000/", a.URL+"/",
	)
	c := s.createClient(t, r.clientCreate(t)...)
	if !slices.Equal(c.RedirectURIs, []string{appURL + "/oidc/callback"}) {
		t.Fatalf("the recipe registers redirect URIs %q; want [%s/oidc/callback]", c.RedirectURIs, appURL)
	}
	r.fill(t, "CLIENT_ID", c.ID, "CLIENT_SECRET", c.Secret, "CRYPTO_PASSPHRASE", passphrase)
	r.done(t, "CLIENT_ID", "CLIENT_SECRET", "CRYPTO_PASSPHRASE", "3000")
	s.noLog(passphrase)
	// The sign-out link the recipe documents: ?logout=<where to land>.
	logout := strings.Fields(r.commentLine(t, "?logout=http"))[0]
	if q, err := url.ParseQuery(strings.TrimPrefix(logout, "?")); err != nil || q.Get("logout") != appURL+"/" {
		t.Fatalf("the recipe's sign-out link %q (%v); want ?logout=%s", logout, err, url.QueryEscape(appURL+"/"))
	}

	// Apache's files, in a directory of its own that nobody (the account it
	// runs as under root) owns.
	dir, err := os.MkdirTemp("", "interop-apache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(conf, []byte(apacheConf(dir, listen, r.write(t, dir))), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/bin", "LANG=C"}
	check := exec.Command(httpd, "-t", "-f", conf)
	check.Env, check.SysProcAttr = env, unprivileged()
	if out, err := check.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "Syntax OK" {
		t.Fatalf("apache2 -t: %v\n%s", err, out)
	}
	httpdProc := startProcess(t, "apache2", httpd, []string{"-f", conf, "-DFOREGROUND"}, env, unprivileged())
	t.Cleanup(func() { // after apache2 stopped (cleanups run last in, first out)
		if t.Failed() {
			errs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			access, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			t.Logf("apache2 error.log:\n%s\naccess.log:\n%s", errs, access)
		}
	})
	httpdProc.waitHTTP(t, appURL+"/", http.StatusFound)

	// Without a browser: Apache sends people to oauth2-api with PKCE S256.
	authorizationRequest(t, s, appURL+"/", c, appURL+"/oidc/callback", "openid", "email", "profile")

	ctx := startBrowser(t)
	codes := watchCodes(t, ctx, appURL+"/oidc/callback?")
	const mallory = "mallory@evil.example"
	forgeHeaders(t, ctx, map[string]string{"OIDC_CLAIM_email": mallory, "OIDC-CLAIM-email": mallory})

	// 1. ann signs in and reaches the app, which sees her claims.
	if err := chromedp.Do(ctx, chromedp.Navigate(appURL+"/hello?x=1")); err != nil {
		t.Fatal(err)
	}
	atLoginPage(t, ctx, s, "Apache, signed out")
	signIn(t, ctx, s, ann, []string{"ann", "openid", "email", "profile", "127.0.0.1"})
	if shown := atApp(t, ctx, appURL+"/hello?x=1"); shown != ann.Email {
		t.Errorf("the app's page shows %q; want ann's address %s", shown, ann.Email)
	}
	got := a.last(t, "/hello?x=1").header
	claims := map[string]string{"email": ann.Email, "email_verified": "1", "preferred_username": "ann", "sub": ann.Sub(), "iss": s.URL, "aud": c.ID}
	for claim, want := range claims {
		if v := got.Values("OIDC_CLAIM_" + claim); len(v) != 1 || v[0] != want {
			t.Errorf("the app received OIDC_CLAIM_%s %q; want [%s]", claim, v, want)
		}
	}
	if v := got.Values("OIDC-CLAIM-email"); len(v) != 0 {
		t.Errorf("the app received the forged OIDC-CLAIM-email %q", v)
	}
	at := got.Get("OIDC_access_token")
	if at == "" {
		t.Fatalf("the app received no OIDC_access_token; headers %v", got)
	}
	s.noLog(at)
	if in := s.introspect(t, c, at); !in.Active || in.Sub != ann.Sub() || in.ClientID != c.ID {
		t.Errorf("introspection of the access token the app received: %+v; want active, sub %s, client_id %s", in, ann.Sub(), c.ID)
	}

	// 2. ann signs out at oauth2-api itself. Its back-channel logout token
	// ends Apache's session too: Apache sends her to sign in again.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/oauth2/logout")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[name=action][value=logout]`))); err != nil {
		t.Fatalf("sign out at oauth2-api: %v", err)
	}
	if text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`p.lead`))); text != "You are signed out." {
		t.Fatalf("oauth2-api's logout page says %q; want You are signed out.", text)
	}
	s.waitMetric(t, `oauth2_backchannel_logouts_total{outcome="sent"}`, 1)
	before := len(a.requests())
	if err := chromedp.Do(ctx, chromedp.Navigate(appURL+"/hello?x=2")); err != nil {
		t.Fatal(err)
	}
	atLoginPage(t, ctx, s, "Apache, after the back-channel logout")
	if n := len(a.requests()); n != before {
		t.Errorf("the app received %d requests after the back-channel logout; want none", n-before)
	}

	// 3. ann signs in again (no consent: she gave it), then follows the
	// recipe's sign-out link: Apache ends its session, oauth2-api ends hers
	// (the id_token_hint names her) and sends her to the post-logout URI,
	// the app, where Apache sends her to sign in.
	signIn(t, ctx, s, ann, nil)
	if shown := atApp(t, ctx, appURL+"/hello?x=2"); shown != ann.Email {
		t.Errorf("the app's page shows %q; want ann's address %s", shown, ann.Email)
	}
	before = len(a.requests())
	if err := chromedp.Do(ctx, chromedp.Navigate(appURL+"/oidc/callback"+logout)); err != nil {
		t.Fatal(err)
	}
	atLoginPage(t, ctx, s, "after the recipe's sign-out link")
	if n := len(a.requests()); n != before {
		t.Errorf("the app received %d requests during sign-out; want none", n-before)
	}
	s.waitMetric(t, `oauth2_backchannel_logouts_total{outcome="sent"}`, 2) // that sign-in's, for a session Apache already ended

	// 4. bob's address is not verified: Apache refuses him.
	resp := signIn(t, ctx, s, bob, []string{"bob", "openid", "email"})
	if resp.Status != http.StatusUnauthorized || !strings.HasPrefix(resp.URL, appURL+"/") {
		t.Errorf("bob (unverified) got %d at %s; want 401 from Apache", resp.Status, resp.URL)
	}
	for _, req := range a.requests() {
		if req.header.Get("OIDC_CLAIM_email") == bob.Email {
			t.Errorf("the app received %s as bob, whose address is not verified", req.path)
		}
	}

	for _, req := range a.requests() {
		if strings.HasPrefix(req.path, "/oidc/") {
			t.Errorf("the app received %s: the redirect URI is Apache's alone", req.path)
		}
	}

	cs := codes()
	if len(cs) < 3 {
		t.Errorf("the browser carried %d authorization codes to Apache; want 3 or more (ann twice, bob)", len(cs))
	}
	s.noLog(cs...)
}
