package auth

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Deps is everything the handlers may use. AddRoutes hands each handler only
// the parts it needs, so a handler's signature is its authority.
type Deps struct {
	Log       *slog.Logger
	DB        *store.DB
	Tokens    *Tokens
	Passwords *Passwords
	Throttle  Throttle
	Metrics   *Metrics
	HTTP      *httpx.Metrics
	Registry  *metrics.Registry
	API       *ratelimit.Limiter // RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW, per client IP
	Creds     *ratelimit.Limiter // LOGIN_RATE_LIMIT / LOGIN_RATE_BURST, per client IP
	Now       func() time.Time
	Version   string
	Started   time.Time

	Clients    *Clients
	Browser    *Browser
	IDTokens   *token.Signer // nil without SIGNING_KEY: no OpenID Connect
	PublicKeys []*token.Key  // published at /.well-known/jwks.json

	EnableRegistration bool
	Reset              *Reset           // nil unless ENABLE_PASSWORD_RESET: the routes then answer 404
	Release            bool             // APP_MODE=release: HSTS, Secure cookies
	CORSOrigins        []string         // CORS_ORIGINS
	IPs                httpx.IPResolver // TRUSTED_PROXIES
}

// NewHandler returns the whole server: the routes of AddRoutes wrapped, from
// the outside in, in Observe (request id, access log, metrics), Recover,
// SecureHeaders, CORS and LimitBody.
func NewHandler(d Deps) http.Handler {
	mux := http.NewServeMux()
	AddRoutes(mux, d)
	var h http.Handler = mux
	h = httpx.LimitBody(h)
	h = httpx.CORS(d.CORSOrigins, h)
	h = httpx.SecureHeaders(d.Release, h)
	h = httpx.Recover(d.Log, h)
	return httpx.Observe(d.Log, d.HTTP, d.IPs, d.Now, h)
}

// AddRoutes registers every endpoint on mux. This is the list of every way
// into the server.
func AddRoutes(mux *http.ServeMux, d Deps) {
	log, db, ts, now := d.Log, d.DB, d.Tokens, d.Now
	api := func(h http.Handler) http.Handler { return httpx.RateLimit(d.API, d.HTTP, now, h) }
	creds := func(h http.Handler) http.Handler { return httpx.RateLimit(d.Creds, d.HTTP, now, h) }

	// Operations.
	mux.Handle("GET /health", handleHealth(db, d.Version, d.Started, now))
	mux.Handle("GET /livez", handleLive())
	mux.Handle("GET /metrics", d.Registry.Handler())

	// First-party REST API (API.md).
	mux.Handle("POST /api/v1/auth/register", creds(handleRegister(log, db, d.Passwords, d.EnableRegistration, now)))
	mux.Handle("POST /api/v1/auth/login", creds(handleLogin(log, db, ts, d.Passwords, d.Throttle, d.Metrics, now)))
	mux.Handle("POST /api/v1/auth/refresh", api(handleRefresh(log, db, ts, d.Metrics, now)))
	mux.Handle("POST /api/v1/auth/logout", api(handleLogout(log, db, ts, d.Clients, now)))
	mux.Handle("GET /api/v1/profile", api(handleProfileGet(log, db, ts, d.Clients, now)))
	mux.Handle("PATCH /api/v1/profile", api(handleProfilePatch(log, db, ts, d.Clients, now)))
	mux.Handle("POST /api/v1/profile/password", creds(handlePasswordChange(log, db, ts, d.Clients, d.Passwords, d.Throttle, d.Metrics, now)))
	if d.Reset != nil {
		mux.Handle("POST /api/v1/auth/password/forgot", creds(handleForgot(log, db, d.Reset, now)))
		mux.Handle("POST /api/v1/auth/password/reset", creds(handleReset(log, db, d.Passwords, ts, now)))
		mux.Handle("GET /password/reset", api(handleResetPage(log, db, d.Passwords, ts, d.Browser, now)))
		mux.Handle("POST /password/reset", creds(handleResetPage(log, db, d.Passwords, ts, d.Browser, now)))
	}
	mux.Handle("GET /api/v1/users", api(handleUserList(log, db, ts, d.Clients, now)))
	mux.Handle("PATCH /api/v1/users/{id}", api(handleUserPatch(log, db, ts, d.Clients, now)))
	mux.Handle("DELETE /api/v1/users/{id}", api(handleUserDelete(log, db, ts, d.Clients, now)))

	// Admin client management (the CLI's client commands over REST).
	mux.Handle("GET /api/v1/clients", api(handleClientList(log, db, ts, d.Clients, now)))
	mux.Handle("POST /api/v1/clients", api(handleClientCreate(log, db, ts, d.Clients, d.Release, now)))
	mux.Handle("DELETE /api/v1/clients/{id}", api(handleClientDelete(log, db, ts, d.Clients, now)))
	mux.Handle("POST /api/v1/clients/{id}/secret", api(handleClientRotate(log, db, ts, d.Clients, now)))

	// OAuth 2.0 and OpenID Connect.
	o := &OAuth{Log: log, DB: db, Tokens: ts, Clients: d.Clients, Metrics: d.Metrics, Now: now, IDTokens: d.IDTokens}
	mux.Handle("GET /.well-known/oauth-authorization-server", handleMetadata(o, d.IDTokens != nil))
	if d.IDTokens != nil {
		mux.Handle("GET /.well-known/openid-configuration", handleMetadata(o, true))
	}
	mux.Handle("GET /.well-known/jwks.json", handleJWKS(d.PublicKeys))
	mux.Handle("GET /oauth2/authorize", api(handleAuthorize(o, d.Browser, d.Passwords, d.Throttle)))
	mux.Handle("POST /oauth2/authorize", creds(handleAuthorize(o, d.Browser, d.Passwords, d.Throttle)))
	mux.Handle("POST /oauth2/token", creds(handleToken(o)))
	mux.Handle("POST /oauth2/revoke", api(handleRevoke(o)))
	mux.Handle("POST /oauth2/introspect", api(handleIntrospect(o)))
	mux.Handle("GET /oauth2/userinfo", api(handleUserinfo(o)))
	mux.Handle("POST /oauth2/userinfo", api(handleUserinfo(o)))
	mux.Handle("GET /oauth2/logout", api(handleEndSession(o, d.Browser)))
	mux.Handle("POST /oauth2/logout", api(handleEndSession(o, d.Browser)))
	mux.Handle("GET /oauth2/static/style.css", handleStatic(d.Browser))

	// Anything else under /api/ is a JSON 404, not the mux's text one.
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, log, httpx.Errorf(http.StatusNotFound, "not_found", "no such endpoint"))
	}))
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
// HealthTimeout, else 503.
func handleHealth(db *store.DB, version string, started time.Time, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.NoStore(w)
		ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			httpx.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "database": "disconnected"})
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]string{
			"status": "healthy", "database": "connected", "version": version,
			"uptime": now().Sub(started).Round(time.Second).String(),
		})
	})
}
