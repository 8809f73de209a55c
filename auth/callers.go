package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/token"
)

// caller is who may call a route. Its check (check) runs before the
// route's handler and leaves what it established in the request's context
// (principalOf); a request that fails it never reaches the handler.
type caller int

const (
	anyone             caller = iota // nothing checked here: the endpoint takes its own credential (a login, a refresh token)
	person                           // a browser at the pages: each form's CSRF token is checked by its handler
	anyClient                        // client authentication as at the token endpoint; a public client by its client_id
	confidentialClient               // client authentication with a secret (RFC 6749 §2.3.1)
	tokenHolder                      // a valid access token of any client (RFC 6750); the handler checks its scope
	user                             // a token of the REST login or a --first-party client, for a live, active user
	admin                            // user, whose role, read from the database (not the token), is admin
	registrar                        // dynamic registration (RFC 7591): an initial access token, or anyone in open mode
	registrant                       // a registered client by its registration access token (RFC 7592)
)

// principal is what a caller's check established.
type principal struct {
	claims *token.Claims // tokenHolder, user, admin
	user   *store.User   // user, admin
	client *store.Client // anyClient, confidentialClient
	form   url.Values    // anyClient, confidentialClient: the request's form, read once

	initialHash string // registrar in token mode: the initial access token's hash, for the handler to spend
}

type principalKey struct{}

// principalOf returns what the route's caller check established (empty for
// anyone and person).
func principalOf(r *http.Request) *principal {
	if p, ok := r.Context().Value(principalKey{}).(*principal); ok {
		return p
	}
	return &principal{}
}

func withPrincipal(r *http.Request, p *principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// check returns next behind the check of caller c.
func check(c caller, d Deps, next http.Handler) http.Handler {
	switch c {
	case anyClient, confidentialClient:
		return refuseOtherSites(d.Log, d.Tokens.Issuer, d.CORSOrigins, requireClient(d.Log, d.Clients, d.Creds, d.HTTP, c == anyClient, d.Now, next))
	case tokenHolder:
		return requireToken(d.Log, d.DB, d.Tokens, d.Clients, d.Now, next)
	case user, admin:
		return requireUser(d.Log, d.DB, d.Tokens, d.Clients, c == admin, d.Now, next)
	case registrar:
		return requireRegistrar(d.Log, d.DB, d.Creds, d.HTTP, d.DynamicRegistration == RegistrationOpen, d.Now, next)
	case registrant: // its client is in principal.client
		return requireRegistrant(d.Log, d.DB, d.Creds, d.HTTP, d.Now, next)
	}
	return next
}

// refuseOtherSites answers a request a web page of another site sent (its
// Origin neither the ISSUER nor one of CORS_ORIGINS) before any credential
// is read. Browsers send Origin with every cross-origin POST, a no-cors
// form-encoded one included, which needs no preflight: any page a person
// visited could make their browser fail client authentication five times,
// and the fail2ban jails ban the person's address (and everyone's behind
// their NAT). The page could not have read the answer anyway. A web page's
// origin is http, https or "null" (a sandboxed frame); another scheme
// (chrome-extension://, moz-extension://, an app's) is no web page's, and a
// browser extension with host permissions reads the answer without CORS.
func refuseOtherSites(log *slog.Logger, issuer string, origins []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := r.Header.Get("Origin")
		web := o == "null" || strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")
		// Two Origin headers: a proxy in front may read the other (no
		// browser sends two).
		if len(r.Header.Values("Origin")) > 1 || web && o != issuer && !slices.Contains(origins, o) {
			httpx.WriteOAuthError(w, r, log, httpx.E(httpx.KindInvalid, "requests from web pages of this origin are refused (CORS_ORIGINS)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireClient authenticates the client of an OAuth request (RFC 6749
// §2.3.1): a confidential client by its secret, a public one by its
// client_id where public clients are allowed. Failures are OAuth errors;
// each is logged with the client IP (fail2ban) but never the secret, and
// spends a token of the IP's login budget (creds), past which failures
// answer 429, while a client that authenticates spends nothing there and
// is served even from an address over it (its neighbours behind one NAT
// must not lock it out). The secret is checked first either way, so this
// does not slow guessing: 256 random bits do (token.NewOpaque); the
// budget shapes the answers, and fail2ban, reading the log, bans.
func requireClient(log *slog.Logger, cs *Clients, creds *ratelimit.Limiter, m *httpx.Metrics, allowPublic bool, now func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, err := readForm(r)
		if err != nil {
			httpx.WriteOAuthError(w, r, log, err)
			return
		}
		c, err := authenticateClient(r.Context(), cs, r, form, allowPublic, now())
		if errors.Is(err, errClientAuth) || errors.Is(err, errClientAuthMany) {
			info := httpx.InfoFrom(r)
			log.WarnContext(r.Context(), "client authentication failed", "client_ip", info.ClientIP.String(), "request_id", info.ID)
			switch ok, wait := creds.Allow(info.ClientIP, now()); {
			case !ok:
				m.RateLimited.Inc()
				err = httpx.TooMany(wait)
			case errors.Is(err, errClientAuthMany): // RFC 6749 §2.3: one method per request
				err = httpx.E(httpx.KindInvalid, "use one client authentication method")
			default:
				err = httpx.E(httpx.KindInvalidClient, "client authentication failed")
			}
		}
		if err != nil {
			httpx.WriteOAuthError(w, r, log, err)
			return
		}
		info := httpx.InfoFrom(r)
		info.ClientID, info.Public = c.ID, c.Public()
		next.ServeHTTP(w, withPrincipal(r, &principal{client: c, form: form}))
	})
}

// accessToken returns the token of an "Authorization: Bearer" (RFC 6750
// §2.1) or "Authorization: DPoP" (RFC 9449 §7.1) header, and whether it was
// DPoP; errNoToken for anything else. Schemes are case-insensitive.
// Two Authorization headers are errManyTokens (RFC 6750 §3.1: a repeated
// parameter is invalid_request): a proxy in front may read the other.
// The token is what follows the scheme's spaces (1*SP, RFC 7235 §2.1),
// as sent: net/http has taken SP and HTAB from around the value (RFC 9110
// §5.5); strings.TrimSpace also took U+00A0, U+2028 and \v, so that a
// token had many spellings. A token68 holds no space.
func accessToken(r *http.Request) (tok string, dpop bool, err error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return "", false, errManyTokens
	}
	scheme, tok := credentials(r.Header.Get("Authorization"))
	dpop = strings.EqualFold(scheme, "DPoP")
	if tok == "" || (!dpop && !strings.EqualFold(scheme, "Bearer")) {
		return "", false, errNoToken
	}
	return tok, dpop, nil
}

// credentials splits an Authorization value into its scheme and what
// follows the spaces after it (RFC 7235 §2.1: auth-scheme 1*SP token68).
func credentials(h string) (scheme, rest string) {
	scheme, rest, _ = strings.Cut(h, " ")
	return scheme, strings.TrimLeft(rest, " ")
}

// challenge is the WWW-Authenticate of an error about an access token
// presented under the scheme dpop says: DPoP's (RFC 9449 §7.1) or Bearer's
// (RFC 6750 §3), with the error's attributes.
func challenge(dpop bool, attrs string) string {
	if dpop {
		return `DPoP algs="` + dpopAlgs + `", ` + attrs
	}
	return `Bearer realm="oauth2-api", ` + attrs
}

const invalidToken = `error="invalid_token", error_description="the access token is invalid, expired or revoked"`

var (
	errNoToken      = &httpx.Error{Kind: httpx.KindUnauthorized, Message: "a bearer token is required", Authenticate: `Bearer realm="oauth2-api"`}
	errManyTokens   = &httpx.Error{Kind: httpx.KindInvalid, Message: "one Authorization header, not several", Authenticate: challenge(false, `error="invalid_request"`)}
	errBadToken     = &httpx.Error{Kind: httpx.KindInvalidToken, Message: "the access token is invalid, expired or revoked", Authenticate: challenge(false, invalidToken)}
	errBadDPoPToken = &httpx.Error{Kind: httpx.KindInvalidToken, Message: errBadToken.Message, Authenticate: challenge(true, invalidToken)}
	// A bound token sent as Bearer is told to come as DPoP (RFC 9449 §7.1).
	errBoundToken = &httpx.Error{Kind: httpx.KindInvalidToken, Message: "the access token is DPoP-bound: send it as DPoP with a proof",
		Authenticate: challenge(true, `error="invalid_token", error_description="the access token is DPoP-bound"`)}
)

// verifyAccess checks the request's access token. A DPoP-bound one is
// accepted only as "DPoP" with a proof of its key for this request (RFC
// 9449 §7): presented as a bearer token, as a stolen one would be, it is
// refused; an unbound one is refused under the DPoP scheme.
func verifyAccess(r *http.Request, db *store.DB, ts *Tokens, now time.Time) (*token.Claims, error) {
	raw, dpop, err := accessToken(r)
	if err != nil {
		return nil, err
	}
	c, err := ts.Verify(raw, now)
	switch {
	case errors.Is(err, ErrStale):
		return nil, err
	case (err != nil || c.Cnf == nil) && dpop:
		return nil, errBadDPoPToken
	case err != nil:
		return nil, errBadToken
	case c.Cnf != nil && !dpop:
		return nil, errBoundToken
	case dpop:
		p, err := ts.proofOf(r, db, raw, now)
		if err == nil && (p == nil || p.JKT != c.Cnf.JKT) {
			err = dpopError(httpx.KindDPoPProofRefused, "the DPoP proof is missing or made with another key")
		}
		if err != nil {
			return nil, err
		}
	}
	info := httpx.InfoFrom(r)
	info.ClientID = c.ClientID
	if c.ClientID != c.Subject {
		info.UserID = c.Subject
	}
	return c, nil
}

// requireToken admits any valid access token (RFC 6750); its errors are
// RFC 6750 §3's. It notes whether the token's client is public (the REST
// login's is), for the per-client budget after it (httpx.ByClient): anyone
// who signs in to a SPA or a CLI holds tokens of its client, so such a
// client's budget is per address, and one user spends only their own
// address's share of it, not every user's. A client gone meanwhile (on
// another instance, before the revocation poll) is an invalid token.
func requireToken(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := now()
		c, err := verifyAccess(r, db, ts, t)
		var client *store.Client
		if err == nil && c.ClientID != RESTClientID {
			client, err = cs.Get(r.Context(), c.ClientID, t)
			if errors.Is(err, store.ErrNotFound) {
				err = badToken(c)
			}
		}
		if err != nil {
			httpx.WriteOAuthError(w, r, log, err)
			return
		}
		httpx.InfoFrom(r).Public = client == nil || client.Public() // nil: the REST login's
		next.ServeHTTP(w, withPrincipal(r, &principal{claims: c}))
	})
}

// requireUser admits the REST API's callers: a token of the REST login or
// of a client registered first-party (a token a user granted a third-party
// client cannot manage the account), whose user still exists and is
// active; with adminOnly, only an admin (by the role in the database).
func requireUser(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, adminOnly bool, now func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, c, err := userOf(r, db, ts, cs, now())
		if err == nil && adminOnly && u.Role != store.RoleAdmin {
			err = errAdminRequired
		}
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		next.ServeHTTP(w, withPrincipal(r, &principal{claims: c, user: u}))
	})
}

var errAdminRequired = httpx.E(httpx.KindForbidden, "admin role required")

func userOf(r *http.Request, db *store.DB, ts *Tokens, cs *Clients, now time.Time) (*store.User, *token.Claims, error) {
	c, err := verifyAccess(r, db, ts, now)
	if err != nil {
		return nil, nil, err
	}
	if err := firstParty(r.Context(), cs, c, now); err != nil {
		return nil, nil, err
	}
	u, err := tokenUser(r.Context(), db, c)
	return u, c, err
}

// badToken refuses c, a token verifyAccess admitted, with the challenge of
// the scheme it came under: verifyAccess admits a DPoP-bound token only as
// DPoP and an unbound one only as Bearer, so its cnf says which.
func badToken(c *token.Claims) *httpx.Error {
	if c.Cnf != nil {
		return errBadDPoPToken
	}
	return errBadToken
}

// tokenUser returns the user an access token names in sub, or badToken
// for a client's own token (no user) and for a user gone or deactivated.
func tokenUser(ctx context.Context, db *store.DB, c *token.Claims) (*store.User, error) {
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil {
		return nil, badToken(c)
	}
	u, err := db.UserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
		return nil, badToken(c)
	}
	return u, err
}

// firstParty returns badToken unless tokens of c's client may call
// /api/v1: those of the REST login and of clients registered first-party
// (API.md).
func firstParty(ctx context.Context, cs *Clients, c *token.Claims, now time.Time) error {
	if c.ClientID == RESTClientID {
		return nil
	}
	client, err := cs.Get(ctx, c.ClientID, now)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !client.FirstParty) {
		return badToken(c)
	}
	return err
}
