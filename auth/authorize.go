package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

//go:embed pages
var pageFiles embed.FS

// Browser is the configuration of the pages a person sees: cookies, CSRF
// protection and the templates.
type Browser struct {
	Release    bool          // Secure, __Host- cookies
	Key        []byte        // HMAC key for CSRF tokens (derived from JWT_SECRET)
	SessionTTL time.Duration // how long a sign-in lasts
	tmpl       *template.Template
	css        []byte
}

// NewBrowser parses the embedded templates.
func NewBrowser(release bool, key []byte, sessionTTL time.Duration) (*Browser, error) {
	t, err := template.ParseFS(pageFiles, "pages/*.html")
	if err != nil {
		return nil, err
	}
	css, err := pageFiles.ReadFile("pages/style.css")
	if err != nil {
		return nil, err
	}
	return &Browser{Release: release, Key: key, SessionTTL: sessionTTL, tmpl: t, css: css}, nil
}

func (b *Browser) cookieName(name string) string {
	if b.Release {
		return "__Host-" + name // Secure, Path=/, no Domain: cannot be set by a sibling host
	}
	return name
}

func (b *Browser) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: b.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: b.Release, SameSite: http.SameSiteLaxMode})
}

func (b *Browser) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(b.cookieName(name))
	if err != nil || len(c.Value) != token.OpaqueLen {
		return ""
	}
	return c.Value
}

const (
	cookieSession = "oauth2_session"
	cookieCSRF    = "oauth2_csrf"
)

// csrfToken returns the form token for the browser's CSRF cookie, setting
// the cookie first if it has none (double-submit, bound with an HMAC so a
// token cannot be made without the server's key).
func (b *Browser) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := b.cookie(r, cookieCSRF)
	if v == "" {
		v = token.NewOpaque()
		b.setCookie(w, cookieCSRF, v, 0)
		r.AddCookie(&http.Cookie{Name: b.cookieName(cookieCSRF), Value: v}) // later reads in this request see it
	}
	return b.csrfFor(v)
}

func (b *Browser) csrfFor(cookie string) string {
	m := hmac.New(sha256.New, b.Key)
	m.Write([]byte("csrf\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK checks a POSTed form's token against the cookie, in constant time.
func (b *Browser) csrfOK(r *http.Request, form url.Values) bool {
	v := b.cookie(r, cookieCSRF)
	if v == "" {
		return false
	}
	return hmac.Equal([]byte(form.Get("csrf_token")), []byte(b.csrfFor(v)))
}

// hidden is one hidden form field.
type hidden struct{ Name, Value string }

// pageData is what the templates see. html/template escapes every value.
type pageData struct {
	Title        string
	Error        string
	ClientName   string
	User         string
	Login        string
	Scopes       []string
	RedirectHost string
	Hidden       []hidden
	CSRF         string
	Done         bool
}

// render writes a page with the headers every page needs: a strict CSP (no
// script at all; form-action names the client's redirect origin because
// browsers apply it to the redirect after a POST), no caching (pages carry
// CSRF tokens) and no framing.
func (b *Browser) render(w http.ResponseWriter, status int, name, formAction string, d *pageData) {
	h := w.Header()
	csp := "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
	if formAction != "" {
		csp += " " + formAction
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	b.tmpl.ExecuteTemplate(w, name, d)
}

// handleStatic serves the stylesheet.
func handleStatic(b *Browser) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Write(b.css)
	})
}

// authParams are the authorization request parameters carried from the
// GET through the login and consent forms (RFC 6749 §4.1.1, RFC 7636 §4.3,
// OIDC Core §3.1.2.1).
var authParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", "nonce", "prompt", "max_age"}

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
	maxAge      int // -1: none
	params      url.Values
}

// pageError is a failure that must not be redirected (RFC 6749 §4.1.2.1:
// the client or redirect URI is not trusted); the user sees a page.
type pageError struct{ msg string }

func (e *pageError) Error() string { return e.msg }

// parseAuthRequest validates an authorization request. Failures about the
// client or the redirect URI are *pageError; the others are *oauthError, to
// be sent to the redirect URI (returned in ar, which is then partly filled).
func parseAuthRequest(ctx context.Context, o *OAuth, params url.Values, now time.Time) (*authRequest, error) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(params[k]) > 1 {
			return nil, &pageError{"The request repeats " + k + "."}
		}
	}
	id := params.Get("client_id")
	if id == "" || len(id) > 128 {
		return nil, &pageError{"The request names no client."}
	}
	c, err := o.Clients.Get(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &pageError{"The request names an unknown client."}
	}
	if err != nil {
		return nil, err
	}
	ar := &authRequest{client: c, sentURI: params.Get("redirect_uri"), maxAge: -1, params: params}
	switch {
	case ar.sentURI != "" && matchRedirectURI(c.RedirectURIs, ar.sentURI):
		ar.redirectURI = ar.sentURI
	case ar.sentURI == "" && len(c.RedirectURIs) == 1:
		ar.redirectURI = c.RedirectURIs[0] // RFC 6749 §3.1.2.3: only one registered
	case ar.sentURI == "":
		return nil, &pageError{"The request has no redirect_uri and the client has several."}
	default:
		return nil, &pageError{"The redirect_uri is not registered for this client."}
	}
	// From here on, errors go back to the client.
	ar.state = params.Get("state")
	if err := checkParams(params); err != nil {
		return ar, err
	}
	if len(ar.state) > 2048 {
		ar.state = ""
		return ar, oauthErr(errInvalidRequest, "state is too long")
	}
	if !vschar(ar.state) {
		// RFC 6749 Appendix A.5: state is VSCHAR (%x20-7E). Anything else
		// could not come back exactly (a CR is lost in the forms' round
		// trip), so it is refused rather than altered.
		ar.state = ""
		return ar, oauthErr(errInvalidRequest, "state must be printable ASCII (RFC 6749 Appendix A.5)")
	}
	if rt := params.Get("response_type"); rt != "code" {
		return ar, oauthErr(errUnsupportedResponseType, "only response_type=code is supported")
	}
	if !slices.Contains(c.GrantTypes, grantAuthorizationCode) {
		return ar, oauthErr(errUnauthorizedClient, "the client may not use the authorization code grant")
	}
	scope, err := grantScope(params.Get("scope"), c.Scopes)
	if err != nil {
		return ar, err
	}
	if hasScope(scope, scopeOpenID) && o.IDTokens == nil {
		return ar, oauthErr(errInvalidScope, "openid is not available: the server has no signing key")
	}
	ar.scope = scope
	ar.challenge = params.Get("code_challenge")
	switch method := params.Get("code_challenge_method"); {
	case ar.challenge == "":
		return ar, oauthErr(errInvalidRequest, "code_challenge is required (PKCE with S256)")
	case method != "S256":
		// Absent means plain (RFC 7636 §4.3), which RFC 9700 §2.1.1 rules out.
		return ar, oauthErr(errInvalidRequest, "code_challenge_method must be S256")
	case !validChallenge(ar.challenge):
		return ar, oauthErr(errInvalidRequest, "code_challenge is not a base64url SHA-256 value")
	}
	ar.nonce = params.Get("nonce")
	if len(ar.nonce) > 512 {
		return ar, oauthErr(errInvalidRequest, "nonce is too long")
	}
	// The nonce is stored with the code; PostgreSQL text cannot hold NUL
	// (checkParams has already refused invalid UTF-8).
	if strings.ContainsRune(ar.nonce, 0) {
		return ar, oauthErr(errInvalidRequest, "nonce must not contain NUL")
	}
	if p := params.Get("prompt"); p != "" {
		ar.prompt = strings.Fields(p)
		for _, v := range ar.prompt {
			if v != "none" && v != "login" && v != "consent" {
				return ar, oauthErr(errInvalidRequest, "prompt must be none, login or consent")
			}
		}
		if slices.Contains(ar.prompt, "none") && len(ar.prompt) > 1 {
			return ar, oauthErr(errInvalidRequest, "prompt=none cannot be combined")
		}
	}
	if s := params.Get("max_age"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return ar, oauthErr(errInvalidRequest, "max_age must be a non-negative integer")
		}
		ar.maxAge = n
	}
	return ar, nil
}

// vschar reports whether s is VSCHAR* (RFC 6749 Appendix A: %x20-7E).
func vschar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (ar *authRequest) has(prompt string) bool { return slices.Contains(ar.prompt, prompt) }

// formAction returns the CSP source for the redirect URI's origin.
func formAction(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

// redirect sends the browser to the client's redirect URI with params added
// to its query (RFC 6749 §4.1.2), plus iss (RFC 9207). After a POST it uses
// 303 so the browser does not re-POST (RFC 9700 §4.12).
func redirect(w http.ResponseWriter, r *http.Request, o *OAuth, ar *authRequest, params url.Values) {
	if ar.state != "" {
		params.Set("state", ar.state)
	}
	params.Set("iss", o.Tokens.Issuer)
	target := ar.redirectURI
	if strings.Contains(target, "?") {
		target += "&" + params.Encode()
	} else {
		target += "?" + params.Encode()
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", target)
	w.WriteHeader(status)
}

func redirectError(w http.ResponseWriter, r *http.Request, o *OAuth, ar *authRequest, oe *oauthError) {
	v := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		v.Set("error_description", oe.Description)
	}
	redirect(w, r, o, ar, v)
}

// session returns the browser's signed-in session, or nil.
func currentSession(ctx context.Context, o *OAuth, b *Browser, r *http.Request, now time.Time) (*store.Session, string, error) {
	v := b.cookie(r, cookieSession)
	if v == "" {
		return nil, "", nil
	}
	s, err := o.DB.SessionByHash(ctx, token.Hash(v), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	return s, v, err
}

// handleAuthorize serves GET and POST /oauth2/authorize (RFC 6749 §4.1.1):
// the login form, the consent form, and the redirect with a code.
func handleAuthorize(o *OAuth, b *Browser, pw *Passwords, th Throttle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, now := r.Context(), o.Now()
		var params url.Values
		if r.Method == http.MethodPost {
			form, err := readForm(r)
			if err != nil || !b.csrfOK(r, form) {
				b.render(w, http.StatusForbidden, "error", "", &pageData{Title: "Request refused",
					Error: "The form expired or did not come from this site. Go back to the application and start again."})
				return
			}
			params = form
		} else {
			params = r.URL.Query()
		}
		ar, err := parseAuthRequest(ctx, o, params, now)
		var pe *pageError
		var oe *oauthError
		switch {
		case errors.As(err, &pe):
			b.render(w, http.StatusBadRequest, "error", "", &pageData{Title: "Invalid request", Error: pe.msg})
			return
		case errors.As(err, &oe):
			redirectError(w, r, o, ar, oe)
			return
		case err != nil:
			o.Log.ErrorContext(ctx, "authorize", "request_id", httpx.InfoFrom(r).ID, "err", err)
			status := http.StatusInternalServerError
			if errors.Is(err, store.ErrUnavailable) {
				status = http.StatusServiceUnavailable
			}
			b.render(w, status, "error", "", &pageData{Title: "Temporarily unavailable", Error: "Please try again in a moment."})
			return
		}
		httpx.InfoFrom(r).ClientID = ar.client.ID
		sess, _, err := currentSession(ctx, o, b, r, now)
		if err != nil {
			b.render(w, http.StatusServiceUnavailable, "error", "", &pageData{Title: "Temporarily unavailable", Error: "Please try again in a moment."})
			return
		}
		if r.Method == http.MethodPost {
			switch {
			case params.Has("login"):
				sess = loginForm(w, r, o, b, pw, th, ar, params, now)
				if sess == nil {
					return // the login page was shown again
				}
			case params.Has("action"):
				if sess == nil {
					showLogin(w, r, o, b, ar, http.StatusOK, "Your sign-in expired. Please sign in again.", "")
					return
				}
				if params.Get("action") != "allow" {
					redirectError(w, r, o, ar, oauthErr(errAccessDenied, "the user denied the request"))
					return
				}
				if err := grantConsent(ctx, o, sess.UserID, ar, now); err != nil {
					writeAuthorizeFailure(w, r, o, b, err)
					return
				}
				issueCode(w, r, o, b, ar, sess, now)
				return
			default:
				b.render(w, http.StatusBadRequest, "error", "", &pageData{Title: "Invalid request", Error: "The form was incomplete."})
				return
			}
		} else {
			needLogin := sess == nil || ar.has("login") ||
				(ar.maxAge >= 0 && now.Sub(sess.AuthTime) > time.Duration(ar.maxAge)*time.Second)
			if needLogin {
				if ar.has("none") {
					redirectError(w, r, o, ar, oauthErr(errLoginRequired, "the user must sign in"))
					return
				}
				showLogin(w, r, o, b, ar, http.StatusOK, "", "")
				return
			}
		}
		// Signed in: ask for consent unless already given.
		need, err := needsConsent(ctx, o, sess.UserID, ar)
		if err != nil {
			writeAuthorizeFailure(w, r, o, b, err)
			return
		}
		if need {
			if ar.has("none") {
				redirectError(w, r, o, ar, oauthErr(errConsentRequired, "the user must consent"))
				return
			}
			showConsent(w, r, o, b, ar, sess)
			return
		}
		issueCode(w, r, o, b, ar, sess, now)
	})
}

func writeAuthorizeFailure(w http.ResponseWriter, r *http.Request, o *OAuth, b *Browser, err error) {
	o.Log.WarnContext(r.Context(), "authorize failed", "request_id", httpx.InfoFrom(r).ID, "err", err)
	w.Header().Set("Retry-After", "5") // the database or the password hashing slots are busy
	b.render(w, http.StatusServiceUnavailable, "error", "", &pageData{Title: "Temporarily unavailable", Error: "Please try again in a moment."})
}

// carry returns the authorization parameters as hidden fields.
func carry(params url.Values) []hidden {
	var out []hidden
	for _, k := range authParams {
		if params.Has(k) {
			out = append(out, hidden{k, params.Get(k)})
		}
	}
	return out
}

func showLogin(w http.ResponseWriter, r *http.Request, o *OAuth, b *Browser, ar *authRequest, status int, msg, login string) {
	b.render(w, status, "login", formAction(ar.redirectURI), &pageData{
		Title: "Sign in", Error: msg, ClientName: ar.client.Name, Login: login,
		Hidden: carry(ar.params), CSRF: b.csrfToken(w, r),
	})
}

// loginForm handles a POSTed login form. On success it starts a session
// (a new cookie: the session id is never one the browser chose) and returns
// it; otherwise it shows the form again and returns nil.
func loginForm(w http.ResponseWriter, r *http.Request, o *OAuth, b *Browser, pw *Passwords, th Throttle, ar *authRequest, form url.Values, now time.Time) *store.Session {
	ctx := r.Context()
	login, password := form.Get("login"), form.Get("password")
	if login == "" || password == "" || len(login) > 254 || len(password) > 4*maxPassword {
		showLogin(w, r, o, b, ar, http.StatusUnauthorized, "Enter your email or username and your password.", "")
		return nil
	}
	u, err := authenticate(ctx, o.DB, pw, th, login, password, now)
	if err != nil {
		logLoginFailure(r, o.Log, o.Metrics, err)
		var locked *lockedError
		switch {
		case errors.Is(err, errBadCredentials):
			showLogin(w, r, o, b, ar, http.StatusUnauthorized, "Wrong email, username or password.", login)
		case errors.As(err, &locked):
			w.Header().Set("Retry-After", strconv.Itoa(int(locked.Wait.Seconds())+1))
			showLogin(w, r, o, b, ar, http.StatusTooManyRequests, "Too many failed attempts. Try again later.", login)
		default:
			writeAuthorizeFailure(w, r, o, b, err)
		}
		return nil
	}
	v := token.NewOpaque()
	s := store.Session{UserID: u.ID, AuthTime: now, ExpiresAt: now.Add(b.SessionTTL)}
	if err := o.DB.CreateSession(ctx, token.Hash(v), s); err != nil {
		writeAuthorizeFailure(w, r, o, b, err)
		return nil
	}
	b.setCookie(w, cookieSession, v, 0)
	httpx.InfoFrom(r).UserID = userSubject(u.ID)
	o.Log.InfoContext(ctx, "signed in", "request_id", httpx.InfoFrom(r).ID, "user_id", u.ID, "client_id", ar.client.ID)
	return &s
}

// needsConsent: first-party clients never ask; others ask once per scope,
// and again when prompt=consent.
func needsConsent(ctx context.Context, o *OAuth, userID int64, ar *authRequest) (bool, error) {
	if ar.has("consent") {
		return true, nil
	}
	if ar.client.FirstParty {
		return false, nil
	}
	granted, ok, err := o.DB.ConsentedScope(ctx, userID, ar.client.ID)
	if err != nil {
		return false, err
	}
	return !ok || !scopeSubset(ar.scope, granted), nil
}

func grantConsent(ctx context.Context, o *OAuth, userID int64, ar *authRequest, now time.Time) error {
	granted, _, err := o.DB.ConsentedScope(ctx, userID, ar.client.ID)
	if err != nil {
		return err
	}
	merged := normalizeScope(strings.TrimSpace(granted + " " + ar.scope))
	return o.DB.SaveConsent(ctx, userID, ar.client.ID, merged, now)
}

func showConsent(w http.ResponseWriter, r *http.Request, o *OAuth, b *Browser, ar *authRequest, sess *store.Session) {
	user := ""
	if u, err := o.DB.UserByID(r.Context(), sess.UserID); err == nil {
		user = u.Username
	}
	host := ar.redirectURI
	if u, err := url.Parse(ar.redirectURI); err == nil && u.Host != "" {
		host = u.Host
	}
	b.render(w, http.StatusOK, "consent", formAction(ar.redirectURI), &pageData{
		Title: "Allow access?", ClientName: ar.client.Name, User: user, Scopes: strings.Fields(ar.scope),
		RedirectHost: host, Hidden: carry(ar.params), CSRF: b.csrfToken(w, r),
	})
}

// codeTTL is how long an authorization code lives (RFC 6749 §4.1.2: at most
// ten minutes; API.md: at most 60 seconds).
const codeTTL = 60 * time.Second

func issueCode(w http.ResponseWriter, r *http.Request, o *OAuth, b *Browser, ar *authRequest, sess *store.Session, now time.Time) {
	code := token.NewOpaque()
	err := o.DB.CreateCode(r.Context(), &store.Code{
		Hash: token.Hash(code), ClientID: ar.client.ID, UserID: sess.UserID, RedirectURI: ar.sentURI,
		Scope: ar.scope, CodeChallenge: ar.challenge, Nonce: ar.nonce, AuthTime: sess.AuthTime,
		ExpiresAt: now.Add(codeTTL),
	}, now)
	if err != nil {
		writeAuthorizeFailure(w, r, o, b, err)
		return
	}
	redirect(w, r, o, ar, url.Values{"code": {code}})
}
