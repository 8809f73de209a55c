package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Clients finds registered clients through a small cache: client
// authentication is on every token, revocation and introspection request,
// and must not cost a database round trip each time. The cache is bounded,
// entries expire after a TTL, and an entry is dropped at once when this
// instance changes the client and within one revocation poll when another
// instance does (deletion and secret rotation record a client revocation).
type Clients struct {
	db  *store.DB
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]clientEntry
}

type clientEntry struct {
	c       *store.Client
	fetched time.Time
}

// NewClients returns a client cache over db holding at most max entries.
func NewClients(db *store.DB, ttl time.Duration, max int) *Clients {
	return &Clients{db: db, ttl: ttl, max: max, entries: make(map[string]clientEntry)}
}

// Get returns the client with id, or an error wrapping store.ErrNotFound.
func (cs *Clients) Get(ctx context.Context, id string, now time.Time) (*store.Client, error) {
	cs.mu.Lock()
	e, ok := cs.entries[id]
	cs.mu.Unlock()
	if ok && now.Sub(e.fetched) < cs.ttl {
		return e.c, nil
	}
	c, err := cs.db.ClientByID(ctx, id)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	if len(cs.entries) >= cs.max {
		for k := range cs.entries { // evict one arbitrary entry: memory stays bounded
			delete(cs.entries, k)
			break
		}
	}
	cs.entries[id] = clientEntry{c: c, fetched: now}
	cs.mu.Unlock()
	return c, nil
}

// Forget drops a client from the cache.
func (cs *Clients) Forget(id string) {
	cs.mu.Lock()
	delete(cs.entries, id)
	cs.mu.Unlock()
}

// secretMatches reports whether secret hashes to the client's stored hash.
// Secrets are 256-bit random values, so SHA-256 suffices (no slow hash), and
// the two digests are compared in constant time so that timing reveals
// nothing about the stored hash.
func secretMatches(c *store.Client, secret string) bool {
	if c.Public() || secret == "" || len(c.SecretHash) != 2*sha256.Size {
		return false
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], []byte(c.SecretHash)); err != nil {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// Client authentication failures.
var (
	errClientAuth     = errors.New("client authentication failed")
	errClientAuthMany = errors.New("more than one client authentication method")
)

// clientCreds are the credentials a request presents (RFC 6749 §2.3.1).
type clientCreds struct {
	id, secret string
	basic      bool // from the Authorization header
}

// readClientCreds takes the credentials from an "Authorization: Basic"
// header (client id and secret form-url-encoded before base64, RFC 6749
// §2.3.1) or from client_id / client_secret in the form, never both.
func readClientCreds(r *http.Request, form url.Values) (clientCreds, error) {
	h := r.Header.Get("Authorization")
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	if h == "" {
		return clientCreds{id: postID, secret: postSecret}, nil
	}
	if postSecret != "" {
		return clientCreds{}, errClientAuthMany
	}
	id, secret, ok := parseBasic(h)
	if !ok {
		return clientCreds{}, errClientAuth
	}
	if postID != "" && postID != id {
		return clientCreds{}, errClientAuth
	}
	return clientCreds{id: id, secret: secret, basic: true}, nil
}

// parseBasic decodes "Basic base64(urlencode(id):urlencode(secret))".
func parseBasic(h string) (id, secret string, ok bool) {
	scheme, b64, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") || len(b64) > 1024 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", "", false
	}
	i, s, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(i); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(s); err != nil || id == "" {
		return "", "", false
	}
	return id, secret, true
}

// authenticateClient checks the request's client credentials. A confidential
// client must present its secret; a public client only its id, and only
// where allowPublic is true (the token endpoint, for the code and refresh
// grants, and revocation). Any failure is errClientAuth (or
// errClientAuthMany), with nothing to tell an unknown client from a wrong
// secret.
func authenticateClient(ctx context.Context, cs *Clients, r *http.Request, form url.Values, allowPublic bool, now time.Time) (*store.Client, clientCreds, error) {
	cr, err := readClientCreds(r, form)
	if err != nil {
		return nil, cr, err
	}
	if cr.id == "" || len(cr.id) > 128 || len(cr.secret) > 256 {
		return nil, cr, errClientAuth
	}
	c, err := cs.Get(ctx, cr.id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, cr, errClientAuth
	}
	if err != nil {
		return nil, cr, err
	}
	if c.Public() {
		if !allowPublic || cr.secret != "" || cr.basic {
			return nil, cr, errClientAuth
		}
		return c, cr, nil
	}
	if !secretMatches(c, cr.secret) {
		return nil, cr, errClientAuth
	}
	return c, cr, nil
}

// ClientSpec is what registering a client takes (CLI and admin API).
type ClientSpec struct {
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	GrantTypes             []string `json:"grant_types"`
	Scopes                 []string `json:"scopes"`
	Public                 bool     `json:"public"`
	FirstParty             bool     `json:"first_party"`
	ResourceServer         bool     `json:"resource_server"` // may introspect any access token
}

// ClientJSON is a client as the CLI and admin API show it: the secret only
// once, at creation or rotation.
type ClientJSON struct {
	ClientID               string    `json:"client_id"`
	ClientSecret           string    `json:"client_secret,omitempty"`
	Name                   string    `json:"name"`
	RedirectURIs           []string  `json:"redirect_uris"`
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes             []string  `json:"grant_types"`
	Scopes                 []string  `json:"scopes"`
	Public                 bool      `json:"public"`
	FirstParty             bool      `json:"first_party"`
	ResourceServer         bool      `json:"resource_server"`
	CreatedAt              time.Time `json:"created_at"`
	UpdatedAt              time.Time `json:"updated_at"`
}

// ClientView returns c as JSON, with secret if not empty.
func ClientView(c *store.Client, secret string) ClientJSON {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return ClientJSON{c.ID, secret, c.Name, nz(c.RedirectURIs), c.PostLogoutRedirectURIs, nz(c.GrantTypes), nz(c.Scopes),
		c.Public(), c.FirstParty, c.ResourceServer, c.CreatedAt, c.UpdatedAt}
}

var supportedGrants = []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials}

// CreateClient validates spec, stores a new client and returns it with its
// secret (empty for a public client). The secret is shown this once: only
// its hash is stored. In release mode a redirect URI must be https or
// loopback. Validation failures are errors whose text is safe to show.
func CreateClient(ctx context.Context, db *store.DB, spec ClientSpec, release bool, now time.Time) (*store.Client, string, error) {
	name := strings.TrimSpace(spec.Name)
	if name == "" || !validName(name) {
		return nil, "", errors.New("name: required, at most 100 characters, no control characters")
	}
	grants := spec.GrantTypes
	if len(grants) == 0 {
		grants = []string{grantAuthorizationCode, grantRefreshToken}
		if !spec.Public && len(spec.RedirectURIs) == 0 {
			grants = []string{grantClientCredentials}
		}
	}
	grants = slices.Compact(slices.Sorted(slices.Values(grants)))
	for _, g := range grants {
		if !slices.Contains(supportedGrants, g) {
			return nil, "", fmt.Errorf("grant type %q: want authorization_code, refresh_token or client_credentials", clipText(g))
		}
	}
	if spec.Public && spec.ResourceServer {
		return nil, "", errors.New("a public client cannot be a resource server (introspection needs a secret)")
	}
	if spec.Public && slices.Contains(grants, grantClientCredentials) {
		return nil, "", errors.New("a public client cannot use client_credentials (it has no secret)")
	}
	if slices.Contains(grants, grantAuthorizationCode) && len(spec.RedirectURIs) == 0 {
		return nil, "", errors.New("authorization_code needs at least one --redirect-uri")
	}
	if slices.Contains(grants, grantRefreshToken) && !slices.Contains(grants, grantAuthorizationCode) {
		return nil, "", errors.New("refresh_token needs authorization_code (refresh tokens come from it)")
	}
	for _, list := range [][]string{spec.RedirectURIs, spec.PostLogoutRedirectURIs} {
		for _, u := range list {
			if err := checkRedirectURI(u, release); err != nil {
				return nil, "", fmt.Errorf("redirect URI %q: %v", clipText(u), err)
			}
		}
	}
	var scopes []string
	for _, s := range spec.Scopes {
		for _, p := range strings.Fields(s) {
			if !validScopeToken(p) {
				return nil, "", fmt.Errorf("scope %q: not a valid scope token (RFC 6749 §3.3)", clipText(p))
			}
			scopes = append(scopes, p)
		}
	}
	slices.Sort(scopes)
	c := &store.Client{
		ID: token.NewID(), Name: name,
		RedirectURIs: slices.Compact(slices.Clone(spec.RedirectURIs)), PostLogoutRedirectURIs: spec.PostLogoutRedirectURIs,
		GrantTypes: grants, Scopes: slices.Compact(scopes), FirstParty: spec.FirstParty, ResourceServer: spec.ResourceServer,
	}
	secret := ""
	if !spec.Public {
		secret = token.NewOpaque()
		c.SecretHash = token.Hash(secret)
	}
	if err := db.CreateClient(ctx, c, now); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// RotateClientSecret gives a confidential client a new secret and returns it.
// The old secret stops working at once here and within one revocation poll
// on other instances, and access tokens issued before now are revoked.
func RotateClientSecret(ctx context.Context, db *store.DB, cs *Clients, revs *Revocations, id string, accessTTL time.Duration, now time.Time) (string, error) {
	secret := token.NewOpaque()
	if err := db.SetClientSecret(ctx, id, token.Hash(secret), accessTTL, now); err != nil {
		return "", err
	}
	forgetClient(cs, revs, id, accessTTL, now)
	return secret, nil
}

// DeleteClient deletes a client; its tokens stop working.
func DeleteClient(ctx context.Context, db *store.DB, cs *Clients, revs *Revocations, id string, accessTTL time.Duration, now time.Time) error {
	if err := db.DeleteClient(ctx, id, accessTTL, now); err != nil {
		return err
	}
	forgetClient(cs, revs, id, accessTTL, now)
	return nil
}

func forgetClient(cs *Clients, revs *Revocations, id string, accessTTL time.Duration, now time.Time) {
	if revs != nil {
		revs.Add(store.ClientRevocation(id, accessTTL, now))
	}
	if cs != nil {
		cs.Forget(id)
	}
}

// checkRedirectURI validates a redirect or post-logout URI at registration
// (RFC 6749 §3.1.2, RFC 8252 §7). A URI has one byte form: ASCII from RFC
// 3986's character set with well-formed percent escapes, so no space,
// control or non-ASCII character that a later reader could split on or
// decode differently; no fragment (not even an empty one), no user
// information. Schemes: https; http on a loopback host; and, in debug mode
// only (API.md: release mode refuses every non-https URI but loopback),
// http on any host and a private-use scheme in reverse-domain form (RFC
// 8252 §7.1, com.example.app:/cb) for native apps. javascript, data, file
// and every other scheme are refused in every mode.
func checkRedirectURI(s string, release bool) error {
	if len(s) > 2000 {
		return errors.New("too long")
	}
	if !uriBytes(s) {
		return errors.New("must be ASCII without spaces or control characters, with valid percent escapes (RFC 3986)")
	}
	if strings.Contains(s, "#") {
		return errors.New("must not have a fragment")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return errors.New("not an absolute URI")
	}
	if u.User != nil {
		return errors.New("must not hold user information")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if release && !isLoopbackHost(u.Hostname()) {
			return errors.New("must be https (or http on a loopback address) in release mode")
		}
	default:
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("scheme must be https, http, or a private-use scheme in reverse-domain form (RFC 8252 §7.1)")
		}
		if release {
			return errors.New("must be https (or http on a loopback address) in release mode")
		}
		return nil
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if !validPort(u.Host) {
		return errors.New("has an invalid port")
	}
	return nil
}

// uriBytes reports whether s holds only RFC 3986 characters (unreserved,
// reserved and '%'), each '%' starting a two-digit hex escape.
func uriBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// validPort reports whether host's port, if it names one, is 1 to 65535 in
// its one decimal form; "host:" (an empty port) is not. url.Parse has
// already refused non-digits.
func validPort(host string) bool {
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		return true // no port: the scheme's default
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535 && port == strconv.Itoa(n)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// matchRedirectURI returns the registered URI that got matches: exactly
// (string comparison), or, for a registered http loopback IP literal, the
// same URI with any port (RFC 8252 §7.3: native apps listen on an ephemeral
// port).
func matchRedirectURI(registered []string, got string) bool {
	for _, r := range registered {
		if r == got {
			return true
		}
	}
	// The loopback exception varies the port only: the rest is held to
	// the registration rules (no fragment, not even an empty one), and the
	// port must be one a listener can have.
	if !uriBytes(got) || strings.Contains(got, "#") {
		return false
	}
	g, err := url.Parse(got)
	if err != nil || g.Scheme != "http" || g.User != nil || !validPort(g.Host) {
		return false
	}
	gh := g.Hostname()
	if ip := net.ParseIP(gh); ip == nil || !ip.IsLoopback() {
		return false
	}
	for _, r := range registered {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" {
			continue
		}
		if ip := net.ParseIP(ru.Hostname()); ip == nil || !ip.IsLoopback() {
			continue
		}
		if ru.Hostname() == gh && ru.EscapedPath() == g.EscapedPath() && ru.RawQuery == g.RawQuery && ru.User == nil {
			return true
		}
	}
	return false
}

func clipText(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
