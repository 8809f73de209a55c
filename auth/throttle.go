package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Throttle is the per-account login limit (LOGIN_MAX_FAILURES, LOGIN_LOCKOUT):
// after Max failures within Window, logins for that account answer 429 until
// the window ends. It is counted in the database, so all replicas share it.
type Throttle struct {
	Max    int
	Window time.Duration
	Key    []byte // the counts' names are MACs under it (account): from JWT_SECRET, so every instance names them alike
}

// account names the count of text, of a kind ("login", "device-address"):
// an HMAC under th.Key, so that a copy of the database does not give back
// what was typed into a login field (a password, at times) or an address
// to whoever guesses it, as the plain SHA-256 did. A new JWT_SECRET starts
// every count again.
func (th Throttle) account(kind, text string) string {
	return hex.EncodeToString(token.MAC(th.Key, kind+"\x00"+text))
}

// errBadCredentials is the one answer to a wrong login or password, known
// account or not.
var errBadCredentials = httpx.E(httpx.KindInvalidCredentials, "invalid login or password")

// errChangedMeanwhile is a login or a password change whose password was
// right but is no longer the user's (store.SetPassword, stillPassword):
// answered as a wrong one, logged and audited with a reason of its own,
// the mark of someone else who knew the old password.
var errChangedMeanwhile = httpx.E(httpx.KindInvalidCredentials, "invalid login or password")

// throttled is the answer to a login whose account is throttled: 429 with
// Retry-After measured on the clock the count was made with (the handlers'
// now), so that it agrees with the lock.
func throttled(wait time.Duration) *httpx.Error {
	return &httpx.Error{Kind: httpx.KindThrottled, Message: "too many failed logins for this account; retry later", RetryAfter: wait}
}

// errLockedNow marks, beside its throttled answer, the one attempt that
// locked the account: the first over the limit in its window, on whichever
// instance. Only it is audited (logLoginFailure): an event per refusal let
// anyone holding a lock fill the audit log. Were its event not written
// (a 503), no later attempt of the window would write it.
var errLockedNow = errors.New("this attempt locked the account")

// loginKey names the count of a login text, whether or not it names a user,
// so that unknown accounts are throttled exactly like known ones and a 429
// reveals nothing. Attempted logins are not stored (account).
func (th Throttle) loginKey(login string) string {
	return th.account("login", strings.ToLower(login))
}

// authenticate checks a login (email or username) and password. It takes as
// long for an unknown login as for a wrong password, answers both with
// errBadCredentials, and enforces the per-account throttle. A deactivated
// user is refused like a wrong password. When the stored hash was made with
// older parameters it is replaced.
//
// The throttle counts every attempt before the password is checked, in one
// atomic write per count, and checks only attempts within the limit: at most
// th.Max password checks of one account per window, however many requests
// arrive at once on however many instances (API.md). Two counts are kept:
// one per login text, which answers 429 once spent, and one per user, which
// bounds the checks of an account reached by both its username and its
// email. An attempt over the user's count but not over its login text's is
// refused exactly like a wrong password (after a dummy verification), so
// that a 429 never tells which username and email belong to one account
// (SECURITY.md, "Known limits").
//
// On a refusal it returns the user the login named, if any, for the audit
// record only (logLoginFailure), never to be signed in.
func authenticate(ctx context.Context, log *slog.Logger, db *store.DB, pw *Passwords, th Throttle, login, password string, now time.Time) (*store.User, error) {
	u, err := userByLogin(ctx, db, login)
	if errors.Is(err, store.ErrNotFound) {
		u, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	var uid int64
	if u != nil {
		uid = u.ID
	}
	byLogin, byUser, err := db.CountLoginAttempt(ctx, th.loginKey(login), uid, th.Window, now)
	if err != nil {
		return nil, err
	}
	if byLogin.Attempts == th.Max+1 { // one count per attempt: exactly one attempt sees it
		return u, fmt.Errorf("%w (%w)", throttled(byLogin.Ends.Sub(now)), errLockedNow)
	}
	if byLogin.Attempts > th.Max {
		return u, throttled(byLogin.Ends.Sub(now))
	}
	ok, rehash := false, false
	if u == nil || byUser.Attempts > th.Max {
		err = pw.VerifyDummy(ctx, password)
	} else {
		ok, rehash, err = pw.Verify(ctx, password, u.PasswordHash)
	}
	if err != nil {
		return nil, err
	}
	if !ok || !u.IsActive {
		return u, errBadCredentials
	}
	if err := db.ClearLoginFailures(ctx, u.ID); err != nil {
		return nil, err
	}
	if rehash { // best effort: the old hash still verifies, so a failure only waits for the next login
		if err := rehashPassword(ctx, db, pw, u, password); err != nil {
			log.WarnContext(ctx, "password not rehashed with the current parameters", "user_id", u.ID, "err", err)
		}
	}
	return u, nil
}

// rehashPassword stores password's hash under the current parameters in
// place of u's, and leaves in u.PasswordHash a stored hash that password
// verifies: the one the sign-in's session must still find
// (store.stillPassword).
func rehashPassword(ctx context.Context, db *store.DB, pw *Passwords, u *store.User, password string) error {
	h, err := pw.Hash(ctx, password)
	if err != nil {
		return err
	}
	err = db.RehashPassword(ctx, u.ID, u.PasswordHash, h)
	if err == nil {
		u.PasswordHash = h
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// The hash changed since it was read: another login of this user
	// rehashed it first (two logins right after a parameter change), or
	// the password changed. The stored one stands if password verifies it;
	// else u keeps the one read, and the session's write refuses the sign-in
	// as a password changed during a login.
	stored, err := db.UserByID(ctx, u.ID)
	if err != nil {
		return err
	}
	ok, _, err := pw.Verify(ctx, password, stored.PasswordHash)
	if ok {
		u.PasswordHash = stored.PasswordHash
	}
	return err
}

// foldEmail is the one form of an email address: stored at registration,
// and what every lookup compares byte for byte, so that an address matches
// whatever its letter case, the same way on every database. Nothing is
// trimmed: an address holds no white space (validEmail), so a login with
// some names no one and is counted under its own text (loginKey), where
// trimming Unicode's (U+00A0, U+2028) let it sign in under a count of its
// own, past the lock on the plain text.
func foldEmail(s string) string { return strings.ToLower(s) }

// userByLogin returns the user a login names: an email when it holds '@'
// (no username does), else a username, which is ASCII and compared without
// case. A non-ASCII login names no username: PostgreSQL's lower() would
// fold some (the Kelvin sign to k) and SQLite's would not.
func userByLogin(ctx context.Context, db *store.DB, login string) (*store.User, error) {
	if strings.Contains(login, "@") {
		return db.UserByEmail(ctx, foldEmail(login))
	}
	if !ascii(login) {
		return nil, store.ErrNotFound
	}
	return db.UserByUsername(ctx, strings.ToLower(login))
}
