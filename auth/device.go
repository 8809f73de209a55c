package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Device authorization (RFC 8628): a device without a browser (a TV, a
// CLI, an agent) asks for a device code and a short user code; the user
// types the user code at /oauth2/device on another screen, signs in there
// as at the authorization endpoint (the same session, the same login form
// and its throttles) and is always asked to consent, shown the code to
// check against the device's (consent memory and first-party status skip
// nothing here: RFC 8628 §3.3.1, §5.4); meanwhile the device polls the
// token endpoint until it gets its tokens, a refusal or an expiry.

const (
	grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code" // RFC 8628 §3.4

	deviceTTL      = 600 * time.Second // expires_in (API.md)
	deviceInterval = 5 * time.Second   // interval (API.md; RFC 8628 §3.2's default)
	deviceSlowDown = 5 * time.Second   // what each slow_down adds to the interval (§3.5)
	// devicePollSlack forgives a poll that comes up to a second early:
	// network delay, and the clocks of several instances, vary that much.
	devicePollSlack = time.Second

	// Wrong user codes allowed per LOGIN_LOCKOUT window: from one browser
	// (its CSRF cookie), and from one client address (an IPv6 /64). A
	// browser can shed its cookie, so the address is the bound that holds;
	// the browser's is the one a person who mistypes meets first.
	deviceMaxWrongPerBrowser = 5
	deviceMaxWrongPerAddress = 20

	// deviceMaxLive caps a public client's requests alive at once (their
	// 600 s), counted in the database on every instance: a public client
	// is named by its client_id alone, so anyone, from any number of
	// addresses, may ask in its name. It bounds its rows (kept 70 minutes:
	// at most seven times this) and what a guesser of user codes may hit:
	// at most 1,000 of 20^8 codes pending, one guess in 25 million. Of
	// those, deviceMaxLivePerAddress still pending may come from one
	// address (an IPv4 address or IPv6 /64), so that filling the cap,
	// which refuses the client's every device for up to 10 minutes, takes
	// 100 addresses, not one. Ten is a household's or an office's TVs and terminals signing
	// in to one client within 10 minutes, with room for retries; more
	// behind one NAT (a classroom all running one CLI) wait for a slot
	// (429, Retry-After). A confidential client authenticated itself: its
	// requests are its own, and its back end may ask for all its devices
	// from one address, so it has no share per address; it is held to
	// deviceMaxLiveConfidential, which bounds its rows and a guesser's odds
	// (one in 2.5 million per guess) as CLIENT_RATE_LIMIT alone would not
	// (at 100/s, 60,000 pending).
	deviceMaxLive             = 1000
	deviceMaxLivePerAddress   = 10
	deviceMaxLiveConfidential = 10000
)

// deviceResponse is the device authorization response (RFC 8628 §3.2).
type deviceResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// handleDeviceAuthorization serves POST /oauth2/device_authorization (RFC
// 8628 §3.1) for the client its caller check authenticated (a public one
// by its client_id, as at the token endpoint).
func handleDeviceAuthorization(log *slog.Logger, db *store.DB, ts *Tokens, b *Browser, hm *httpx.Metrics, oidc bool, now func() time.Time) http.Handler {
	page := ts.Issuer + "/oauth2/device"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := authorizeDevice(r.Context(), db, ts, b, principalOf(r), oidc, page, now())
		if e, ok := errors.AsType[*httpx.Error](err); ok && e.Kind == httpx.KindRateLimited {
			hm.RateLimited.Inc() // the client's cap or this address's share (oauth2_rate_limited_total)
		}
		writeOAuth(w, r, log, http.StatusOK, resp, err)
	})
}

// authorizeDevice stores a new device request of the client: a 256-bit
// device code and a user code, each stored only as a digest.
func authorizeDevice(ctx context.Context, db *store.DB, ts *Tokens, b *Browser, p *principal, oidc bool, page string, now time.Time) (*deviceResponse, error) {
	c := p.client
	if !slices.Contains(c.GrantTypes, grantDeviceCode) {
		return nil, httpx.E(httpx.KindUnauthorizedClient, "the client may not use the device authorization grant")
	}
	scope, err := grantScope(p.form.Get("scope"), c.Scopes)
	if err != nil {
		return nil, err
	}
	if hasScope(scope, scopeOpenID) && !oidc {
		return nil, httpx.E(httpx.KindInvalidScope, "openid is not available: the server has no signing key")
	}
	resource, err := ts.resourceOf(p.form["resource"])
	if err != nil {
		return nil, err
	}
	limit, perAddress := deviceMaxLive, deviceMaxLivePerAddress
	if !c.Public() {
		limit, perAddress = deviceMaxLiveConfidential, 0
	}
	address := addressKey(httpx.InfoOf(ctx).ClientIP)
	code := token.NewOpaque()
	for range 3 { // a user code already in use (one in billions) is drawn again
		user := token.NewUserCode()
		err = db.CreateDeviceCode(ctx, &store.DeviceCode{Hash: token.Hash(code), UserCode: b.userCodeMAC(user), ClientID: c.ID,
			Scope: scope, Resource: resource, ExpiresAt: now.Add(deviceTTL), Interval: int(deviceInterval / time.Second), Address: address}, limit, perAddress, now)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if errors.Is(err, store.ErrLimited) { // the client's cap, or this address's share, spent (slow_down is for polling only: RFC 8628 §3.5)
			return nil, &httpx.Error{Kind: httpx.KindRateLimited, Message: "too many device requests of this client are pending; retry later", RetryAfter: time.Minute}
		}
		if errors.Is(err, store.ErrNotFound) { // deleted since this instance cached it
			return nil, httpx.E(httpx.KindInvalidClient, "client authentication failed")
		}
		if err != nil {
			return nil, err
		}
		shown := showUserCode(user)
		return &deviceResponse{DeviceCode: code, UserCode: shown, VerificationURI: page, VerificationURIComplete: page + "?user_code=" + shown,
			ExpiresIn: int(deviceTTL / time.Second), Interval: int(deviceInterval / time.Second)}, nil
	}
	return nil, err
}

// userCodeMAC is the form a user code is stored and looked up in: an HMAC
// under the server's cookie key, so that the short codes of pending
// requests cannot be read off a database dump by trying all 20^8.
func (b *Browser) userCodeMAC(code string) string {
	return hex.EncodeToString(token.MAC(b.Key, "user-code\x00"+code))
}

// normalizeUserCode returns a typed user code in its stored form: ASCII
// letters upper-cased, dashes and spaces dropped. It reports false for
// anything that is then not UserCodeLen letters of the alphabet.
func normalizeUserCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	code := strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r) || unicode.Is(unicode.Pd, r): // every kind of dash
			return -1 // dropped
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return r // anything but an ASCII capital then fails the alphabet
	}, s)
	if len(code) != token.UserCodeLen || strings.Trim(code, token.UserCodeAlphabet) != "" {
		return "", false
	}
	return code, true
}

// showUserCode is the form a person reads: XXXX-XXXX.
func showUserCode(code string) string { return code[:4] + "-" + code[4:] }

// deviceStep is the device request a page is about.
type deviceStep struct {
	shown string // the user code, as the forms carry it
	mac   string // its stored form
}

// Answers of the device page.
var (
	errWrongUserCode = httpx.E(httpx.KindInvalid, "That code is wrong or has expired. Check the code your device shows.")
	errMalformedCode = httpx.E(httpx.KindInvalid, "Enter the 8 letters your device shows, such as BCDF-GHJK.")
)

// handleDevicePage serves GET and POST /oauth2/device (RFC 8628 §3.3): the
// user types the code (or opens verification_uri_complete, which fills it
// in), then signs in and consents with the authorization endpoint's forms
// (consent every time, the code shown), which post here carrying the
// code; the page ends saying the user may return to the device. Every POST
// looks the code up again, counted as findDevice says.
func handleDevicePage(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, b *Browser, pw *Passwords, th Throttle, m *Metrics, hm *httpx.Metrics, v verification, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, t := r.Context(), now()
		if r.Method != http.MethodPost { // GET, or HEAD (which the GET route takes, on its looser budget): never a form
			shown := ""
			if code, ok := normalizeUserCode(r.URL.Query().Get("user_code")); ok {
				shown = showUserCode(code)
			}
			showDeviceForm(w, r, b, http.StatusOK, "", shown)
			return
		}
		form, err := readForm(r)
		if err != nil { // malformed, too large, not a form: as at the authorization endpoint
			b.fail(w, r, err)
			return
		}
		if !b.csrfOK(r, form) {
			b.fail(w, r, errFormExpired)
			return
		}
		code, ok := normalizeUserCode(form.Get("user_code"))
		if !ok {
			showDeviceForm(w, r, b, http.StatusBadRequest, errMalformedCode.Message, "")
			return
		}
		d, err := findDevice(ctx, log, db, b, th, r, code, t)
		var e *httpx.Error
		switch {
		case errors.As(err, &e) && e.Kind == httpx.KindRateLimited:
			hm.RateLimited.Inc() // user codes guessed from this address or browser
			e.SetHeaders(w)
			showDeviceForm(w, r, b, http.StatusTooManyRequests, "Too many wrong codes. Wait a while, then try again.", showUserCode(code))
			return
		case errors.Is(err, errWrongUserCode):
			showDeviceForm(w, r, b, http.StatusBadRequest, errWrongUserCode.Message, showUserCode(code))
			return
		case err != nil:
			b.fail(w, r, err)
			return
		}
		c, err := cs.Get(ctx, d.ClientID, t)
		if err != nil {
			b.fail(w, r, err)
			return
		}
		httpx.InfoFrom(r).ClientID = c.ID
		a := &authorization{w: w, r: r, log: log, db: db, ts: ts, b: b, now: t, form: true, device: &deviceStep{shown: showUserCode(code), mac: d.UserCode},
			ar: &authRequest{client: c, scope: d.Scope, resource: d.Resource, maxAge: -1, params: form}}
		a.signInAndConsent(pw, th, m, v)
	})
}

func showDeviceForm(w http.ResponseWriter, r *http.Request, b *Browser, status int, msg, shown string) {
	b.render(w, status, "device", "", &pageData{Title: "Connect a device", Error: msg, UserCode: shown, CSRF: b.csrfToken(w, r)})
}

// findDevice returns the pending request with the user code, or
// errWrongUserCode. A user code has only about 34 bits (RFC 8628 §5.1), so
// guesses are counted in the database (every instance sees them) per
// client address and per browser (its CSRF cookie), before the lookup, in
// one atomic write each, so that concurrent guesses cannot pass the count
// together; a right code takes its count back, so that only wrong ones
// stay. Past deviceMaxWrongPerAddress or deviceMaxWrongPerBrowser in a
// LOGIN_LOCKOUT window, every code, right or wrong, is refused with 429
// until the window ends.
func findDevice(ctx context.Context, log *slog.Logger, db *store.DB, b *Browser, th Throttle, r *http.Request, code string, now time.Time) (*store.DeviceCode, error) {
	info := httpx.InfoFrom(r)
	counts := []struct {
		key string
		max int
	}{
		{th.account("device-address", addressKey(info.ClientIP)), deviceMaxWrongPerAddress},
		{th.account("device-browser", b.cookie(r, cookieCSRF)), deviceMaxWrongPerBrowser},
	}
	var wait time.Duration
	started := make([]time.Time, len(counts)) // each count's window, for its refund
	for i, c := range counts {
		n, _, err := db.CountLoginAttempt(ctx, c.key, 0, th.Window, now)
		if err != nil {
			return nil, err
		}
		if started[i] = n.Start; n.Attempts > c.max {
			wait = max(wait, n.Ends.Sub(now))
		}
	}
	if wait > 0 {
		log.WarnContext(ctx, "user code guesses throttled", "client_ip", info.ClientIP.String(), "request_id", info.ID)
		return nil, httpx.TooMany(wait)
	}
	d, err := db.PendingDeviceCode(ctx, b.userCodeMAC(code), now)
	if errors.Is(err, store.ErrNotFound) {
		log.WarnContext(ctx, "wrong user code", "client_ip", info.ClientIP.String(), "request_id", info.ID)
		return nil, errWrongUserCode
	}
	if err != nil {
		return nil, err
	}
	for i, c := range counts {
		if err := db.RefundAttempt(ctx, c.key, started[i]); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// addressKey is the address a count is kept for: an IPv4 address, or the
// /64 of an IPv6 one (a host usually has a whole /64 to choose from).
func addressKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// decideDevice approves the device request for the sign-in sess, or denies
// it when sess is nil, and ends on the page that sends the user back to
// their device.
func (a *authorization) decideDevice(sess *store.Session) {
	ctx, info := a.r.Context(), httpx.InfoFrom(a.r)
	err := a.db.DecideDeviceCode(ctx, a.device.mac, sess != nil, sess, a.now)
	if errors.Is(err, store.ErrNotFound) { // expired, or decided in another tab
		showDeviceForm(a.w, a.r, a.b, http.StatusBadRequest, "That code has expired or was already used. Start again on your device.", "")
		return
	}
	if err != nil {
		a.b.fail(a.w, a.r, err)
		return
	}
	d := &pageData{Title: "Device connected", ClientName: a.ar.client.Name, Done: true}
	if sess == nil {
		d.Title, d.Denied = "Access denied", true
		a.log.InfoContext(ctx, "device request denied", "request_id", info.ID, "client_id", a.ar.client.ID)
	} else {
		info.UserID = store.FormatID(sess.UserID)
		if u, err := a.db.UserByID(ctx, sess.UserID); err == nil {
			d.User = u.Username
		}
		a.log.InfoContext(ctx, "device request approved", "request_id", info.ID, "client_id", a.ar.client.ID, "user_id", sess.UserID)
	}
	a.b.render(a.w, http.StatusOK, "device", "", d)
}

// device is the device grant (RFC 8628 §3.4, §3.5). Each poll is recorded;
// until the user decides the answer is authorization_pending, or slow_down
// (and a longer interval) for a poll that came too soon; then
// access_denied, or the tokens, once: as for an authorization code, a
// session with a refresh token if the client may refresh, an ID token for
// openid, bound to the request's DPoP key if it proved one. An unknown
// device code, another client's, or one redeemed before (whose session is
// then ended, as for a replayed code) is invalid_grant.
func (g *grant) device(ctx context.Context) (*Pair, error) {
	code := g.form.Get("device_code")
	if code == "" {
		return nil, httpx.E(httpx.KindInvalid, "device_code is required")
	}
	bad := func(reason string) error {
		g.log.WarnContext(ctx, "device code refused", "reason", reason, "client_id", g.c.ID, "client_ip", g.info.ClientIP.String(), "request_id", g.info.ID)
		return httpx.E(httpx.KindInvalidGrant, "the device code is invalid or was already used")
	}
	if len(code) != token.OpaqueLen {
		return nil, bad("malformed")
	}
	hash := token.Hash(code)
	d, err := g.db.PollDeviceCode(ctx, hash, g.c.ID, devicePollSlack, deviceSlowDown, g.now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, bad("unknown, or another client's")
	case err != nil:
		return nil, err
	case d.Status == store.DeviceRedeemed:
		if err := g.spendProof(ctx); err != nil { // as for a used code (grant.code)
			return nil, err
		}
		if err := g.ts.endSessionAudited(ctx, g.db, d.UserID, d.FamilyID, "grant replay", g.now); err != nil {
			return nil, err
		}
		return nil, bad("redeemed before: the session it started is ended")
	case !g.now.Before(d.ExpiresAt):
		return nil, httpx.E(httpx.KindExpiredToken, "the device code has expired; start again")
	case d.Status == store.DeviceDenied:
		return nil, httpx.E(httpx.KindAccessDenied, "the user denied the request")
	case d.Status == store.DevicePending && d.PollEarly:
		return nil, httpx.E(httpx.KindSlowDown, "polled too soon: wait %d seconds between polls", d.Interval)
	case d.Status == store.DevicePending:
		return nil, httpx.E(httpx.KindAuthorizationPending, "the user has not decided yet")
	}
	// No nonce: the device authorization request has none (RFC 8628 §3.1).
	granted := &store.Code{Scope: d.Scope, AuthTime: d.AuthTime, SID: d.SID, Resource: d.Resource}
	return g.session(ctx, d.UserID, granted, false, bad, func(is store.Issued) error {
		ended, err := g.db.RedeemDeviceCode(ctx, hash, is, g.ts.AccessTTL, g.now)
		if err == nil {
			g.ts.Ended(ended) // as for a code
		}
		if !errors.Is(err, store.ErrReused) {
			return err
		}
		// A concurrent redemption won: this is a replay; end what it started.
		if d, err := g.db.PollDeviceCode(ctx, hash, g.c.ID, devicePollSlack, deviceSlowDown, g.now); err == nil && d.FamilyID != "" {
			if err := g.ts.endSessionAudited(ctx, g.db, d.UserID, d.FamilyID, "grant replay", g.now); err != nil {
				return err
			}
		}
		return bad("redeemed concurrently")
	})
}
