package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Reset is the password reset configuration (ENABLE_PASSWORD_RESET).
type Reset struct {
	TTL time.Duration // PASSWORD_RESET_TTL
	URL string        // PASSWORD_RESET_URL; ?token= is added by the URL's own rules
}

// resetLink returns the mailed link for a token.
func (rs *Reset) resetLink(tok string) string {
	u, err := url.Parse(rs.URL)
	if err != nil { // checked at start-up
		return rs.URL
	}
	q := u.Query()
	q.Set("token", tok)
	u.RawQuery = q.Encode()
	return u.String()
}

// handleForgot serves POST /api/v1/auth/password/forgot: always 202, so the
// answer says nothing about which addresses have accounts. The lookup, the
// link and the mail are all done later by the mail queue: before answering,
// a known and an unknown address cost the same work (a valid address is
// queued), so the time says nothing either.
func handleForgot(log *slog.Logger, db *store.DB, rs *Reset, mail *MailQueue, now func() time.Time) http.Handler {
	type request struct {
		Email string `json:"email"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		// Not validEmail: an account registered under an older, looser rule
		// (an internationalized domain in its U-label) must still get its
		// link. Its one form is the stored one; the lookup decides, later.
		email := foldEmail(req.Email)
		if len(email) > 254 || !strings.Contains(email, "@") {
			return 0, nil, invalid("email", "must be a valid email address")
		}
		// Recorded for every request, known address or not (the same work
		// before the answer); whose it was is looked up off the request path.
		if err := db.Audit(r.Context(), auditEvent(r.Context(), actResetRequest, "", outSuccess)); err != nil {
			return 0, nil, err
		}
		mail.Enqueue(forgotJob(db, rs, email, now, log))
		return http.StatusAccepted, map[string]string{"status": "accepted",
			"message": "if an account has this address, a reset link has been sent to it"}, nil
	})
}

// resetsPerHour is how many reset links one account is mailed in an hour
// at most: a flood of requests for an address (each IP within its own
// budget) must not flood its owner's inbox, nor the mail queue.
const resetsPerHour = 3

// forgotJob composes the reset mail for email, if it names an active
// account and the account is within resetsPerHour: a new link replaces the
// previous one (at most one works at a time).
func forgotJob(db *store.DB, rs *Reset, email string, now func() time.Time, log *slog.Logger) Job {
	return func(ctx context.Context) (string, string, string, bool, error) {
		u, err := db.UserByEmail(ctx, email)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, err
		}
		t := now()
		tok := token.NewOpaque()
		err = db.ReplaceResetToken(ctx, token.Hash(tok), u.ID, resetsPerHour, t.Add(rs.TTL), t)
		if errors.Is(err, store.ErrLimited) || errors.Is(err, store.ErrNotFound) {
			log.Warn("password reset not mailed: the account's hourly limit is reached, or the account ended", "user_id", u.ID)
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, err
		}
		// The mail names no account: the username is the registrant's
		// text, which mail readers may show as a link.
		body := "Someone asked to reset the password of the account with this email address.\n\n" +
			"To choose a new password, open this link within " + rs.TTL.String() + ":\n\n" +
			rs.resetLink(tok) + "\n\n" +
			"The link works once, and only until another is sent. If you did not ask for this, ignore this message: your password is unchanged.\n"
		return u.Email, "Reset your password", body, true, nil
	}
}

var errResetToken = &httpx.Error{Kind: httpx.KindInvalid, Code: "invalid_token", Message: "the reset token is invalid, used or expired"}

// resetPassword spends a reset token and sets the new password. Every
// session of the user ends (refresh tokens, access tokens issued until now,
// browser sign-ins) and the login failures on record are forgotten: a reset
// often follows a compromise, and its owner must be able to sign in at once.
func resetPassword(ctx context.Context, db *store.DB, pw *Passwords, ts *Tokens, tok, password string, now time.Time) error {
	if len(tok) != token.OpaqueLen {
		return errResetToken
	}
	if !validPassword(password) {
		return invalid("new_password", "must be 8 to 128 characters of UTF-8")
	}
	hash, err := pw.Hash(ctx, password)
	if err != nil {
		return err
	}
	e := auditEvent(ctx, actReset, "", outSuccess) // the store names the user
	_, ended, err := db.ResetPassword(store.WithEvent(ctx, e), token.Hash(tok), hash, ts.AccessTTL, now)
	if errors.Is(err, store.ErrNotFound) {
		return errResetToken
	}
	if err != nil {
		return err
	}
	ts.Ended(ended)
	return nil
}

// handleReset serves POST /api/v1/auth/password/reset: the token in the
// body is the credential.
func handleReset(log *slog.Logger, db *store.DB, pw *Passwords, ts *Tokens, now func() time.Time) http.Handler {
	type request struct {
		Token       token.Secret `json:"token"`
		NewPassword token.Secret `json:"new_password"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		if err := resetPassword(r.Context(), db, pw, ts, req.Token.Reveal(), req.NewPassword.Reveal(), now()); err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, nil, nil
	})
}

// handleResetPage serves GET and POST /password/reset: the page the mailed
// link opens by default, a form for the new password. It needs no script;
// the token travels in a hidden field and is itself the credential (so the
// form needs no CSRF token: a forged POST would have to hold it).
func handleResetPage(log *slog.Logger, db *store.DB, pw *Passwords, ts *Tokens, b *Browser, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost { // GET, or HEAD (which the GET route takes, on its looser budget): never a form
			// Only a token of the form mailed goes into the form, as at the
			// verify page: anything else, of any length, was reflected.
			if tok := r.URL.Query().Get("token"); len(tok) == token.OpaqueLen {
				b.render(w, http.StatusOK, "reset", "", &pageData{Title: "Choose a new password", Hidden: []hidden{{"token", tok}}})
			} else {
				b.fail(w, r, errResetToken)
			}
			return
		}
		form, err := readForm(r)
		if err != nil { // says which: malformed, too large (413), not a form
			b.fail(w, r, err)
			return
		}
		tok, p1, p2 := form.Get("token"), form.Get("new_password"), form.Get("confirm_password")
		if len(tok) != token.OpaqueLen { // nor from a POST: a page elsewhere could post any text to be shown here
			b.fail(w, r, errResetToken)
			return
		}
		data := &pageData{Title: "Choose a new password", Hidden: []hidden{{"token", tok}}}
		if p1 != p2 {
			data.Error = "The two passwords differ."
			b.render(w, http.StatusUnprocessableEntity, "reset", "", data)
			return
		}
		err = resetPassword(r.Context(), db, pw, ts, tok, p1, now())
		var e *httpx.Error
		switch {
		case err == nil:
			b.render(w, http.StatusOK, "reset", "", &pageData{Title: "Password changed", Done: true})
		case errors.As(err, &e):
			data.Error = e.Message
			b.render(w, e.Status(), "reset", "", data)
		default:
			b.fail(w, r, err)
		}
	})
}
