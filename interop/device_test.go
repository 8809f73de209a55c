package interop

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Device authorization (RFC 8628) with golang.org/x/oauth2's DeviceAuth and
// DeviceAccessToken against the real binary, the person's part done in
// Chromium: pending while the person is at the page, the tokens once they
// allow (used at UserInfo and refreshed), access_denied once they deny,
// slow_down when the device polls too fast (x/oauth2 backs off by 5 s each
// time), expired_token once the code is too old, and a thousand wrong user
// codes from one address throttled.

const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

var userCodeRe = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// deviceClient registers a public client of the device grant, as a TV or a
// CLI is, with refresh tokens.
func deviceClient(t testing.TB, s *server, name string, scopes ...string) client {
	t.Helper()
	args := []string{"--name", name, "--public", "--grant-type", deviceGrant, "--grant-type", "refresh_token"}
	for _, sc := range scopes {
		args = append(args, "--scope", sc)
	}
	return s.createClient(t, args...)
}

// deviceConfig is the x/oauth2 configuration of c, with the endpoints read
// from the server's metadata, which must list the device endpoint and grant.
func deviceConfig(t testing.TB, s *server, c client, scopes ...string) *oauth2.Config {
	t.Helper()
	var m struct {
		DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
		TokenEndpoint               string   `json:"token_endpoint"`
		GrantTypes                  []string `json:"grant_types_supported"`
	}
	s.getJSON(t, "/.well-known/oauth-authorization-server", &m)
	if m.DeviceAuthorizationEndpoint != s.URL+"/oauth2/device_authorization" || !slices.Contains(m.GrantTypes, deviceGrant) {
		t.Fatalf("metadata: device_authorization_endpoint %q, grant_types_supported %q; want %s/oauth2/device_authorization and %s",
			m.DeviceAuthorizationEndpoint, m.GrantTypes, s.URL, deviceGrant)
	}
	return &oauth2.Config{ClientID: c.ID, Scopes: scopes, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: m.DeviceAuthorizationEndpoint, TokenURL: m.TokenEndpoint,
		AuthStyle: oauth2.AuthStyleInParams, // a public client: client_id in the body
	}}
}

// startDevice is DeviceAuth, with the answer's form checked.
func startDevice(t testing.TB, ctx context.Context, s *server, cfg *oauth2.Config) *oauth2.DeviceAuthResponse {
	t.Helper()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	s.noLog(da.DeviceCode, da.UserCode, strings.ReplaceAll(da.UserCode, "-", ""))
	if len(da.DeviceCode) != 43 || !userCodeRe.MatchString(da.UserCode) || da.VerificationURI != s.URL+"/oauth2/device" ||
		da.VerificationURIComplete != da.VerificationURI+"?user_code="+da.UserCode || da.Interval != 5 ||
		time.Until(da.Expiry) < 590*time.Second || time.Until(da.Expiry) > 600*time.Second {
		t.Fatalf("DeviceAuth answered %+v; want a device code, a XXXX-XXXX user code, %s/oauth2/device (and ?user_code=), interval 5, expiry in 600 s",
			da, s.URL)
	}
	return da
}

// pollRecorder watches the device's polls: each token endpoint answer, and
// when it came.
type pollRecorder struct {
	t     testing.TB
	base  http.RoundTripper
	mu    sync.Mutex
	polls []poll
	seen  chan string
}

type poll struct {
	at          time.Time
	status      int
	err, detail string
}

func newPollRecorder(t testing.TB) *pollRecorder {
	return &pollRecorder{t: t, base: testClient(t).Transport, seen: make(chan string, 100)}
}

// context returns a context whose x/oauth2 calls go through the recorder.
func (p *pollRecorder) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: 15 * time.Second, Transport: p})
}

func (p *pollRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(req)
	if err != nil || req.URL.Path != "/oauth2/token" {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(body, &e)
	p.mu.Lock()
	p.polls = append(p.polls, poll{time.Now(), resp.StatusCode, e.Error, e.Description})
	p.mu.Unlock()
	select {
	case p.seen <- e.Error:
	default: // nobody is waiting for that many
	}
	return resp, nil
}

func (p *pollRecorder) list() []poll {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.polls)
}

// waitFor waits until a poll is answered with the error code.
func (p *pollRecorder) waitFor(t testing.TB, code string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-p.seen:
			if got == code {
				return
			}
		case <-deadline:
			t.Fatalf("no poll answered %s within %s; polls %+v", code, within, p.list())
		}
	}
}

// deviceResult is what DeviceAccessToken returned.
type deviceResult struct {
	tok *oauth2.Token
	err error
}

// pollInBackground runs DeviceAccessToken as the device does, while the
// person acts.
func pollInBackground(ctx context.Context, cfg *oauth2.Config, da *oauth2.DeviceAuthResponse) <-chan deviceResult {
	out := make(chan deviceResult, 1)
	go func() {
		tok, err := cfg.DeviceAccessToken(ctx, da)
		out <- deviceResult{tok, err}
	}()
	return out
}

func await(t testing.TB, results <-chan deviceResult, within time.Duration) deviceResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(within):
		t.Fatalf("DeviceAccessToken did not return within %s", within)
	}
	return deviceResult{}
}

// browserDevice is the person at the device page in Chromium: they open the
// verification URI, type the code as they read it (lower case, a space for
// the dash), sign in unless they already are, read the consent page, which
// comes every time (RFC 8628 §3.3.1, §5.4) and must show the user code and
// each of consentShows, press decision, and land on the page
// that sends them back to their device. Each page is saved as a
// screenshot, prefix-code.png, -login.png, -consent.png and -done.png.
// It returns the text of that last page.
func browserDevice(t testing.TB, ctx context.Context, da *oauth2.DeviceAuthResponse, u user, decision string, consentShows []string, prefix string) string {
	t.Helper()
	shots := screenshotDir(t)
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		savePNG(t, shots, prefix+"-"+name+".png", b)
	}
	typed := strings.ToLower(strings.Replace(da.UserCode, "-", " ", 1))
	err := chromedp.Do(ctx,
		chromedp.Navigate(da.VerificationURI),
		chromedp.WaitVisible(chromedp.CSS(`input[name=user_code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=user_code]`), typed),
	)
	if err != nil {
		t.Fatalf("device page: %v", err)
	}
	shot("code")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=login], button[name=action], #device-done`))); err != nil {
		t.Fatalf("send the code: %v", err)
	}
	if html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`main`))); strings.Contains(html, `name="password"`) {
		err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS(`input[name=login]`), u.Username),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.Password),
		)
		if err != nil {
			t.Fatalf("login page: %v", err)
		}
		shot("login")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[name=action], #device-done`))); err != nil {
			t.Fatalf("sign in: %v", err)
		}
	}
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`main`)))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil || !strings.Contains(html, `name="action"`) {
		t.Fatalf("no consent page (the device page asks every time): %v %s", err, text)
	}
	for _, want := range append(consentShows, da.UserCode) {
		if !strings.Contains(text, want) {
			t.Errorf("consent page does not show %q:\n%s", want, text)
		}
	}
	shot("consent")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[name=action][value=`+decision+`]`))); err != nil {
		t.Fatalf("press %s: %v", decision, err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("device-done"))); err != nil {
		t.Fatalf("the last page did not load: %v", err)
	}
	text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "You may return to your device") {
		t.Fatalf("the last page says %q; want it to send the person back to their device", text)
	}
	shot("done")
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != da.VerificationURI {
		t.Errorf("the browser ended at %q; want %s (the device page sends it nowhere)", loc, da.VerificationURI)
	}
	return text
}

// TestDeviceFlow: a TV (a public client) asks for "openid profile" with
// x/oauth2; while it polls (authorization_pending), the person types the
// code in Chromium, signs in and allows; the TV gets an access token, a
// refresh token and an ID token that go-oidc verifies, uses the access
// token at UserInfo and refreshes it. Then the TV asks for the same scopes
// again: though the person granted them, the consent page comes again with
// the new code (a code mailed by someone else must not approve in one
// click); they deny, and the TV gets access_denied.
func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	chromium(t)
	key := generateKey(t, "RS256")
	s := startServer(t, map[string]string{"SIGNING_KEY": key.Path})
	ada := s.createUser(t, "ada@example.com", "ada", password, "--first-name", "Ada")
	tv := deviceClient(t, s, "Interop TV", "openid profile read")
	cfg := deviceConfig(t, s, tv, oidc.ScopeOpenID, "profile")
	rec := newPollRecorder(t)
	ctx, cancel := context.WithTimeout(rec.context(context.Background()), 90*time.Second)
	defer cancel()

	da := startDevice(t, ctx, s, cfg)
	results := pollInBackground(ctx, cfg, da)
	rec.waitFor(t, "authorization_pending", 15*time.Second) // the person has not acted yet
	bctx := startBrowser(t)
	started := time.Now().Truncate(time.Second)
	done := browserDevice(t, bctx, da, ada, "allow", []string{"Interop TV", "ada", "openid", "profile"}, "device")
	if !strings.Contains(done, "Interop TV") {
		t.Errorf("the last page %q does not name the client", done)
	}
	r := await(t, results, 30*time.Second)
	if r.err != nil {
		t.Fatalf("DeviceAccessToken: %v (polls %+v)", r.err, rec.list())
	}
	tok := r.tok
	rawID, _ := tok.Extra("id_token").(string)
	s.noLog(tok.AccessToken, tok.RefreshToken, rawID)
	if tok.AccessToken == "" || tok.RefreshToken == "" || rawID == "" || tok.TokenType != "Bearer" || !sameScope(tok.Extra("scope"), "openid profile") {
		t.Fatalf("token %+v, scope %v; want access, refresh and ID tokens for openid profile", tok, tok.Extra("scope"))
	}
	polls := rec.list()
	for i, p := range polls {
		if i > 0 && p.at.Sub(polls[i-1].at) < 4500*time.Millisecond {
			t.Errorf("polls %d and %d came %s apart; x/oauth2 waits the interval, 5 s", i-1, i, p.at.Sub(polls[i-1].at))
		}
		if p.err == "slow_down" {
			t.Errorf("poll %d answered slow_down to a client that kept the interval", i)
		}
	}

	// The ID token, as a relying party checks it, and UserInfo.
	octx := oidcContext(t)
	provider, err := oidc.NewProvider(octx, s.URL)
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: tv.ID}).Verify(octx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refuses the ID token: %v", err)
	}
	var idClaims struct {
		AuthTime int64  `json:"auth_time"`
		SID      string `json:"sid"`
	}
	if err := idt.Claims(&idClaims); err != nil || idt.Subject != ada.Sub() || idClaims.SID == "" || idClaims.AuthTime < started.Unix() {
		t.Errorf("ID token sub %q, claims %+v (%v); want %s, a sid, and the sign-in in the browser", idt.Subject, idClaims, err, ada.Sub())
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	info, err := provider.UserInfo(octx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("UserInfo with the device's token: %v", err)
	}
	var profile struct {
		PreferredUsername string `json:"preferred_username"`
		GivenName         string `json:"given_name"`
	}
	if err := info.Claims(&profile); err != nil || info.Subject != ada.Sub() || profile.PreferredUsername != "ada" || profile.GivenName != "Ada" {
		t.Errorf("UserInfo sub %q, %+v (%v); want %s, ada, Ada", info.Subject, profile, err, ada.Sub())
	}
	refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	s.noLog(refreshed.AccessToken, refreshed.RefreshToken)
	if refreshed.AccessToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh gave %+v; want a new access token and a rotated refresh token", refreshed)
	}

	// The same scopes, granted: the consent page again; the person denies.
	da = startDevice(t, ctx, s, cfg)
	results = pollInBackground(ctx, cfg, da)
	done = browserDevice(t, bctx, da, ada, "deny", []string{"Interop TV", "ada", "openid", "profile"}, "device-deny")
	if !strings.Contains(done, "denied") {
		t.Errorf("the last page after Deny says %q", done)
	}
	r = await(t, results, 30*time.Second)
	var re *oauth2.RetrieveError
	if !errors.As(r.err, &re) || re.ErrorCode != "access_denied" || re.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("DeviceAccessToken after Deny: %v, %v; want a 400 access_denied", r.tok, r.err)
	}
}

// TestDeviceSlowDown: a device that polls every second, not every five,
// is told slow_down, and the interval the server wants grows by 5 s each
// time (RFC 8628 §3.5); x/oauth2 adds 5 s to its own interval on each
// slow_down. Starting 4 s too fast, it never catches up, and the test
// stops it after three polls.
func TestDeviceSlowDown(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	tv := deviceClient(t, s, "Impatient TV", "read")
	cfg := deviceConfig(t, s, tv)
	rec := newPollRecorder(t)
	ctx, cancel := context.WithTimeout(rec.context(context.Background()), 90*time.Second)
	defer cancel()
	da := startDevice(t, ctx, s, cfg)
	impatient := *da
	impatient.Interval = 1 // ignores the 5 s it was given
	pctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	_, err := cfg.DeviceAccessToken(pctx, &impatient)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeviceAccessToken: %v; want it still polling when stopped", err)
	}
	polls := rec.list()
	var codes []string
	for _, p := range polls {
		codes = append(codes, p.err)
	}
	if !slices.Equal(codes, []string{"authorization_pending", "slow_down", "slow_down"}) {
		t.Fatalf("polls answered %q; want authorization_pending (the first is free), then slow_down twice", codes)
	}
	if !strings.Contains(polls[1].detail, "10 seconds") || !strings.Contains(polls[2].detail, "15 seconds") {
		t.Errorf("slow_down descriptions %q, %q; want the interval grown to 10 s, then 15 s", polls[1].detail, polls[2].detail)
	}
	if gap := polls[2].at.Sub(polls[1].at); gap < 5500*time.Millisecond {
		t.Errorf("after slow_down x/oauth2 polled again %s later; want its interval grown by 5 s, to 6 s", gap)
	}
}

// TestDeviceExpired: a device code past its ten minutes is expired_token,
// and x/oauth2 gives up on it. The lifetime is fixed at 600 s (API.md), so
// the test does not wait: it ages the request in the database by ten
// minutes, as time would, and nothing else. It needs the PostgreSQL schema
// it can reach (this module has no SQLite driver); without
// TEST_POSTGRES_URL it skips, except when CI is set. The same expiry by the
// clock is tested in the auth package (TestDeviceErrors).
func TestDeviceExpired(t *testing.T) {
	t.Parallel()
	dbURL := postgresURL(t)
	s := startServer(t, map[string]string{"DATABASE_URL": dbURL})
	tv := deviceClient(t, s, "Slow TV", "read")
	cfg := deviceConfig(t, s, tv)
	ctx, cancel := context.WithTimeout(oauthContext(t), 60*time.Second)
	defer cancel()
	da := startDevice(t, ctx, s, cfg)

	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, `UPDATE device_codes SET expires_at = expires_at - 600, created_at = created_at - 600`)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("age the device request: %v (%d rows)", err, n)
	}
	_, err = cfg.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "expired_token" || re.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("DeviceAccessToken on an expired code: %v; want a 400 expired_token", err)
	}
	// The person comes too late: the page refuses the code.
	if status, body := typeCode(t, s, newJar(t), nil, da.UserCode); status != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Errorf("the expired code at the page: %d %s; want 400, wrong or expired", status, body)
	}
}

// TestDeviceUserCodeGuessing: a thousand wrong user codes from one address,
// each from a fresh browser (a new cookie jar, a new CSRF cookie): the
// first 20 are answered, every later one is 429 with Retry-After, and so
// is the right code from that address; the person at another address
// (127.0.0.2) is not held back.
func TestDeviceUserCodeGuessing(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.createUser(t, "ada@example.com", "ada", password)
	tv := deviceClient(t, s, "Guessed TV", "read")
	cfg := deviceConfig(t, s, tv)
	da := startDevice(t, oauthContext(t), s, cfg)

	answered, limited := 0, 0
	for i := range 1000 {
		code := []byte("BCDFGHJK")
		code[0], code[1], code[2] = "BCDFGHJKLMNPQRSTVWXZ"[i%20], "BCDFGHJKLMNPQRSTVWXZ"[i/20%20], "BCDFGHJKLMNPQRSTVWXZ"[i/400%20]
		guess := string(code[:4]) + "-" + string(code[4:])
		if guess == da.UserCode {
			continue
		}
		switch status, _ := typeCode(t, s, newJar(t), nil, guess); status {
		case http.StatusBadRequest:
			answered++
			if limited > 0 {
				t.Fatalf("guess %d answered after the throttle began", i)
			}
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("guess %d: status %d", i, status)
		}
	}
	if answered != 20 || limited < 970 {
		t.Fatalf("%d wrong codes answered, %d throttled; want 20 answered and the rest throttled", answered, limited)
	}
	if status, body := typeCode(t, s, newJar(t), nil, da.UserCode); status != http.StatusTooManyRequests || !strings.Contains(body, "Too many wrong codes") {
		t.Fatalf("the right code from the guessing address: %d; want 429", status)
	}
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	if status, body := typeCode(t, s, newJar(t), other, da.UserCode); status != http.StatusOK || !strings.Contains(body, `name="password"`) {
		t.Fatalf("the right code from another address: %d; want the login page", status)
	}
}

func newJar(t testing.TB) http.CookieJar {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// typeCode is a browser without JavaScript at the device page: it GETs the
// page (for its CSRF cookie and token) and posts code; dialer, if set,
// chooses the source address. It returns the answer's status and body; a
// 429 must carry Retry-After.
func typeCode(t testing.TB, s *server, jar http.CookieJar, dialer *net.Dialer, code string) (int, string) {
	t.Helper()
	tr := &http.Transport{}
	if dialer != nil {
		tr.DialContext = dialer.DialContext
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.Get(s.URL + "/oauth2/device")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	u, _ := url.Parse(s.URL + "/oauth2/device")
	f := parseForm(t, u, string(page))
	f.values.Set("user_code", code)
	resp, err = c.PostForm(f.action.String(), f.values)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	return resp.StatusCode, string(body)
}
