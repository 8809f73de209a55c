package auth

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// authParams are the authorization request parameters carried from the
// GET through the login and consent forms (RFC 6749 §4.1.1, RFC 7636 §4.3,
// OIDC Core §3.1.2.1), and what a pushed request keeps (RFC 9126 §2.1):
// each is checked as at the GET (one left out, response_mode, was not, so
// a pushed fragment or form_post was taken and answered in the query).
var authParams = []string{"response_type", "response_mode", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", "nonce", "prompt", "max_age", "dpop_jkt", "resource", "id_token_hint"}

// authRequest is a validated authorization request.
type authRequest struct {
	client      *store.Client
	redirectURI string // where to send the browser
	sentURI     string // redirect_uri as sent ("" if omitted): the token request must repeat it
	scope       string
	state       string
	challenge   string
	nonce       string
	prompt      []string
	maxAge      time.Duration // -1: none
	dpopJKT     string        // the DPoP key the code's exchange must prove (RFC 9449 §10)
	resource    string        // the resource its tokens are for (RFC 8707), or ""
	hintSub     string        // the user its id_token_hint names, or ""
	params      url.Values
}

// errRequestObject answers a request object: an OP that does not support
// them must say so (OpenID Connect Core §6.1), where ignoring one would
// leave the client believing its signed parameters were used.
var errRequestObject = httpx.E(httpx.KindRequestNotSupported, "request objects (the request parameter) are not supported")

var errBadState = httpx.E(httpx.KindInvalid, "state must be at most 2048 printable ASCII characters (RFC 6749 Appendix A.5)")

// maxMaxAge bounds max_age (a year of seconds): larger values mean the same,
// and a bound keeps the conversion to a duration from overflowing.
const maxMaxAge = 365 * 24 * 3600

// parseAuthRequest validates an authorization request. A failure about the
// client or the redirect URI returns a nil request: the user sees a page,
// nothing is redirected to an untrusted URI (RFC 6749 §4.1.2.1). Any other
// failure returns the request (partly filled) with an error to send to its
// redirect URI.
func parseAuthRequest(ctx context.Context, cs *Clients, ts *Tokens, params url.Values, oidc bool, now time.Time) (*authRequest, error) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(params[k]) > 1 {
			return nil, httpx.E(httpx.KindInvalid, "The request repeats %s.", k)
		}
	}
	id := params.Get("client_id")
	if id == "" || len(id) > 128 {
		return nil, httpx.E(httpx.KindInvalid, "The request names no client.")
	}
	c, err := cs.Get(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, httpx.E(httpx.KindInvalid, "The request names an unknown client.")
	}
	if err != nil {
		return nil, err
	}
	ar := &authRequest{client: c, sentURI: params.Get("redirect_uri"), maxAge: -1, params: params}
	switch {
	case ar.sentURI != "" && matchRedirectURI(c.RedirectURIs, ar.sentURI):
		ar.redirectURI = ar.sentURI
	case ar.sentURI == "" && hasScope(cmp.Or(params.Get("scope"), strings.Join(c.Scopes, " ")), scopeOpenID):
		// OIDC Core §3.1.2.1: an OpenID request names its redirect_uri. It
		// is one when it asks for openid, or asks for no scope and so gets
		// the client's registered ones, openid among them.
		return nil, httpx.E(httpx.KindInvalid, "An OpenID Connect request must name its redirect_uri.")
	case ar.sentURI == "" && len(c.RedirectURIs) == 1:
		ar.redirectURI = c.RedirectURIs[0] // RFC 6749 §3.1.2.3: only one registered
	case ar.sentURI == "":
		return nil, httpx.E(httpx.KindInvalid, "The request has no redirect_uri and the client has several.")
	default:
		return nil, httpx.E(httpx.KindInvalid, "The redirect_uri is not registered for this client.")
	}
	// From here on, errors go back to the client, with the state once it
	// is checked.
	if ar.state = params.Get("state"); !validState(ar.state) {
		ar.state = ""
		return ar, errBadState
	}
	if err := checkParams(params); err != nil {
		return ar, err
	}
	if params.Has("request") {
		return ar, errRequestObject
	}
	switch rt := params.Get("response_type"); {
	case rt == "": // RFC 6749 §4.1.2.1: a missing parameter is invalid_request
		return ar, httpx.E(httpx.KindInvalid, "response_type is required")
	case rt != "code":
		return ar, httpx.E(httpx.KindUnsupportedResponseType, "only response_type=code is supported")
	}
	// The code comes back in the query, the one mode the metadata lists: a
	// client that asked for another (form_post, fragment) would look for it
	// elsewhere, and one that asked for fragment did not want it in a query.
	if m := params.Get("response_mode"); m != "" && m != "query" {
		return ar, httpx.E(httpx.KindInvalid, "only response_mode=query is supported")
	}
	if !slices.Contains(c.GrantTypes, grantAuthorizationCode) {
		return ar, httpx.E(httpx.KindUnauthorizedClient, "the client may not use the authorization code grant")
	}
	if ar.scope, err = grantScope(params.Get("scope"), c.Scopes); err != nil {
		return ar, err
	}
	if hasScope(ar.scope, scopeOpenID) && !oidc {
		return ar, httpx.E(httpx.KindInvalidScope, "openid is not available: the server has no signing key")
	}
	ar.challenge = params.Get("code_challenge")
	switch method := params.Get("code_challenge_method"); {
	case ar.challenge == "":
		return ar, httpx.E(httpx.KindInvalid, "code_challenge is required (PKCE with S256)")
	case method != "S256":
		// Absent means plain (RFC 7636 §4.3), which RFC 9700 §2.1.1 rules out.
		return ar, httpx.E(httpx.KindInvalid, "code_challenge_method must be S256")
	case !validChallenge(ar.challenge):
		return ar, httpx.E(httpx.KindInvalid, "code_challenge is not a base64url SHA-256 value")
	}
	// The nonce is stored with the code; PostgreSQL text cannot hold NUL
	// (checkParams has already refused invalid UTF-8); and the forms carry
	// it in a hidden field, which a browser sends back with its line
	// breaks as CR LF: no control character, so it comes back as sent.
	if ar.nonce = params.Get("nonce"); len(ar.nonce) > 512 || strings.ContainsFunc(ar.nonce, unicode.IsControl) {
		return ar, httpx.E(httpx.KindInvalid, "nonce must be at most 512 bytes, without control characters")
	}
	// prompt and max_age are short; bounded as state and nonce are, since
	// a pushed request stores them as sent (MySQL's TEXT holds 64 KiB).
	if len(params.Get("prompt")) > 64 || len(params.Get("max_age")) > 10 {
		return ar, httpx.E(httpx.KindInvalid, "prompt must be at most 64 bytes and max_age at most 10 digits")
	}
	// Split on single spaces as parseScope does: an empty part is refused
	// below, where strings.Fields took "none\u00a0" and "login  consent".
	if p := params.Get("prompt"); p != "" {
		ar.prompt = strings.Split(p, " ")
	}
	for _, v := range ar.prompt {
		if v != "none" && v != "login" && v != "consent" {
			return ar, httpx.E(httpx.KindInvalid, "prompt must be none, login or consent")
		}
	}
	if ar.has("none") && len(ar.prompt) > 1 {
		return ar, httpx.E(httpx.KindInvalid, "prompt=none cannot be combined")
	}
	// OIDC Core §3.1.2.1: an ID token of ours, expired or not, naming the
	// user the client expects signed in (at most token.MaxLen bytes, which
	// bounds what a pushed request stores). One we cannot verify (signed by
	// a key since dropped, say) names no one: a sign-in is asked for, as for
	// another user's hint.
	if h := params.Get("id_token_hint"); len(h) > token.MaxLen {
		return ar, httpx.E(httpx.KindInvalid, "id_token_hint is longer than any ID token of this server")
	} else if h != "" {
		ar.hintSub = "-" // no user's id
		if c, err := parseIDTokenHint(ts, h, now); oidc && err == nil {
			ar.hintSub = c.Subject
		}
	}
	if ar.dpopJKT = params.Get("dpop_jkt"); ar.dpopJKT != "" && !validChallenge(ar.dpopJKT) {
		return ar, httpx.E(httpx.KindInvalid, "dpop_jkt is not a base64url SHA-256 thumbprint")
	}
	if ar.resource, err = ts.resourceOf(params["resource"]); err != nil {
		return ar, err
	}
	if s := params.Get("max_age"); s != "" {
		n, ok := Decimal(s, math.MaxInt64)
		if !ok {
			return ar, httpx.E(httpx.KindInvalid, "max_age must be a non-negative integer")
		}
		ar.maxAge = time.Duration(min(n, maxMaxAge)) * time.Second
	}
	return ar, nil
}

func (ar *authRequest) has(prompt string) bool { return slices.Contains(ar.prompt, prompt) }

// cspSource returns the CSP source (CSP3 §2.3.1) of a URI's origin, or
// false when its host has no CSP form: an IPv6 literal ([::1], which RFC
// 8252 §7.3 has native apps use) or a host with '_'. Browsers ignore such
// a source, and form-action 'self' alone then blocked the redirect to
// http://[::1]:port after the consent form (Chromium).
func cspSource(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return u.Scheme + ":", true // a private-use scheme: reverse-domain, a valid scheme-source
	}
	host := u.Hostname()
	return u.Scheme + "://" + u.Host, host != "" && strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}

// withQuery returns uri with params added to its query.
func withQuery(uri string, params url.Values) string {
	if strings.Contains(uri, "?") {
		return uri + "&" + params.Encode()
	}
	return uri + "?" + params.Encode()
}

// redirectTo sends the browser to target: after a POST with 303, so that
// the browser does not re-POST (RFC 9700 §4.12), else with 302.
func redirectTo(w http.ResponseWriter, r *http.Request, target string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Location", target)
	w.WriteHeader(status)
}

// currentSession returns the browser's signed-in session and its cookie
// value, or nil.
func currentSession(ctx context.Context, db *store.DB, b *Browser, r *http.Request, now time.Time) (*store.Session, string, error) {
	v := b.cookie(r, cookieSession)
	if v == "" {
		return nil, "", nil
	}
	s, err := db.SessionByHash(ctx, token.Hash(v), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	return s, v, err
}

// errMalformedQuery answers a query string url.ParseQuery refuses (a bad
// escape, a semicolon), which url.Query would take without the bad pair
// (wellFormedQuery).
var errMalformedQuery = httpx.E(httpx.KindInvalid, "The request's query string is malformed.")

// handleAuthorize serves GET and POST /oauth2/authorize (RFC 6749 §4.1.1):
// the login form, the consent form, and the redirect with a code. A
// request_uri stands for a pushed request (RFC 9126 §4); with requirePAR
// (REQUIRE_PAR), or for a client registered --require-par, nothing else is
// accepted. A POST is one of our forms when it carries a CSRF token, which
// must then be right; without one it is a client's authorization request
// sent as a form (OIDC Core §3.1.2.1: servers MUST take POST), read as a
// GET's query is, and none of the forms' fields act.
func handleAuthorize(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, b *Browser, pw *Passwords, th Throttle, m *Metrics, oidc, requirePAR bool, v verification, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, t := r.Context(), now()
		a := &authorization{w: w, r: r, log: log, db: db, ts: ts, b: b, now: t}
		params := r.URL.Query() // well formed: the route table refused any other (wellFormedQuery)
		if r.Method == http.MethodPost {
			form, err := readForm(r)
			if a.form = form.Has("csrf_token"); a.form && !b.csrfOK(r, form) {
				b.fail(w, r, errFormExpired)
				return
			}
			// Our forms post from our own pages. One a browser would say
			// another site sent is a program's, which wrote the header to
			// be budgeted as a page (ownSite): it checked passwords on the
			// pages' budget, ten times the login budget's burst.
			if a.form && fromOtherSite(r, nil) {
				b.fail(w, r, httpx.E(httpx.KindForbidden, "requests from web pages of other sites are refused here"))
				return
			}
			if err != nil { // the body, or a parameter repeated or not UTF-8 (checkParams)
				b.fail(w, r, err)
				return
			}
			params = form
		} else if err := checkParams(params); err != nil && params.Has("request_uri") {
			// A pushed request's redirect URI is not known yet; without
			// request_uri, parseAuthRequest finds the error again and sends
			// it to the client once its redirect URI checks out.
			b.fail(w, r, err)
			return
		}
		if params.Has("request_uri") {
			browser := b.csrfCookie(w, r) // a form's was checked above; a request gets one now if it has none
			var err error
			if params, a.pushed, err = pushedParams(ctx, db, params, browser, !a.form, t); err != nil {
				b.fail(w, r, err)
				return
			}
		}
		ar, err := parseAuthRequest(ctx, cs, ts, params, oidc, t)
		a.ar = ar
		if err != nil {
			if e, ok := errors.AsType[*httpx.Error](err); ok && ar != nil {
				a.redirectError(e)
			} else {
				b.fail(w, r, err)
			}
			return
		}
		httpx.InfoFrom(r).ClientID = ar.client.ID
		if a.pushed == "" && (requirePAR || ar.client.RequirePAR) {
			a.redirectError(httpx.E(httpx.KindInvalid, "authorization requests must be pushed first (PAR, RFC 9126)"))
			return
		}
		a.signInAndConsent(pw, th, m, v)
	})
}

// signInAndConsent takes the browser through the login and consent forms
// that the authorization endpoint and the device page share, to the user's
// decision. A POSTed login form signs in, then consent is asked unless
// already given (always at the device page); a POSTed consent form
// decides. Otherwise the user signs in first if not signed in, or if
// prompt=login or max_age asks for a new sign-in (never so at the device
// page, whose requests have neither); prompt=none answers login_required
// instead of showing the form.
func (a *authorization) signInAndConsent(pw *Passwords, th Throttle, m *Metrics, v verification) {
	ctx, form, posted := a.r.Context(), a.ar.params, a.form
	sess, _, err := currentSession(ctx, a.db, a.b, a.r, a.now)
	if err != nil {
		a.b.fail(a.w, a.r, err)
		return
	}
	switch {
	case posted && form.Has("login"):
		if sess = a.loginForm(pw, th, m, v, sess); sess == nil {
			return // the login page was shown again
		}
	case posted && form.Has("action"):
		if sess == nil || !a.consentOK(sess, form.Get("consent")) {
			a.showLogin(http.StatusOK, "Your sign-in expired. Please sign in again.", "")
			return
		}
		switch form.Get("action") {
		case "allow":
		case "deny":
			a.decide(nil)
			return
		default: // not one of the form's buttons: no decision of the user's
			a.b.fail(a.w, a.r, httpx.E(httpx.KindInvalid, "The form was incomplete."))
			return
		}
		// The sign-in ended meanwhile (a password change, a logout) or the
		// client is gone (as for a code: store.SaveConsent cannot tell).
		if err := grantConsent(ctx, a.db, sess, a.ar, a.now); errors.Is(err, store.ErrNotFound) {
			a.showLogin(http.StatusOK, "Your sign-in expired. Please sign in again.", "")
			return
		} else if err != nil {
			a.b.fail(a.w, a.r, err)
			return
		}
		// max_age counts to the code: past it, the code would carry an
		// auth_time older than the client allows. The consent is kept, so
		// the sign-in asked for now leads to the code, not back here (a
		// max_age shorter than a user's reading of the page looped).
		// max_age=0 is prompt=login (OIDC Core §3.1.2.1), met by the sign-in
		// the form's MAC binds.
		if a.ar.maxAge > 0 && a.stale(sess) {
			a.showLogin(http.StatusOK, "Your sign-in expired. Please sign in again.", "")
			return
		}
		a.decide(sess)
		return
	case posted && a.device == nil: // the device page's first form, the user code, posts too
		a.b.fail(a.w, a.r, httpx.E(httpx.KindInvalid, "The form was incomplete."))
		return
	// A hint naming another user than the signed-in one (OIDC Core
	// §3.1.2.1): that sign-in is not the one the client expects; with
	// prompt=none login_required, not a code for someone else.
	case sess == nil || a.ar.has("login") || a.stale(sess) || a.ar.hintSub != "" && a.ar.hintSub != store.FormatID(sess.UserID):
		if a.ar.has("none") {
			a.redirectError(httpx.E(httpx.KindLoginRequired, "the user must sign in"))
		} else {
			a.showLogin(http.StatusOK, "", "")
		}
		return
	}
	// Signed in: ask for consent unless already given; at the device page
	// always, consent memory and first-party status notwithstanding (RFC
	// 8628 §3.3.1, §5.4): a user code is all a remote attacker needs to
	// send, in a link that fills it in, and the consent page is where the
	// user checks it against the device in front of them.
	need, err := needsConsent(ctx, a.db, sess.UserID, a.ar)
	switch {
	case err != nil:
		a.b.fail(a.w, a.r, err)
	case need && a.ar.has("none"):
		a.redirectError(httpx.E(httpx.KindConsentRequired, "the user must consent"))
	case need || a.device != nil:
		a.showConsent(sess)
	default:
		a.decide(sess)
	}
}

// stale reports whether max_age asks for a sign-in newer than sess
// (OIDC Core §3.1.2.1).
func (a *authorization) stale(sess *store.Session) bool {
	return a.ar.maxAge >= 0 && a.now.Sub(sess.AuthTime) > a.ar.maxAge
}

// decide ends the request with the user's decision: approved by the
// sign-in sess, or denied (nil). At the authorization endpoint the client
// gets a code or access_denied; at the device page the device request is
// decided (decideDevice).
func (a *authorization) decide(sess *store.Session) {
	switch {
	case a.device != nil:
		a.decideDevice(sess)
	case sess == nil:
		a.redirectError(httpx.E(httpx.KindAccessDenied, "the user denied the request"))
	case a.ar.hintSub != "" && a.ar.hintSub != "-" && a.ar.hintSub != store.FormatID(sess.UserID):
		// The hint's user must be signed in, or be signed in by this
		// request (OIDC Core §3.1.2.1): another user signing in at the
		// form gave the client a code for someone it did not ask for.
		a.redirectError(httpx.E(httpx.KindLoginRequired, "the user signed in is not the one id_token_hint names"))
	default:
		a.issueCode(sess)
	}
}

// authorization is one request at the authorization endpoint.
type authorization struct {
	w   http.ResponseWriter
	r   *http.Request
	log *slog.Logger
	db  *store.DB
	ts  *Tokens
	b   *Browser
	ar  *authRequest
	now time.Time
	// pushed names the pushed request this one came from, as the browser
	// that took it knows it (pushedParams), which the response, a code or
	// an error, finishes.
	pushed string
	// device is set at the device page (device.go), whose forms post there
	// and carry its user code instead of the authorization request.
	device *deviceStep
	// form is set for a POST of one of our forms, with its CSRF token: the
	// user acted (an authorization request sent by POST is not one).
	form bool
}

// showForm renders the login or consent page d with what both forms need:
// the client's name, the CSRF token, where the form posts, the fields it
// carries, and the CSP form-action source of the redirect that follows it
// (none at the device page, which redirects nowhere, and shows its user
// code to be checked against the device's).
// d.Hidden holds the page's own fields, which follow the request's.
func (a *authorization) showForm(status int, page string, d *pageData) {
	d.ClientName, d.CSRF = a.ar.client.Name, a.b.csrfToken(a.w, a.r)
	d.Hidden = append(a.carried(), d.Hidden...)
	if a.device != nil {
		d.Action, d.UserCode = "/oauth2/device", a.device.shown
		a.b.render(a.w, status, page, "", d)
		return
	}
	d.Action = "/oauth2/authorize"
	a.b.render(a.w, status, page, a.ar.redirectURI, d)
}

// carried returns the fields the forms carry: the authorization request's,
// or at the device page its user code.
func (a *authorization) carried() []hidden {
	if a.device != nil {
		return []hidden{{"user_code", a.device.shown}}
	}
	return carry(a.ar.params)
}

// consentShown is what a consent form's stamp binds, with the time it was
// shown: the sign-in it was shown to, the request it answers and what the
// page showed of it. The form is shown only past the checks that prompt=login and max_age make (OIDC Core
// §3.1.2.1): a decision posted without it, added say to the login page
// those checks showed, would grant on the old sign-in without the new one
// they asked for. What was shown counts because a request that omits
// redirect_uri or scope takes the client's at each step: a form shown
// before an RFC 7592 update would otherwise grant, and keep, consent to the
// updated client's new host and scopes.
func (a *authorization) consentShown(sess *store.Session) string {
	fields := url.Values{"\x00shown": {a.ar.client.Name, a.ar.redirectURI, a.ar.scope, a.ar.resource}}
	for _, f := range a.carried() {
		fields.Add(f.Name, f.Value)
	}
	return sess.Hash + "\x00" + fields.Encode()
}

// consentOK reports whether posted is the consent field consentShown made for
// sess and this request, at most parSignIn ago: the forms of one sign-in
// get as long as a pushed request serves them. Without the bound a consent
// page, shown once, granted whenever it was posted while the sign-in lived,
// long after the checks it was shown past.
func (a *authorization) consentOK(sess *store.Session, posted string) bool {
	return a.b.stampOK("consent", a.consentShown(sess), posted, a.now, parSignIn)
}

// redirect ends the request at the client's redirect URI with params added
// to its query (RFC 6749 §4.1.2), and state, and iss (RFC 9207); a pushed
// request has then had its response.
func (a *authorization) redirect(params url.Values) {
	if a.ar.state != "" {
		params.Set("state", a.ar.state)
	}
	params.Set("iss", a.ts.Issuer)
	a.finishPushed()
	a.w.Header().Set("Cache-Control", "no-store")
	redirectTo(a.w, a.r, withQuery(a.ar.redirectURI, params))
}

// finishPushed ends the pushed request once it has its response, a code
// or an error: it yields one.
func (a *authorization) finishPushed() {
	if a.pushed == "" {
		return
	}
	if err := a.db.FinishPushedRequest(a.r.Context(), a.pushed); err != nil {
		a.log.WarnContext(a.r.Context(), "pushed request not finished; it expires instead", "request_id", httpx.InfoFrom(a.r).ID, "err", err)
	}
}

// redirectError sends e to the client's redirect URI (RFC 6749 §4.1.2.1).
// A dynamically registered client's URI is not trusted: anyone may have
// registered it, so an error is redirected there only after the user acted
// on one of our forms (a POST with its CSRF token, a.form); before that
// it is shown here, or the server would be an open redirector (RFC 9700
// §4.11.2).
func (a *authorization) redirectError(e *httpx.Error) {
	if !a.form && a.ar.client.Registered() {
		a.finishPushed()
		a.b.fail(a.w, a.r, e)
		return
	}
	v := url.Values{"error": {e.OAuthCode()}}
	if e.Message != "" {
		v.Set("error_description", httpx.OAuthText(e.Message))
	}
	a.redirect(v)
}

// carry returns the authorization parameters as hidden fields: of a pushed
// request, only client_id and request_uri.
func carry(params url.Values) []hidden {
	if params.Has("request_uri") {
		return []hidden{{"client_id", params.Get("client_id")}, {"request_uri", params.Get("request_uri")}}
	}
	return hiddenFields(params, authParams...)
}

// hiddenFields returns the parameters named by keys that params has, in
// that order, as hidden fields.
func hiddenFields(params url.Values, keys ...string) []hidden {
	var out []hidden
	for _, k := range keys {
		if params.Has(k) {
			out = append(out, hidden{k, params.Get(k)})
		}
	}
	return out
}

func (a *authorization) showLogin(status int, msg, login string) {
	shown := a.b.stamp("login", a.b.csrfCookie(a.w, a.r), a.now)
	a.showForm(status, "login", &pageData{Title: "Sign in", Error: msg, Login: login, Hidden: []hidden{{"shown", shown}}})
}

// loginFresh reports whether a POSTed login form is one shown to this
// browser at most parSignIn ago, as consentOK does for consent. The
// browser keeps the form it posted, password and all, in its history: the
// next person at a shared computer who went Back and resent it signed the
// user in again, after the session had expired or a relying party's back
// end had ended it, where the browser's cookies stayed as they were.
func (a *authorization) loginFresh() bool {
	return a.b.stampOK("login", a.b.cookie(a.r, cookieCSRF), a.ar.params.Get("shown"), a.now, parSignIn)
}

// loginForm handles a POSTed login form. On success it starts a session
// (a new cookie: the session id is never one the browser chose) and returns
// it; otherwise it shows the form again and returns nil. With
// REQUIRE_EMAIL_VERIFICATION, an unverified address is refused (403) once
// the password is known to be right. The browser's sign-in until now, prior
// (or nil), does not outlive the new one: the same user's continues in it,
// under its sid, so that the relying parties holding that sid stay signed
// in and are told when the new one ends (OIDC Core §3.1.2.1: prompt=login
// and max_age re-authenticate, they do not sign out); another user's ends
// as a logout does, its clients told.
func (a *authorization) loginForm(pw *Passwords, th Throttle, m *Metrics, ev verification, prior *store.Session) *store.Session {
	ctx := a.r.Context()
	login, password := a.ar.params.Get("login"), a.ar.params.Get("password")
	if !a.loginFresh() {
		a.showLogin(http.StatusOK, "The sign-in form expired. Please sign in again.", "")
		return nil
	}
	if login == "" || password == "" || len(login) > 254 || len(password) > 4*maxPassword {
		a.showLogin(http.StatusUnauthorized, "Enter your email or username and your password.", "")
		return nil
	}
	u, err := authenticate(ctx, a.log, a.db, pw, th, login, password, a.now)
	if err != nil {
		err = cmp.Or(logLoginFailure(a.r, a.log, a.db, m, u, err), err)
		var e *httpx.Error
		switch {
		case errors.Is(err, errBadCredentials):
			a.showLogin(http.StatusUnauthorized, "Wrong email, username or password.", login)
		case errors.As(err, &e) && e.Kind == httpx.KindThrottled:
			a.w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())+1))
			a.showLogin(http.StatusTooManyRequests, "Too many failed attempts. Try again later.", login)
		default:
			a.b.fail(a.w, a.r, err)
		}
		return nil
	}
	if err := ev.refuseUnverified(a.r, a.log, a.db, u, a.now); err != nil {
		a.showLogin(http.StatusForbidden, "Your email address is not verified yet: open the link we mailed you, then sign in.", login)
		return nil
	}
	v := token.NewOpaque()
	s := store.Session{SID: token.NewID(), Hash: token.Hash(v), UserID: u.ID, AuthTime: a.now, ExpiresAt: a.now.Add(a.b.SessionTTL), Verified: u.PasswordHash}
	if prior != nil && prior.UserID == u.ID && prior.SID != "" { // "": from before sign-ins had one
		s.SID, s.Continues = prior.SID, prior.Hash
	}
	httpx.InfoFrom(a.r).UserID = store.FormatID(u.ID)
	// What the new sign-in ended: the user's oldest, past the cap of live ones.
	var oldest store.Ended
	create := func() (err error) { // the login's event rides on the session's write
		e := auditEvent(ctx, actLoginSuccess, store.FormatID(u.ID), outSuccess, "via", "browser", "sid", s.SID)
		oldest, err = a.db.CreateSession(store.WithEvent(ctx, e), s.Hash, s)
		return err
	}
	err = create()
	if errors.Is(err, store.ErrConflict) {
		// The sign-in continued ended meanwhile (a logout in another tab),
		// its sid with it (another login at once continues it: no
		// conflict). The password was right: a new sign-in starts.
		s.SID, s.Continues = token.NewID(), ""
		err = create()
	}
	if errors.Is(err, store.ErrNotFound) {
		// The password changed since it was verified (store.stillPassword).
		if err := logLoginFailure(a.r, a.log, a.db, m, u, errChangedMeanwhile); err != nil {
			a.b.fail(a.w, a.r, err)
		} else {
			a.showLogin(http.StatusUnauthorized, "Wrong email, username or password.", login)
		}
		return nil
	} else if err != nil {
		a.b.fail(a.w, a.r, err)
		return nil
	}
	a.ts.Ended(oldest)
	if prior != nil && prior.UserID != u.ID {
		e := auditEvent(ctx, actSessionEnded, store.FormatID(prior.UserID), outSuccess, "reason", "logout", "via", "another user's sign-in", "sid", prior.SID)
		ended, err := a.db.DeleteSession(store.WithEvent(ctx, e), prior.Hash, a.ts.AccessTTL, a.now)
		if err != nil {
			a.b.fail(a.w, a.r, err)
			return nil
		}
		a.ts.Ended(ended)
	}
	a.b.setCookie(a.w, cookieSession, v, 0)
	return &s
}

// needsConsent: a native app (a public client with a redirect URI other
// than https: a loopback port, a private-use scheme) asks every time, as
// RFC 8252 §8.6 has it, first-party or not: any app on the device can
// listen there, or claim the scheme, and send its client_id, so a consent
// given before, or none asked, would hand it a code unasked, or (at the
// token endpoint) tokens for an API it was not shown at. Other first-party
// clients never ask; others ask once per scope and resource (RFC 8707:
// consent to reach one API, or the ISSUER, is not consent to reach
// another), and again when prompt=consent.
func needsConsent(ctx context.Context, db *store.DB, userID int64, ar *authRequest) (bool, error) {
	if ar.has("consent") {
		return true, nil
	}
	if ar.client.Public() && slices.ContainsFunc(ar.client.RedirectURIs, func(u string) bool { return !strings.HasPrefix(u, "https:") }) {
		return true, nil
	}
	if ar.client.FirstParty {
		return false, nil
	}
	granted, ok, err := db.ConsentedScope(ctx, userID, ar.client.ID, ar.resource)
	if err != nil {
		return false, err
	}
	return !ok || !scopeSubset(ar.scope, granted), nil
}

// grantConsent adds the request's scopes to what the sign-in's user granted
// the client at the request's resource. Both are valid scope lists, each at
// most maxScopeLen, so their union (of registered scopes only) is one too.
func grantConsent(ctx context.Context, db *store.DB, sess *store.Session, ar *authRequest, now time.Time) error {
	granted, _, err := db.ConsentedScope(ctx, sess.UserID, ar.client.ID, ar.resource)
	if err != nil {
		return err
	}
	merged := slices.Compact(slices.Sorted(slices.Values(append(strings.Fields(granted), strings.Fields(ar.scope)...))))
	return db.SaveConsent(ctx, sess.UserID, sess.Hash, ar.client, ar.resource, strings.Join(merged, " "), now)
}

func (a *authorization) showConsent(sess *store.Session) {
	user := ""
	if u, err := a.db.UserByID(a.r.Context(), sess.UserID); err == nil {
		user = u.Username
	}
	a.showForm(http.StatusOK, "consent", &pageData{
		Title: "Allow access?", User: user, Scopes: strings.Fields(a.ar.scope), Resource: a.ar.resource, RedirectHost: shownHost(a.ar.redirectURI),
		Hidden: []hidden{{"consent", a.b.stamp("consent", a.consentShown(sess), a.now)}},
	})
}

// issueCode stores a new single-use code for the session's user and sends
// it to the client (RFC 6749 §4.1.2).
func (a *authorization) issueCode(sess *store.Session) {
	code := token.NewOpaque()
	err := a.db.CreateCode(a.r.Context(), &store.Code{
		Hash: token.Hash(code), ClientID: a.ar.client.ID, UserID: sess.UserID, RedirectURI: a.ar.sentURI,
		Scope: a.ar.scope, CodeChallenge: a.ar.challenge, Nonce: a.ar.nonce, AuthTime: sess.AuthTime,
		SID: sess.SID, SessionHash: sess.Hash, DPoPJKT: a.ar.dpopJKT, Resource: a.ar.resource, ExpiresAt: a.now.Add(codeTTL),
	}, a.now)
	// The sign-in ended meanwhile (a logout, a password change), the user
	// is gone, or the client (deleted on another instance: this one finds
	// it unknown once its revocation poll has heard of it).
	if errors.Is(err, store.ErrNotFound) {
		a.showLogin(http.StatusOK, "Your sign-in expired. Please sign in again.", "")
		return
	}
	if err != nil {
		a.b.fail(a.w, a.r, err)
		return
	}
	a.redirect(url.Values{"code": {code}})
}
