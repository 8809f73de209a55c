package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Client is a registered OAuth client.
type Client struct {
	ID                     string
	Name                   string
	SecretHash             string // SHA-256 hex; "" for a public client
	SecretTag              string // SecretTag(SecretHash), set when read: the secret_tag of the tokens minted with it
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string
	Scopes                 []string
	FirstParty             bool
	ResourceServer         bool   // may introspect access tokens for Resource
	Resource               string // a resource server's own URI, one of RESOURCES; "" for the ISSUER (tokens for no resource)
	BackchannelLogoutURI   string // receives logout tokens when a sign-in it was given a code by ends
	RequireDPoP            bool   // its tokens must be DPoP-bound (RFC 9449)
	RequirePAR             bool   // its authorization requests must be pushed (RFC 9126)
	RegistrationHash       string // SHA-256 hex of its registration access token (RFC 7592); "" unless registered dynamically
	AuthMethod             string // the token_endpoint_auth_method it registered (RFC 7591 §2); "" for an administrator's client
	CreatedAt              time.Time
	UpdatedAt              time.Time
}

// Public reports whether the client has no secret (RFC 6749 §2.1).
func (c *Client) Public() bool { return c.SecretHash == "" }

// Registered reports whether the client registered itself (RFC 7591).
func (c *Client) Registered() bool { return c.RegistrationHash != "" }

const clientColumns = `id, name, secret_hash, redirect_uris, post_logout_redirect_uris, grant_types, scopes, first_party, resource_server, resource, backchannel_logout_uri, require_dpop, require_par, registration_hash, token_endpoint_auth_method, created_at, updated_at`

func scanClient(s scanner) (*Client, error) {
	var c Client
	var secret, registration sql.NullString
	var redirects, logouts, grants, scopes string
	if err := s.Scan(&c.ID, &c.Name, &secret, &redirects, &logouts, &grants, &scopes, &c.FirstParty, &c.ResourceServer, &c.Resource, &c.BackchannelLogoutURI, &c.RequireDPoP, &c.RequirePAR, &registration, &c.AuthMethod, unix{&c.CreatedAt}, unix{&c.UpdatedAt}); err != nil {
		return nil, err
	}
	c.SecretHash, c.RegistrationHash = secret.String, registration.String
	c.SecretTag = SecretTag(c.SecretHash)
	if err := json.Unmarshal([]byte(redirects), &c.RedirectURIs); err != nil {
		return nil, fmt.Errorf("client %s: redirect_uris: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(logouts), &c.PostLogoutRedirectURIs); err != nil {
		return nil, fmt.Errorf("client %s: post_logout_redirect_uris: %w", c.ID, err)
	}
	// Grant types and scopes are tokens of printable ASCII without spaces
	// (checked at registration), so a space-joined list splits back exactly.
	c.GrantTypes, c.Scopes = strings.Fields(grants), strings.Fields(scopes)
	return &c, nil
}

// jsonList is list as a JSON array, [] for none. Without HTML escaping,
// which would store '&', '<' and '>' as six bytes each: a list takes about
// what it was sent as (MySQL's TEXT holds 64 KiB).
func jsonList(list []string) string {
	if len(list) == 0 {
		return "[]"
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(list) // strings always encode
	return strings.TrimSuffix(b.String(), "\n")
}

func nullIfEmpty(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// CreateClient inserts c. URI lists are stored as JSON arrays, so that an
// element reads back byte for byte whatever it holds; grant types and
// scopes must hold no whitespace inside an element. It commits only while
// by is an active admin, 0 for the operator (asAdmin).
func (db *DB) CreateClient(ctx context.Context, by int64, c *Client, now time.Time) (err error) {
	defer db.wrap(&err, "create client")
	return db.asAdmin(ctx, by, func(tx *txn) error { return tx.execOr(ctx, nil, qInsertClient, clientRow(c, now)...) })
}

const qInsertClient = `INSERT INTO clients (` + clientColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)`

// clientRow sets c's times to now and returns qInsertClient's arguments.
func clientRow(c *Client, now time.Time) []any {
	c.CreatedAt, c.UpdatedAt = now.UTC().Truncate(time.Second), now.UTC().Truncate(time.Second)
	return []any{c.ID, c.Name, nullIfEmpty(c.SecretHash), jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs),
		strings.Join(c.GrantTypes, " "), strings.Join(c.Scopes, " "), c.FirstParty, c.ResourceServer, c.Resource, c.BackchannelLogoutURI, c.RequireDPoP, c.RequirePAR,
		nullIfEmpty(c.RegistrationHash), c.AuthMethod, now.Unix()}
}

// ClientByID returns the client, or an error wrapping ErrNotFound.
func (db *DB) ClientByID(ctx context.Context, id string) (c *Client, err error) {
	defer db.wrap(&err, "client by id")
	if !storable(id) {
		return nil, ErrNotFound
	}
	return scanClient(db.queryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id))
}

// ListClients returns a page of clients ordered by creation, and how many
// clients exist.
func (db *DB) ListClients(ctx context.Context, limit, offset int) (list []Client, total int, err error) {
	defer db.wrap(&err, "list clients")
	if err := db.queryRow(ctx, `SELECT count(*) FROM clients`).Scan(&total); err != nil {
		return nil, 0, err
	}
	list, err = readAll(ctx, db, scanClient, `SELECT `+clientColumns+` FROM clients ORDER BY created_at, id LIMIT $1 OFFSET $2`, limit, offset)
	return list, total, err
}

// SetClientResource names the resource the resource server id is (its
// introspection answers only for tokens for it: RFC 7662 §4), "" for the
// ISSUER's, and records r (a ClientChange) so that every instance forgets
// the client. ErrNotFound if id is no resource server.
func (db *DB) SetClientResource(ctx context.Context, id, resource string, r Revocation, now time.Time) (err error) {
	defer db.wrap(&err, "set client resource")
	if !storable(id) {
		return ErrNotFound
	}
	return db.tx(ctx, func(tx *txn) error {
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE clients SET resource = $2, updated_at = $3 WHERE id = $1 AND resource_server`, id, resource, now.Unix()); err != nil {
			return err
		}
		return insertRevocation(ctx, tx, r)
	})
}

// DeleteClient deletes the client with its codes and consents, revokes its
// refresh token families, and records r, the client's revocation (a
// ClientDeletion), so that its access tokens, all of them, stop working on
// every instance. The client's row goes first, and its codes with it (ON
// DELETE CASCADE), the families after: an exchange holding one of its codes
// commits its family before the revocation reads them, and one that comes
// second finds its code gone (TestClientDeletionBesideCodeExchange). It
// commits only while by is an active admin, 0 for none (asAdmin), and
// while registration, the hash of the registration access token a
// registrant showed, is the client's ("" for an admin or the CLI): one
// rotated away by an update meanwhile deletes nothing (RFC 7592).
func (db *DB) DeleteClient(ctx context.Context, by int64, id, registration string, r Revocation, now time.Time) (err error) {
	defer db.wrap(&err, "delete client")
	if !storable(id) {
		return ErrNotFound
	}
	return db.asAdmin(ctx, by, func(tx *txn) error {
		if err := tx.execOr(ctx, ErrNotFound, `DELETE FROM clients WHERE id = $1 AND ($2 = '' OR registration_hash = $2)`, id, registration); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE token_families SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL`, id, now.Unix()); err != nil {
			return err
		}
		return insertRevocation(ctx, tx, r)
	})
}

// SetClientSecret replaces a confidential client's secret hash, records two
// revocations and returns them for the caller to apply here: a
// ClientRevocation of the client's access tokens minted until now, and a
// SecretRevocation of every one minted with the old secret, those another
// instance mints with it after now included. A rotation usually means the
// old secret leaked. Tokens minted with the new secret after now are not
// revoked. Refresh tokens survive; the client needs its new secret to use
// them. It commits only while by is an active admin, 0 for the operator
// (asAdmin).
func (db *DB) SetClientSecret(ctx context.Context, by int64, id, secretHash string, accessTTL time.Duration, now time.Time) (rs []Revocation, err error) {
	defer db.wrap(&err, "set client secret")
	if !storable(id) {
		return nil, ErrNotFound
	}
	err = db.asAdmin(ctx, by, func(tx *txn) error {
		// The no-op update holds the row, so that the hash read is the one
		// replaced: of two rotations at once, the second revokes the first's.
		var old string
		if err := tx.updateReturning(ctx, `UPDATE clients SET secret_hash = secret_hash WHERE id = $1 AND secret_hash IS NOT NULL`,
			`secret_hash`, `clients WHERE id = $1`, id).Scan(&old); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE clients SET secret_hash = $2, updated_at = $3 WHERE id = $1`, id, secretHash, now.Unix()); err != nil {
			return err
		}
		rs = []Revocation{ClientRevocation(id, accessTTL, now), SecretRevocation(old, accessTTL, now)}
		if err := insertRevocation(ctx, tx, rs[0]); err != nil {
			return err
		}
		return insertRevocation(ctx, tx, rs[1])
	})
	return rs, err
}

// --- authorization codes ---

// Code is an authorization code's grant, found by the code's hash.
type Code struct {
	Hash          string
	ClientID      string
	UserID        int64
	RedirectURI   string
	Scope         string
	CodeChallenge string
	Nonce         string
	AuthTime      time.Time
	SID           string // the browser sign-in that issued it (the ID token's sid)
	SessionHash   string // its cookie's hash, when creating: the sign-in is recorded as the client's
	DPoPJKT       string // the DPoP key the exchange must prove (RFC 9449 §10), or ""
	Resource      string // the resource granted (RFC 8707), or "" for the ISSUER
	ExpiresAt     time.Time
	Used          bool
	FamilyID      string // what the exchange issued (set once used)
	AccessJTI     string
	AccessExp     int64
}

// CreateCode stores a new authorization code and records that its
// browser sign-in (SessionHash) gave the client a code, for back-channel
// logout. A sign-in that has ended, or its user gone or inactive, is
// ErrNotFound (signInLive).
func (db *DB) CreateCode(ctx context.Context, c *Code, now time.Time) (err error) {
	defer db.wrap(&err, "create code")
	return db.tx(ctx, func(tx *txn) error {
		if err := signInLive(ctx, tx, c.UserID, c.SessionHash, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO auth_codes (hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at, sid, dpop_jkt, resource)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			c.Hash, c.ClientID, c.UserID, c.RedirectURI, c.Scope, c.CodeChallenge, c.Nonce, c.AuthTime.Unix(), now.Unix(), c.ExpiresAt.Unix(), c.SID, c.DPoPJKT, c.Resource); err != nil {
			return err
		}
		if c.SessionHash == "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO session_clients (session_hash, client_id) VALUES ($1, $2)`+db.keepExisting("session_clients", "client_id"), c.SessionHash, c.ClientID)
		return err
	})
}

// CodeByHash returns the code, used or not, or ErrNotFound.
func (db *DB) CodeByHash(ctx context.Context, hash string) (c *Code, err error) {
	defer db.wrap(&err, "code by hash")
	c = &Code{Hash: hash}
	err = db.queryRow(ctx, `SELECT client_id, user_id, redirect_uri, scope, code_challenge, nonce, auth_time, expires_at, used_at IS NOT NULL,
  COALESCE(family_id, ''), COALESCE(access_jti, ''), COALESCE(access_exp, 0), sid, dpop_jkt, resource
FROM auth_codes WHERE hash = $1`, hash).Scan(&c.ClientID, &c.UserID, &c.RedirectURI, &c.Scope, &c.CodeChallenge, &c.Nonce,
		unix{&c.AuthTime}, unix{&c.ExpiresAt}, &c.Used, &c.FamilyID, &c.AccessJTI, &c.AccessExp, &c.SID, &c.DPoPJKT, &c.Resource)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Issued is what a code exchange issues.
type Issued struct {
	Family      *Family // the session the grant starts, with or without a refresh token
	RefreshHash string
	RefreshExp  time.Time
	AccessJTI   string
	AccessExp   int64
}

// ExchangeCode spends the code and stores what it issued, atomically: of any
// number of concurrent exchanges of one code at most one succeeds; the others,
// and every later one, get ErrReused. A user gone or inactive is ErrNotFound.
// It returns the families of the user it ended (createFamilyTx).
func (db *DB) ExchangeCode(ctx context.Context, hash string, is Issued, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "exchange code")
	return db.startFamily(ctx, is, accessTTL, now, func(tx *txn) error {
		return tx.execOr(ctx, ErrReused, `UPDATE auth_codes SET used_at = $2, family_id = $3, access_jti = $4, access_exp = $5
WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`, hash, now.Unix(), is.Family.ID, is.AccessJTI, is.AccessExp)
	})
}

// --- consents ---

// ConsentedScope returns the scopes the user has granted the client at
// resource (one of RESOURCES, or "" for none: the ISSUER), and whether the
// user has consented to the client there at all. A consent at one resource
// says nothing of another (RFC 8707).
func (db *DB) ConsentedScope(ctx context.Context, userID int64, clientID, resource string) (scope string, ok bool, err error) {
	defer db.wrap(&err, "consent")
	err = db.queryRow(ctx, `SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3`, userID, clientID, resource).Scan(&scope)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return scope, err == nil, err
}

// SaveConsent records that the user granted the client scope at resource
// (replacing the previous grant there, which the caller has merged in) on
// the form of the browser sign-in whose cookie's hash is sessionHash. It
// is ErrNotFound, storing nothing, if the sign-in ended, the user is gone
// or inactive, or the client is gone. It holds the user's row, as a code
// does (signInLive): a password change, reset, deactivation or deletion,
// which forgets the user's consents, forgets one stored before it too, and
// one that comes after finds the sign-in gone. A write of its own
// committed after the change had forgotten the consents, and the consent
// an intruder gave outlived the owner taking the account back. It holds
// the client's row too, unchanged since c was read, or it is ErrNotFound:
// an RFC 7592 update forgets the client's consents, and a consent page
// shown before it (or by an instance whose cache has not heard of it yet)
// showed the old host and scopes, not the new.
func (db *DB) SaveConsent(ctx context.Context, userID int64, sessionHash string, c *Client, resource, scope string, now time.Time) (err error) {
	defer db.wrap(&err, "save consent")
	upsert := `ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at`
	if db.dialect == MySQL {
		upsert = `ON DUPLICATE KEY UPDATE scope = VALUES(scope), updated_at = VALUES(updated_at)` // MariaDB has no row alias for excluded
	}
	return db.tx(ctx, func(tx *txn) error {
		if err := signInLive(ctx, tx, userID, sessionHash, now); err != nil {
			return err
		}
		// The registration hash changes with every RFC 7592 update, within a second too.
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE clients SET updated_at = updated_at WHERE id = $1 AND updated_at = $2 AND COALESCE(registration_hash, '') = $3`,
			c.ID, c.UpdatedAt.Unix(), c.RegistrationHash); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO consents (user_id, client_id, resource, scope, updated_at) VALUES ($1, $2, $3, $4, $5)
`+upsert, userID, c.ID, resource, scope, now.Unix())
		return err
	})
}

// --- browser sessions ---

// Session is a signed-in browser at the authorization endpoint.
type Session struct {
	SID       string // public: the sid of its ID tokens and logout tokens
	Hash      string // of the cookie's value (set when read)
	UserID    int64
	AuthTime  time.Time
	ExpiresAt time.Time
	Verified  string // the password hash the sign-in verified: stored only while it is the user's
	Continues string // when creating: the hash of the sign-in, of the same user and SID, this one continues
}

// CreateSession stores a session under the hash of its cookie value. One
// that continues another (s.Continues: the same user signing in again in
// one browser) takes over the clients that every row of its sid reached,
// and the one continued goes: the relying parties holding the sid are told
// when this one ends. Its codes and approvals, which name the sid, stay
// good, and its hash is kept as the new one's prev_hash, for a logout sent
// with it (DeleteSession). If the sid ended meanwhile (no row of it is
// left): ErrConflict, and nothing is stored. A new one (not a
// continuation, which adds none) first ends the user's oldest live
// sign-ins past maxSignIns (endOldestSignInsTx), and returns them, for the
// caller to announce.
func (db *DB) CreateSession(ctx context.Context, hash string, s Session) (e Ended, err error) {
	defer db.wrap(&err, "create session")
	err = db.tx(ctx, func(tx *txn) error {
		if err := stillPassword(ctx, tx, s.UserID, s.Verified); err != nil {
			return err
		}
		if s.Continues == "" { // a sign-in is made at its AuthTime: now
			if e.SignIns, err = endOldestSignInsTx(ctx, tx, s.UserID, s.AuthTime.Unix()); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (hash, user_id, auth_time, expires_at, sid, prev_hash) VALUES ($1, $2, $3, $4, $5, $6)`,
			hash, s.UserID, s.AuthTime.Unix(), s.ExpiresAt.Unix(), s.SID, s.Continues); err != nil || s.Continues == "" {
			return err
		}
		// The sign-in is its sid, not the row continued: two logins sent at
		// once with one cookie (a double click, two tabs) both continue it,
		// and the second found the row gone. Taken for a logout, that
		// started a new sign-in, whose cookie the browser kept: its logout
		// left the sid live, its clients untold, its families unrevoked
		// (TestSignInAgainTwiceAtOnce). So one rule: a login that finds
		// the row it continued deletes every other row of the sid, and one
		// that finds it gone (another login at once continued it first: it
		// is late) deletes none, whose cookies the browser may keep instead
		// of its own (TestSignInAgainLate). A logout with any of them (or
		// with the one they continued, prev_hash) ends the sid (endSignIn),
		// and a sid has no more rows than logins sent at once. The clients
		// of every row move to this one, and the rows left expire together:
		// none is purged, its clients with it, while the sign-in lives
		// (TestSignInAgainAfterTwiceAtOnce).
		type row struct {
			hash    string
			expires int64
		}
		rows, err := tx.QueryContext(ctx, `SELECT hash, expires_at FROM sessions WHERE user_id = $1 AND sid = $2 AND hash <> $3`, s.UserID, s.SID, hash)
		if err != nil {
			return err
		}
		others, err := collect(rows, func(sc scanner) (*row, error) {
			var r row
			return &r, sc.Scan(&r.hash, &r.expires)
		})
		if err != nil || len(others) == 0 {
			return cmp.Or(err, ErrConflict)
		}
		expires := s.ExpiresAt.Unix()
		late := !slices.ContainsFunc(others, func(o row) bool { return o.hash == s.Continues })
		for _, o := range others {
			// The clients' rows before their session_clients rows, the
			// order of a client's deletion (ON DELETE CASCADE): MySQL checks
			// a moved row's foreign key to its client, and beside a
			// deletion each held what the other waited for: a deadlock's
			// victim, 503 (TestClientDeletionNoDeadlock). Copied, not
			// updated: two rows of the sid may name one client.
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET updated_at = updated_at WHERE id IN (SELECT client_id FROM session_clients WHERE session_hash = $1)`, o.hash); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_clients (session_hash, client_id) SELECT $1, sc.client_id FROM session_clients sc WHERE sc.session_hash = $2`+db.keepExisting("session_clients", "client_id"), hash, o.hash); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM session_clients WHERE session_hash = $1`, o.hash); err != nil {
				return err
			}
			if late {
				expires = max(expires, o.expires)
			} else if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE hash = $1`, o.hash); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET expires_at = $3 WHERE user_id = $1 AND sid = $2`, s.UserID, s.SID, expires)
		return err
	})
	return e, err
}

// maxSignIns caps a user's live browser sign-ins, for the reason
// maxLiveFamilies caps families: whoever holds the password can sign in
// from many addresses, each sign-in living 12 hours, and taking the
// account back (a password change or reset, deactivation, deletion) ends
// every one in one transaction within OpTimeout (endSignInsTx), which at
// 5*10^5 timed out on every try, so the owner could not lock the intruder
// out. A thousand is more than a person's browsers hold at once.
const maxSignIns = 1000

// endOldestSignInsTx, in the transaction that holds the user's row
// (stillPassword) to store a new sign-in, so that concurrent ones count one
// after another, ends the user's live sign-ins but the newest
// maxSignIns-1, at most maxSignIns at a time (a user with more from before
// the cap is brought under it over a few logins), as a logout ends a
// sign-in itself (endSignInsTx: its unused codes and approvals are void,
// its clients told), and returns them. The sessions its codes started live
// on, as after its expiry: maxLiveFamilies caps those. By sid, which names
// its codes and approvals too: sign-ins from before sids ("" names every
// one) are left to expire. Ended sign-ins are deleted, so the user's rows
// read here (sessions_user) are the live ones and those expired since the
// last purge (a minute ago): fewer than 2*maxSignIns sign-ins, with the
// rows of logins sent at once (CreateSession), so no other index.
func endOldestSignInsTx(ctx context.Context, tx *txn, userID, now int64) (ended []SignIn, err error) {
	// By sid: the rows of logins sent at once are one sign-in (CreateSession).
	rows, err := tx.QueryContext(ctx, `SELECT sid FROM sessions WHERE user_id = $1 AND expires_at > $2 AND sid <> ''
GROUP BY sid ORDER BY max(auth_time) DESC, sid DESC LIMIT $3 OFFSET $4`, userID, now, maxSignIns, maxSignIns-1)
	if err != nil {
		return nil, err
	}
	oldest, err := collect(rows, scanString)
	if err != nil {
		return nil, err
	}
	for _, sid := range oldest {
		told, err := endSignInsTx(ctx, tx, signInsBySID, sid)
		if err != nil {
			return nil, err
		}
		ended = append(ended, told...)
	}
	return ended, nil
}

// signInLive, in the transaction that stores what a browser sign-in (by
// its cookie's hash) grants, a code or a device approval, is ErrNotFound
// unless the sign-in is still there and its user active, and holds its
// user's row until commit (stillPassword). What ends a user's sign-ins (a
// password change or reset, deactivation, deletion, a logout: endSignIn)
// takes that row first, then voids the sign-ins' grants, then deletes the
// sign-ins: one that holds the row first has taken the sign-in away by the
// time this reads it; one that comes after waits for this transaction,
// then voids what it stored. Without the row, a grant stored between the
// voiding and the deleting outlived both. "" (no sign-in) checks the user
// alone.
func signInLive(ctx context.Context, tx *txn, userID int64, hash string, now time.Time) error {
	if err := stillPassword(ctx, tx, userID, ""); err != nil {
		return err
	}
	if hash == "" {
		return nil
	}
	// A statement of its own, once the row is held: it sees what a change
	// that held the row before committed.
	var one int
	return tx.QueryRowContext(ctx, `SELECT 1 FROM sessions WHERE hash = $1 AND user_id = $2 AND expires_at > $3`, hash, userID, now.Unix()).Scan(&one)
}

// SessionByHash returns the unexpired session of a live, active user, or ErrNotFound.
func (db *DB) SessionByHash(ctx context.Context, hash string, now time.Time) (s *Session, err error) {
	defer db.wrap(&err, "session")
	s = &Session{Hash: hash}
	err = db.queryRow(ctx, `SELECT s.user_id, s.auth_time, s.expires_at, s.sid FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.hash = $1 AND s.expires_at > $2 AND u.deleted_at IS NULL AND u.is_active`, hash, now.Unix()).Scan(&s.UserID, unix{&s.AuthTime}, unix{&s.ExpiresAt}, &s.SID)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// DeleteSession ends a browser sign-in (RP-initiated logout) with the codes
// it issued that were not exchanged yet and the sessions (refresh-token
// families) that its codes and device approvals started; it returns their
// sid revocations, for the caller to apply, and the clients to tell.
// hash is its cookie's, or the one its cookie replaced when the same user
// signed in again (prev_hash): a logout that a tab sent with the old cookie
// while another tab signed in again still ends the sign-in.
func (db *DB) DeleteSession(ctx context.Context, hash string, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "delete session")
	return db.endSignIn(ctx, `hash = $1 OR prev_hash = $1`, hash, nil, accessTTL, now)
}

// DeleteSessionBySID ends the browser sign-in whose public id is sid, as
// DeleteSession does (RP-initiated logout from a relying party's back end,
// which holds the sign-in's ID token but not its cookie), for the relying
// party clientID (the ID token's audience). A sign-in that has expired
// ended then for every relying party but the families it started (an
// expiry ends none): the logout ends only clientID's (endGoneSignInTx). An
// empty sid ends nothing: sign-ins from before sids were recorded all have "".
func (db *DB) DeleteSessionBySID(ctx context.Context, sid, clientID string, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "delete session by sid")
	if sid == "" {
		return e, nil
	}
	gone := func(tx *txn) ([]Revocation, error) { return endGoneSignInTx(ctx, tx, sid, clientID, accessTTL, now) }
	return db.endSignIn(ctx, signInsBySID, sid, gone, accessTTL, now)
}

// endSignIn ends the one sign-in that lookup (a WHERE on sessions) finds
// with arg. Given gone, it leaves one found expired, or not found, to gone
// (what is left of it to end); without, none found is nothing to end. It
// holds the sign-in's user's row first, as a password change does: a code
// or device approval of the sign-in (signInLive, which holds that row)
// either committed before, and is voided here with its client told,
// or waits and then finds the sign-in gone. Without the row, one stored
// meanwhile was unseen by the voiding, and outlived the logout
// (TestGrantBesideLogout). A sign-in with a sid is ended by it, which a
// sign-in continued meanwhile keeps (CreateSession) under a new hash
// (TestLogoutBesideSignInAgain), its longest-living row read first: the
// rows of one sid expire together (CreateSession), and should an expired
// one be read, the "gone" path would end only a relying party's part
// (TestLogoutBySIDReadsTheLiveRow); one from before sids, by its hash.
//
// The families started by its codes and device approvals end too, each
// with a sid revocation: OIDC Back-Channel Logout 1.0 §2.7 has refresh
// tokens issued without offline_access (which this server never grants)
// revoked when the sign-in ends. Without it a relying party with no
// back-channel URI, even the one that sent the logout, went on refreshing
// for up to REFRESH_TOKEN_MAX_DAYS. An exchange of one of its codes holds
// the user's row too: it committed its family before, or finds its code
// gone.
func (db *DB) endSignIn(ctx context.Context, lookup, arg string, gone func(*txn) ([]Revocation, error), accessTTL time.Duration, now time.Time) (e Ended, err error) {
	err = db.tx(ctx, func(tx *txn) error {
		var userID, expires int64
		var sid, hash string
		err := tx.QueryRowContext(ctx, `SELECT user_id, sid, hash, expires_at FROM sessions WHERE `+lookup+` ORDER BY expires_at DESC`, arg).Scan(&userID, &sid, &hash, &expires)
		if gone != nil && (errors.Is(err, sql.ErrNoRows) || err == nil && expires <= now.Unix()) {
			e.Revocations, err = gone(tx)
			return err
		}
		if errors.Is(err, sql.ErrNoRows) {
			return errNoChange // nothing to end, and no event
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = password_hash WHERE id = $1`, userID); err != nil {
			return err
		}
		// Whose it was, when the caller could not tell (an old or expired cookie).
		eventSubject(ctx, userID)
		if sid == "" { // a sign-in from before sids: nothing it gave names it
			_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE hash = $1`, hash)
			return err
		}
		if e.SignIns, err = endSignInsTx(ctx, tx, signInsBySID, sid); err != nil {
			return err
		}
		e.Revocations, err = revokeFamiliesTx(ctx, tx, familiesOfSignIn, sid, "", accessTTL, now)
		return err
	})
	return e, err
}

// endGoneSignInTx ends what the sign-in named sid started for the relying
// party clientID when the sign-in has expired (its row may be purged; the
// relying party may log out later): its unused codes, its approved device
// requests and the families they started. Only clientID's: the sign-in is
// over, and the families of other relying parties it started outlive it
// as after any expiry; anyone holding an old ID token of it (any relying
// party's, or one leaked with a logout URL) must not end them. No code
// or approval of it can be stored anew (signInLive); each delete waits for
// an exchange or redemption of the row it deletes, which then committed
// its family before the revocation reads the families, or finds its row
// gone. Nothing to end is errNoChange.
func endGoneSignInTx(ctx context.Context, tx *txn, sid, clientID string, accessTTL time.Duration, now time.Time) ([]Revocation, error) {
	voided := false
	for _, q := range []string{`DELETE FROM auth_codes WHERE used_at IS NULL AND sid = $1 AND client_id = $2`,
		`DELETE FROM device_codes WHERE status = 'approved' AND sid = $1 AND client_id = $2`} {
		err := tx.execOr(ctx, errNoChange, q, sid, clientID)
		if err != nil && !errors.Is(err, errNoChange) {
			return nil, err
		}
		voided = voided || err == nil
	}
	r, err := revokeFamiliesTx(ctx, tx, familiesOfSignInAt, sid, clientID, accessTTL, now)
	if err == nil && len(r) == 0 && !voided {
		return nil, errNoChange // nothing to end, and no event
	}
	return r, err
}

// --- password reset ---

// ErrLimited means a per-account limit refused the write.
var ErrLimited = errors.New("limit reached")

// ReplaceResetToken stores a one-time reset token's hash for the user and
// voids the user's previous unused ones, so that at most one link works at
// a time (a unique index backs it). It refuses with ErrLimited, storing
// nothing, when the user already had max tokens made within the last hour,
// and with ErrNotFound when the user is inactive or deleted.
func (db *DB) ReplaceResetToken(ctx context.Context, hash string, userID int64, max int, expires, now time.Time) (err error) {
	defer db.wrap(&err, "replace reset token")
	return db.replaceLink(ctx, "reset_tokens", userID, max, now,
		`INSERT INTO reset_tokens (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`, hash, userID, now.Unix(), expires.Unix())
}

// replaceLink stores a user's new one-time link token with insert (and
// args), in table (reset_tokens or email_verification_tokens, constants),
// after voiding the user's others, unless the user has had max of them in
// the past hour (ErrLimited) or is inactive or deleted (ErrNotFound). It
// holds the user's row first (stillPassword), as everything that writes a
// user's links does, before them: concurrent calls for one user, on any
// number of instances, count one after another, each what the one before
// stored; without it each counted before the others had committed, and a
// burst got past the cap.
func (db *DB) replaceLink(ctx context.Context, table string, userID int64, max int, now time.Time, insert string, args ...any) error {
	return db.tx(ctx, func(tx *txn) error {
		if err := stillPassword(ctx, tx, userID, ""); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE user_id = $1 AND created_at > $2`,
			userID, now.Add(-time.Hour).Unix()).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrLimited
		}
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL`, userID, now.Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, insert, args...)
		return err
	})
}

// ResetPassword spends the reset token, sets the new password hash and ends
// every session of the user, in one transaction (API.md "Sessions and
// revocation"): every refresh-token family and browser sign-in, the
// user's consents, every access token issued until now (a 'user'
// revocation, returned for the caller to apply locally), the user's other
// reset tokens and the login failures on record. An unknown, used or expired token, or a deleted
// user, is ErrNotFound and changes nothing.
func (db *DB) ResetPassword(ctx context.Context, tokenHash, passwordHash string, accessTTL time.Duration, now time.Time) (userID int64, e Ended, err error) {
	defer db.wrap(&err, "reset password")
	err = db.tx(ctx, func(tx *txn) error {
		// The user's row before the link's, as a password change, a
		// deactivation or a deletion takes them (revokeUserTx): in the other
		// order a reset beside one of them deadlocked, and one failed (503).
		// The spend below re-checks the link, which a concurrent reset may
		// have spent meanwhile.
		if err := tx.QueryRowContext(ctx, `SELECT user_id FROM reset_tokens WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`, tokenHash, now.Unix()).Scan(&userID); err != nil {
			return err
		}
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL`, userID, passwordHash, now.Unix()); err != nil {
			return err
		}
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE reset_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`, tokenHash, now.Unix()); err != nil {
			return err
		}
		eventSubject(ctx, userID)
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE user_id = $1`, userID); err != nil {
			return err
		}
		e, err = revokeUserTx(ctx, tx, userID, accessTTL, now)
		return err
	})
	return userID, e, err
}

// --- DPoP proofs and pushed authorization requests ---

// SpendProof records a DPoP proof (the hash of its key's thumbprint and
// jti) until expires; a proof recorded and not yet expired is ErrReused.
// Every instance shares the record, so a proof is accepted once anywhere.
func (db *DB) SpendProof(ctx context.Context, hash string, expires, now time.Time) (err error) {
	defer db.wrap(&err, "spend DPoP proof")
	if db.dialect == MySQL {
		// MySQL's upsert has no WHERE, and one that changes nothing counts
		// one row, as an insert does (clientFoundRows): drop the proof's
		// expired record, then insert. Of concurrent inserts of one proof,
		// InnoDB lets one through; the others wait on its key, then fail as
		// duplicates.
		err = db.tx(ctx, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, qDropProof, hash, now.Unix()); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, qInsertProof, hash, expires.Unix())
			return err
		})
		if err != nil && db.driver.Unique(err) {
			return ErrReused
		}
		return err
	}
	return db.exec(ctx, ErrReused, `INSERT INTO dpop_proofs (hash, expires_at) VALUES ($1, $2)
ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_proofs.expires_at <= $3`, hash, expires.Unix(), now.Unix())
}

// SpendProof's statements on MySQL.
const (
	qDropProof   = `DELETE FROM dpop_proofs WHERE hash = $1 AND expires_at <= $2`
	qInsertProof = `INSERT INTO dpop_proofs (hash, expires_at) VALUES ($1, $2)`
)

// PushRequest stores a pushed authorization request of the client under
// the hash of its request_uri.
func (db *DB) PushRequest(ctx context.Context, hash, clientID, params string, expires, now time.Time) (err error) {
	defer db.wrap(&err, "push authorization request")
	return db.exec(ctx, nil, `INSERT INTO pushed_requests (hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)`,
		hash, clientID, params, expires.Unix())
}

// TakePushedRequest returns the parameters of the client's pushed request
// the first time its request_uri arrives, and from then on keeps it until
// then (the sign-in's forms) for PushedRequest under the name taken, which
// the caller makes from the request_uri and the browser that took it, so
// that no other browser can read it. A request_uri used before, expired,
// unknown or another client's is ErrNotFound.
func (db *DB) TakePushedRequest(ctx context.Context, hash, taken, clientID string, then, now time.Time) (params string, err error) {
	defer db.wrap(&err, "take pushed request")
	if !storable(clientID) { // from the query string, unchecked; the hashes are hex
		return "", ErrNotFound
	}
	err = db.updateRow(ctx, func(r scanner) error { return r.Scan(&params) }, `UPDATE pushed_requests SET hash = $5, used_at = $3, expires_at = $4
WHERE hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3`, `params`, `pushed_requests WHERE hash = $5`, hash, clientID, now.Unix(), then.Unix(), taken)
	return params, err
}

// PushedRequest returns the parameters of a pushed request taken by
// TakePushedRequest (hash is its taken name) and not yet finished, or
// ErrNotFound.
func (db *DB) PushedRequest(ctx context.Context, hash, clientID string, now time.Time) (params string, err error) {
	defer db.wrap(&err, "pushed request")
	if !storable(clientID) {
		return "", ErrNotFound
	}
	err = db.queryRow(ctx, `SELECT params FROM pushed_requests WHERE hash = $1 AND client_id = $2 AND used_at IS NOT NULL AND expires_at > $3`,
		hash, clientID, now.Unix()).Scan(&params)
	return params, err
}

// FinishPushedRequest deletes a pushed request once its authorization
// response (a code or an error) is sent: it yields one response.
func (db *DB) FinishPushedRequest(ctx context.Context, hash string) (err error) {
	defer db.wrap(&err, "finish pushed request")
	return db.exec(ctx, nil, `DELETE FROM pushed_requests WHERE hash = $1`, hash)
}
