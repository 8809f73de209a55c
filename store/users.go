package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// User is a live (not deleted) account.
type User struct {
	ID           int64
	Email        string
	Username     string
	PasswordHash string
	FirstName    string
	LastName     string
	Role         string
	IsActive     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// EmailVerified: the owner opened a link mailed to Email (VerifyEmail),
	// or an operator vouched for it. Whatever writes Email must set it false.
	EmailVerified bool
}

const userColumns = `id, email, username, password_hash, first_name, last_name, role, is_active, created_at, updated_at, email_verified`

func scanUser(s scanner) (*User, error) {
	var u User
	if err := s.Scan(&u.ID, &u.Email, &u.Username, &u.PasswordHash, &u.FirstName, &u.LastName,
		&u.Role, &u.IsActive, unix{&u.CreatedAt}, unix{&u.UpdatedAt}, &u.EmailVerified); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser inserts u, setting its ID and times. It returns an error wrapping
// ErrConflict if a live user has the same email or username (case-insensitive).
func (db *DB) CreateUser(ctx context.Context, u *User, now time.Time) (err error) {
	defer db.wrap(&err, "create user")
	if u.Role == "" {
		u.Role = RoleUser
	}
	u.CreatedAt, u.UpdatedAt = now.UTC().Truncate(time.Second), now.UTC().Truncate(time.Second)
	const insert = `INSERT INTO users (email, username, password_hash, first_name, last_name, role, is_active, created_at, updated_at, email_verified)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)`
	args := []any{u.Email, u.Username, u.PasswordHash, u.FirstName, u.LastName, u.Role, u.IsActive, now.Unix(), u.EmailVerified}
	return db.tx(ctx, func(tx *txn) error {
		var err error
		if db.dialect == MySQL { // MySQL 8 has no INSERT … RETURNING: the id the insert drew
			var res sql.Result
			if res, err = tx.ExecContext(ctx, insert, args...); err == nil {
				u.ID, err = res.LastInsertId()
			}
		} else {
			err = tx.QueryRowContext(ctx, insert+` RETURNING id`, args...).Scan(&u.ID)
		}
		eventSubject(ctx, u.ID)
		return err
	})
}

// UserByID returns the live user with id, or an error wrapping ErrNotFound.
// Inactive users are returned; callers decide what inactive forbids.
func (db *DB) UserByID(ctx context.Context, id int64) (u *User, err error) {
	defer db.wrap(&err, "user by id")
	return scanUser(db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 AND deleted_at IS NULL`, id))
}

// UserByEmail returns the live user whose stored email is exactly email
// (callers fold it first, as registration did), or ErrNotFound. The
// comparison is byte for byte on every database: SQL lower() folds only
// ASCII on SQLite and all of Unicode on PostgreSQL.
func (db *DB) UserByEmail(ctx context.Context, email string) (u *User, err error) {
	defer db.wrap(&err, "user by email")
	if !storable(email) {
		return nil, ErrNotFound
	}
	return scanUser(db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE `+db.liveUserWhere(false), email))
}

// UserByUsername returns the live user whose username, lower-cased, is
// lower (ASCII, lower-cased by the caller: usernames are ASCII), or
// ErrNotFound. Usernames hold no space, and MySQL's text comparison
// ignores trailing ones ('ann ' = 'ann'): one names nobody, as elsewhere.
func (db *DB) UserByUsername(ctx context.Context, lower string) (u *User, err error) {
	defer db.wrap(&err, "user by username")
	if !storable(lower) || strings.Contains(lower, " ") {
		return nil, ErrNotFound
	}
	return scanUser(db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE `+db.liveUserWhere(true), lower))
}

// liveUserWhere finds a live user by its email, or by its lower-cased
// username, $1. MySQL has neither partial nor expression indexes: its
// unique keys index generated columns, which a lookup must name to use
// them (else every login and forgotten password read the whole table).
func (db *DB) liveUserWhere(username bool) string {
	switch {
	case db.dialect == MySQL && username:
		return `live_username = $1`
	case db.dialect == MySQL:
		return `live_email = $1`
	case db.dialect == Postgres && username: // as its index, whatever the database's collation (migration 0025)
		return `lower(username COLLATE "C") = $1 AND deleted_at IS NULL`
	case username:
		return `lower(username) = $1 AND deleted_at IS NULL`
	}
	return `email = $1 AND deleted_at IS NULL`
}

// UpdateProfile sets the names that are non-nil and returns the user.
func (db *DB) UpdateProfile(ctx context.Context, id int64, firstName, lastName *string, now time.Time) (u *User, err error) {
	defer db.wrap(&err, "update profile")
	err = db.updateRow(ctx, func(r scanner) (err error) { u, err = scanUser(r); return err }, `UPDATE users SET
first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name), updated_at = $4
WHERE id = $1 AND deleted_at IS NULL`, userColumns, `users WHERE id = $1`, id, firstName, lastName, now.Unix())
	if err != nil {
		return nil, err
	}
	return u, nil
}

// UpdateUserAdmin sets the role and active flag that are non-nil, as the
// admin by asks (asAdmin). Turning a user inactive also ends every session
// of the user (see revokeUserTx).
func (db *DB) UpdateUserAdmin(ctx context.Context, by, id int64, role *string, active *bool, accessTTL time.Duration, now time.Time) (u *User, e Ended, err error) {
	defer db.wrap(&err, "update user")
	err = db.asAdmin(ctx, by, func(tx *txn) error {
		var err error
		u, err = scanUser(tx.updateReturning(ctx, `UPDATE users SET
role = COALESCE($2, role), is_active = COALESCE($3, is_active), updated_at = $4
WHERE id = $1 AND deleted_at IS NULL AND (role <> COALESCE($2, role) OR is_active <> COALESCE($3, is_active))`, userColumns, `users WHERE id = $1`, id, role, active, now.Unix()))
		if errors.Is(err, sql.ErrNoRows) {
			// No such user, or nothing to change: then the user as it is, no
			// write and no event (a repeated PATCH, say, bumped updated_at
			// and appended one, as if the role had been set then).
			if u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 AND deleted_at IS NULL`, id)); err == nil {
				err = errNoChange
			}
		}
		if err != nil || active == nil || *active {
			return err
		}
		e, err = revokeUserTx(ctx, tx, id, accessTTL, now)
		return err
	})
	return u, e, err
}

// ErrNotAdmin means the user who asked for a write is not an active admin
// once it is made: demoted, deactivated or deleted meanwhile, or by this
// very write.
var ErrNotAdmin = errors.New("not an active admin")

// asAdmin runs write, a change only an admin may ask for (a user's role,
// active flag or deletion; a client's creation, deletion or new secret)
// that the admin by asks for, in a transaction that is ErrNotAdmin, and
// changes nothing, unless by is still an active admin after write. So an
// admin demoted while a request of theirs was on its way cannot complete
// it, and at least one active admin (by) always remains. Concurrent ones,
// on any number of instances, run one after another: each first updates
// the admins' row of cap_locks, before any user's or client's row (nothing
// that holds one waits for it), and checks once the one before committed.
// Without it, two admins demoting each other both succeeded, leaving none.
//
// By 0 is no user: the operator, whose CLI runs with the database's own
// credentials, or a client's registrant (auth/register.go, which checked
// the registration access token). Then write runs in a plain transaction.
func (db *DB) asAdmin(ctx context.Context, by int64, write func(tx *txn) error) error {
	if by == 0 {
		return db.tx(ctx, write)
	}
	return db.tx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `UPDATE cap_locks SET name = name WHERE name = 'admins'`); err != nil {
			return err
		}
		werr := write(tx)
		if werr != nil && !errors.Is(werr, errNoChange) {
			return werr
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1 AND role = 'admin' AND is_active AND deleted_at IS NULL`, by).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotAdmin
		}
		return cmp.Or(err, werr) // errNoChange: a write that changed nothing, and no event
	})
}

// stillPassword, first in the transaction that starts a sign-in, a session
// or a grant (a code, a device approval, and their exchanges), holds the
// user's row if the user is active and its password hash is still
// verified, the one the login checked ("" when no password was checked
// here: any), and is ErrNotFound if not. A password change, reset,
// deactivation or deletion writes that row before it ends the user's
// sessions: one that commits first voids what this transaction would
// start; one that comes after waits for it, then ends what it started with
// the user's other sessions. Without the hold, an exchange in flight
// committed its session after the change had revoked the user's families.
func stillPassword(ctx context.Context, tx *txn, userID int64, verified string) error {
	return tx.execOr(ctx, ErrNotFound, `UPDATE users SET password_hash = password_hash
WHERE id = $1 AND ($2 = '' OR password_hash = $2) AND is_active AND deleted_at IS NULL`, userID, verified)
}

// SetPassword replaces the user's password hash and ends every other
// session of the user, in one transaction (API.md "Sessions and
// revocation"): each refresh-token family but keepFamily (the caller's
// session; "" for none) is revoked with a sid revocation for its access
// tokens, every browser sign-in ends with the codes it has not yet had
// exchanged, the user's consents go (endSignInsTx), and outstanding reset
// links are spent. It returns what ended, for the caller to apply and
// announce. The change is authorised by the current password, whose hash
// the caller verified (old): it is ErrNotFound, and writes nothing, unless
// old is still the user's hash and the user active. Without that, a change
// by whoever else knew the old password, verified before the owner's reset
// or change (or an admin's deactivation) and written after it, replaced the
// owner's new password and ended their new sessions.
func (db *DB) SetPassword(ctx context.Context, id int64, old, hash, keepFamily string, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "set password")
	err = db.tx(ctx, func(tx *txn) error {
		err := tx.execOr(ctx, ErrNotFound, `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 AND password_hash = $4 AND is_active AND deleted_at IS NULL`, id, hash, now.Unix(), old)
		if err != nil {
			return err
		}
		// Reset links mailed before the change would replace the new
		// password: they are spent, as a reset spends the user's others.
		if _, err := tx.ExecContext(ctx, `UPDATE reset_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL`, id, now.Unix()); err != nil {
			return err
		}
		// Sign-ins and their codes first, families after: see revokeUserTx.
		if e.SignIns, err = endSignInsTx(ctx, tx, signInsByUser, id); err != nil {
			return err
		}
		e.Revocations, err = revokeFamiliesTx(ctx, tx, familiesOfUser, id, keepFamily, accessTTL, now)
		return err
	})
	return e, err
}

// revokeFamiliesTx revokes the live refresh-token families that where
// (familiesOfUser, familiesOfSignIn or familiesOfSignInAt) selects with its two arguments, each
// with a sid revocation for the access tokens minted from it, and returns
// those revocations. By sid, not only by a cutoff in time: a family's refresh or login committed while this
// transaction was on its way (a reset hashes the new password after its
// request's time) mints an access token dated after that time, which only
// its sid covers.
func revokeFamiliesTx(ctx context.Context, tx *txn, where string, arg1, arg2 any, accessTTL time.Duration, now time.Time) ([]Revocation, error) {
	err := tx.execOr(ctx, errNoChange, `UPDATE token_families SET revoked_at = $3 WHERE `+where+` AND revoked_at IS NULL`, arg1, arg2, now.Unix())
	if errors.Is(err, errNoChange) {
		return nil, nil // none live: nothing ended here (endGoneSignInTx appends no event then)
	} else if err != nil {
		return nil, err
	}
	// The families revoked now (and any that another transaction revoked
	// in the same second: a second sid revocation changes nothing), all
	// recorded by one statement, however many there are.
	revoked := `FROM token_families WHERE ` + where + ` AND revoked_at = $3`
	r := SessionRevocation("", accessTTL, now)
	at, err := tx.written()
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (kind, subject, not_before_ms, expires_at, created_at)
SELECT 'sid', id, $4, $5, $6 `+revoked, arg1, arg2, now.Unix(), r.NotBeforeMs, r.ExpiresAt, at); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id `+revoked, arg1, arg2, now.Unix())
	if err != nil {
		return nil, err
	}
	return collect(rows, func(s scanner) (*Revocation, error) {
		family := r
		return &family, s.Scan(&family.Subject)
	})
}

// The families revokeFamiliesTx revokes, each selected with two arguments.
// A browser sign-in's are named by its sid, as a family records it.
const (
	familiesOfUser     = `user_id = $1 AND id <> $2`    // a user's but the family $2 ("" for none)
	familiesOfSignIn   = `sid = $1 AND client_id <> $2` // a sign-in's but the relying party $2's ("" for none)
	familiesOfSignInAt = `sid = $1 AND client_id = $2`  // a sign-in's at the relying party $2 ("" for none)
)

// The browser sign-ins endSignInsTx ends: a user's, or one by its
// (non-empty) sid. Each names the same column in sessions, auth_codes and
// device_codes, so the codes and approvals the sign-ins gave are found
// through their own index, not a subquery on sessions (which MariaDB runs
// once for every row of the table).
const (
	signInsByUser = `user_id = $1`
	signInsBySID  = `sid = $1`
)

// endSignInsTx ends the browser sign-ins that where (signInsByUser or
// signInsBySID) selects with arg, and voids the codes they issued that
// were not exchanged yet, and the device requests they approved that were
// not redeemed yet; a user's (signInsByUser) with every such code and
// request of the user's (a sign-in's row is purged at its expiry, while a
// code or approval it gave in its last minutes lives on: a device request
// 600 s), and the user's consents. It returns each ended sign-in with each
// client it gave a code to that has a back-channel logout URI.
func endSignInsTx(ctx context.Context, tx *txn, where string, arg any) ([]SignIn, error) {
	// DISTINCT: two rows of a sid may name one client (CreateSession).
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT s.sid, s.user_id, c.id, c.backchannel_logout_uri
FROM sessions s JOIN session_clients sc ON sc.session_hash = s.hash JOIN clients c ON c.id = sc.client_id
WHERE s.`+where+` AND s.sid <> '' AND c.backchannel_logout_uri <> '' ORDER BY s.sid, c.id`, arg)
	if err != nil {
		return nil, err
	}
	out, err := collect(rows, func(s scanner) (*SignIn, error) {
		var si SignIn
		return &si, s.Scan(&si.SID, &si.UserID, &si.ClientID, &si.URI)
	})
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE used_at IS NULL AND `+where, arg); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM device_codes WHERE status = 'approved' AND `+where, arg); err != nil {
		return nil, err
	}
	if where == signInsByUser {
		// The user's consents too (every caller ends a user's sign-ins
		// because someone else may have held the account: a password
		// change or reset, deactivation, deletion). One given meanwhile, to
		// a client of the intruder's own, let any page that sent the
		// owner's signed-in browser to it with prompt=none get a code.
		if _, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE user_id = $1`, arg); err != nil {
			return nil, err
		}
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE `+where, arg)
	return out, err
}

// ListUsers returns live users ordered by id, and how many live users exist.
func (db *DB) ListUsers(ctx context.Context, limit, offset int) (users []User, total int, err error) {
	defer db.wrap(&err, "list users")
	if err := db.queryRow(ctx, `SELECT count(*) FROM users WHERE deleted_at IS NULL`).Scan(&total); err != nil {
		return nil, 0, err
	}
	users, err = readAll(ctx, db, scanUser, `SELECT `+userColumns+` FROM users WHERE deleted_at IS NULL ORDER BY id LIMIT $1 OFFSET $2`, limit, offset)
	return users, total, err
}

// DeleteUser soft-deletes the user, as the admin by asks (asAdmin), and
// ends every session of the user. The row stays, for the ids its families,
// codes and audit events hold, but what only a live account needs goes:
// the password hash (emptied: no password verifies it, nor does anything
// read a deleted user's) and the names. The email and username go later, once
// the audit events of the account are pruned (Purge).
func (db *DB) DeleteUser(ctx context.Context, by, id int64, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "delete user")
	err = db.asAdmin(ctx, by, func(tx *txn) error {
		err := tx.execOr(ctx, ErrNotFound, `UPDATE users SET deleted_at = $2, updated_at = $2, password_hash = '', first_name = '', last_name = ''
WHERE id = $1 AND deleted_at IS NULL`, id, now.Unix())
		if err != nil {
			return err
		}
		e, err = revokeUserTx(ctx, tx, id, accessTTL, now)
		return err
	})
	return e, err
}

// revokeUserTx ends every session of the user: it revokes all the user's
// refresh token families, each with a sid revocation, ends the browser
// sign-ins (the user's consents go with them: endSignInsTx), and records a
// 'user' revocation, so that access tokens issued
// until now (and any its sessions mint) stop working on every instance.
// The records live as long as such a token could.
//
// The codes go before the families: a code exchanged meanwhile either is
// deleted first (its exchange then fails) or holds its row until it has
// committed its family, which the revocation, reading after, then finds.
// In the other order that family was created after the revocation had
// read them, and lived on.
//
// It also spends the user's outstanding reset and verification links: a
// reset link mailed before a deactivation would otherwise still replace the
// password, which then held after a reactivation, and a verification link
// still verified a deactivated user's address.
func revokeUserTx(ctx context.Context, tx *txn, id int64, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	for _, links := range []string{"reset_tokens", "email_verification_tokens"} {
		if _, err := tx.ExecContext(ctx, `UPDATE `+links+` SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL`, id, now.Unix()); err != nil {
			return e, err
		}
	}
	if e.SignIns, err = endSignInsTx(ctx, tx, signInsByUser, id); err != nil {
		return e, err
	}
	if e.Revocations, err = revokeFamiliesTx(ctx, tx, familiesOfUser, id, "", accessTTL, now); err != nil {
		return e, err
	}
	r := UserRevocation(id, accessTTL, now)
	e.Revocations = append(e.Revocations, r)
	return e, insertRevocation(ctx, tx, r)
}

// RehashPassword replaces the user's password hash with one of the same
// password under new parameters, only if the stored hash is still old
// (ErrNotFound if not). It revokes nothing: the password did not change.
func (db *DB) RehashPassword(ctx context.Context, id int64, old, hash string) (err error) {
	defer db.wrap(&err, "rehash password")
	return db.exec(ctx, ErrNotFound, `UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2`, id, old, hash)
}

// --- email verification ---

// ReplaceVerificationToken stores a one-time email verification token's
// hash for the user and the address it is mailed to, and voids the user's
// previous unused ones, so that at most one link works at a time (a unique
// index backs it). It refuses with ErrLimited, storing nothing, when the
// user already had max tokens made within the last hour, and with
// ErrNotFound when the user is inactive or deleted.
func (db *DB) ReplaceVerificationToken(ctx context.Context, hash string, userID int64, email string, max int, expires, now time.Time) (err error) {
	defer db.wrap(&err, "replace verification token")
	return db.replaceLink(ctx, "email_verification_tokens", userID, max, now,
		`INSERT INTO email_verification_tokens (hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		hash, userID, email, now.Unix(), expires.Unix())
}

// VerifyEmail spends the verification token and marks the user's email
// verified, in one transaction, and returns the user's id. The token works
// once, before it expires, and only while the user's email is still the
// address it was mailed to. An unknown, used or expired token, another
// address, or a deleted user is ErrNotFound and changes nothing.
func (db *DB) VerifyEmail(ctx context.Context, tokenHash string, now time.Time) (userID int64, err error) {
	defer db.wrap(&err, "verify email")
	err = db.tx(ctx, func(tx *txn) error {
		// The user's row before the link's, as a new link takes them
		// (replaceLink): in the other order a verification beside a new
		// link deadlocked, and one failed. The spend below re-checks the
		// link, which a concurrent call may have spent or voided meanwhile.
		var email string
		if err := tx.QueryRowContext(ctx, `SELECT user_id, email FROM email_verification_tokens WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`,
			tokenHash, now.Unix()).Scan(&userID, &email); err != nil {
			return err
		}
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE users SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2 AND deleted_at IS NULL`,
			userID, email, now.Unix()); err != nil {
			return err
		}
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE email_verification_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2`, tokenHash, now.Unix()); err != nil {
			return err
		}
		eventSubject(ctx, userID)
		return nil
	})
	return userID, err
}
