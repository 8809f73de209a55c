package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/httpx"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Dynamic client registration (RFC 7591) and its management protocol (RFC
// 7592). A client registers itself by POSTing its metadata; it gets a
// client_id, a secret unless it is public, and a registration access token
// with which it reads, updates and deletes its registration at
// registration_client_uri.
//
// # Security
//
// Registration is a write open to the network, so it is held to the rules
// of `client create` (newClient: redirect URIs, grant types, scopes) and
// more: a registered client is never first-party nor a resource server, may
// not use client_credentials (a token without a user would carry whatever
// scope the client chose), and gets no back-channel logout (the server
// would POST to a URI a stranger chose). The server never fetches a URI a
// client gives: jwks_uri, jwks, sector_identifier_uri and request_uris are
// refused, logo_uri, client_uri, policy_uri, tos_uri and any member it does
// not know are ignored (RFC 7591 §2) and never stored. A request is at most
// maxRegistrationBody bytes with at most maxRegisteredURIs URIs per list;
// at most MaxRegisteredClients such clients exist; each address has its own
// budget (RegistrationRate). Initial and registration access tokens are
// 256-bit random values stored only as SHA-256 and looked up by it; a wrong
// one spends the address's login budget, as a wrong client secret does.

// ENABLE_DYNAMIC_REGISTRATION values (API.md).
const (
	RegistrationOff   = "false"
	RegistrationToken = "token" // with an initial access token from `oauth2-api client registration-token`
	RegistrationOpen  = "open"  // anyone may register
)

// Limits of dynamic registration.
const (
	// RegistrationRate and RegistrationBurst are each address's budget for
	// POST /oauth2/register: an application registers once per install, so
	// 20 at once and then one every 3 minutes leave room for a few behind
	// one NAT while a single address cannot fill the table.
	RegistrationRate  = rate.Limit(20.0 / 3600)
	RegistrationBurst = 20
	// MaxRegisteredClients bounds the clients table: beyond it registration
	// answers 403 until an administrator deletes some (`client list` marks
	// them). With maxRegistrationBody it bounds what strangers can store
	// to about 160 MiB.
	MaxRegisteredClients = 10_000
	// maxRegistrationBody bounds a registration or update request; every
	// metadata value we store comes from it, so no client stores more.
	maxRegistrationBody = 16 << 10
	// maxRegisteredURIs bounds redirect_uris and post_logout_redirect_uris.
	maxRegisteredURIs = 10
	// RegistrationTokenTTL is the default lifetime of an initial access token.
	RegistrationTokenTTL = 24 * time.Hour
)

// Token endpoint authentication methods (RFC 7591 §2). The server accepts
// Basic and the form for every confidential client; the method registered
// is recorded and shown back.
const (
	authNone  = "none"
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

// A wrong initial or registration access token is answered as a wrong
// access token is (RFC 7591 §3, RFC 7592 §2: RFC 6750 §3).
const challengeRegistration = `Bearer realm="oauth2-api", error="invalid_token"`

var (
	errBadInitialToken = &httpx.Error{Kind: httpx.KindInvalidToken,
		Message: "the initial access token is unknown, expired or already used", Authenticate: challengeRegistration}
	errBadRegistrationToken = &httpx.Error{Kind: httpx.KindInvalidToken,
		Message: "the registration access token is not valid for this client", Authenticate: challengeRegistration}
)

// NewRegistrationToken stores and returns a new initial access token (RFC
// 7591 §3) valid until now+ttl, for one registration. Only its hash is
// stored.
func NewRegistrationToken(ctx context.Context, db *store.DB, ttl time.Duration, now time.Time) (string, time.Time, error) {
	raw := token.NewOpaque()
	exp := now.Add(ttl)
	e := auditEvent(ctx, actInitialToken, "", outSuccess, "expires_at", exp.UTC().Format(time.RFC3339))
	return raw, exp, db.AddRegistrationToken(store.WithEvent(ctx, e), token.Hash(raw), exp, now)
}

// metadata is the client metadata (RFC 7591 §2) that a registration or an
// update sends and that the client information response shows back.
type metadata struct {
	ClientName             string   `json:"client_name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"` // OpenID Connect RP-Initiated Logout §3.1
	GrantTypes             []string `json:"grant_types"`
	ResponseTypes          []string `json:"response_types"`
	AuthMethod             string   `json:"token_endpoint_auth_method"`
	Scope                  string   `json:"scope,omitempty"`
	DPoPBound              bool     `json:"dpop_bound_access_tokens,omitempty"`              // RFC 9449 §5.2
	RequirePAR             bool     `json:"require_pushed_authorization_requests,omitempty"` // RFC 9126 §6
}

// clientMetadata is what a registration or an update may hold (RFC 7591 §2).
type clientMetadata struct {
	metadata
	SubjectType string `json:"subject_type"` // OpenID Connect Registration: only public

	// An update names the client and may repeat its secret (RFC 7592 §2.2).
	ClientID     string       `json:"client_id"`
	ClientSecret token.Secret `json:"client_secret"`

	// Refused: honouring them would mean fetching a URI or trusting keys
	// the server has no use for (no private_key_jwt, no request objects).
	JWKSURI             json.RawMessage `json:"jwks_uri"`
	JWKS                json.RawMessage `json:"jwks"`
	SectorIdentifierURI json.RawMessage `json:"sector_identifier_uri"`
	RequestURIs         json.RawMessage `json:"request_uris"`
	// Refused: the server would POST logout tokens to it.
	BackchannelLogoutURI json.RawMessage `json:"backchannel_logout_uri"`
}

// readMetadata reads a registration request's body: application/json, at
// most maxRegistrationBody bytes, in httpx's one accepted form (valid
// UTF-8, one value, no key twice), each known member of its type. Members
// it does not know are ignored, as RFC 7591 §2 requires, and so are members
// named in another letter case: JSON names are case-sensitive (RFC 8259).
// A member name with an escape is refused (invalid_client_metadata): by RFC
// 8259 "redirect_\u0075ris" is redirect_uris, so ignoring it would drop
// what the client sent, and reading it would take a second byte form.
func readMetadata(w http.ResponseWriter, r *http.Request) (*clientMetadata, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, httpx.E(httpx.KindMediaType, "Content-Type must be application/json")
	}
	tooLarge := httpx.E(httpx.KindTooLarge, "a registration request is at most %d bytes", maxRegistrationBody)
	if r.ContentLength > maxRegistrationBody {
		return nil, tooLarge
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRegistrationBody)
	body, err := httpx.ReadBody(r)
	if errors.Is(err, httpx.ErrTooLarge) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, httpx.E(httpx.KindInvalid, "could not read the request body")
	}
	// Before UnmarshalStrict, which would refuse it as malformed JSON.
	if key, _, escaped := token.CheckKeys(body, nil); escaped && json.Valid(body) {
		return nil, httpx.E(httpx.KindInvalidClientMetadata, "member name %q holds an escape: send names unescaped", httpx.Clip(key, 60))
	}
	var members map[string]json.RawMessage
	if err := httpx.UnmarshalStrict(body, &members); err != nil {
		return nil, err
	}
	// Only members named exactly as ours are decoded: encoding/json would
	// take "REDIRECT_URIS", a member we do not know, for redirect_uris.
	maps.DeleteFunc(members, func(k string, _ json.RawMessage) bool {
		return !token.HasField(reflect.TypeFor[clientMetadata](), k)
	})
	body, _ = json.Marshal(members) // valid JSON values under string keys: cannot fail
	var m clientMetadata
	if err := json.Unmarshal(body, &m); err != nil {
		if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && typ.Field != "" {
			// encoding/json names a member of the embedded metadata
			// "metadata.client_name": the request named it client_name.
			return nil, httpx.E(httpx.KindInvalidClientMetadata, "%s has the wrong type", httpx.Clip(strings.TrimPrefix(typ.Field, "metadata."), 60))
		}
		return nil, httpx.E(httpx.KindInvalidClientMetadata, "a member has the wrong type")
	}
	return &m, nil
}

// client validates m as `client create` validates its flags (newClient),
// with the rules of registered clients on top, and returns the client
// (with a new id and secret) and its secret. Errors are
// invalid_redirect_uri and invalid_client_metadata (RFC 7591 §3.2.2).
// Without scope, an OpenID Provider's client gets the OpenID Connect
// scopes (RFC 7591 §2 allows a default): OpenID Connect Dynamic
// Registration has no scope member, so an RP registered by it sends none,
// and with no scope registered it could never ask for openid.
func (m *clientMetadata) client(release, oidc bool) (*store.Client, string, error) {
	bad := func(format string, args ...any) (*store.Client, string, error) {
		return nil, "", httpx.E(httpx.KindInvalidClientMetadata, format, args...)
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"jwks_uri", m.JWKSURI}, {"jwks", m.JWKS}, {"sector_identifier_uri", m.SectorIdentifierURI}, {"request_uris", m.RequestURIs}} {
		if len(f.v) > 0 && string(f.v) != "null" {
			return bad("%s is not supported: the server fetches no URI and takes no client keys", f.name)
		}
	}
	if len(m.BackchannelLogoutURI) > 0 && string(m.BackchannelLogoutURI) != "null" {
		return bad("backchannel_logout_uri is not available to registered clients: the server would call a URI it was given")
	}
	if m.SubjectType != "" && m.SubjectType != "public" {
		return bad("subject_type: only public")
	}
	if name := strings.TrimSpace(m.ClientName); name == "" || !validName(name) {
		return bad("client_name: required, at most 100 characters, no control characters")
	}
	method := m.AuthMethod
	switch method {
	case "":
		method = authBasic // RFC 7591 §2: the default
	case authNone, authBasic, authPost:
	default:
		return bad("token_endpoint_auth_method %q: want none, client_secret_basic or client_secret_post", httpx.Clip(method, 60))
	}
	grants := m.GrantTypes
	if len(grants) == 0 { // not newClient's defaults, which may add client_credentials
		grants = []string{grantAuthorizationCode} // RFC 7591 §2: the default
	}
	for _, g := range grants {
		switch g {
		case grantAuthorizationCode, grantRefreshToken:
		case grantClientCredentials:
			return bad("client_credentials is not available to registered clients: its tokens carry no user, only the scope the client chose")
		default:
			return bad("grant type %q is not supported: want authorization_code or refresh_token", httpx.Clip(g, 60))
		}
	}
	code := slices.Contains(grants, grantAuthorizationCode)
	responses := m.ResponseTypes
	if responses == nil && code {
		responses = []string{"code"}
	}
	for _, rt := range responses {
		if rt != "code" {
			return bad("response type %q is not supported: want code", httpx.Clip(rt, 60))
		}
	}
	if slices.Contains(responses, "code") != code {
		return bad("response_types and grant_types disagree: code goes with authorization_code (RFC 7591 §2.1)")
	}
	for _, list := range []struct {
		name string
		uris []string
	}{{"redirect_uris", m.RedirectURIs}, {"post_logout_redirect_uris", m.PostLogoutRedirectURIs}} {
		if len(list.uris) > maxRegisteredURIs {
			return bad("%s: at most %d", list.name, maxRegisteredURIs)
		}
		for _, u := range list.uris {
			if err := checkRedirectURI(u, release); err != nil {
				return nil, "", httpx.E(httpx.KindInvalidRedirectURI, "%s: %q: %v", list.name, httpx.Clip(u, 60), err)
			}
		}
	}
	// One host to send codes to (every loopback address and port counts
	// as one: the device itself): the consent page names it, and consent
	// is kept per client, so a second one, which anyone may list, got
	// codes by prompt=none from users who had allowed the first.
	hosts := map[string]bool{}
	for _, r := range m.RedirectURIs {
		if u, err := url.Parse(r); err == nil && isLoopbackHost(u.Hostname()) {
			hosts["loopback"] = true
		} else if err == nil {
			hosts[u.Scheme+"://"+u.Host] = true
		}
	}
	if len(hosts) > 1 {
		return nil, "", httpx.E(httpx.KindInvalidRedirectURI, "redirect_uris: all on one host (or all loopback), the one the consent page names")
	}
	if code && len(m.RedirectURIs) == 0 {
		return nil, "", httpx.E(httpx.KindInvalidRedirectURI, "redirect_uris: authorization_code needs at least one")
	}
	if m.Scope == "" && oidc {
		m.Scope = strings.Join([]string{scopeOpenID, scopeProfile, scopeEmail}, " ")
	}
	scopes, ok := parseScope(m.Scope)
	if !ok {
		return bad("scope: space-separated scope tokens (RFC 6749 §3.3), at most %d bytes", maxScopeLen)
	}
	c, secret, err := newClient(ClientSpec{
		Name: m.ClientName, RedirectURIs: m.RedirectURIs, PostLogoutRedirectURIs: m.PostLogoutRedirectURIs,
		GrantTypes: grants, Scopes: scopes, Public: method == authNone, RequireDPoP: m.DPoPBound, RequirePAR: m.RequirePAR,
	}, release, nil)
	if e, ok := errors.AsType[*httpx.Error](err); ok && e.Kind == httpx.KindValidation {
		return bad("%s", e.Message)
	}
	if err != nil {
		return nil, "", err
	}
	c.AuthMethod = method
	return c, secret, nil
}

// registration is the client information response (RFC 7591 §3.2.1, RFC
// 7592 §3). The client secret is shown once, at registration (only its
// hash is kept); the registration access token at registration, after
// each update, and to a read, which shows the one it was sent with (§3
// has the token REQUIRED; only its hash is kept too).
type registration struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"` // 0 (never) for a confidential client
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	metadata
}

func registrationView(c *store.Client, iss, secret, accessToken string) *registration {
	v := &registration{
		ClientID: c.ID, ClientSecret: secret, ClientIDIssuedAt: c.CreatedAt.Unix(), RegistrationAccessToken: accessToken,
		RegistrationClientURI: iss + "/oauth2/register/" + url.PathEscape(c.ID),
		metadata: metadata{ClientName: c.Name, RedirectURIs: nonNil(c.RedirectURIs), PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
			GrantTypes: c.GrantTypes, ResponseTypes: []string{}, AuthMethod: c.AuthMethod,
			Scope: strings.Join(c.Scopes, " "), DPoPBound: c.RequireDPoP, RequirePAR: c.RequirePAR},
	}
	if slices.Contains(c.GrantTypes, grantAuthorizationCode) {
		v.ResponseTypes = []string{"code"}
	}
	if !c.Public() {
		v.ClientSecretExpiresAt = new(int64)
	}
	return v
}

// handleRegisterClient serves POST /oauth2/register (RFC 7591 §3): 201 with
// the client information, its secret and registration access token shown
// this once.
func handleRegisterClient(log *slog.Logger, db *store.DB, iss string, release, oidc bool, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := register(w, r, db, iss, release, oidc, now())
		if err == nil {
			httpx.InfoFrom(r).ClientID = resp.ClientID
		}
		writeOAuth(w, r, log, http.StatusCreated, resp, err)
	})
}

// register validates the request's metadata and stores the client with the
// hash of a new registration access token, spending the initial access
// token the caller check found (in token mode) in the same transaction:
// metadata that fails validation spends nothing, and of two registrations
// with one token, one succeeds.
func register(w http.ResponseWriter, r *http.Request, db *store.DB, iss string, release, oidc bool, now time.Time) (*registration, error) {
	m, err := readMetadata(w, r)
	if err != nil {
		return nil, err
	}
	c, secret, err := m.client(release, oidc)
	if err != nil {
		return nil, err
	}
	rat := token.NewOpaque()
	c.RegistrationHash = token.Hash(rat)
	e := auditEvent(r.Context(), actClientRegister, c.ID, outSuccess, "name", c.Name)
	// The registrant is known by nothing but the client it makes (an
	// initial access token names no one), which is also the actor of its
	// updates and deletion.
	e.Actor, e.ClientID = c.ID, c.ID
	err = db.RegisterClient(store.WithEvent(r.Context(), e), c, principalOf(r).initialHash, MaxRegisteredClients, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errBadInitialToken
	case errors.Is(err, store.ErrLimited):
		return nil, httpx.E(httpx.KindForbidden, "registration is full: the server holds as many registered clients as it takes")
	case err != nil:
		return nil, err
	}
	return registrationView(c, iss, secret, rat), nil
}

// handleRegistrationRead serves GET /oauth2/register/{id} (RFC 7592 §2.1)
// for the client whose registration access token the caller check found.
func handleRegistrationRead(iss string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rat, _, _ := accessToken(r) // the one requireRegistrant accepted
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, registrationView(principalOf(r).client, iss, "", rat))
	})
}

// handleRegistrationUpdate serves PUT /oauth2/register/{id} (RFC 7592
// §2.2): the metadata is replaced (omitted members take their defaults),
// validated as at registration, and the registration access token rotated.
func handleRegistrationUpdate(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, iss string, release, oidc bool, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := updateRegistration(w, r, db, ts, cs, iss, release, oidc, now())
		writeOAuth(w, r, log, http.StatusOK, resp, err)
	})
}

// updateRegistration replaces the metadata of the caller's client only if
// its registration access token is still the one presented: of two updates
// with one token, one succeeds. A client stays public or confidential, and
// keeps its id and secret, and its tokens live on; every instance forgets
// the client it cached, here at once, elsewhere at its next poll.
func updateRegistration(w http.ResponseWriter, r *http.Request, db *store.DB, ts *Tokens, cs *Clients, iss string, release, oidc bool, now time.Time) (*registration, error) {
	old := principalOf(r).client
	m, err := readMetadata(w, r)
	if err != nil {
		return nil, err
	}
	if m.ClientID != old.ID {
		return nil, httpx.E(httpx.KindInvalidClientMetadata, "client_id must be this client's (RFC 7592 §2.2)")
	}
	if m.ClientSecret != "" && !secretMatches(old, m.ClientSecret.Reveal()) {
		return nil, httpx.E(httpx.KindInvalidClientMetadata, "client_secret is not this client's")
	}
	c, _, err := m.client(release, oidc) // its new id and secret are not used
	if err != nil {
		return nil, err
	}
	if c.Public() != old.Public() {
		return nil, httpx.E(httpx.KindInvalidClientMetadata, "token_endpoint_auth_method cannot change between none and a secret: register a new client")
	}
	c.ID, c.SecretHash, c.SecretTag, c.CreatedAt = old.ID, old.SecretHash, old.SecretTag, old.CreatedAt
	rat := token.NewOpaque()
	c.RegistrationHash = token.Hash(rat)
	// The event names the members that change, not their values.
	var changed []string
	for name, same := range map[string]bool{
		"client_name": c.Name == old.Name, "redirect_uris": slices.Equal(c.RedirectURIs, old.RedirectURIs),
		"grant_types": slices.Equal(c.GrantTypes, old.GrantTypes), "scope": slices.Equal(c.Scopes, old.Scopes),
		"token_endpoint_auth_method": c.AuthMethod == old.AuthMethod, "dpop_bound_access_tokens": c.RequireDPoP == old.RequireDPoP,
		"post_logout_redirect_uris":             slices.Equal(c.PostLogoutRedirectURIs, old.PostLogoutRedirectURIs),
		"require_pushed_authorization_requests": c.RequirePAR == old.RequirePAR,
	} {
		if !same {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	e := auditEvent(r.Context(), actClientUpdated, c.ID, outSuccess, "changed", strings.Join(changed, " "))
	change := store.ClientChange(c.ID, now)
	err = db.UpdateRegisteredClient(store.WithEvent(r.Context(), e), c, old.RegistrationHash, change, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadRegistrationToken
	}
	if err != nil {
		return nil, err
	}
	forgetClient(cs, ts.Revoked, change)
	return registrationView(c, iss, "", rat), nil
}

// handleRegistrationDelete serves DELETE /oauth2/register/{id} (RFC 7592
// §2.3): the client is deleted as `client delete` deletes it, and its
// tokens stop working.
func handleRegistrationDelete(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := principalOf(r).client
		err := DeleteClient(r.Context(), db, 0, cs, ts.Revoked, c.ID, c.RegistrationHash, ts.AccessTTL, now()) // no admin: the registrant
		if errors.Is(err, store.ErrNotFound) {
			err = errBadRegistrationToken
		}
		writeOAuth(w, r, log, http.StatusNoContent, nil, err)
	})
}

// requireRegistrar admits a registration (RFC 7591 §3). In open mode that
// is anyone. In token mode it takes an initial access token, unspent and
// unexpired, looked up by its SHA-256; the handler spends it when it
// stores the client.
func requireRegistrar(log *slog.Logger, db *store.DB, creds *ratelimit.Limiter, m *httpx.Metrics, open bool, now func() time.Time, next http.Handler) http.Handler {
	if open {
		return next
	}
	return requireRegistrationToken(log, creds, m, now, next, func(r *http.Request, hash string) (*principal, error) {
		err := db.RegistrationTokenLive(r.Context(), hash, now())
		if errors.Is(err, store.ErrNotFound) {
			err = errBadInitialToken
		}
		return &principal{initialHash: hash}, err
	})
}

// requireRegistrant admits a registered client's management requests (RFC
// 7592 §2): the registration access token, found by its SHA-256, must be
// that of the client the path names.
func requireRegistrant(log *slog.Logger, db *store.DB, creds *ratelimit.Limiter, m *httpx.Metrics, now func() time.Time, next http.Handler) http.Handler {
	return requireRegistrationToken(log, creds, m, now, next, func(r *http.Request, hash string) (*principal, error) {
		c, err := db.ClientByRegistrationHash(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.ID != r.PathValue("id")) {
			return nil, errBadRegistrationToken
		}
		if err != nil {
			return nil, err
		}
		httpx.InfoFrom(r).ClientID = c.ID
		return &principal{client: c}, nil
	})
}

// requireRegistrationToken admits a request with a Bearer token (never
// DPoP: these tokens are not bound) that find, given its SHA-256, accepts,
// and hands next what find established. A missing or wrong token spends a
// token of the address's login budget (creds), as a failed client
// authentication does, and is logged with the client IP, never the token.
func requireRegistrationToken(log *slog.Logger, creds *ratelimit.Limiter, m *httpx.Metrics, now func() time.Time, next http.Handler,
	find func(r *http.Request, hash string) (*principal, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, dpop, err := accessToken(r)
		if dpop {
			err = errNoToken
		}
		var p *principal
		if err == nil {
			p, err = find(r, token.Hash(raw))
		}
		if e, ok := errors.AsType[*httpx.Error](err); ok && (e.Kind == httpx.KindUnauthorized || e.Kind == httpx.KindInvalidToken) {
			info := httpx.InfoFrom(r)
			log.WarnContext(r.Context(), "registration token refused", "client_ip", info.ClientIP.String(), "request_id", info.ID)
			if ok, wait := creds.Allow(info.ClientIP, now()); !ok {
				m.RateLimited.Inc()
				err = httpx.TooMany(wait)
			}
		}
		if err != nil {
			httpx.WriteOAuthError(w, r, log, err)
			return
		}
		next.ServeHTTP(w, withPrincipal(r, p))
	})
}

// dynamicRegistration reports whether ENABLE_DYNAMIC_REGISTRATION is on.
func dynamicRegistration(d Deps) bool {
	return d.DynamicRegistration == RegistrationToken || d.DynamicRegistration == RegistrationOpen
}
