package auth

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Throttle is the per-account login limit (LOGIN_MAX_FAILURES, LOGIN_LOCKOUT):
// after Max failures within Window, logins for that account answer 429 until
// the window ends. It is counted in the database, so all replicas share it.
type Throttle struct {
	Max    int
	Window time.Duration
}

var errBadCredentials = errors.New("invalid login or password")

// lockedError says an account is throttled until Until, which is Wait after
// the attempt. Wait is measured on the clock the lock was checked with (the
// handlers' now), not the wall clock, so Retry-After agrees with the lock.
type lockedError struct {
	Until time.Time
	Wait  time.Duration
}

func (e *lockedError) Error() string { return "account throttled" }

// loginKey names the count of a login text, whether or not it names a user,
// so that unknown accounts are throttled exactly like known ones and a 429
// reveals nothing. It is hashed: attempted logins (sometimes passwords typed
// in the wrong field) are not stored.
func loginKey(login string) string {
	return token.Hash("login:" + strings.ToLower(login))
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
func authenticate(ctx context.Context, db *store.DB, pw *Passwords, th Throttle, login, password string, now time.Time) (*store.User, error) {
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
	byLogin, byUser, err := db.CountLoginAttempt(ctx, loginKey(login), uid, th.Window, now)
	if err != nil {
		return nil, err
	}
	if byLogin.Attempts > th.Max {
		return nil, &lockedError{Until: byLogin.Ends, Wait: byLogin.Ends.Sub(now)}
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
		return nil, errBadCredentials
	}
	if err := db.ClearLoginFailures(ctx, u.ID); err != nil {
		return nil, err
	}
	if rehash {
		if h, err := pw.Hash(ctx, password); err == nil {
			db.RehashPassword(ctx, u.ID, u.PasswordHash, h) // best effort: the old hash still verifies
		}
	}
	return u, nil
}

// foldEmail is the one form of an email address: stored at registration,
// and what every lookup compares byte for byte, so that an address matches
// whatever its letter case, the same way on every database.
func foldEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// userByLogin returns the user a login names: an email when it holds '@'
// (no username does), else a username, which is ASCII and compared without
// case. A non-ASCII login names no username: PostgreSQL's lower() would
// fold some (the Kelvin sign to k) and SQLite's would not.
func userByLogin(ctx context.Context, db *store.DB, login string) (*store.User, error) {
	if strings.Contains(login, "@") {
		return db.UserByEmail(ctx, foldEmail(login))
	}
	for i := 0; i < len(login); i++ {
		if login[i] >= utf8.RuneSelf {
			return nil, store.ErrNotFound
		}
	}
	return db.UserByUsername(ctx, strings.ToLower(login))
}

// Validation of user input (API.md: 422 with a message naming the field).

func validEmail(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>\"") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Contains(s, "@")
}

// validUsername: 3 to 32 of letters, digits, '.', '_', '-', starting with a
// letter or digit. No '@', so a login is never both an email and a username.
func validUsername(s string) bool {
	if len(s) < 3 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

// Password length in characters (API.md: 8 to 128).
const (
	minPassword = 8
	maxPassword = 128
)

func validPassword(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= minPassword && n <= maxPassword && !strings.ContainsRune(s, 0)
}

// validName: at most 100 characters, no control characters.
func validName(s string) bool {
	if utf8.RuneCountInString(s) > 100 {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
