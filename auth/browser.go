package auth

import (
	"bytes"
	"crypto/hmac"
	"embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/token"
)

//go:embed pages
var pageFiles embed.FS

// Browser is what the pages a person sees share: cookies, CSRF tokens, the
// templates, and the HTML rendering of errors.
type Browser struct {
	Release    bool          // Secure, __Host- cookies
	Key        []byte        // HMAC key for CSRF tokens (derived from JWT_SECRET)
	SessionTTL time.Duration // how long a sign-in lasts
	log        *slog.Logger
	tmpl       *template.Template
	css        []byte
}

// NewBrowser parses the embedded templates.
func NewBrowser(release bool, key []byte, sessionTTL time.Duration, log *slog.Logger) (*Browser, error) {
	t, err := template.ParseFS(pageFiles, "pages/*.html")
	if err != nil {
		return nil, err
	}
	css, err := pageFiles.ReadFile("pages/style.css")
	if err != nil {
		return nil, err
	}
	return &Browser{Release: release, Key: key, SessionTTL: sessionTTL, log: log, tmpl: t, css: css}, nil
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
	return b.csrfFor(b.csrfCookie(w, r))
}

// csrfCookie returns the browser's CSRF cookie, a secret of that browser
// alone (HttpOnly), setting it first if it has none.
func (b *Browser) csrfCookie(w http.ResponseWriter, r *http.Request) string {
	v := b.cookie(r, cookieCSRF)
	if v == "" {
		v = token.NewOpaque()
		b.setCookie(w, cookieCSRF, v, 0)
		r.AddCookie(&http.Cookie{Name: b.cookieName(cookieCSRF), Value: v}) // later reads in this request see it
	}
	return v
}

func (b *Browser) csrfFor(cookie string) string { return b.mac("csrf", cookie) }

// mac is the HMAC of a value under the browser key, for one purpose (a
// CSRF token, a consent form), base64url: one purpose's MAC is never
// another's.
func (b *Browser) mac(purpose, value string) string {
	return base64.RawURLEncoding.EncodeToString(token.MAC(b.Key, purpose+"\x00"+value))
}

// stamp is a form field that binds value to when the form is shown: the
// Unix second, a dot, the MAC of purpose, value and that second.
func (b *Browser) stamp(purpose, value string, now time.Time) string {
	at := strconv.FormatInt(now.Unix(), 10)
	return at + "." + b.mac(purpose, value+"\x00"+at)
}

// stampOK reports whether posted is a stamp of purpose and value made at
// most max before now, compared in constant time.
func (b *Browser) stampOK(purpose, value, posted string, now time.Time, max time.Duration) bool {
	at, _, _ := strings.Cut(posted, ".")
	shown, err := strconv.ParseInt(at, 10, 64)
	return err == nil && hmac.Equal([]byte(posted), []byte(at+"."+b.mac(purpose, value+"\x00"+at))) && now.Sub(time.Unix(shown, 0)) <= max
}

// csrfOK checks a POSTed form's token against the cookie, in constant time.
func (b *Browser) csrfOK(r *http.Request, form url.Values) bool {
	v := b.cookie(r, cookieCSRF)
	return v != "" && hmac.Equal([]byte(form.Get("csrf_token")), []byte(b.csrfFor(v)))
}

// errFormExpired answers a POSTed form without its CSRF token.
var errFormExpired = httpx.E(httpx.KindForbidden, "The form expired or did not come from this site. Go back to the application and start again.")

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
	Resource     string // the API the consent page asks access at (RFC 8707), or "" for this server's
	RedirectHost string
	Hidden       []hidden
	CSRF         string
	Done         bool
	Action       string // where the login and consent forms post
	UserCode     string // the device page's code, as shown (XXXX-XXXX)
	Denied       bool   // the device page's end: the user denied
}

// inPopup serves the pages a relying party may open in a popup (OIDC
// display=popup; oidc-client-ts signinPopup, MSAL loginPopup) without
// Cross-Origin-Opener-Policy: same-origin cut the popup from its opener at
// the first response, so the code reached the callback with window.opener
// null and the relying party never heard of it. Framing stays denied
// (frame-ancestors, X-Frame-Options).
func inPopup(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Del("Cross-Origin-Opener-Policy")
		h.ServeHTTP(w, r)
	})
}

// render writes a page with the headers every page needs: a strict CSP (no
// script at all; form-action names the client's redirect origin because
// browsers apply it to the redirect after a POST), no caching (pages carry
// CSRF tokens) and no framing. A template that fails (a bug) is logged and
// answered with a plain 500, never half a page.
func (b *Browser) render(w http.ResponseWriter, status int, name, next string, d *pageData) {
	var buf bytes.Buffer
	if err := b.tmpl.ExecuteTemplate(&buf, name, d); err != nil {
		b.log.Error("page template failed", "page", name, "err", err)
		status, buf = http.StatusInternalServerError, *bytes.NewBufferString("Internal error.\n")
	}
	h := w.Header()
	// Browsers apply form-action to the redirect that follows a form's
	// POST too: a page whose form leads on to next allows next's origin,
	// or, where that has no CSP form, leaves form-action out (API.md).
	csp := "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
	if src, ok := cspSource(next); next == "" {
		csp += "; form-action 'self'"
	} else if ok {
		csp += "; form-action 'self' " + src
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail renders err as an error page: the HTML rendering of the error table
// (httpx.Kind). What a client may see is shown; an internal or unavailable
// error is logged with the request id and shown as "try again".
func (b *Browser) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := httpx.Classify(r, b.log, err)
	e.SetHeaders(w)
	d := &pageData{Title: "Invalid request", Error: e.Message}
	switch e.Kind {
	case httpx.KindInternal, httpx.KindUnavailable:
		d.Title, d.Error = "Temporarily unavailable", "Please try again in a moment."
		w.Header().Set("Retry-After", "5")
	case httpx.KindForbidden:
		d.Title = "Request refused"
	case httpx.KindRateLimited:
		d.Title, d.Error = "Too many requests", "Please wait a moment and try again."
	}
	b.render(w, e.Status(), "error", "", d)
}

// handleStatic serves the stylesheet.
func handleStatic(b *Browser) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Write(b.css)
	})
}
