package interop

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
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

// variant is the database of a databases subtest ("sqlite" or
// "postgres"), so that the two variants' screenshots do not overwrite each
// other.
func variant(t testing.TB) string {
	return path.Base(t.Name())
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

// callback is what the client's redirect URI received.
type callback struct {
	query url.Values
	err   error
}

// newCallback runs the client's redirect URI: a loopback server answering
// GET /cb with a small page, which reports each request's query on the
// returned channel.
func newCallback(t testing.TB) (*httptest.Server, <-chan callback) {
	return newCallbackOn(t, "127.0.0.1:0")
}

// newCallbackOn is newCallback listening on addr.
func newCallbackOn(t testing.TB, addr string) (*httptest.Server, <-chan callback) {
	t.Helper()
	got := make(chan callback, 4)
	cb := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("no listener on %s on this machine: %v", addr, err)
	}
	cb.Listener.Close()
	cb.Listener = l
	cb.Start()
	t.Cleanup(cb.Close)
	return cb, got
}

// startBrowser starts a headless Chromium with a fresh profile and returns
// a chromedp context for it, limited to a minute of steps. The browser's
// output is logged if the test fails.
func startBrowser(t testing.TB) context.Context {
	t.Helper()
	browser := chromium(t)
	profile, err := os.MkdirTemp("", "interop-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	browserLog := &lockedBuffer{}
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
		chromedp.CombinedOutput(browserLog),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, args ...any) {
		fmt.Fprintf(browserLog, "chromedp: "+format+"\n", args...)
	}))
	// Cleanups run last in, first out: the log is read before the browser goes.
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser output:\n%s", browserLog.String())
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this first call
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelSteps := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelSteps)
	return ctx
}

// browserLogin is a person in Chromium at authURL: they type their username
// and password into the login page and press Sign in, read the consent page
// (which must show each of consentShows) and press Allow, and the browser
// follows the 303 to the client's redirect URI. Both pages are saved as
// screenshots, prefix-login.png and prefix-consent.png. It returns the query
// the client received.
func browserLogin(t testing.TB, ctx context.Context, got <-chan callback, authURL, redirectURL string, u user, consentShows []string, prefix string) url.Values {
	t.Helper()
	shots := screenshotDir(t)

	// The login page: type like a person, then press Sign in.
	err := chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name=login]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=login]`), u.Username),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.Password),
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
	savePNG(t, shots, prefix+"-login.png", shot)

	// The consent page: it names the client, the user and the scopes.
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
	for _, want := range consentShows {
		if !strings.Contains(text, want) {
			t.Errorf("consent page does not show %q:\n%s", want, text)
		}
	}
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of the consent page: %v", err)
	}
	savePNG(t, shots, prefix+"-consent.png", shot)

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
	if err != nil || !strings.HasPrefix(loc, redirectURL+"?") {
		t.Errorf("the browser is at %q (%v); want %s?…", loc, err, redirectURL)
	}
	return c.query
}

// TestBrowserAuthorizationCode drives Chromium through the server's own
// pages as a person would: type the username and password, press Sign in,
// read the consent page, press Allow, and land on the client's redirect URI
// (a loopback server this test runs). The browser enforces what a plain HTTP
// client cannot: the pages' Content-Security-Policy (form-action must let
// the redirect after the consent POST through), cookies with SameSite=Lax,
// and the 303 after a POST.
func TestBrowserAuthorizationCode(t *testing.T) {
	t.Parallel()
	chromium(t) // skip before starting a server when there is no browser
	s := startServer(t, nil)
	grace := s.createUser(t, "grace@example.com", "grace", password)
	app := s.createClient(t, "--name", "Interop Browser App", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "read", "--scope", "write")
	meta := s.metadata(t)
	cb, got := newCallback(t)

	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, Scopes: []string{"read", "write"},
		RedirectURL: cb.URL + "/cb", // http://127.0.0.1:<port>/cb: any port on a loopback literal
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
	}
	verifier, state := oauth2.GenerateVerifier(), randomHex(16)
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	ctx := startBrowser(t)
	q := browserLogin(t, ctx, got, authURL, cfg.RedirectURL, grace, []string{app.Name, "grace", "read", "write", "127.0.0.1"}, "browser")
	if q.Get("state") != state || q.Get("iss") != s.URL || q.Get("code") == "" {
		t.Fatalf("callback query %v; want a code, state %q and iss %q", q, state, s.URL)
	}
	s.noLog(q.Get("code"), verifier)

	tok, err := cfg.Exchange(oauthContext(t), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	s.noLog(tok.AccessToken, tok.RefreshToken)
	claims := accessClaims(t, s, tok.AccessToken)
	if claim(claims, "sub") != grace.Sub() || claim(claims, "client_id") != app.ID || !sameScope(claims["scope"], "read write") {
		t.Errorf("access token claims %v; want sub %s, client_id %s, scope %q", claims, grace.Sub(), app.ID, "read write")
	}
}

// TestBrowserNativeAppOnIPv6Loopback: a native app's redirect URI on the
// IPv6 loopback literal (RFC 8252 §7.3), any port, a public client with
// PKCE. CSP has no source for http://[::1]:port, and browsers ignore it:
// the consent page then sent form-action 'self' alone, and Chromium
// blocked the 303 to the app, so the code never reached it.
func TestBrowserNativeAppOnIPv6Loopback(t *testing.T) {
	t.Parallel()
	chromium(t)
	cb, got := newCallbackOn(t, "[::1]:0")
	s := startServer(t, nil)
	ada := s.createUser(t, "ada@example.com", "ada", password)
	app := s.createClient(t, "--name", "Interop Native App", "--public", "--redirect-uri", "http://[::1]/cb", "--scope", "read")
	meta := s.metadata(t)
	cfg := &oauth2.Config{
		ClientID: app.ID, Scopes: []string{"read"}, RedirectURL: cb.URL + "/cb",
		Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier, state := oauth2.GenerateVerifier(), randomHex(16)
	ctx := startBrowser(t)
	q := browserLogin(t, ctx, got, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), cfg.RedirectURL, ada,
		[]string{app.Name, "ada", "read", "[::1]"}, "browser-ipv6-loopback")
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("callback query %v; want a code and state %q", q, state)
	}
	tok, err := cfg.Exchange(oauthContext(t), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("Exchange: %v", err)
	}
	s.noLog(q.Get("code"), verifier, tok.AccessToken)
}

// TestBrowserOpenIDConnect is an OpenID Connect sign-in in Chromium: the
// server signs with an RSA SIGNING_KEY, the relying party discovers it with
// go-oidc and asks for "openid profile email" with a nonce, the person signs
// in and consents in the browser, and the relying party exchanges the code
// with x/oauth2, verifies the ID token with go-oidc (issuer, audience,
// signature against the JWKS, nonce, at_hash) and fetches UserInfo.
func TestBrowserOpenIDConnect(t *testing.T) {
	t.Parallel()
	chromium(t)
	key := generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key.Path})
	hedy := s.createUser(t, "hedy@example.com", "hedy", password, "--first-name", "Hedy", "--last-name", "Lamarr")
	app := s.createClient(t, "--name", "Interop Browser RP", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "openid profile email")
	cb, got := newCallback(t)
	octx := oidcContext(t)

	provider, err := oidc.NewProvider(octx, s.URL) // discovery; the issuer must be s.URL exactly
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	cfg := &oauth2.Config{
		ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: cb.URL + "/cb",
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}
	verifier, state, nonce := oauth2.GenerateVerifier(), randomHex(16), randomHex(16)
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	ctx := startBrowser(t)
	started := time.Now().Truncate(time.Second)
	q := browserLogin(t, ctx, got, authURL, cfg.RedirectURL, hedy,
		[]string{app.Name, "hedy", "openid", "profile", "email", "127.0.0.1"}, "browser-oidc")
	if q.Get("state") != state || q.Get("iss") != s.URL || q.Get("code") == "" {
		t.Fatalf("callback query %v; want a code, state %q and iss %q", q, state, s.URL)
	}
	s.noLog(q.Get("code"), verifier)

	tok, err := cfg.Exchange(octx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		t.Fatalf("no id_token in the token response for scope openid")
	}
	s.noLog(tok.AccessToken, tok.RefreshToken, rawID)
	if !sameScope(tok.Extra("scope"), "openid profile email") {
		t.Errorf("token response scope %v; want openid profile email", tok.Extra("scope"))
	}

	idt, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(octx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refuses the ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("ID token nonce %q; want %q", idt.Nonce, nonce)
	}
	if idt.Subject != hedy.Sub() || idt.Issuer != s.URL || !slices.Equal(idt.Audience, []string{app.ID}) {
		t.Errorf("ID token sub %q, iss %q, aud %q; want %s, %s, [%s]", idt.Subject, idt.Issuer, idt.Audience, hedy.Sub(), s.URL, app.ID)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash does not match the access token: %v", err)
	}
	if err := idt.VerifyAccessToken(tok.RefreshToken); err == nil {
		t.Errorf("at_hash matches the refresh token too; the check proves nothing")
	}
	var idClaims struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := idt.Claims(&idClaims); err != nil || idClaims.AuthTime < started.Unix() || idClaims.AuthTime > time.Now().Unix()+10 {
		t.Errorf("ID token auth_time %d (%v); want the sign-in in the browser, at or after %d", idClaims.AuthTime, err, started.Unix())
	}
	if h := jwtHeader(t, rawID); h["alg"] != "RS256" || h["kid"] != key.KID || h["typ"] != "JWT" {
		t.Errorf("ID token header %v; want alg RS256, kid %s, typ JWT", h, key.KID)
	}

	info, err := provider.UserInfo(octx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("UserInfo: %v", err)
	}
	var profile struct {
		PreferredUsername string `json:"preferred_username"`
		GivenName         string `json:"given_name"`
		FamilyName        string `json:"family_name"`
	}
	if err := info.Claims(&profile); err != nil {
		t.Fatal(err)
	}
	if info.Subject != idt.Subject || info.Email != hedy.Email || info.EmailVerified ||
		profile.PreferredUsername != "hedy" || profile.GivenName != "Hedy" || profile.FamilyName != "Lamarr" {
		t.Errorf("UserInfo sub %q, email %q (verified %v), profile %+v; want %s, %s (false), hedy Hedy Lamarr",
			info.Subject, info.Email, info.EmailVerified, profile, idt.Subject, hedy.Email)
	}
}

// signedOut is what the relying party's post-logout page received.
type signedOut struct {
	query url.Values
	err   error
}

// newSignedOutPage runs a relying party's post-logout redirect URI on
// loopback: GET /signed-out answers a small page and reports the query.
func newSignedOutPage(t testing.TB) (*httptest.Server, <-chan signedOut) {
	t.Helper()
	got := make(chan signedOut, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/signed-out" {
			http.NotFound(w, r)
			return
		}
		var err error
		if r.Method != http.MethodGet {
			err = fmt.Errorf("post-logout redirect by %s; want GET (a 303 after the confirmation POST)", r.Method)
		}
		got <- signedOut{r.URL.Query(), err}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Interop app</title><h1 id="signed-out">Signed out</h1>`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// TestBrowserLogoutConfirmation is sign-out as oauth2-proxy and similar
// relying parties send it: the browser goes to /oauth2/logout with only
// client_id and post_logout_redirect_uri (no id_token_hint), the person sees
// the confirmation page and presses Sign out, and Chromium must land on the
// registered post-logout URI, a loopback server this test runs. Chromium
// applies the page's Content-Security-Policy form-action to the redirect
// that follows the form, so a policy that does not allow the URI's origin
// stops the browser on the server's page and the test fails. Then the same
// authorization request shows the login page again: the sign-in ended.
func TestBrowserLogoutConfirmation(t *testing.T) {
	t.Parallel()
	chromium(t)
	databases(t, func(t *testing.T, databaseURL string) {
		t.Parallel()
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL})
		cb, got := newCallback(t)
		bye, left := newSignedOutPage(t)
		postLogoutURI := bye.URL + "/signed-out"
		eve := s.createUser(t, "eve.proxy@example.com", "eve_proxy", password)
		app := s.createClient(t, "--name", "Interop Proxy", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "read",
			"--post-logout-redirect-uri", postLogoutURI)
		meta := s.metadata(t)
		cfg := &oauth2.Config{
			ClientID: app.ID, ClientSecret: app.Secret, Scopes: []string{"read"}, RedirectURL: cb.URL + "/cb",
			Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
		}
		verifier, state := oauth2.GenerateVerifier(), randomHex(16)
		ctx := startBrowser(t)
		q := browserLogin(t, ctx, got, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), cfg.RedirectURL, eve,
			[]string{app.Name, "eve_proxy", "read"}, "browser-logout-"+variant(t))
		if q.Get("code") == "" || q.Get("state") != state {
			t.Fatalf("callback query %v; want a code and state %q", q, state)
		}
		s.noLog(q.Get("code"), verifier)

		// The sign-out link: client_id and post_logout_redirect_uri only.
		logoutURL := s.URL + "/oauth2/logout?" + url.Values{"client_id": {app.ID}, "post_logout_redirect_uri": {postLogoutURI}}.Encode()
		err := chromedp.Do(ctx,
			chromedp.Navigate(logoutURL),
			chromedp.WaitVisible(chromedp.CSS(`button[name=action][value=logout]`)),
		)
		if err != nil {
			t.Fatalf("the sign-out confirmation page: %v", err)
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil || !strings.HasPrefix(title, "Sign out") {
			t.Errorf("confirmation page title %q (%v); want Sign out", title, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		if err != nil || !strings.Contains(text, "Sign out of this server?") {
			t.Errorf("confirmation page text %q (%v); want it to ask \"Sign out of this server?\"", text, err)
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot of the confirmation page: %v", err)
		}
		savePNG(t, screenshotDir(t), "browser-logout-"+variant(t)+"-confirm.png", shot)
		select {
		case <-left:
			t.Fatal("the post-logout URI was reached before the person confirmed")
		default:
		}

		// Sign out: the form POSTs, and the 303 must take Chromium to the relying party.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[name=action][value=logout]`))); err != nil {
			t.Fatalf("press Sign out: %v", err)
		}
		select {
		case so := <-left:
			if so.err != nil {
				t.Error(so.err)
			}
			if len(so.query) != 0 {
				t.Errorf("post-logout redirect query %v; want none (no state was sent)", so.query)
			}
		case <-time.After(15 * time.Second):
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			t.Fatalf("Chromium never reached the post-logout URI %s within 15s (a CSP form-action that blocks it?); it is at %q", postLogoutURI, loc)
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("signed-out"))); err != nil {
			t.Errorf("the post-logout page did not load: %v", err)
		}
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != postLogoutURI {
			t.Errorf("Chromium is at %q (%v); want %s", loc, err, postLogoutURI)
		}

		// The sign-in ended: the same authorization (consent was given
		// already) now stops at the login page instead of going back to the client.
		verifier, state = oauth2.GenerateVerifier(), randomHex(16)
		authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
		if err := chromedp.Do(ctx, chromedp.Navigate(authURL)); err != nil {
			t.Fatalf("authorize after signing out: %v", err)
		}
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != authURL {
			t.Fatalf("after signing out, the authorization request went to %q (%v); want it to stay on the server's login page", loc, err)
		}
		short, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(short, chromedp.WaitVisible(chromedp.CSS(`input[name=password]`))); err != nil {
			t.Fatalf("after signing out, no login form: %v", err)
		}
		select {
		case c := <-got:
			t.Fatalf("the client received %v after the sign-out; want no code without a new login", c.query)
		default:
		}
	})
}
