package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrReused means a spent refresh token (or a used authorization code) was
// presented again; its family has been revoked (RFC 9700 §4.14.2).
var ErrReused = errors.New("reused")

// FormatID returns a user id as the string used for "sub" and revocations.
func FormatID(id int64) string { return strconv.FormatInt(id, 10) }

// --- login throttling ---

// LoginCount is how many login attempts an account has made in its current
// window, and when that window started and ends.
type LoginCount struct {
	Attempts    int
	Start, Ends time.Time
}

// CountLoginAttempt counts one login attempt, before its password is
// checked, against loginKey (derived from the login text) and, when userID
// is not 0, against the user. Each count is one atomic upsert, so that any
// number of concurrent attempts on any number of instances each get a count
// of their own: the caller checks the password only for counts within its
// limit, which bounds the checks per window whatever the concurrency. A
// window is fixed: it starts at the account's first attempt and restarts at
// the first attempt after it has passed. Both rows carry userID, so that
// ClearLoginFailures forgets every count that names the user.
func (db *DB) CountLoginAttempt(ctx context.Context, loginKey string, userID int64, window time.Duration, now time.Time) (byLogin, byUser LoginCount, err error) {
	defer db.wrap(&err, "count login attempt")
	insert, args := qCountInsertOne, []any{loginKey, now.Unix(), sql.NullInt64{Int64: userID, Valid: userID != 0}, now.Add(-window).Unix()}
	user := loginKey // the user's account, or for no user loginKey again
	if userID != 0 {
		user = userAccount(userID)
		insert, args = qCountInsertTwo, append(args, user)
	}
	read := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var account string
			var n int
			var start int64
			if err := rows.Scan(&account, &n, &start); err != nil {
				return err
			}
			c := LoginCount{Attempts: n, Start: time.Unix(start, 0), Ends: time.Unix(start, 0).Add(window)}
			if account == loginKey {
				byLogin = c
			} else {
				byUser = c
			}
		}
		return rows.Err()
	}
	if db.dialect == MySQL {
		// No RETURNING: the upsert, then a SELECT of its rows, in one
		// transaction. The upsert locks each row it inserts or updates until
		// commit, so the SELECT reads the counts this attempt made, and a
		// concurrent attempt's upsert of the same row waits for them: each
		// attempt still gets a count of its own.
		err = db.tx(withoutEvent(ctx), func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, insert+qCountUpsertMySQL, args...); err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, `SELECT account, failures, window_start FROM login_failures WHERE account IN ($1, $2)`, loginKey, user)
			if err != nil {
				return err
			}
			return read(rows)
		})
		return byLogin, byUser, err
	}
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	s, err := db.stmt(ctx, db.w, insert+qCountUpsert)
	if err != nil {
		return byLogin, byUser, err
	}
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return byLogin, byUser, err
	}
	return byLogin, byUser, read(rows)
}

// The count stops at 2^20 so that a flood of refused attempts cannot
// overflow the column.
const (
	qCountUpsert = `
ON CONFLICT (account) DO UPDATE SET
  failures = CASE WHEN login_failures.window_start <= $4 THEN 1
    WHEN login_failures.failures >= 1048576 THEN login_failures.failures
    ELSE login_failures.failures + 1 END,
  window_start = CASE WHEN login_failures.window_start <= $4 THEN $2 ELSE login_failures.window_start END,
  user_id = excluded.user_id
RETURNING account, failures, window_start`
	// MySQL assigns left to right, each assignment seeing those before it:
	// failures comes first, so both CASEs read the window_start the row had.
	qCountUpsertMySQL = `
ON DUPLICATE KEY UPDATE
  failures = CASE WHEN window_start <= $4 THEN 1 WHEN failures >= 1048576 THEN failures ELSE failures + 1 END,
  window_start = CASE WHEN window_start <= $4 THEN $2 ELSE window_start END,
  user_id = VALUES(user_id)`
	qCountInsertOne = `INSERT INTO login_failures (account, failures, window_start, user_id) VALUES ($1, 1, $2, $3)`
	qCountInsertTwo = qCountInsertOne + `, ($5, 1, $2, $3)`
)

// userAccount is the login_failures account of a user. Login-text accounts
// are hex digests (HMAC-SHA256), so the two can never collide.
func userAccount(userID int64) string { return "user:" + FormatID(userID) }

// ClearLoginFailures forgets every count that names the user (after a
// successful login or a password reset).
func (db *DB) ClearLoginFailures(ctx context.Context, userID int64) (err error) {
	defer db.wrap(&err, "clear login failures")
	return db.exec(ctx, nil, `DELETE FROM login_failures WHERE user_id = $1`, userID)
}

// --- refresh tokens ---

// Family is one chain of rotated refresh tokens.
type Family struct {
	ID        string
	UserID    int64
	ClientID  string
	Verified  string // the password hash a login verified: the family starts only while it is the user's ("" for a code)
	Scope     string // the scope granted to the family; tokens may narrow it
	AuthTime  time.Time
	CreatedAt time.Time // the session's start, its login (createFamilyTx): REFRESH_TOKEN_MAX_DAYS counts from it
	Revoked   bool
	DPoPJKT   string // a public client's refresh tokens are bound to this DPoP key (RFC 9449 §5), or ""
	Resource  string // the resource granted (RFC 8707), or "" for the ISSUER
	SID       string // the browser sign-in whose code or device approval started it, or "": it ends with the sign-in (endSignIn)
}

// RefreshToken is one refresh token of a family, found by its hash.
type RefreshToken struct {
	Hash       string
	Family     Family
	Scope      string
	ExpiresAt  time.Time
	Used       bool
	UserActive bool // the family's user exists, is not deleted and is active
	// Bound: issued while the family was bound to Family.DPoPJKT, so it
	// never refreshed without that key (false for tokens from before
	// migration 0022, whatever they were).
	Bound bool
}

// CreateFamily starts a family with its first refresh token (none when
// tokenHash is "": a grant without refresh tokens is still a session, which
// its access tokens name in sid). It returns the families of the user it
// ended to stay within maxLiveFamilies, for the caller to apply.
func (db *DB) CreateFamily(ctx context.Context, f Family, tokenHash string, expires time.Time, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "create token family")
	is := Issued{Family: &f, RefreshHash: tokenHash, RefreshExp: expires}
	return db.startFamily(ctx, is, accessTTL, now, func(*txn) error { return nil }) // the password login is the grant: nothing to spend
}

// startFamily starts the session a grant issued (is), in one transaction,
// in this order: it holds the user's row (stillPassword, with the password
// hash a login verified, "" after a code or a device approval), then spends
// the grant (spend: a code or a device request, ErrReused when spent
// before), then stores the family (createFamilyTx). The user's row comes
// first as in every transaction that ends or starts the user's sessions, so
// that a password change waits for this one or voids it.
func (db *DB) startFamily(ctx context.Context, is Issued, accessTTL time.Duration, now time.Time, spend func(tx *txn) error) (e Ended, err error) {
	err = db.tx(ctx, func(tx *txn) error {
		if err := stillPassword(ctx, tx, is.Family.UserID, is.Family.Verified); err != nil {
			return err
		}
		if err := spend(tx); err != nil {
			return err
		}
		e.Revocations, err = createFamilyTx(ctx, tx, *is.Family, is.RefreshHash, is.RefreshExp, accessTTL, now)
		return err
	})
	return e, err
}

// maxLiveFamilies caps a user's live (unrevoked) families. Whoever holds
// the password can start sessions from many addresses (the REST login
// allows 5 a minute per address, the code flow 100 an hour), each living
// up to REFRESH_TOKEN_MAX_DAYS; taking the account back (a password
// change or reset, deactivation, deletion) revokes every one, with a sid
// revocation each, in one transaction within OpTimeout, which at 10^5
// families timed out on every try, so that the owner could not lock the
// intruder out. A thousand is more than a person's devices and apps hold
// at once; past it, the oldest end.
const maxLiveFamilies = 1000

// SessionStart is when a session whose login was at authTime started: at
// that login, not at its code's redemption, since a browser sign-in up to
// 12 hours old would otherwise outlive REFRESH_TOKEN_MAX_DAYS by as much
// (API.md: "from its login"); now for a login not in the past.
func SessionStart(authTime, now time.Time) time.Time {
	if authTime.IsZero() || !authTime.Before(now) {
		return now
	}
	return authTime
}

// createFamilyTx stores the family, in a transaction that holds the
// user's row (stillPassword), so that concurrent ones count one after
// another. With maxLiveFamilies of the user's live already, it first ends
// the oldest, its client's first (endOldestFamiliesTx), and returns their
// revocations. The count reads an index of the user's live families
// (migration 0023), not the revoked ones that wait for the purge.
func createFamilyTx(ctx context.Context, tx *txn, f Family, tokenHash string, expires time.Time, accessTTL time.Duration, now time.Time) (ended []Revocation, err error) {
	var live int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM token_families WHERE user_id = $1 AND revoked_at IS NULL`, f.UserID).Scan(&live); err != nil {
		return nil, err
	}
	if live >= maxLiveFamilies {
		if ended, err = endOldestFamiliesTx(ctx, tx, f.UserID, f.ClientID, live-maxLiveFamilies+1, accessTTL, now); err != nil {
			return nil, err
		}
	}
	// A family that never refreshes mints nothing after now, and the purge
	// finds it by when it was made (purgeFamilies); one that refreshes is
	// bounded from its login.
	start := now
	if tokenHash != "" {
		start = SessionStart(f.AuthTime, now)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO token_families (id, user_id, client_id, scope, auth_time, created_at, dpop_jkt, resource, sid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		f.ID, f.UserID, f.ClientID, f.Scope, f.AuthTime.Unix(), start.Unix(), f.DPoPJKT, f.Resource, f.SID); err != nil {
		return nil, err
	}
	if tokenHash == "" {
		return ended, nil
	}
	_, err = tx.ExecContext(ctx, qInsertRefresh, tokenHash, f.ID, f.Scope, now.Unix(), expires.Unix(), f.DPoPJKT != "")
	return ended, err
}

// endOldestFamiliesTx revokes the user's n oldest live families, at most
// maxLiveFamilies (a user with more from before the cap is brought under
// it over a few logins), each with a sid revocation, and returns those.
// The client clientID's own go first: a client that starts sessions at
// the cap ends its own, not the user's sessions at other clients.
func endOldestFamiliesTx(ctx context.Context, tx *txn, userID int64, clientID string, n int, accessTTL time.Duration, now time.Time) (ended []Revocation, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM token_families WHERE user_id = $1 AND revoked_at IS NULL
ORDER BY CASE WHEN client_id = $3 THEN 0 ELSE 1 END, created_at, id LIMIT $2`, userID, min(n, maxLiveFamilies), clientID)
	if err != nil {
		return nil, err
	}
	oldest, err := collect(rows, scanString)
	if err != nil {
		return nil, err
	}
	for _, id := range oldest {
		r, err := revokeFamilyTx(ctx, tx, id, accessTTL, now)
		if errors.Is(err, errNoChange) {
			continue // revoked meanwhile (a logout): its revocation is on record
		} else if err != nil {
			return nil, err
		}
		ended = append(ended, *r)
	}
	return ended, nil
}

// AnyRefreshToken returns the refresh token with that hash, spent or not,
// expired or not (until the purge, see Purge), with its family: a spent
// token presented after its expiry is still a reuse, and revoking an
// expired one still ends its session, and so the access tokens minted from
// it, which may outlive it (RFC 7009 §2.1). The caller checks ExpiresAt.
func (db *DB) AnyRefreshToken(ctx context.Context, hash string) (t *RefreshToken, err error) {
	defer db.wrap(&err, "refresh token")
	t = &RefreshToken{Hash: hash}
	err = db.queryRow(ctx, `SELECT t.scope, t.expires_at, t.used_at IS NOT NULL, f.id, f.user_id, f.client_id, f.scope, f.auth_time, f.created_at, f.revoked_at IS NOT NULL,
  u.is_active AND u.deleted_at IS NULL, f.dpop_jkt, f.resource, t.bound
FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id JOIN users u ON u.id = f.user_id WHERE t.hash = $1`, hash).Scan(
		&t.Scope, unix{&t.ExpiresAt}, &t.Used, &t.Family.ID, &t.Family.UserID, &t.Family.ClientID, &t.Family.Scope,
		unix{&t.Family.AuthTime}, unix{&t.Family.CreatedAt}, &t.Family.Revoked, &t.UserActive, &t.Family.DPoPJKT, &t.Family.Resource, &t.Bound)
	if err != nil {
		return nil, err
	}
	return t, nil
}

const qInsertRefresh = `INSERT INTO refresh_tokens (hash, family_id, scope, created_at, expires_at, bound) VALUES ($1, $2, $3, $4, $5, $6)`

// RevokeSession ends a session: it revokes the family's refresh tokens and,
// in the same transaction, records a sid revocation so that every access
// token minted from the family stops working on every instance. It returns
// that revocation for the caller to apply locally, or nil when the family
// was already revoked (its revocation is on record) or does not exist; then
// ctx's audit event is not appended.
func (db *DB) RevokeSession(ctx context.Context, familyID string, accessTTL time.Duration, now time.Time) (r *Revocation, err error) {
	defer db.wrap(&err, "revoke session")
	err = db.tx(ctx, func(tx *txn) error {
		r, err = revokeFamilyTx(ctx, tx, familyID, accessTTL, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// revokeFamilyTx revokes the family with a sid revocation, and returns
// the revocation; errNoChange (no change, and no event) if the family was
// revoked already or does not exist.
func revokeFamilyTx(ctx context.Context, tx *txn, familyID string, accessTTL time.Duration, now time.Time) (*Revocation, error) {
	if err := tx.execOr(ctx, errNoChange, `UPDATE token_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, familyID, now.Unix()); err != nil {
		return nil, err
	}
	r := SessionRevocation(familyID, accessTTL, now)
	return &r, insertRevocation(ctx, tx, r)
}

// --- access token revocation ---

// Revocation kinds.
const (
	RevokeJTI    = "jti"    // one access token, by its jti
	RevokeSID    = "sid"    // every access token minted from a session (refresh-token family)
	RevokeUser   = "user"   // every access token of a user minted at or before NotBeforeMs
	RevokeClient = "client" // every access token of a client minted at or before NotBeforeMs
)

// SignIn is a browser sign-in that ended, and a client to tell of it: one
// the sign-in gave a code to, which has a back-channel logout URI.
type SignIn struct {
	SID      string
	UserID   int64
	ClientID string
	URI      string
}

// Ended is what a change ended, for the caller to apply to this instance
// (the revocations) and to announce (the sign-ins, by back-channel logout).
type Ended struct {
	Revocations []Revocation
	SignIns     []SignIn
}

// Revocation is one entry of the shared revocation list.
type Revocation struct {
	Kind        string
	Subject     string
	NotBeforeMs int64 // Unix milliseconds; for RevokeUser and RevokeClient
	ExpiresAt   int64 // Unix seconds; after this no token it covers can be valid
}

// revocationFor revokes what kind and subject name, until now; it is kept
// as long as a token minted now could live.
func revocationFor(kind, subject string, accessTTL time.Duration, now time.Time) Revocation {
	return Revocation{Kind: kind, Subject: subject, NotBeforeMs: now.UnixMilli(), ExpiresAt: now.Add(accessTTL + time.Minute).Unix()}
}

// UserRevocation revokes every access token of the user minted until now.
func UserRevocation(userID int64, accessTTL time.Duration, now time.Time) Revocation {
	return revocationFor(RevokeUser, FormatID(userID), accessTTL, now)
}

// ClientRevocation revokes every access token of the client minted until now.
func ClientRevocation(clientID string, accessTTL time.Duration, now time.Time) Revocation {
	return revocationFor(RevokeClient, clientID, accessTTL, now)
}

// ClientDeletion revokes every access token of a deleted client, minted
// before or after now: its id is never reused, and another instance may
// mint one after now, until its client cache hears of the deletion (a
// revocation poll; at most the cache's minute) or on a clock that runs
// ahead. It is kept as long as any such token could live: a minute past
// its cut-off, for one minted just before it and accepted for its exp's
// leeway (token.Leeway), or in a rotation that waited for its row.
func ClientDeletion(clientID string, accessTTL time.Duration, now time.Time) Revocation {
	r := ClientRevocation(clientID, accessTTL, now)
	r.NotBeforeMs = r.ExpiresAt * 1000
	r.ExpiresAt += 60
	return r
}

// SecretTag names a client secret, by its hash, in the access tokens minted
// with it (their secret_tag claim), so that its rotation can revoke them
// (SecretRevocation): 128 bits of the hash's own SHA-256, which tell
// nothing of the secret or of its stored hash. It is 32 hex digits, never
// a client id (22 characters). "" for no secret (a public client).
func SecretTag(secretHash string) string {
	if secretHash == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secretHash))
	return hex.EncodeToString(sum[:16])
}

// SecretRevocation revokes every access token minted with the client secret
// whose hash is secretHash, before or after now, as ClientDeletion does for
// a client and for the same reason: another instance takes the secret, and
// mints with it, until its client cache hears of the rotation. Its subject
// is the secret's tag, in a 'client' revocation (the kinds a database takes
// are fixed): a token is revoked by its secret_tag as by its client_id. A
// secret is never reused, and the new one's tokens have another tag.
func SecretRevocation(secretHash string, accessTTL time.Duration, now time.Time) Revocation {
	return ClientDeletion(SecretTag(secretHash), accessTTL, now)
}

// ClientChange revokes nothing (its cut-off is the epoch, before any token)
// but, as every client revocation does, makes each instance that reads it
// forget the client (auth.Revocations.Add): its metadata changed (an RFC
// 7592 update), which the other instances' client caches kept for their
// TTL, a removed redirect URI with it. It is kept two minutes, not a token's
// lifetime: an instance that polls later has read the client again since
// (its cache keeps one a minute), and a registrant's every update adds one.
func ClientChange(clientID string, now time.Time) Revocation {
	return Revocation{Kind: RevokeClient, Subject: clientID, ExpiresAt: now.Add(2 * time.Minute).Unix()}
}

// SessionRevocation revokes every access token minted from the family (a
// revoked family mints nothing more, so its cutoff is never needed).
func SessionRevocation(familyID string, accessTTL time.Duration, now time.Time) Revocation {
	return revocationFor(RevokeSID, familyID, accessTTL, now)
}

// Revoke records r for every instance to pick up.
func (db *DB) Revoke(ctx context.Context, r Revocation) (err error) {
	defer db.wrap(&err, "revoke")
	return db.tx(ctx, func(tx *txn) error { return insertRevocation(ctx, tx, r) })
}

func insertRevocation(ctx context.Context, tx *txn, r Revocation) error {
	at, err := tx.written()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO revocations (kind, subject, not_before_ms, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`,
		r.Kind, r.Subject, r.NotBeforeMs, r.ExpiresAt, at)
	return err
}

// written is a revocation's created_at, which the other instances' polls
// read by (RevocationsSince): the time it is written, not its request's,
// by the database's clock, which every instance shares (an instance whose
// clock ran 20 s behind stamped entries the others' polls had moved past).
// A request may wait long before its transaction (a password change for a
// hashing slot, a rehash and its new hash, up to 10 s each), and an entry
// stamped more than the polls' overlap before it commits is one they have
// moved past. So the transaction commits within OpTimeout + TxIdleTimeout
// of the stamp or not at all: the database ends it when its next statement,
// or its COMMIT, comes TxIdleTimeout after the one before (a COMMIT held up
// 25 s by a network stall committed a revocation no poll read, and the
// client's retry found nothing left to revoke). On PostgreSQL the bound is
// set here, for this transaction alone (SET LOCAL: PgBouncer in transaction
// mode keeps it); on MariaDB it is every session's (mysql/mysql.go); MySQL
// 8 has none (README); SQLite is a local file, with nothing in transit.
func (t *txn) written() (int64, error) {
	if t.at != 0 {
		return t.at, nil
	}
	q, into := `SELECT `+t.db.clock(), []any{&t.at}
	if t.db.dialect == Postgres { // set_config(…, true) is SET LOCAL
		q, into = q+fmt.Sprintf(`, set_config('idle_in_transaction_session_timeout', '%d', true)`, TxIdleTimeout.Milliseconds()), append(into, new(string))
	}
	err := t.Tx.QueryRowContext(t.ctx, q).Scan(into...)
	return t.at, err
}

// clock is the database's time in Unix seconds: at the statement's run,
// not the transaction's start.
func (db *DB) clock() string {
	switch db.dialect {
	case Postgres:
		return `floor(extract(epoch FROM clock_timestamp()))::bigint`
	case MySQL:
		return `UNIX_TIMESTAMP()`
	}
	return `unixepoch()`
}

// RevocationsSince calls apply with the unexpired (at now) revocations
// written at or after since, by the database's clock, which it returns as
// it was when it began (where the next poll starts, less its overlap), a
// page of at most page rows at a time, each read by a statement of its own
// within OpTimeout, until a short page. There is a row
// per revoked access token while it could be valid, millions of them: one
// statement for all passed OpTimeout from about 4 million on PostgreSQL,
// and no instance could start (auth.Revocations.Load) or catch up (Run).
// Each page starts after the last row of the one before by created_at,
// then id: the index the polls read by, which holds the id too (SQLite's
// rowid, InnoDB's primary key; PostgreSQL sorts each second's few rows), so
// that a page reads only its own rows (by id alone, a poll's first page
// scanned the table from its start on SQLite).
// Callers poll with an overlapping since, because a transaction commits up
// to OpTimeout + TxIdleTimeout after the time it stamped (written); so does
// a row behind a page already read, which the next poll reads. Applying an
// entry twice is harmless.
func (db *DB) RevocationsSince(ctx context.Context, since, now time.Time, page int, apply func([]Revocation)) (began time.Time, err error) {
	defer db.wrap(&err, "revocations since")
	var clock int64
	if err := db.queryRow(ctx, `SELECT `+db.clock()).Scan(&clock); err != nil {
		return began, err
	}
	for at, after := since.Unix(), int64(0); ; {
		list, err := readAll(ctx, db, func(s scanner) (*Revocation, error) {
			var r Revocation
			return &r, s.Scan(&at, &after, &r.Kind, &r.Subject, &r.NotBeforeMs, &r.ExpiresAt) // the last row's starts the next page
		}, `SELECT created_at, id, kind, subject, not_before_ms, expires_at FROM revocations
WHERE created_at >= $1 AND (created_at > $1 OR id > $2) AND expires_at > $3 ORDER BY created_at, id LIMIT $4`, at, after, now.Unix(), page)
		if err != nil {
			return began, err
		}
		apply(list)
		if len(list) < page {
			return time.Unix(clock, 0), nil
		}
	}
}

// Retention is how long rows that can no longer be used must still be kept.
type Retention struct {
	LoginWindow time.Duration // LOGIN_LOCKOUT: a count lives as long as its window
	AccessTTL   time.Duration // an access token lives this long after its mint
	MaxAge      time.Duration // REFRESH_TOKEN_MAX_DAYS: no family mints after it
	Audit       time.Duration // AUDIT_RETENTION_DAYS: audit events, and a deleted user's email and username, are kept this long (1 to 36,500 days; 0 in tests: nothing pruned)
}

// Purge deletes rows that can no longer matter, so that every table is
// bounded by what is live: expired revocations, refresh tokens, browser
// sessions, reset tokens, spent or expired verification tokens, login
// counts past their window, dead families and the codes that started them,
// and device requests an hour after they expire (a redeemed one with its
// session); and after r.Audit, audit events and a deleted user's email and
// username.
//
// A family (a session) is kept while it can mint (not revoked, younger than
// MaxAge) and then while an access token it minted may still be alive
// (AccessTTL after its revocation or its MaxAge), so that ending it then,
// by a replayed code, still records a sid revocation that reaches those
// tokens. The dead are found by indexes (migration 0028: revoked, which
// a family whose last refresh token expired is made, made in the last
// hour without a refresh token, or past MaxAge), not among the live:
// reading every live family to find them, past a million no statement
// ended within OpTimeout, and nothing was purged. Its spent refresh
// tokens go with it, expired or not: reuse detection protects a family
// that can still mint, and is moot once it cannot, so they are kept
// exactly as long as the family can be attacked (a spent token presented
// after its expiry is a reuse too: the thief may have refreshed long
// before). An expired unspent refresh token goes once the access token
// minted with it has expired too: until then its revocation still ends
// its session (AnyRefreshToken), which matters when refresh tokens live
// shorter than access tokens; for anything else it is refused as expired,
// row or no row. A used
// code goes with its family (a replay then has nothing left to revoke); an
// unused one at its expiry.
//
// Every table is purged in batches, each a statement of its own, until one
// finds fewer rows than a batch: a backlog too large to delete within
// OpTimeout, or a row locked in its midst, keeps what the batches before
// deleted, and the next run goes on from there. (One statement for the
// table would roll it all back, and start over every run, while the table
// grew without bound.) A table that cannot be purged does not keep the
// others from being purged.
func (db *DB) Purge(ctx context.Context, r Retention, now time.Time) (err error) {
	defer db.wrap(&err, "purge")
	t := now.Unix()
	minted := now.Add(-r.AccessTTL - time.Minute).Unix() // tokens minted before this are expired
	batches := func(query string, args ...any) {
		for {
			n, qerr := db.written(ctx, query, args...)
			if qerr != nil || n < purgeBatch {
				err = errors.Join(err, qerr)
				return
			}
		}
	}
	purge := func(table, where string, args ...any) { batches(db.deleteBatch(table, where), args...) }
	purge("revocations", `expires_at <= $1`, t) // each kept a minute past what it covers (auth.Tokens.RevokeAccess, revocationFor)
	// A refresh token expired a minute ago at least: a rotation of it on an
	// instance whose clock is behind may still be committing. Its family is
	// ended first, and only then, with the same bound, the tokens go: one
	// deleted with its family unended left that family to its max age.
	if e := db.endExpiredFamilies(ctx, t-60, minted); e != nil {
		err = errors.Join(err, e)
	} else {
		purge("refresh_tokens", `expires_at <= $1 AND created_at <= $2 AND used_at IS NULL`, t-60, minted)
	}
	err = errors.Join(err, db.purgeFamilies(ctx, minted, now.Add(-time.Hour).Unix(), r.MaxAge))
	purge("auth_codes", `family_id IS NULL AND expires_at <= $1`, t) // a used one goes with its family
	purge("sessions", `expires_at <= $1`, t)
	// Kept an hour at least: ReplaceResetToken counts an hour's links.
	purge("reset_tokens", `expires_at <= $1 AND created_at <= $2`, t, now.Add(-time.Hour).Unix())
	// The same hour for ReplaceVerificationToken; a spent link goes then
	// too (an unknown token is refused as a spent one is).
	purge("email_verification_tokens", `(expires_at <= $1 OR used_at IS NOT NULL) AND created_at <= $2`, t, now.Add(-time.Hour).Unix())
	purge("login_failures", `window_start <= $1`, now.Add(-r.LoginWindow).Unix())
	// A minute past its expiry, as a refresh token: an instance whose clock
	// is behind still accepts the proof (its iat) until its own clock says
	// it expired; purged at once by one that runs ahead, it was accepted
	// again there.
	purge("dpop_proofs", `expires_at <= $1`, t-60)
	purge("pushed_requests", `expires_at <= $1`, t)
	purge("registration_tokens", `expires_at <= $1`, t)
	// An hour after expiry: a late poll still hears expired_token. A
	// redeemed one goes with its session, as a used code: replayed later,
	// it still ends it.
	purge("device_codes", `family_id IS NULL AND expires_at <= $1`, now.Add(-time.Hour).Unix())
	if r.Audit > 0 {
		err = errors.Join(err, db.PruneAudit(ctx, now.Add(-r.Audit), now))
		// A user deleted before the oldest event kept is named by none: its
		// email and username go, for 'deleted:<id>', which no sign-up can
		// take (no '@', and a ':'), through the index of the deleted users
		// still named (migration 0027).
		named := `deleted_at <= $1 AND email LIKE '%@%'`
		if db.dialect == MySQL {
			named = `named_deleted <= $1`
		}
		batches(db.batch(`UPDATE users SET email = concat('deleted:', id), username = concat('deleted:', id)`, "users", named), now.Add(-r.Audit).Unix())
	}
	return err
}

// endExpiredFamilies ends each family whose unspent refresh token expired
// and is about to be purged, as of that expiry, without a sid revocation
// (every access token it minted expired before now, and it mints no more:
// a family holds one unspent token at a time, and one holding another,
// unexpired, is left alone), so that purgeFamilies finds it by the index
// of the revoked.
func (db *DB) endExpiredFamilies(ctx context.Context, t, minted int64) error {
	end := `UPDATE token_families SET revoked_at = COALESCE((SELECT min(rt.expires_at) FROM refresh_tokens rt
  WHERE rt.family_id = token_families.id AND rt.used_at IS NULL), $101) WHERE id IN ` + idList() + ` AND revoked_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id AND rt.used_at IS NULL AND rt.expires_at > $101)`
	for {
		// In expiry order, so that PostgreSQL reads the unspent tokens' index
		// (with DISTINCT it read every token of every family to find a few).
		ids, err := db.readIDs(ctx, `SELECT rt.family_id FROM refresh_tokens rt JOIN token_families f ON f.id = rt.family_id
WHERE rt.expires_at <= $1 AND rt.created_at <= $2 AND rt.used_at IS NULL AND f.revoked_at IS NULL ORDER BY rt.expires_at LIMIT `+strconv.Itoa(purgeBatch), t, minted)
		if err != nil {
			return err
		}
		var ended int64
		for chunk := range slices.Chunk(ids, 100) {
			n, err := db.written(ctx, end, idArgs(chunk, t)...)
			if err != nil {
				return err
			}
			ended += n
		}
		if len(ids) < purgeBatch || ended == 0 {
			return nil
		}
	}
}

// idList is "($1, ..., $100)", a list of a hundred ids, which idArgs fills.
// A shorter list repeats its last id: one statement text, not one per
// length, each prepared on every connection (MySQL counts them against
// max_prepared_stmt_count).
func idList() string {
	in := make([]string, 100)
	for i := range in {
		in[i] = "$" + strconv.Itoa(i+1)
	}
	return `(` + strings.Join(in, ", ") + `)`
}

// idArgs is the arguments of an idList of ids (at most 100), and then $101.
func idArgs(ids []string, arg101 any) []any {
	args := make([]any, 101)
	for i := range 100 {
		args[i] = ids[min(i, len(ids)-1)]
	}
	args[100] = arg101
	return args
}

// readIDs returns the one text column of the rows query finds.
func (db *DB) readIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	return readAll(ctx, db, func(s scanner) (*string, error) {
		var id string
		return &id, s.Scan(&id)
	}, query, args...)
}

// purgeFamilies deletes the dead families (sessions), once no access
// token they minted can be alive (at or before minted). A family's refresh tokens go first, by batches of their own:
// its row's ON DELETE CASCADE deleted them in the statement that deleted
// a batch of families, and one family rotated at its rate limit for
// REFRESH_TOKEN_TTL has millions of spent ones; that statement passed
// OpTimeout and rolled back, run after run. Then its used codes and
// redeemed device requests, and the family once no token is left. By
// lists of a hundred ids (no subquery): MariaDB runs a DELETE of the
// tokens whose family is dead by reading every refresh token, and MySQL
// refuses one whose subquery reads the table it deletes from. A family
// whose tokens another transaction holds stays for the next run: a round
// that deletes no family ends the arm.
func (db *DB) purgeFamilies(ctx context.Context, minted, deviceBefore int64, maxAge time.Duration) error {
	ids := idList()
	// A redeemed device request stays an hour past its expiry, as one not
	// redeemed (a late poll still hears expired_token), and its family
	// with it: a replay then still finds the session to end.
	steps := []struct {
		q     string
		nargs int // the ids, and for the device requests the hour's bound
	}{
		{db.deleteBatch("refresh_tokens", `family_id IN `+ids), 100},
		{db.deleteBatch("auth_codes", `family_id IN `+ids), 100},
		{db.deleteBatch("device_codes", `family_id IN `+ids+` AND expires_at <= $101`), 101},
		{db.deleteBatch("token_families", `id IN `+ids+` AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id)
  AND NOT EXISTS (SELECT 1 FROM device_codes d WHERE d.family_id = token_families.id)`), 100},
	}
	// Dead as revoked (a logout, a password change, a reuse; or its last
	// refresh token expired: endExpiredFamilies), as past maxAge, or as
	// one that never had a refresh token (a client without the grant),
	// made in the two hours before minted: the purge runs every minute,
	// and one it missed for longer waits for maxAge. Two hours, not one: a
	// device session waits for its redeemed request, which stays an hour
	// past an expiry up to ten minutes after the session began, longer than
	// an access token of under ten minutes lives (it lingered to maxAge).
	// Each is a range of an index.
	type arm struct {
		where string
		args  []any
	}
	arms := []arm{
		{`revoked_at IS NOT NULL AND revoked_at <= $1`, []any{minted}},
		{`created_at <= $1 AND created_at > $2 AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id)`,
			[]any{minted, minted - 7200}},
	}
	if maxAge > 0 {
		arms = append(arms, arm{`created_at <= $1`, []any{minted - int64(maxAge/time.Second)}})
	}
	for _, a := range arms {
		for {
			dead, err := db.readIDs(ctx, `SELECT id FROM token_families WHERE `+a.where+` LIMIT `+strconv.Itoa(purgeBatch), a.args...)
			if err != nil {
				return err
			}
			var gone int64
			for chunk := range slices.Chunk(dead, 100) {
				args := idArgs(chunk, deviceBefore)
				for i, step := range steps {
					for {
						n, err := db.written(ctx, step.q, args[:step.nargs]...)
						if err != nil {
							return err
						}
						if i == len(steps)-1 {
							gone += n
						}
						if n < purgeBatch {
							break
						}
					}
				}
			}
			if len(dead) < purgeBatch || gone == 0 {
				break
			}
		}
	}
	return nil
}

// purgeBatch is the most rows one statement of Purge or PruneAudit
// deletes: few enough to be done well within OpTimeout beside live
// traffic, many enough that a backlog of millions drains in minutes.
const purgeBatch = 5000

// deleteBatch is DELETE FROM table WHERE where, of at most purgeBatch rows.
func (db *DB) deleteBatch(table, where string) string {
	return db.batch(`DELETE FROM `+table, table, where)
}

// batch is head (a DELETE FROM table, or an UPDATE table SET …) of at most
// purgeBatch rows that where matches. MySQL takes DELETE and UPDATE …
// LIMIT, but no subquery on the table it writes; PostgreSQL and SQLite
// take no LIMIT there, but the rows a SELECT found. On PostgreSQL that
// SELECT locks them (FOR UPDATE): a row changed since the statement began
// is written only if it still matches, as with a plain DELETE (a login
// count whose window restarted, a pushed request extended), and cannot
// change between the SELECT and the write. It skips a row locked by
// another transaction, left for the next run, instead of waiting for it.
// On SQLite a statement runs alone.
func (db *DB) batch(head, table, where string) string {
	limit := ` LIMIT ` + strconv.Itoa(purgeBatch)
	switch db.dialect {
	case MySQL:
		return head + ` WHERE ` + where + limit
	case Postgres:
		return head + ` WHERE ctid = ANY(ARRAY(SELECT ctid FROM ` + table + ` WHERE ` + where + limit + ` FOR UPDATE SKIP LOCKED))`
	}
	return head + ` WHERE rowid IN (SELECT rowid FROM ` + table + ` WHERE ` + where + limit + `)`
}

const (
	// qRotatePostgres spends and replaces in one statement (a data-modifying
	// CTE, which SQLite lacks). The row lock the UPDATE takes makes a
	// concurrent rotation of the same token wait, re-check used_at, and
	// change nothing.
	qRotatePostgres = `WITH spent AS (
  UPDATE refresh_tokens t SET used_at = $2
  FROM token_families f, users u
  WHERE t.hash = $1 AND t.used_at IS NULL AND t.expires_at > $2
    AND f.id = t.family_id AND f.revoked_at IS NULL AND f.client_id = $3 AND f.created_at > $6 AND f.dpop_jkt IN ('', $8)
    AND u.id = f.user_id AND u.is_active AND u.deleted_at IS NULL
  RETURNING t.family_id, t.scope, f.user_id, f.auth_time, f.created_at, f.resource, f.dpop_jkt),
ins AS (
  INSERT INTO refresh_tokens (hash, family_id, scope, created_at, expires_at, bound)
  SELECT $4, family_id, scope, $2, LEAST($5, created_at + $7), dpop_jkt <> '' OR $9 <> '' FROM spent),
bound AS (
  UPDATE token_families SET dpop_jkt = $9 WHERE $9 <> '' AND dpop_jkt = '' AND id IN (SELECT family_id FROM spent))
SELECT family_id, scope, user_id, auth_time, created_at, resource FROM spent`
	// qSpend spends the token on SQLite and MySQL (updateReturning). On MySQL, InnoDB's UPDATE reads the row's latest committed
	// version, not the transaction's snapshot, and locks it until commit: a
	// concurrent rotation of the same token waits, then finds used_at set
	// and matches nothing (READ COMMITTED or REPEATABLE READ alike).
	qSpend = `UPDATE refresh_tokens SET used_at = $2
WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
  AND family_id IN (SELECT f.id FROM token_families f JOIN users u ON u.id = f.user_id
    WHERE f.revoked_at IS NULL AND f.client_id = $3 AND f.created_at > $4 AND f.dpop_jkt IN ('', $5) AND u.is_active AND u.deleted_at IS NULL)`
	// qSpendSQLite and qSpentMySQL are the statements updateReturning sends
	// for qSpend on SQLite and on MySQL (named for hotTx).
	qSpentCols, qSpentFrom = `family_id, scope`, `refresh_tokens WHERE hash = $1`
	qSpendSQLite           = qSpend + ` RETURNING ` + qSpentCols
	qSpentMySQL            = `SELECT ` + qSpentCols + ` FROM ` + qSpentFrom
	qFamilyOwner           = `SELECT user_id, auth_time, created_at, resource, dpop_jkt FROM token_families WHERE id = $1`
	// qBindFamily binds a family to a DPoP key if it is bound to none (a
	// public client's first proof, RFC 9449 §5).
	qBindFamily = `UPDATE token_families SET dpop_jkt = $2 WHERE id = $1 AND dpop_jkt = ''`
)

// RotateRefresh spends the refresh token oldHash and adds newHash to its
// family, atomically, only if the token is unspent and unexpired, its family
// is live, younger than maxAge (REFRESH_TOKEN_MAX_DAYS), belongs to
// clientID and is bound to no DPoP key or to jkt, and the family's user is
// active; with bind (a public client's request) a family bound to no key
// is bound to jkt in the same step (RFC 9449 §5); the new token is Bound if
// its family is, by then. The new token lives ttl, but never past the
// family's maxAge, and has the old token's scope (RFC 6749 §6:
// "identical"; a refresh narrows its access token only). It returns the
// spent token with its family. When any condition fails it changes nothing
// and returns ErrNotFound: the caller reads the token to tell why (and
// revokes the family on reuse). Of any number of concurrent calls with one
// oldHash, at most one succeeds.
func (db *DB) RotateRefresh(ctx context.Context, oldHash, newHash, clientID, jkt string, bind bool, ttl, maxAge time.Duration, now time.Time) (t *RefreshToken, err error) {
	defer db.wrap(&err, "rotate refresh token")
	t = &RefreshToken{Hash: oldHash, Used: true, UserActive: true}
	t.Family.ClientID = clientID
	bornAfter := now.Add(-maxAge).Unix()
	if db.dialect == Postgres {
		bindTo := "" // $9: the key to bind an unbound family to
		if bind {
			bindTo = jkt
		}
		err = db.writeRow(ctx, qRotatePostgres, oldHash, now.Unix(), clientID, newHash, now.Add(ttl).Unix(),
			bornAfter, int64(maxAge/time.Second), jkt, bindTo).Scan(&t.Family.ID, &t.Scope, &t.Family.UserID, unix{&t.Family.AuthTime}, unix{&t.Family.CreatedAt}, &t.Family.Resource)
	} else {
		err = db.tx(ctx, func(tx *txn) error {
			spent := tx.updateReturning(ctx, qSpend, qSpentCols, qSpentFrom, oldHash, now.Unix(), clientID, bornAfter, jkt)
			if err := spent.Scan(&t.Family.ID, &t.Scope); err != nil {
				return err
			}
			var key string // the family's, before this step: "" or jkt
			if err := tx.QueryRowContext(ctx, qFamilyOwner, t.Family.ID).Scan(&t.Family.UserID, unix{&t.Family.AuthTime}, unix{&t.Family.CreatedAt}, &t.Family.Resource, &key); err != nil {
				return err
			}
			if key == "" && bind && jkt != "" {
				if _, err := tx.ExecContext(ctx, qBindFamily, t.Family.ID, jkt); err != nil {
					return err
				}
				key = jkt
			}
			expires := min(now.Add(ttl).Unix(), t.Family.CreatedAt.Unix()+int64(maxAge/time.Second))
			_, err := tx.ExecContext(ctx, qInsertRefresh, newHash, t.Family.ID, t.Scope, now.Unix(), expires, key != "")
			return err
		})
	}
	if err != nil {
		return nil, err // sql.ErrNoRows becomes ErrNotFound
	}
	return t, nil
}
