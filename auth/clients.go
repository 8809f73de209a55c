package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Clients finds registered clients through a small cache: client
// authentication is on every token, revocation and introspection request,
// and must not cost a database round trip each time. The cache is bounded
// by entries and by bytes (a client may hold 64 KiB of URIs), entries
// expire after a TTL, and an entry is dropped at once when this instance
// changes the client and within one revocation poll when another instance
// does (deletion, secret rotation and an RFC 7592 update record a client
// revocation).
type Clients struct {
	// load is store.DB.ClientByID: a field, so that a test can change and
	// forget a client between Get's read and its store.
	load     func(ctx context.Context, id string) (*store.Client, error)
	ttl      time.Duration
	max      int
	maxBytes int

	mu      sync.Mutex
	entries map[string]clientEntry
	bytes   int    // the sum of the entries' sizes
	gen     uint64 // how many Forgets there have been
}

type clientEntry struct {
	c       *store.Client
	fetched time.Time
	size    int // cachedSize(c)
}

// NewClients returns a client cache over db holding at most max entries
// and about maxBytes bytes of them (cachedSize).
func NewClients(db *store.DB, ttl time.Duration, max, maxBytes int) *Clients {
	return &Clients{load: db.ClientByID, ttl: ttl, max: max, maxBytes: maxBytes, entries: make(map[string]clientEntry)}
}

// Get returns the client with id, or an error wrapping store.ErrNotFound.
func (cs *Clients) Get(ctx context.Context, id string, now time.Time) (*store.Client, error) {
	cs.mu.Lock()
	e, ok := cs.entries[id]
	gen := cs.gen
	cs.mu.Unlock()
	if ok && now.Sub(e.fetched) < cs.ttl {
		return e.c, nil
	}
	c, err := cs.load(ctx, id)
	if err != nil {
		return nil, err
	}
	size := cachedSize(c)
	if size > cs.maxBytes { // more than the whole cache holds: served, not kept
		return c, nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// A Forget since the read began may be for a change the read missed
	// (a rotation committed meanwhile): what it read is served, not kept,
	// or the old secret would work here until the TTL ends.
	if cs.gen != gen {
		return c, nil
	}
	cs.drop(c.ID)
	for k := range cs.entries { // evict arbitrary entries until both bounds hold
		if len(cs.entries) < cs.max && cs.bytes+size <= cs.maxBytes {
			break
		}
		cs.drop(k)
	}
	// Keyed by the stored id, not the request's: a substring of the
	// request body, which it would keep in memory (up to httpx.MaxBody).
	cs.entries[c.ID] = clientEntry{c: c, fetched: now, size: size}
	cs.bytes += size
	return c, nil
}

// drop removes the entry for id, if any; cs.mu must be held.
func (cs *Clients) drop(id string) {
	cs.bytes -= cs.entries[id].size
	delete(cs.entries, id)
}

// cachedSize is a conservative estimate of the bytes an entry for c holds:
// its strings with their headers, its lists' arrays at their capacity, an
// eighth more and 16 bytes a string for the allocator's size classes, and
// 1 KiB for the rest (the struct, the entry, the map's slot).
func cachedSize(c *store.Client) int {
	strs := []string{c.ID, c.Name, c.SecretHash, c.SecretTag, c.BackchannelLogoutURI, c.RegistrationHash, c.AuthMethod}
	n := 0
	for _, list := range [][]string{strs, c.RedirectURIs, c.PostLogoutRedirectURIs, c.GrantTypes, c.Scopes} {
		n += 16 * cap(list)
		for _, s := range list {
			n += 16 + len(s)
		}
	}
	return 1<<10 + n + n/8
}

// Forget drops a client from the cache, and keeps a Get whose read began
// before it from storing what it read. The count is one for all clients,
// not one per client: that would be a second map to bound, and a Forget
// (a change to a client, here or polled) is rare enough that a read of
// another client it keeps out of the cache costs one more read, no more.
func (cs *Clients) Forget(id string) {
	cs.mu.Lock()
	cs.drop(id)
	cs.gen++
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

// parseBasic decodes "Basic base64(urlencode(id):urlencode(secret))", the
// credentials as sent after the scheme's spaces (credentials).
func parseBasic(h string) (id, secret string, ok bool) {
	scheme, b64 := credentials(h)
	if !strings.EqualFold(scheme, "Basic") || len(b64) > 1024 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
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

// authenticateClient checks the request's client credentials (RFC 6749
// §2.3.1): from an "Authorization: Basic" header (client id and secret
// form-url-encoded before base64) or from client_id / client_secret in the
// form, never both. A confidential client must present its secret; a
// public client only its id, and only where allowPublic is true (the token
// and revocation endpoints). Any failure is errClientAuth (or
// errClientAuthMany), with nothing to tell an unknown client from a wrong
// secret.
func authenticateClient(ctx context.Context, cs *Clients, r *http.Request, form url.Values, allowPublic bool, now time.Time) (*store.Client, error) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	// Two headers are two methods, the first empty too: a proxy in front
	// may read the other.
	if h, n := r.Header.Get("Authorization"), len(r.Header.Values("Authorization")); h != "" || n > 1 {
		if secret != "" || n > 1 {
			return nil, errClientAuthMany
		}
		basicID, basicSecret, ok := parseBasic(h)
		if !ok || (id != "" && id != basicID) { // a client_id in the form too must name the same client
			return nil, errClientAuth
		}
		id, secret = basicID, basicSecret
	}
	if id == "" || len(id) > 128 || len(secret) > 256 {
		return nil, errClientAuth
	}
	c, err := cs.Get(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errClientAuth
	}
	if err != nil {
		return nil, err
	}
	// A public client names itself, in the form or as Basic with an empty
	// password (requests-oauthlib's default, Postman's): either way it has
	// nothing to prove.
	if c.Public() {
		if !allowPublic || secret != "" {
			return nil, errClientAuth
		}
		return c, nil
	}
	if !secretMatches(c, secret) {
		return nil, errClientAuth
	}
	return c, nil
}

// ClientSpec is what registering a client takes (CLI and admin API), and
// what ClientJSON shows of a registered one.
type ClientSpec struct {
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes             []string `json:"grant_types"`
	Scopes                 []string `json:"scopes"`
	Public                 bool     `json:"public"`
	FirstParty             bool     `json:"first_party"`
	ResourceServer         bool     `json:"resource_server"`    // may introspect the access tokens for its Resource
	Resource               string   `json:"resource,omitempty"` // a resource server's URI, one of RESOURCES; none: the ISSUER
	BackchannelLogoutURI   string   `json:"backchannel_logout_uri,omitempty"`
	RequireDPoP            bool     `json:"require_dpop"`
	RequirePAR             bool     `json:"require_par"`
}

// ClientJSON is a client as the CLI and admin API show it: the secret only
// once, at creation or rotation, then its spec (as stored: the scopes
// split, the default grant types filled in) and what the server keeps.
type ClientJSON struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	ClientSpec
	Registered bool      `json:"registered"` // registered itself (RFC 7591)
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ClientView returns c as JSON, with secret if not empty.
func ClientView(c *store.Client, secret string) ClientJSON {
	return ClientJSON{ClientID: c.ID, ClientSecret: secret, ClientSpec: ClientSpec{
		Name: c.Name, RedirectURIs: nonNil(c.RedirectURIs), PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		GrantTypes: nonNil(c.GrantTypes), Scopes: nonNil(c.Scopes), Public: c.Public(), FirstParty: c.FirstParty,
		ResourceServer: c.ResourceServer, Resource: c.Resource, BackchannelLogoutURI: c.BackchannelLogoutURI, RequireDPoP: c.RequireDPoP, RequirePAR: c.RequirePAR,
	}, Registered: c.Registered(), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// nonNil returns s, or an empty list for nil: lists are shown as [], never
// null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreateClient validates spec, stores a new client and returns it with its
// secret (empty for a public client). The secret is shown this once: only
// its hash is stored. In release mode a redirect URI must be https or
// loopback. Validation failures are *httpx.Error (KindValidation). By is
// the admin who asks, 0 for the operator (store.DB.CreateClient); an admin
// no longer one is refused (notAdmin). Resources are RESOURCES, which a
// resource server's resource must be one of.
func CreateClient(ctx context.Context, db *store.DB, by int64, spec ClientSpec, release bool, resources []string, now time.Time) (*store.Client, string, error) {
	c, secret, err := newClient(spec, release, resources)
	if err != nil {
		return nil, "", err
	}
	e := auditEvent(ctx, actClientCreated, c.ID, outSuccess, "name", c.Name)
	if err := db.CreateClient(store.WithEvent(ctx, e), by, c, now); err != nil {
		e.Subject = "" // a refusal's event names no client: this id was never stored
		return nil, "", notAdmin(ctx, db, e, err)
	}
	return c, secret, nil
}

// maxClientURIBytes bounds each of a client's URI lists (redirect and
// post-logout), counted as the URIs' bytes: about 400 preview deployments'
// callbacks of 80 bytes. Stored as a JSON array, each URI (at least 4
// bytes) adds at most 3 more, so a list fits in under 57 KiB: every
// dialect's column holds it (MySQL's TEXT holds 64 KiB).
const maxClientURIBytes = 32 << 10

// newClient validates spec and returns the client it describes, with a new
// id and secret (none for a public client), not yet stored; or a
// *httpx.Error (KindValidation) saying which rule spec breaks. Client
// creation (CLI, admin API) and dynamic registration (register.go) share it.
func newClient(spec ClientSpec, release bool, resources []string) (*store.Client, string, error) {
	name := strings.TrimSpace(spec.Name)
	if name == "" || !validName(name) {
		return nil, "", httpx.E(httpx.KindValidation, "name: required, at most 100 characters, no control characters")
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
			return nil, "", httpx.E(httpx.KindValidation, "grant type %q: want authorization_code, refresh_token, client_credentials or %s", httpx.Clip(g, 60), grantDeviceCode)
		}
	}
	if spec.Public && spec.ResourceServer {
		return nil, "", httpx.E(httpx.KindValidation, "a public client cannot be a resource server (introspection needs a secret)")
	}
	if spec.Resource != "" && !spec.ResourceServer {
		return nil, "", httpx.E(httpx.KindValidation, "resource: only a resource server names the resource it is")
	}
	if spec.Resource != "" && !slices.Contains(resources, spec.Resource) {
		return nil, "", httpx.E(httpx.KindValidation, "resource %q: not one of RESOURCES", httpx.Clip(spec.Resource, 60))
	}
	if spec.Public && slices.Contains(grants, grantClientCredentials) {
		return nil, "", httpx.E(httpx.KindValidation, "a public client cannot use client_credentials (it has no secret)")
	}
	if slices.Contains(grants, grantAuthorizationCode) && len(spec.RedirectURIs) == 0 {
		return nil, "", httpx.E(httpx.KindValidation, "authorization_code needs at least one --redirect-uri")
	}
	if slices.Contains(grants, grantRefreshToken) && !slices.Contains(grants, grantAuthorizationCode) && !slices.Contains(grants, grantDeviceCode) {
		return nil, "", httpx.E(httpx.KindValidation, "refresh_token needs authorization_code or the device grant (refresh tokens come from them)")
	}
	// Each list's errors name its field, as the API and registration do.
	lists := []struct {
		field string
		uris  []string
	}{{"redirect_uris", spec.RedirectURIs}, {"post_logout_redirect_uris", spec.PostLogoutRedirectURIs}}
	for _, list := range lists {
		if n := len(strings.Join(list.uris, "")); n > maxClientURIBytes {
			return nil, "", httpx.E(httpx.KindValidation, "%s: at most %d bytes in all, got %d", list.field, maxClientURIBytes, n)
		}
		for _, u := range list.uris {
			if err := checkRedirectURI(u, release); err != nil {
				return nil, "", httpx.E(httpx.KindValidation, "%s: %q: %v", list.field, httpx.Clip(u, 60), err)
			}
		}
	}
	// The server POSTs logout tokens there (Back-Channel Logout §2.2): the
	// redirect URI rules, and http or https.
	if u := spec.BackchannelLogoutURI; u != "" {
		err := checkRedirectURI(u, release)
		if p, _ := url.Parse(u); err == nil && p.Scheme != "https" && p.Scheme != "http" {
			err = errors.New("must be https or http")
		}
		if err != nil {
			return nil, "", httpx.E(httpx.KindValidation, "back-channel logout URI %q: %v", httpx.Clip(u, 60), err)
		}
	}
	var scopes []string
	for _, s := range spec.Scopes {
		for _, p := range strings.Fields(s) {
			if !validScopeToken(p) {
				return nil, "", httpx.E(httpx.KindValidation, "scope %q: not a valid scope token (RFC 6749 §3.3)", httpx.Clip(p, 60))
			}
			scopes = append(scopes, p)
		}
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	// Without a scope parameter a grant is for every registered scope, and
	// codes, tokens and consents store it: it is held to a scope
	// parameter's bound, as a registration's scope is (parseScope).
	if n := len(strings.Join(scopes, " ")); n > maxScopeLen {
		return nil, "", httpx.E(httpx.KindValidation, "scopes: at most %d bytes in all, separated by spaces, got %d", maxScopeLen, n)
	}
	c := &store.Client{
		ID: token.NewID(), Name: name,
		RedirectURIs: slices.Compact(slices.Clone(spec.RedirectURIs)), PostLogoutRedirectURIs: spec.PostLogoutRedirectURIs,
		GrantTypes: grants, Scopes: scopes, FirstParty: spec.FirstParty, ResourceServer: spec.ResourceServer, Resource: spec.Resource,
		BackchannelLogoutURI: spec.BackchannelLogoutURI, RequireDPoP: spec.RequireDPoP, RequirePAR: spec.RequirePAR,
	}
	secret := ""
	if !spec.Public {
		secret = token.NewOpaque()
		c.SecretHash = token.Hash(secret)
		c.SecretTag = store.SecretTag(c.SecretHash) // as store.scanClient sets it
	}
	return c, secret, nil
}

// RotateClientSecret gives a confidential client a new secret and returns it.
// The old secret stops working at once here and within one revocation poll
// on other instances. Access tokens issued before now are revoked, and so
// is every one minted with the old secret, those another instance mints
// before it hears of the rotation included (store.SecretRevocation); those
// minted with the new secret are not. By is as for CreateClient.
func RotateClientSecret(ctx context.Context, db *store.DB, by int64, cs *Clients, revs *Revocations, id string, accessTTL time.Duration, now time.Time) (string, error) {
	secret := token.NewOpaque()
	e := auditEvent(ctx, actClientRotated, id, outSuccess)
	rs, err := db.SetClientSecret(store.WithEvent(ctx, e), by, id, token.Hash(secret), accessTTL, now)
	if err != nil {
		return "", notAdmin(ctx, db, e, err)
	}
	for _, r := range rs {
		forgetClient(cs, revs, r)
	}
	return secret, nil
}

// SetClientResource names the resource a resource server is, one of
// resources (RESOURCES), or "" for the ISSUER: a resource server registered
// before it could name one sees tokens for the ISSUER only, and is set to
// its resource without a new id and secret. By the operator (the CLI).
func SetClientResource(ctx context.Context, db *store.DB, id, resource string, resources []string, now time.Time) error {
	if resource != "" && !slices.Contains(resources, resource) {
		return httpx.E(httpx.KindValidation, "resource: not one of RESOURCES")
	}
	e := auditEvent(ctx, actClientUpdated, id, outSuccess, "changed", "resource")
	return db.SetClientResource(store.WithEvent(ctx, e), id, resource, store.ClientChange(id, now), now)
}

// DeleteClient deletes a client; its tokens stop working, those another
// instance mints for it before it hears of the deletion included
// (store.ClientDeletion). By is as for CreateClient, 0 too for a
// registrant deleting its client, whose registration access token's hash
// is registration ("" for an admin or the CLI).
func DeleteClient(ctx context.Context, db *store.DB, by int64, cs *Clients, revs *Revocations, id, registration string, accessTTL time.Duration, now time.Time) error {
	e := auditEvent(ctx, actClientDeleted, id, outSuccess)
	r := store.ClientDeletion(id, accessTTL, now)
	if err := db.DeleteClient(store.WithEvent(ctx, e), by, id, registration, r, now); err != nil {
		return notAdmin(ctx, db, e, err)
	}
	forgetClient(cs, revs, r)
	return nil
}

// forgetClient applies r, a client's revocation, to this instance.
func forgetClient(cs *Clients, revs *Revocations, r store.Revocation) {
	if revs != nil {
		revs.Add(r)
	}
	if cs != nil {
		cs.Forget(r.Subject)
	}
}
