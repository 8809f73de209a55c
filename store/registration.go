package store

import (
	"context"
	"strings"
	"time"
)

// Dynamic client registration (RFC 7591, RFC 7592). Initial access tokens
// and registration access tokens are stored only as SHA-256 digests and
// looked up by digest; each is spent or replaced by one conditional
// statement, so that of concurrent requests with one token, one wins.

// AddRegistrationToken stores the hash of an initial access token.
func (db *DB) AddRegistrationToken(ctx context.Context, hash string, expires, now time.Time) (err error) {
	defer db.wrap(&err, "add registration token")
	return db.exec(ctx, nil, `INSERT INTO registration_tokens (hash, created_at, expires_at) VALUES ($1, $2, $3)`, hash, now.Unix(), expires.Unix())
}

// RegistrationTokenLive returns nil if the initial access token with hash
// is unspent and unexpired, else an error wrapping ErrNotFound. It spends
// nothing: RegisterClient does.
func (db *DB) RegistrationTokenLive(ctx context.Context, hash string, now time.Time) (err error) {
	defer db.wrap(&err, "registration token")
	var one int
	return db.queryRow(ctx, `SELECT 1 FROM registration_tokens WHERE hash = $1 AND expires_at > $2`, hash, now.Unix()).Scan(&one)
}

// RegisterClient stores c, a dynamically registered client (its
// RegistrationHash set), in one transaction that first spends the initial
// access token initialHash (none when it is ""). An unknown, expired or
// spent initial token is ErrNotFound and stores nothing; so is ErrLimited
// when max registered clients exist already. Concurrent registrations, on
// any number of instances, count one after another: each first updates
// the cap's row (cap_locks), which the others wait for until it commits.
func (db *DB) RegisterClient(ctx context.Context, c *Client, initialHash string, max int, now time.Time) (err error) {
	defer db.wrap(&err, "register client")
	return db.tx(ctx, func(tx *txn) error {
		if initialHash != "" {
			if err := tx.execOr(ctx, ErrNotFound, `DELETE FROM registration_tokens WHERE hash = $1 AND expires_at > $2`, initialHash, now.Unix()); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE cap_locks SET name = name WHERE name = 'registration'`); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM clients WHERE registration_hash IS NOT NULL`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrLimited
		}
		_, err := tx.ExecContext(ctx, qInsertClient, clientRow(c, now)...)
		return err
	})
}

// ClientByRegistrationHash returns the dynamically registered client whose
// registration access token has hash, or an error wrapping ErrNotFound.
func (db *DB) ClientByRegistrationHash(ctx context.Context, hash string) (c *Client, err error) {
	defer db.wrap(&err, "client by registration token")
	if hash == "" || !storable(hash) {
		return nil, ErrNotFound
	}
	return scanClient(db.queryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE registration_hash = $1`, hash))
}

// UpdateRegisteredClient replaces the metadata of a dynamically registered
// client (RFC 7592 §2.2) and its registration access token hash, if its
// current hash is still oldHash; else (a concurrent update rotated it, or
// the client is gone) ErrNotFound. The id, secret, first-party and
// resource-server flags are not touched. It records r, the client's
// ClientChange, for the other instances to forget what they cached, and
// forgets the consents users gave the client: they saw its name and the
// host it would send them to, which the registrant may have just changed
// (a real site's callback to be approved, then its own: RFC 9700 §4.11.2).
func (db *DB) UpdateRegisteredClient(ctx context.Context, c *Client, oldHash string, r Revocation, now time.Time) (err error) {
	defer db.wrap(&err, "update registered client")
	err = db.tx(ctx, func(tx *txn) error {
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE clients SET name = $3, redirect_uris = $4, post_logout_redirect_uris = $5, grant_types = $6, scopes = $7,
  require_dpop = $8, require_par = $9, token_endpoint_auth_method = $10, registration_hash = $11, updated_at = $12
WHERE id = $1 AND registration_hash = $2`,
			c.ID, oldHash, c.Name, jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs), strings.Join(c.GrantTypes, " "),
			strings.Join(c.Scopes, " "), c.RequireDPoP, c.RequirePAR, c.AuthMethod, c.RegistrationHash, now.Unix()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE client_id = $1`, c.ID); err != nil {
			return err
		}
		return insertRevocation(ctx, tx, r)
	})
	if err == nil {
		c.UpdatedAt = now.UTC().Truncate(time.Second)
	}
	return err
}
