package interop

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// chromium returns the path of the browser: Debian's chromium. Without one
// the browser test skips on a laptop but fails when CI is set.
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found but CI is set: the browser test must run in CI (apt-get install chromium)")
	}
	t.Skip("chromium not found: skipping the browser test (apt-get install chromium)")
	return ""
}

// screenshotDir is where the browser test leaves its screenshots:
// $TEST_OUTPUT_DIR, or testdata/screenshots (ignored by git).
func screenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TEST_OUTPUT_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// savePNG checks that b is a PNG image with a size and writes it to dir.
func savePNG(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(b))
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width == 0 || cfg.Height == 0 {
		t.Fatalf("screenshot %s: %dx%d, %v; want a non-empty PNG", name, cfg.Width, cfg.Height, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %dx%d", path, cfg.Width, cfg.Height)
}

// TestBrowserAuthorizationCode drives Chromium through the server's own
// pages as a person would: type the username and password, press Sign in,
// read the consent page, press Allow, and land on the client's redirect URI
// (a loopback server this test runs). The browser enforces what a plain HTTP
// client cannot: the pages' Content-Security-Policy (form-action must let
// the redirect after the consent POST through), cookies with SameSite=Lax,
// and the 303 after a POST.
func TestBrowserAuthorizationCode(t *testing.T) {
	browser := chromium(t)
	s := startServer(t, nil)
	grace := s.createUser(t, "grace@example.com", "grace", password)
	app := s.createClient(t, "--name", "Interop Browser App", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "read", "--scope", "write")
	meta := s.metadata(t)

	type callback struct {
		query url.Values
		err   error
	}
	got := make(chan callback, 4)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r)
			return
		}
		var err error
		if r.Method != http.MethodGet {
			err = fmt.Errorf("callback by %s; want GET (a 303 after the consent POST)", r.Method)
		}
		got <- callback{r.URL.Query(), err}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Interop app</title><h1 id="done">Signed in</h1>`)
	}))
	defer cb.Close()

	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, Scopes: []string{"read", "write"},
		RedirectURL: cb.URL + "/cb", // http://127.0.0.1:<port>/cb: any port on a loopback literal
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
	}
	verifier, state := oauth2.GenerateVerifier(), randomHex(16)
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	profile, err := os.MkdirTemp("", "interop-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	var browserLog lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1000, 800),
		chromedp.CombinedOutput(&browserLog),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, args ...any) {
		fmt.Fprintf(&browserLog, "chromedp: "+format+"\n", args...)
	}))
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("browser output:\n%s", browserLog.String())
		}
	}()
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this first call
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelSteps := context.WithTimeout(ctx, 60*time.Second)
	defer cancelSteps()
	shots := screenshotDir(t)

	// The login page: type like a person, then press Sign in.
	err = chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name=login]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=login]`), grace.Username),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), grace.Password),
	)
	if err != nil {
		t.Fatalf("login page: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || !strings.HasPrefix(title, "Sign in") {
		t.Errorf("login page title %q (%v); want Sign in", title, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of the login page: %v", err)
	}
	savePNG(t, shots, "browser-login.png", shot)

	// The consent page: it names the client and the scopes.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name=action][value=allow]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatalf("consent page text: %v", err)
	}
	for _, want := range []string{app.Name, "grace", "read", "write", "127.0.0.1"} {
		if !strings.Contains(text, want) {
			t.Errorf("consent page does not show %q:\n%s", want, text)
		}
	}
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of the consent page: %v", err)
	}
	savePNG(t, shots, "browser-consent.png", shot)

	// Allow: the browser follows the 303 to the client.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[name=action][value=allow]`))); err != nil {
		t.Fatalf("press Allow: %v", err)
	}
	var c callback
	select {
	case c = <-got:
	case <-ctx.Done():
		loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
		t.Fatalf("the browser never reached the redirect URI; it is at %q", loc)
	}
	if c.err != nil {
		t.Error(c.err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("done"))); err != nil {
		t.Errorf("the callback page did not load: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, cfg.RedirectURL+"?") {
		t.Errorf("the browser is at %q (%v); want %s?…", loc, err, cfg.RedirectURL)
	}
	if c.query.Get("state") != state || c.query.Get("iss") != s.URL || c.query.Get("code") == "" {
		t.Fatalf("callback query %v; want a code, state %q and iss %q", c.query, state, s.URL)
	}
	s.noLog(c.query.Get("code"), verifier)

	tok, err := cfg.Exchange(oauthContext(t), c.query.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	s.noLog(tok.AccessToken, tok.RefreshToken)
	claims := accessClaims(t, s, tok.AccessToken)
	if claim(claims, "sub") != grace.Sub() || claim(claims, "client_id") != app.ID || !sameScope(claims["scope"], "read write") {
		t.Errorf("access token claims %v; want sub %s, client_id %s, scope %q", claims, grace.Sub(), app.ID, "read write")
	}
}
