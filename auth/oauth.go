package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
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

// OAuth error codes (RFC 6749 §5.2, §4.1.2.1; RFC 7009 §2.2.1; OIDC Core §3.1.2.6).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errInvalidScope            = "invalid_scope"
	errAccessDenied            = "access_denied"
	errUnsupportedResponseType = "unsupported_response_type"
	errServerError             = "server_error"
	errTemporarilyUnavailable  = "temporarily_unavailable"
	errLoginRequired           = "login_required"
	errConsentRequired         = "consent_required"
)

// oauthError is an error a client may see (RFC 6749 §5.2). Description
// never holds an internal error's text.
type oauthError struct {
	Code        string
	Description string
	Status      int
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func oauthErr(code, format string, args ...any) *oauthError {
	status := http.StatusBadRequest
	if code == errInvalidClient {
		status = http.StatusUnauthorized
	}
	return &oauthError{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

// writeOAuthError writes err as RFC 6749 §5.2 JSON with no-store. An
// invalid_client answer carries a Basic challenge (RFC 6749 §5.2: 401 with
// WWW-Authenticate). Database trouble is 503 temporarily_unavailable; any
// other error is logged and answered server_error with no detail.
func writeOAuthError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrBusy) {
			log.WarnContext(r.Context(), "service unavailable", "request_id", httpx.InfoFrom(r).ID, "err", err)
			oe = &oauthError{Code: errTemporarilyUnavailable, Description: "the service is temporarily unavailable; retry later", Status: http.StatusServiceUnavailable}
			w.Header().Set("Retry-After", "5")
		} else {
			log.ErrorContext(r.Context(), "internal error", "request_id", httpx.InfoFrom(r).ID, "err", err)
			oe = &oauthError{Code: errServerError, Description: "internal error", Status: http.StatusInternalServerError}
		}
	}
	if oe.Code == errInvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2-api"`)
	}
	httpx.NoStore(w)
	body := map[string]string{"error": oe.Code}
	if oe.Description != "" {
		body["error_description"] = oe.Description
	}
	httpx.JSON(w, oe.Status, body)
}

// readForm reads an application/x-www-form-urlencoded POST body (RFC 6749
// §3.2: parameters in the body; the URL query is ignored). A parameter sent
// more than once, invalid UTF-8 or a malformed body is invalid_request.
func readForm(r *http.Request) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauthErr(errInvalidRequest, "Content-Type must be application/x-www-form-urlencoded")
	}
	body, err := httpx.ReadBody(r)
	if errors.Is(err, httpx.ErrTooLarge) {
		return nil, &oauthError{Code: errInvalidRequest, Description: "request body too large", Status: http.StatusRequestEntityTooLarge}
	}
	if err != nil {
		return nil, oauthErr(errInvalidRequest, "could not read the request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthErr(errInvalidRequest, "malformed form body")
	}
	if err := checkParams(form); err != nil {
		return nil, err
	}
	return form, nil
}

// checkParams refuses repeated parameters (RFC 6749 §3.1, §3.2) and invalid
// UTF-8.
func checkParams(form url.Values) error {
	for k, v := range form {
		if len(v) > 1 {
			return oauthErr(errInvalidRequest, "parameter %q is repeated", clipText(k))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v[0]) {
			return oauthErr(errInvalidRequest, "parameters must be valid UTF-8")
		}
	}
	return nil
}

// OAuth holds what the OAuth endpoints share.
type OAuth struct {
	Log     *slog.Logger
	DB      *store.DB
	Tokens  *Tokens
	Clients *Clients
	Metrics *Metrics
	Now     func() time.Time
	// IDTokens signs OpenID Connect ID tokens; nil when no SIGNING_KEY is set,
	// and then the openid scope is refused.
	IDTokens *token.Signer
}

// handleToken serves POST /oauth2/token (RFC 6749 §3.2).
func handleToken(o *OAuth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, grant, err := exchange(r.Context(), o, r)
		if err != nil {
			if errors.Is(err, errClientAuth) || errors.Is(err, errClientAuthMany) {
				info := httpx.InfoFrom(r)
				o.Log.WarnContext(r.Context(), "client authentication failed", "client_ip", info.ClientIP.String(), "request_id", info.ID)
			}
			writeOAuthError(w, r, o.Log, err)
			return
		}
		o.Metrics.TokensIssued.With(grant).Inc()
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, resp)
	})
}

// exchange runs one token request and returns the response and grant type.
func exchange(ctx context.Context, o *OAuth, r *http.Request) (*Pair, string, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, "", err
	}
	now := o.Now()
	grant := form.Get("grant_type")
	if grant == "" {
		return nil, "", oauthErr(errInvalidRequest, "grant_type is required")
	}
	if !slices.Contains(supportedGrants, grant) {
		return nil, "", oauthErr(errUnsupportedGrantType, "supported: authorization_code, refresh_token, client_credentials")
	}
	c, _, err := authenticateClient(ctx, o.Clients, r, form, grant != grantClientCredentials, now)
	if errors.Is(err, errClientAuthMany) {
		return nil, "", fmt.Errorf("%w: %w", oauthErr(errInvalidRequest, "use one client authentication method"), err)
	}
	if errors.Is(err, errClientAuth) {
		return nil, "", fmt.Errorf("%w: %w", oauthErr(errInvalidClient, "client authentication failed"), err)
	}
	if err != nil {
		return nil, "", err
	}
	httpx.InfoFrom(r).ClientID = c.ID
	if !slices.Contains(c.GrantTypes, grant) {
		return nil, "", oauthErr(errUnauthorizedClient, "the client may not use this grant type")
	}
	var pair *Pair
	switch grant {
	case grantAuthorizationCode:
		pair, err = exchangeCode(ctx, o, r, c, form, now)
	case grantRefreshToken:
		pair, err = refreshGrant(ctx, o, r, c, form, now)
	case grantClientCredentials:
		pair, err = clientCredentials(o, c, form, now)
	}
	return pair, grant, err
}

// clientCredentials is RFC 6749 §4.4: an access token for the client itself
// (sub is the client_id, RFC 9068 §2.2), no refresh token.
func clientCredentials(o *OAuth, c *store.Client, form url.Values, now time.Time) (*Pair, error) {
	scope, err := grantScope(form.Get("scope"), c.Scopes)
	if err != nil {
		return nil, err
	}
	if slices.Contains(strings.Fields(scope), scopeOpenID) {
		if form.Get("scope") != "" {
			return nil, oauthErr(errInvalidScope, "openid needs a user: use the authorization code flow")
		}
		scope = strings.Join(slices.DeleteFunc(strings.Fields(scope), func(s string) bool { return s == scopeOpenID }), " ")
	}
	access, _, err := o.Tokens.Access(c.ID, c.ID, scope, "", time.Time{}, now)
	if err != nil {
		return nil, err
	}
	return &Pair{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(o.Tokens.AccessTTL / time.Second), Scope: scope}, nil
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
		return "", oauthErr(errInvalidScope, "malformed scope")
	}
	for _, s := range want {
		if !slices.Contains(registered, s) {
			return "", oauthErr(errInvalidScope, "scope %q is not registered for this client", clipText(s))
		}
	}
	return strings.Join(want, " "), nil
}

// refreshGrant is RFC 6749 §6 with rotation (RFC 9700 §4.14.2).
func refreshGrant(ctx context.Context, o *OAuth, r *http.Request, c *store.Client, form url.Values, now time.Time) (*Pair, error) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, oauthErr(errInvalidRequest, "refresh_token is required")
	}
	pair, old, err := o.Tokens.Rotate(ctx, o.DB, rt, c.ID, form.Get("scope"), now)
	switch {
	case errors.Is(err, ErrRefreshScope):
		return nil, oauthErr(errInvalidScope, "the scope may only be narrowed")
	case errors.Is(err, ErrRefreshReused):
		info := httpx.InfoFrom(r)
		o.Log.WarnContext(ctx, "refresh token reuse: family revoked", "client_id", c.ID, "client_ip", info.ClientIP.String(), "request_id", info.ID)
		return nil, fmt.Errorf("%w: %w", oauthErr(errInvalidGrant, "refresh token is invalid, expired or revoked"), err)
	case isRefreshFailure(err):
		return nil, fmt.Errorf("%w: %w", oauthErr(errInvalidGrant, "refresh token is invalid, expired or revoked"), err)
	case err != nil:
		return nil, err
	}
	httpx.InfoFrom(r).UserID = userSubject(old.Family.UserID)
	return pair, nil
}

// verifierOK checks a PKCE code_verifier against an S256 challenge (RFC 7636
// §4.6), in constant time.
func verifierOK(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validChallenge: an S256 challenge is base64url of 32 bytes: 43 characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(c)
	return err == nil
}

// exchangeCode is RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5). Every way a
// code can be wrong (unknown, expired, used, another client's, another
// redirect_uri, wrong verifier) answers the same invalid_grant; the reason
// goes to the log. A code presented again revokes what it issued.
func exchangeCode(ctx context.Context, o *OAuth, r *http.Request, c *store.Client, form url.Values, now time.Time) (*Pair, error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" {
		return nil, oauthErr(errInvalidRequest, "code is required")
	}
	if verifier == "" {
		return nil, oauthErr(errInvalidRequest, "code_verifier is required (PKCE)")
	}
	bad := func(reason string) error {
		info := httpx.InfoFrom(r)
		o.Log.WarnContext(ctx, "authorization code refused", "reason", reason, "client_id", c.ID, "client_ip", info.ClientIP.String(), "request_id", info.ID)
		return oauthErr(errInvalidGrant, "the authorization code is invalid, expired or was already used")
	}
	if len(code) != token.OpaqueLen {
		return nil, bad("malformed")
	}
	hash := token.Hash(code)
	ac, err := o.DB.CodeByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, bad("unknown")
	}
	if err != nil {
		return nil, err
	}
	if ac.ClientID != c.ID {
		return nil, bad("another client's code")
	}
	if ac.Used {
		if err := revokeIssued(ctx, o, ac, now); err != nil {
			return nil, err
		}
		return nil, bad("replayed: what it issued is revoked")
	}
	if !now.Before(ac.ExpiresAt) {
		return nil, bad("expired")
	}
	if form.Get("redirect_uri") != ac.RedirectURI {
		return nil, bad("redirect_uri differs")
	}
	if ac.CodeChallenge == "" || !validVerifier(verifier) || !verifierOK(verifier, ac.CodeChallenge) {
		return nil, bad("PKCE verification failed")
	}
	u, err := o.DB.UserByID(ctx, ac.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
		return nil, bad("user gone or inactive")
	}
	if err != nil {
		return nil, err
	}
	// Every grant to a user is a session (a family, with or without refresh
	// tokens), which its access tokens name in sid, so that ending it (a
	// replay of this code, logout, revocation) reaches them.
	sub := userSubject(u.ID)
	fam := &store.Family{ID: token.NewID(), UserID: u.ID, ClientID: c.ID, Scope: ac.Scope, AuthTime: ac.AuthTime}
	access, claims, err := o.Tokens.Access(sub, c.ID, ac.Scope, fam.ID, ac.AuthTime, now)
	if err != nil {
		return nil, err
	}
	pair := &Pair{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(o.Tokens.AccessTTL / time.Second), Scope: ac.Scope}
	is := store.Issued{Family: fam, AccessJTI: claims.ID, AccessExp: claims.Expiry}
	if slices.Contains(c.GrantTypes, grantRefreshToken) {
		pair.RefreshToken = token.NewOpaque()
		is.RefreshHash, is.RefreshExp = token.Hash(pair.RefreshToken), o.Tokens.refreshExpiry(now, now)
	}
	if hasScope(ac.Scope, scopeOpenID) && o.IDTokens != nil {
		if pair.IDToken, err = mintIDToken(o, c.ID, u, ac, access, now); err != nil {
			return nil, err
		}
	}
	err = o.DB.ExchangeCode(ctx, hash, is, now)
	if errors.Is(err, store.ErrReused) {
		// A concurrent exchange won: this is a replay too.
		if ac, err := o.DB.CodeByHash(ctx, hash); err == nil {
			if err := revokeIssued(ctx, o, ac, now); err != nil {
				return nil, err
			}
		}
		return nil, bad("replayed concurrently")
	}
	if err != nil {
		return nil, err
	}
	httpx.InfoFrom(r).UserID = sub
	return pair, nil
}

// revokeIssued ends the session a code started, refresh and access tokens
// alike (RFC 6749 §4.1.2: a code used twice should revoke its tokens).
func revokeIssued(ctx context.Context, o *OAuth, ac *store.Code, now time.Time) error {
	if ac.FamilyID != "" {
		return o.Tokens.EndSession(ctx, o.DB, ac.FamilyID, now)
	}
	if ac.AccessJTI != "" { // exchanged before every grant started a session
		return o.Tokens.RevokeAccess(ctx, o.DB, &token.Claims{ID: ac.AccessJTI, Expiry: ac.AccessExp}, now)
	}
	return nil
}

func hasScope(scope, s string) bool { return slices.Contains(strings.Fields(scope), s) }

// handleRevoke serves POST /oauth2/revoke (RFC 7009). The client
// authenticates (a public client by its id); it can revoke only its own
// tokens. Unknown, invalid, expired or foreign tokens answer 200 and change
// nothing (§2.2: the client cannot act on the difference).
func handleRevoke(o *OAuth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := revoke(r.Context(), o, r)
		if err != nil {
			writeOAuthError(w, r, o.Log, err)
			return
		}
		httpx.NoStore(w)
		w.WriteHeader(http.StatusOK)
	})
}

func revoke(ctx context.Context, o *OAuth, r *http.Request) error {
	form, err := readForm(r)
	if err != nil {
		return err
	}
	now := o.Now()
	c, _, err := authenticateClient(ctx, o.Clients, r, form, true, now)
	if errors.Is(err, errClientAuth) || errors.Is(err, errClientAuthMany) {
		return oauthErr(errInvalidClient, "client authentication failed")
	}
	if err != nil {
		return err
	}
	httpx.InfoFrom(r).ClientID = c.ID
	tok := form.Get("token")
	if tok == "" {
		return oauthErr(errInvalidRequest, "token is required")
	}
	// token_type_hint is only a hint (§2.1); the token's form says what it is.
	if strings.Count(tok, ".") == 2 {
		claims, err := o.Tokens.Verify(tok, now)
		if err != nil || claims.ClientID != c.ID {
			return nil
		}
		return o.Tokens.RevokeAccess(ctx, o.DB, claims, now)
	}
	if len(tok) != token.OpaqueLen {
		return nil
	}
	rt, err := o.DB.RefreshTokenByHash(ctx, token.Hash(tok), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rt.Family.ClientID != c.ID {
		return nil
	}
	return o.Tokens.EndSession(ctx, o.DB, rt.Family.ID, now)
}

// handleIntrospect serves POST /oauth2/introspect (RFC 7662) to
// authenticated confidential clients. A client learns about the tokens
// issued to it; one registered --resource-server about any access token
// (RFC 7662 §4: the server decides who may learn what). Anything else, and
// anything expired, revoked, forged or unknown, is {"active":false}.
func handleIntrospect(o *OAuth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := introspect(r.Context(), o, r)
		if err != nil {
			writeOAuthError(w, r, o.Log, err)
			return
		}
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, resp)
	})
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       string `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Jti       string `json:"jti,omitempty"`
}

var inactive = &introspection{Active: false}

func introspect(ctx context.Context, o *OAuth, r *http.Request) (*introspection, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, err
	}
	now := o.Now()
	c, _, err := authenticateClient(ctx, o.Clients, r, form, false, now)
	if errors.Is(err, errClientAuth) || errors.Is(err, errClientAuthMany) {
		return nil, oauthErr(errInvalidClient, "client authentication failed")
	}
	if err != nil {
		return nil, err
	}
	httpx.InfoFrom(r).ClientID = c.ID
	tok := form.Get("token")
	if tok == "" {
		return nil, oauthErr(errInvalidRequest, "token is required")
	}
	if strings.Count(tok, ".") == 2 {
		claims, err := o.Tokens.Verify(tok, now)
		if err != nil || now.Unix() >= claims.Expiry {
			return inactive, nil // introspection is strict about exp: no leeway
		}
		if claims.ClientID != c.ID && !c.ResourceServer {
			return inactive, nil
		}
		return &introspection{Active: true, Scope: claims.Scope, ClientID: claims.ClientID, TokenType: "Bearer",
			Exp: claims.Expiry, Iat: claims.IssuedAt, Sub: claims.Subject, Aud: claims.Audience, Iss: claims.Issuer, Jti: claims.ID}, nil
	}
	if len(tok) != token.OpaqueLen {
		return inactive, nil
	}
	rt, err := o.DB.RefreshTokenByHash(ctx, token.Hash(tok), now)
	if errors.Is(err, store.ErrNotFound) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	if rt.Used || rt.Family.Revoked || rt.Family.ClientID != c.ID {
		return inactive, nil
	}
	return &introspection{Active: true, Scope: rt.Scope, ClientID: rt.Family.ClientID, Exp: rt.ExpiresAt.Unix(),
		Sub: userSubject(rt.Family.UserID), Iss: o.Tokens.Issuer, TokenType: "refresh_token"}, nil
}

// metadata is the RFC 8414 §2 document (and, with OpenID Connect, the
// discovery document: OIDC Discovery §3).
func metadata(o *OAuth, oidc bool) map[string]any {
	iss := o.Tokens.Issuer
	base := strings.TrimSuffix(iss, "/")
	auth := []string{"client_secret_basic", "client_secret_post", "none"}
	m := map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         base + "/oauth2/authorize",
		"token_endpoint":                                 base + "/oauth2/token",
		"revocation_endpoint":                            base + "/oauth2/revoke",
		"introspection_endpoint":                         base + "/oauth2/introspect",
		"jwks_uri":                                       base + "/.well-known/jwks.json",
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          supportedGrants,
		"token_endpoint_auth_methods_supported":          auth,
		"revocation_endpoint_auth_methods_supported":     auth,
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
	}
	if oidc {
		m["userinfo_endpoint"] = base + "/oauth2/userinfo"
		m["end_session_endpoint"] = base + "/oauth2/logout"
		m["scopes_supported"] = []string{scopeOpenID, scopeProfile, scopeEmail}
		m["subject_types_supported"] = []string{"public"}
		m["id_token_signing_alg_values_supported"] = []string{o.IDTokens.Key().Alg}
		m["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
			"email", "email_verified", "preferred_username", "given_name", "family_name"}
		m["prompt_values_supported"] = []string{"none", "login", "consent"}
		m["claims_parameter_supported"] = false
		m["request_parameter_supported"] = false
		m["request_uri_parameter_supported"] = false
	}
	return m
}

// handleMetadata serves the metadata documents; they change only with the
// configuration, so caches may keep them for an hour.
func handleMetadata(o *OAuth, oidc bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		httpx.JSON(w, http.StatusOK, metadata(o, oidc))
	})
}

// handleJWKS serves GET /.well-known/jwks.json (RFC 7517 §5): the public
// keys that verify our tokens, the current one first.
func handleJWKS(keys []*token.Key) http.Handler {
	list := []token.JWK{}
	for _, k := range keys {
		if k.Public() {
			list = append(list, k.JWK())
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		httpx.JSON(w, http.StatusOK, map[string]any{"keys": list})
	})
}
