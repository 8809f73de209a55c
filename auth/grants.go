package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Grant types (RFC 6749 §4; "password" is the first-party REST login).
const (
	grantPassword          = "password"
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
)

var supportedGrants = []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantDeviceCode}

// readForm reads an application/x-www-form-urlencoded POST body (RFC 6749
// §3.2: parameters in the body; the URL query is ignored). A parameter sent
// more than once, invalid UTF-8 or a malformed body is invalid_request.
func readForm(r *http.Request) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, httpx.E(httpx.KindInvalid, "Content-Type must be application/x-www-form-urlencoded")
	}
	body, err := httpx.ReadBody(r)
	if errors.Is(err, httpx.ErrTooLarge) {
		return nil, httpx.E(httpx.KindTooLarge, "request body too large")
	}
	if err != nil {
		return nil, httpx.E(httpx.KindInvalid, "could not read the request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, httpx.E(httpx.KindInvalid, "malformed form body")
	}
	return form, checkParams(form)
}

// checkParams refuses repeated parameters (RFC 6749 §3.1, §3.2; resource
// may repeat, RFC 8707 §2, for the handler to refuse) and invalid UTF-8.
// First it drops each parameter sent once without a value: §3.1 and §3.2
// say such a one "MUST be treated as if [it] were omitted", so that
// request_uri= or resource= ask for nothing, and an empty value and an
// absent one are one form. A repeated one stays, empty or not, and is
// refused: dropping an empty copy would make state=&state=x a second form
// of state=x.
func checkParams(form url.Values) error {
	maps.DeleteFunc(form, func(_ string, v []string) bool { return len(v) == 1 && v[0] == "" })
	for k, v := range form {
		if len(v) > 1 && k != "resource" {
			return httpx.E(httpx.KindInvalid, "parameter %q is repeated", httpx.Clip(k, 60))
		}
		if !utf8.ValidString(k) || slices.ContainsFunc(v, func(s string) bool { return !utf8.ValidString(s) }) {
			return httpx.E(httpx.KindInvalid, "parameters must be valid UTF-8")
		}
	}
	return nil
}

// handleToken serves POST /oauth2/token (RFC 6749 §3.2) for the client its
// caller check authenticated. A DPoP proof binds what it issues to the
// proof's key (RFC 9449 §5); a client registered --require-dpop must send
// one. The proof is checked here and spent by the grant once the grant has
// checked out, before anything is issued (spendProof): a request refused on
// its grant writes nothing, so strangers who name a public client with
// bogus grants write no rows in its name.
func handleToken(log *slog.Logger, db *store.DB, ts *Tokens, idTokens *token.Signer, m *Metrics, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		g := grant{log: log, db: db, ts: ts, idTokens: idTokens, c: p.client, form: p.form, now: now(), info: httpx.InfoFrom(r)}
		ts.setNonce(w, g.now)
		name := p.form.Get("grant_type")
		proof, err := ts.checkProof(r, "", httpx.KindInvalidDPoPProof, g.now)
		if err == nil && proof == nil && g.c.RequireDPoP {
			err = httpx.E(httpx.KindInvalidDPoPProof, "this client must send a DPoP proof (RFC 9449)")
		}
		var pair *Pair
		if err == nil {
			if proof != nil {
				g.proof, g.jkt = proof, proof.JKT
			}
			pair, err = g.run(r.Context(), name)
		}
		if err == nil {
			m.TokensIssued.With(name).Inc()
		}
		writeOAuth(w, r, log, http.StatusOK, pair, err)
	})
}

// writeOAuth answers an OAuth endpoint's work: err as RFC 6749 §5.2 JSON,
// else out as JSON with status (no body when out is nil), no-store either
// way (§5.1: the answers carry or concern credentials).
func writeOAuth(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, out any, err error) {
	if err != nil {
		httpx.WriteOAuthError(w, r, log, err)
		return
	}
	httpx.NoStore(w)
	if out == nil {
		w.WriteHeader(status)
		return
	}
	httpx.JSON(w, status, out)
}

// grant is one token request of an authenticated client.
type grant struct {
	log      *slog.Logger
	db       *store.DB
	ts       *Tokens
	idTokens *token.Signer // nil: no OpenID Connect
	c        *store.Client
	form     url.Values
	now      time.Time
	info     *httpx.Info  // the access log's fields, and the client IP for warnings
	jkt      string       // the DPoP key the request proved, or ""
	proof    *token.Proof // the request's DPoP proof, checked, not yet spent; or nil
}

// spendProof spends the request's DPoP proof, if any, once the grant has
// checked out and before anything is issued. A replayed proof is refused
// and nothing is spent; a grant refused after it (a concurrent redemption
// won) leaves the proof spent, with nothing issued. A proof refused with a
// bad grant was never accepted, so it is not stored: its client may send
// it again, and it is still accepted at most once (RFC 9449 §11.1).
func (g *grant) spendProof(ctx context.Context) error {
	return spendProof(ctx, g.db, g.proof, httpx.KindInvalidDPoPProof, g.now)
}

func (g *grant) run(ctx context.Context, name string) (*Pair, error) {
	switch {
	case name == "":
		return nil, httpx.E(httpx.KindInvalid, "grant_type is required")
	case !slices.Contains(supportedGrants, name):
		return nil, httpx.E(httpx.KindUnsupportedGrantType, "supported: authorization_code, refresh_token, client_credentials, "+grantDeviceCode)
	case name == grantClientCredentials && g.c.Public():
		return nil, httpx.E(httpx.KindInvalidClient, "client authentication failed") // a public client has no credentials to show
	case !slices.Contains(g.c.GrantTypes, name):
		return nil, httpx.E(httpx.KindUnauthorizedClient, "the client may not use this grant type")
	case name == grantAuthorizationCode:
		return g.code(ctx)
	case name == grantRefreshToken:
		return g.refresh(ctx)
	case name == grantDeviceCode:
		return g.device(ctx)
	}
	return g.clientCredentials(ctx)
}

// clientCredentials is RFC 6749 §4.4: an access token for the client itself
// (sub is the client_id, RFC 9068 §2.2), no refresh token.
func (g *grant) clientCredentials(ctx context.Context) (*Pair, error) {
	scope, err := grantScope(g.form.Get("scope"), g.c.Scopes)
	if err != nil {
		return nil, err
	}
	if hasScope(scope, scopeOpenID) {
		if g.form.Get("scope") != "" {
			return nil, httpx.E(httpx.KindInvalidScope, "openid needs a user: use the authorization code flow")
		}
		scope = strings.Join(slices.DeleteFunc(strings.Fields(scope), func(s string) bool { return s == scopeOpenID }), " ")
	}
	aud, err := g.ts.audience("", g.form["resource"], true)
	if err != nil {
		return nil, err
	}
	if err := g.spendProof(ctx); err != nil {
		return nil, err
	}
	access, _, err := g.ts.Access(g.c.ID, g.c.ID, Mint{Scope: scope, Audience: aud, JKT: g.jkt, SecretTag: g.c.SecretTag}, g.now)
	if err != nil {
		return nil, err
	}
	return g.ts.pair(access, "", scope, g.jkt), nil
}

// grantScope resolves a requested scope against the client's registered
// scopes: empty means all of them; anything unregistered or malformed is
// invalid_scope.
func grantScope(requested string, registered []string) (string, error) {
	if requested == "" {
		return strings.Join(registered, " "), nil
	}
	want, ok := parseScope(requested)
	if !ok {
		return "", httpx.E(httpx.KindInvalidScope, "malformed scope")
	}
	for _, s := range want {
		if !slices.Contains(registered, s) {
			return "", httpx.E(httpx.KindInvalidScope, "scope %q is not registered for this client", httpx.Clip(s, 60))
		}
	}
	return strings.Join(want, " "), nil
}

// refresh is RFC 6749 §6 with rotation (RFC 9700 §4.14.2).
func (g *grant) refresh(ctx context.Context) (*Pair, error) {
	rt := g.form.Get("refresh_token")
	if rt == "" {
		return nil, httpx.E(httpx.KindInvalid, "refresh_token is required")
	}
	pair, old, err := g.ts.Rotate(ctx, g.db, rt, g.c.ID, Narrow{Scope: g.form.Get("scope"), Resource: g.form["resource"], JKT: g.jkt, SecretTag: g.c.SecretTag, Bind: g.c.Public(), Proof: g.proof}, g.now)
	if err != nil {
		return nil, refreshFailure(ctx, g.log, g.info, err, true)
	}
	g.info.UserID = store.FormatID(old.Family.UserID)
	return pair, nil
}

// verifierOK checks a PKCE code_verifier against an S256 challenge (RFC 7636
// §4.6), in constant time.
func verifierOK(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 §4.1). Trimming
// the set from a string leaves nothing exactly when it holds no other byte.
func validVerifier(v string) bool {
	return len(v) >= 43 && len(v) <= 128 && strings.Trim(v, token.Unreserved) == ""
}

// validChallenge: an S256 challenge is base64url of 32 bytes: 43 characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(c)
	return err == nil
}

// codeTTL is how long an authorization code lives (RFC 6749 §4.1.2: at most
// ten minutes; API.md: at most 60 seconds).
const codeTTL = 60 * time.Second

// code is RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5). Every way a code can
// be wrong (unknown, expired, used, another client's, another
// redirect_uri, wrong verifier) answers the same invalid_grant; the reason
// goes to the log. A code presented again by its client with its
// redirect_uri and verifier ends the session it started.
func (g *grant) code(ctx context.Context) (*Pair, error) {
	code, verifier := g.form.Get("code"), g.form.Get("code_verifier")
	if code == "" {
		return nil, httpx.E(httpx.KindInvalid, "code is required")
	}
	if verifier == "" {
		return nil, httpx.E(httpx.KindInvalid, "code_verifier is required (PKCE)")
	}
	bad := func(reason string) error {
		g.log.WarnContext(ctx, "authorization code refused", "reason", reason, "client_id", g.c.ID, "client_ip", g.info.ClientIP.String(), "request_id", g.info.ID)
		return httpx.E(httpx.KindInvalidGrant, "the authorization code is invalid, expired or was already used")
	}
	if len(code) != token.OpaqueLen {
		return nil, bad("malformed")
	}
	hash := token.Hash(code)
	ac, err := g.db.CodeByHash(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, bad("unknown")
	case err != nil:
		return nil, err
	case ac.ClientID != g.c.ID:
		return nil, bad("another client's code")
	case g.form.Get("redirect_uri") != ac.RedirectURI:
		return nil, bad("redirect_uri differs")
	case ac.CodeChallenge == "" || !validVerifier(verifier) || !verifierOK(verifier, ac.CodeChallenge):
		return nil, bad("PKCE verification failed")
	case ac.DPoPJKT != "" && ac.DPoPJKT != g.jkt: // RFC 9449 §10
		// Before the replay check: a bound code replayed without its key
		// shows no theft (it could never be exchanged without it) and ends
		// nothing, as a bound refresh token (Tokens.Rotate).
		return nil, bad("not proven with the DPoP key of dpop_jkt")
	case ac.Used:
		// A replay of the grant (RFC 6749 §4.1.2) only with its verifier: a
		// code alone, which browser history, a redirect host's logs or
		// another app may hold, ends nothing; the verifier is the client's
		// own, or an interceptor's who had the code exchanged first. Also
		// after the code's expiry: the verifier is the signal. The proof
		// first: a replay of the whole exchange (its proof too) is refused
		// as one and ends nothing, as for a refresh.
		if err := g.spendProof(ctx); err != nil {
			return nil, err
		}
		if err := revokeIssued(ctx, g.db, g.ts, ac, g.now); err != nil {
			return nil, err
		}
		return nil, bad("replayed: the session it started is ended")
	case !g.now.Before(ac.ExpiresAt):
		return nil, bad("expired")
	}
	return g.session(ctx, ac.UserID, ac, true, bad, func(is store.Issued) error {
		ended, err := g.db.ExchangeCode(ctx, hash, is, g.ts.AccessTTL, g.now)
		if err == nil {
			g.ts.Ended(ended) // the user's oldest sessions, past the cap of live ones
		}
		if !errors.Is(err, store.ErrReused) {
			return err
		}
		// A concurrent exchange won: this is a replay too.
		if ac, err := g.db.CodeByHash(ctx, hash); err == nil {
			if err := revokeIssued(ctx, g.db, g.ts, ac, g.now); err != nil {
				return err
			}
		}
		return bad("replayed concurrently")
	})
}

// session ends a user's single-use grant (a code, or an approved device
// request: its scope, sign-in time, nonce, sid and resource) once the
// grant's own checks have passed. The user must still be there and active
// (else bad: the grant's invalid_grant), the resource one the user
// consented to; then the DPoP proof is spent, so that a request refused
// by any of these may be sent again with its proof. It mints the token pair, with an
// ID token for openid, and the session it starts, which spend stores with
// the grant's one conditional write (of concurrent redemptions, one wins).
// A grant for no resource takes the one the token request names only if
// widen (a code: RFC 8707 §2.2); a device request's tokens are for what its
// consent page named, and nothing else (RFC 8628 §5.4: the page is always
// asked, whatever consent memory or first-party status say).
// Every grant to a user is a session (a family, with or without refresh
// tokens), which its access tokens name in sid, so that ending it (a
// replay, logout, revocation) reaches them.
func (g *grant) session(ctx context.Context, userID int64, granted *store.Code, widen bool, bad func(reason string) error, spend func(store.Issued) error) (*Pair, error) {
	u, err := g.db.UserByID(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
		return nil, bad("user gone or inactive")
	}
	if err != nil {
		return nil, err
	}
	aud, err := g.ts.audience(granted.Resource, g.form["resource"], widen)
	if err != nil {
		return nil, err
	}
	// A grant for no resource takes the one the token request names only
	// where the user consented to the client, as the authorization
	// endpoint asks: consent at the ISSUER is not consent at an API.
	if aud != granted.Resource {
		need, err := needsConsent(ctx, g.db, userID, &authRequest{client: g.c, scope: granted.Scope, resource: aud})
		if err != nil {
			return nil, err
		}
		if need {
			return nil, httpx.E(httpx.KindInvalidTarget, "the user has not consented to the client at the resource")
		}
	}
	if err := g.spendProof(ctx); err != nil {
		return nil, err
	}
	fam := &store.Family{ID: token.NewID(), UserID: u.ID, ClientID: g.c.ID, Scope: granted.Scope, AuthTime: granted.AuthTime, Resource: aud, SID: granted.SID}
	if g.c.Public() {
		fam.DPoPJKT = g.jkt // a public client's refresh tokens are bound to the key (RFC 9449 §5)
	}
	// The session ends REFRESH_TOKEN_MAX_DAYS after its login, its first
	// access token no later (as a refresh's, finishRotation).
	ttl := min(g.ts.AccessTTL, store.SessionStart(granted.AuthTime, g.now).Add(g.ts.MaxAge).Sub(g.now))
	if ttl < time.Second {
		return nil, bad("the sign-in is older than the longest session")
	}
	access, claims, err := g.ts.Access(store.FormatID(u.ID), g.c.ID, Mint{Scope: granted.Scope, SessionID: fam.ID, Audience: aud, JKT: g.jkt, AuthTime: granted.AuthTime, SecretTag: g.c.SecretTag, TTL: ttl}, g.now)
	if err != nil {
		return nil, err
	}
	is := store.Issued{Family: fam, AccessJTI: claims.ID, AccessExp: claims.Expiry}
	refresh := ""
	if slices.Contains(g.c.GrantTypes, grantRefreshToken) {
		refresh = token.NewOpaque()
		is.RefreshHash, is.RefreshExp = token.Hash(refresh), g.ts.refreshExpiry(granted.AuthTime, g.now)
	}
	pair := g.ts.pair(access, refresh, granted.Scope, g.jkt)
	pair.ExpiresIn = int64(ttl / time.Second)
	if hasScope(granted.Scope, scopeOpenID) && g.idTokens != nil {
		if pair.IDToken, err = mintIDToken(g.idTokens, g.ts, g.c.ID, u, granted, access, g.now); err != nil {
			return nil, err
		}
	}
	if err := spend(is); errors.Is(err, store.ErrNotFound) { // deactivated or deleted since it was read
		return nil, bad("user gone or inactive")
	} else if err != nil {
		return nil, err
	}
	g.info.UserID = store.FormatID(u.ID)
	return pair, nil
}

// revokeIssued ends the session a code started, refresh and access tokens
// alike (RFC 6749 §4.1.2: a code used twice should revoke its tokens).
func revokeIssued(ctx context.Context, db *store.DB, ts *Tokens, ac *store.Code, now time.Time) error {
	if ac.FamilyID != "" {
		return ts.endSessionAudited(ctx, db, ac.UserID, ac.FamilyID, "grant replay", now)
	}
	if ac.AccessJTI != "" { // exchanged before every grant started a session
		return ts.RevokeAccess(ctx, db, &token.Claims{ID: ac.AccessJTI, Expiry: ac.AccessExp})
	}
	return nil
}

func hasScope(scope, s string) bool { return slices.Contains(strings.Fields(scope), s) }
