package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Deps is everything the handlers may use. routes hands each handler only
// the parts it needs, so a handler's parameters are its authority.
type Deps struct {
	Log       *slog.Logger
	DB        *store.DB
	Tokens    *Tokens
	Passwords *Passwords
	Throttle  Throttle
	Metrics   *Metrics
	HTTP      *httpx.Metrics
	Registry  *metrics.Registry
	API       *ratelimit.Limiter // RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW, per client IP: /api/v1
	Pages     *ratelimit.Limiter // the same numbers, a budget of its own: the pages a person sees
	Creds     *ratelimit.Limiter // LOGIN_RATE_LIMIT / LOGIN_RATE_BURST, per client IP: passwords, failed client authentication
	PerClient *ratelimit.Named   // CLIENT_RATE_LIMIT / CLIENT_RATE_BURST, per authenticated client: the OAuth back channel
	// PublicClients is PublicClientShares times PerClient's rate and burst,
	// per public client over all its callers' addresses together (PerClient
	// holds a public client per address), on PAR and device authorization
	// only: a bound on what strangers naming it may write there (pushed and
	// device requests, a PAR's DPoP proof) however many addresses they
	// have. Required.
	PublicClients *ratelimit.Named
	Now           func() time.Time
	Version       string
	Started       time.Time

	Clients    *Clients
	Browser    *Browser
	IDTokens   *token.Signer // nil without SIGNING_KEY: no OpenID Connect
	PublicKeys []*token.Key  // published at /.well-known/jwks.json

	EnableRegistration bool
	RequirePAR         bool             // REQUIRE_PAR: every authorization request must be pushed (RFC 9126)
	Reset              *Reset           // nil unless ENABLE_PASSWORD_RESET (which needs Mail): the routes then answer 404
	Release            bool             // APP_MODE=release: HSTS, Secure cookies
	CORSOrigins        []string         // CORS_ORIGINS
	IPs                httpx.IPResolver // TRUSTED_PROXIES

	Mail                     *MailQueue    // nil without SMTP_HOST: no mail is sent
	EmailVerificationTTL     time.Duration // EMAIL_VERIFICATION_TTL
	RequireEmailVerification bool          // REQUIRE_EMAIL_VERIFICATION: logins refuse an unverified address

	// DynamicRegistration is ENABLE_DYNAMIC_REGISTRATION: RegistrationToken
	// or RegistrationOpen adds the RFC 7591/7592 routes, budgeted per client
	// IP by Registration (which must then be set).
	DynamicRegistration string
	Registration        *ratelimit.Limiter
}

// NewHandler returns the whole server: the routes of AddRoutes wrapped, from
// the outside in, in Observe (request id, access log, metrics), Recover,
// SecureHeaders, CORS, LimitBody and MuxErrors (the mux's 404 and 405 as JSON).
func NewHandler(d Deps) http.Handler {
	mux := http.NewServeMux()
	AddRoutes(mux, d)
	h := httpx.MuxErrors(d.Log, mux)
	h = httpx.LimitBody(h)
	h = httpx.CORS(d.CORSOrigins, h)
	h = httpx.SecureHeaders(d.Release, h)
	h = httpx.Recover(d.Log, h)
	return httpx.Observe(d.Log, d.HTTP, d.IPs, d.Now, h)
}

// route is one line of the access-control list.
type route struct {
	pattern string
	caller  caller // who may call: checked before the handler runs (callers.go)
	budget  budget // how often
	handler http.Handler
}

// budget limits a route's callers: by client IP (checked before the
// caller), or by the client the caller check authenticated, or whose access
// token it is (checked after). A back end calls for all its users from one
// address, so the OAuth back channel is budgeted per client, not per IP.
type budget struct {
	perIP *ratelimit.Limiter
	// ownSite marks the routes where passwords and mailed tokens are
	// checked, on the login budget (Deps.Creds): a request that a web page
	// of another site sent (fromOtherSite) does not spend it, but
	// otherSites, or is refused (nil) before it spends anything. No such
	// request checks a password (a form needs the CSRF cookie, SameSite=Lax;
	// JSON a preflight; a bearer route its header), yet each spent the
	// budget of its visitor's address: any page they opened kept them, and
	// everyone behind their NAT, from signing in.
	ownSite    bool
	otherSites *ratelimit.Limiter
	perClient  bool
	// allAddresses adds, after perClient, a public client's budget over all
	// addresses together (Deps.PublicClients): on the routes where
	// strangers naming it write rows before anything of theirs is checked.
	allAddresses bool
}

// routes is every way into the server: the method and path, who may call,
// the budget that limits the caller, and the handler, given only what it
// uses. An auditor answers "who may call X" from this table alone.
func routes(d Deps) []route {
	log, db, ts, cs, b, now := d.Log, d.DB, d.Tokens, d.Clients, d.Browser, d.Now
	pw, th, m, iss := d.Passwords, d.Throttle, d.Metrics, d.Tokens.Issuer
	api, creds, pages := budget{perIP: d.API}, budget{perIP: d.Creds, ownSite: true}, budget{perIP: d.Pages}
	// A client's page may send its authorization request by POST (OIDC
	// Core §3.1.2.1): budgeted as by GET.
	credsOrPages := budget{perIP: d.Creds, ownSite: true, otherSites: d.Pages}
	client, none := budget{perClient: true}, budget{}
	clientRows := budget{perClient: true, allAddresses: true}
	v := verification{mail: d.Mail, link: iss + "/email/verify", ttl: d.EmailVerificationTTL, required: d.RequireEmailVerification}
	meta := handleMetadata(iss, d.IDTokens, d.PublicKeys, d.RequirePAR, dynamicRegistration(d))
	rs := []route{
		// Operations. /metrics is for the proxy to keep private (deploy/).
		{"GET /health", anyone, none, handleHealth(db, d.Version, d.Started, now)},
		{"GET /livez", anyone, none, handleLive()},
		{"GET /metrics", anyone, none, d.Registry.Handler()},

		// The first-party REST API (API.md). The credentials of register,
		// login, refresh and verify-email are in their bodies.
		{"POST /api/v1/auth/register", anyone, creds, handleRegister(log, db, pw, d.EnableRegistration, v, now)},
		{"POST /api/v1/auth/login", anyone, creds, handleLogin(log, db, ts, pw, th, m, v, now)},
		{"POST /api/v1/auth/refresh", anyone, api, handleRefresh(log, db, ts, m, now)},
		{"POST /api/v1/auth/logout", user, api, handleLogout(log, db, ts, now)},
		{"POST /api/v1/auth/verify-email", anyone, creds, handleVerifyEmail(log, db, now)},
		{"POST /api/v1/auth/verify-email/resend", user, api, handleVerifyResend(log, db, v, now)},
		{"GET /api/v1/profile", user, api, handleProfileGet(log)},
		{"PATCH /api/v1/profile", user, api, handleProfilePatch(log, db, now)},
		{"POST /api/v1/profile/password", user, creds, handlePasswordChange(log, db, ts, pw, th, m, now)},
		{"GET /api/v1/users", admin, api, handleUserList(log, db)},
		{"PATCH /api/v1/users/{id}", admin, api, handleUserPatch(log, db, ts, now)},
		{"DELETE /api/v1/users/{id}", admin, api, handleUserDelete(log, db, ts, now)},
		{"GET /api/v1/audit", admin, api, handleAuditList(log, db)},
		{"GET /api/v1/clients", admin, api, handleClientList(log, db)},
		{"POST /api/v1/clients", admin, api, handleClientCreate(log, db, d.Release, ts.Resources, now)},
		{"DELETE /api/v1/clients/{id}", admin, api, handleClientDelete(log, db, ts, cs, now)},
		{"POST /api/v1/clients/{id}/secret", admin, api, handleClientRotate(log, db, ts, cs, now)},

		// OAuth 2.0 and OpenID Connect.
		{"GET /.well-known/oauth-authorization-server", anyone, none, meta},
		{"GET /.well-known/jwks.json", anyone, none, handleJWKS(d.PublicKeys)},
		{"GET /oauth2/authorize", person, pages, inPopup(handleAuthorize(log, db, ts, cs, b, pw, th, m, d.IDTokens != nil, d.RequirePAR, v, now))},
		{"POST /oauth2/authorize", person, credsOrPages, inPopup(handleAuthorize(log, db, ts, cs, b, pw, th, m, d.IDTokens != nil, d.RequirePAR, v, now))},
		{"POST /oauth2/token", anyClient, client, handleToken(log, db, ts, d.IDTokens, m, now)},
		{"POST /oauth2/par", anyClient, clientRows, handlePAR(log, db, ts, cs, d.IDTokens != nil, now)},
		{"POST /oauth2/device_authorization", anyClient, clientRows, handleDeviceAuthorization(log, db, ts, b, d.HTTP, d.IDTokens != nil, now)},
		{"GET /oauth2/device", person, pages, handleDevicePage(log, db, ts, cs, b, pw, th, m, d.HTTP, v, now)},
		{"POST /oauth2/device", person, creds, handleDevicePage(log, db, ts, cs, b, pw, th, m, d.HTTP, v, now)},
		{"POST /oauth2/revoke", anyClient, client, handleRevoke(log, db, ts, now)},
		{"POST /oauth2/introspect", confidentialClient, client, handleIntrospect(log, db, ts, now)},
		{"GET /oauth2/userinfo", tokenHolder, client, handleUserinfo(log, db)},
		{"POST /oauth2/userinfo", tokenHolder, client, handleUserinfo(log, db)},
		{"GET /oauth2/logout", person, pages, inPopup(handleEndSession(log, db, ts, cs, b, d.IDTokens != nil, now))},
		{"POST /oauth2/logout", person, pages, inPopup(handleEndSession(log, db, ts, cs, b, d.IDTokens != nil, now))},
		{"GET /oauth2/static/style.css", anyone, none, handleStatic(b)},

		// The page the verification link opens; the token in it is the credential.
		{"GET /email/verify", person, pages, handleVerifyPage(log, db, b, now)},
		{"POST /email/verify", person, creds, handleVerifyPage(log, db, b, now)},
		// Anything else is the mux's 404 or 405, in JSON (httpx.MuxErrors).
	}
	if d.IDTokens != nil {
		rs = append(rs, route{"GET /.well-known/openid-configuration", anyone, none, meta})
	}
	if dynamicRegistration(d) { // ENABLE_DYNAMIC_REGISTRATION: token or open
		if d.Registration == nil {
			panic("auth: Deps.Registration is required with dynamic registration")
		}
		reg := budget{perIP: d.Registration, ownSite: true} // a wrong initial access token spends the login budget
		rs = append(rs,
			route{"POST /oauth2/register", registrar, reg, handleRegisterClient(log, db, iss, d.Release, d.IDTokens != nil, now)},
			route{"GET /oauth2/register/{id}", registrant, api, handleRegistrationRead(iss)},
			route{"PUT /oauth2/register/{id}", registrant, api, handleRegistrationUpdate(log, db, ts, cs, iss, d.Release, d.IDTokens != nil, now)},
			route{"DELETE /oauth2/register/{id}", registrant, api, handleRegistrationDelete(log, db, ts, cs, now)})
	}
	if d.Reset != nil { // ENABLE_PASSWORD_RESET; the token in the body or form is the credential
		rs = append(rs,
			route{"POST /api/v1/auth/password/forgot", anyone, creds, handleForgot(log, db, d.Reset, d.Mail, now)},
			route{"POST /api/v1/auth/password/reset", anyone, creds, handleReset(log, db, pw, ts, now)},
			route{"GET /password/reset", person, pages, handleResetPage(log, db, pw, ts, b, now)},
			route{"POST /password/reset", person, creds, handleResetPage(log, db, pw, ts, b, now)})
	}
	return rs
}

// AddRoutes registers every route on mux behind its caller's check and its
// budget, whose refusals take the route's surface: OAuth JSON for the
// clients' and tokens' endpoints, a page for a person, REST JSON else.
func AddRoutes(mux *http.ServeMux, d Deps) {
	if d.PublicClients == nil {
		panic("auth: Deps.PublicClients is required")
	}
	for _, rt := range routes(d) {
		refuse := func(w http.ResponseWriter, r *http.Request, err error) { httpx.WriteError(w, r, d.Log, err) }
		switch rt.caller {
		case anyClient, confidentialClient, tokenHolder, registrar, registrant:
			refuse = func(w http.ResponseWriter, r *http.Request, err error) { httpx.WriteOAuthError(w, r, d.Log, err) }
		case person:
			refuse = d.Browser.fail
		}
		h := rt.handler
		if rt.budget.allAddresses { // checked after the address's share: a refused stranger spends nothing of the client's whole
			h = httpx.RateLimit(publicBudget{d.PublicClients}, httpx.ByPublicClient, d.HTTP, d.Now, refuse, h)
		}
		if rt.budget.perClient {
			h = httpx.RateLimit(d.PerClient, httpx.ByClient, d.HTTP, d.Now, refuse, h)
		}
		h = check(rt.caller, d, h)
		h = wellFormedQuery(refuse, h)
		if rt.budget.ownSite {
			h = ownSite(rt.budget, d, refuse, h)
		} else if rt.budget.perIP != nil {
			h = httpx.RateLimit(rt.budget.perIP, httpx.ByIP, d.HTTP, d.Now, refuse, h)
		}
		mux.Handle(rt.pattern, h)
	}
}

// ownSite budgets h by bg.perIP, but a request another site's web page
// sent (fromOtherSite) by bg.otherSites, or refuses it if there is none.
func ownSite(bg budget, d Deps, refuse func(http.ResponseWriter, *http.Request, error), h http.Handler) http.Handler {
	own, other := httpx.RateLimit(bg.perIP, httpx.ByIP, d.HTTP, d.Now, refuse, h), http.Handler(nil)
	if bg.otherSites != nil {
		other = httpx.RateLimit(bg.otherSites, httpx.ByIP, d.HTTP, d.Now, refuse, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !fromOtherSite(r, d.CORSOrigins):
			own.ServeHTTP(w, r)
		case other != nil:
			other.ServeHTTP(w, r)
		default:
			refuse(w, r, httpx.E(httpx.KindForbidden, "requests from web pages of other sites are refused here (CORS_ORIGINS)"))
		}
	})
}

// fromOtherSite reports whether a browser says a web page of another site
// (Sec-Fetch-Site: cross-site, or same-site: another host of the domain)
// sent r, from an origin not in CORS_ORIGINS. Origin alone cannot tell:
// under the pages' Referrer-Policy: no-referrer a browser sends "null" with
// their own forms' POSTs too. A browser that sends no Sec-Fetch-Site, and
// every program, is taken as the server's own.
func fromOtherSite(r *http.Request, origins []string) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return !slices.Contains(origins, r.Header.Get("Origin"))
	}
	return false
}

// PublicClientShares is how many addresses' shares of CLIENT_RATE_LIMIT a
// public client has over all addresses together, on the two routes where
// strangers naming it write rows: pushed requests (PAR) and device
// requests. From ten addresses on a stranger can spend it, and the client's
// own pushed and device requests are then refused until it refills: the
// price of a bound over all addresses. The token and revocation endpoints
// have none, so that such a flood cannot refuse the client's code
// exchanges and refreshes: there a request writes nothing until its grant
// or token checks out (the DPoP proof is spent only then), so strangers
// spend only their own addresses' shares. (A confidential client's budget
// is spent only by callers with its secret: a failed client authentication
// spends the caller's address's LOGIN_RATE_LIMIT, not the client's.)
const PublicClientShares = 10

// publicBudget is Deps.PublicClients, which counts only public clients:
// httpx.ByPublicClient keys any other caller "", which passes.
type publicBudget struct{ *ratelimit.Named }

func (b publicBudget) Allow(clientID string, now time.Time) (bool, time.Duration) {
	if clientID == "" {
		return true, 0
	}
	return b.Named.Allow(clientID, now)
}

// wellFormedQuery refuses, on the route's surface, a query string that
// url.ParseQuery refuses (a bad escape, a semicolon): url.Query, which the
// handlers read, would drop the bad pair and go on, so that state=x&state=%zz
// passed as one state. One byte form for every accepted value, on every route.
func wellFormedQuery(refuse func(http.ResponseWriter, *http.Request, error), h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" { // most requests have none: nothing to parse
			if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
				refuse(w, r, errMalformedQuery)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// handleLive serves GET /livez: 200 while the process serves HTTP, whatever
// the database does. It is for liveness probes, which should restart a
// wedged process, not one waiting for its database (/health says that).
func handleLive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
}

// HealthTimeout bounds /health's ping, so that a database that stops
// answering turns into a 503 within it rather than within the statement
// timeout (5 s): probes give up sooner than that (Kubernetes' default is
// 1 s; the manifests here allow 2 s).
const HealthTimeout = time.Second

// handleHealth serves GET /health: 200 when the database answers within
// HealthTimeout, else 503. It is public and unbudgeted, so a flood of it
// must not become a flood of round trips on the shared pool: one ping at a
// time, its answer reused for a second (requests that arrive during a ping
// wait for its answer, at most HealthTimeout).
func handleHealth(db *store.DB, version string, started time.Time, now func() time.Time) http.Handler {
	var mu sync.Mutex
	var pinged time.Time
	var pingErr error
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.NoStore(w)
		mu.Lock()
		if now().Sub(pinged) >= time.Second {
			// Not bound to r: a caller that hangs up must not make the
			// answer every other caller gets for a second a failure.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), HealthTimeout)
			pingErr = db.Ping(ctx)
			cancel()
			// Timed from the answer: those who waited for it take it, not
			// a ping each in turn (a stalled one takes HealthTimeout).
			pinged = now()
		}
		err := pingErr
		mu.Unlock()
		if err != nil {
			w.Header().Set("Retry-After", "1") // the next ping's, as every other 503 says when to retry
			httpx.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "database": "disconnected"})
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]string{
			"status": "healthy", "database": "connected", "version": version,
			"uptime": now().Sub(started).Round(time.Second).String(),
		})
	})
}
