package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// verification is what email verification needs: the queue that mails the
// links (nil without SMTP_HOST: none is sent), where they lead, how long
// they work, and whether a login requires a verified address.
type verification struct {
	mail     *MailQueue
	link     string        // $ISSUER/email/verify, the page handleVerifyPage renders
	ttl      time.Duration // EMAIL_VERIFICATION_TTL
	required bool          // REQUIRE_EMAIL_VERIFICATION
}

// verificationsPerHour is how many verification links one account is
// mailed in an hour at most, however often it registers, asks again or is
// refused a login.
const verificationsPerHour = 3

// send queues a verification link for the user. The lookup, the token and
// the mail are made off the request path, by the queue.
func (v verification) send(db *store.DB, userID int64, now time.Time, log *slog.Logger) {
	if v.mail != nil {
		v.mail.Enqueue(verifyJob(db, v, userID, now, log))
	}
}

// verifyJob composes the verification mail of the user, unless the
// address is verified already, the user is gone or inactive, or the
// account is over verificationsPerHour. A new link voids the previous one,
// and works only for the address it is mailed to.
func verifyJob(db *store.DB, v verification, userID int64, now time.Time, log *slog.Logger) Job {
	return func(ctx context.Context) (string, string, string, bool, error) {
		u, err := db.UserByID(ctx, userID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (!u.IsActive || u.EmailVerified)) {
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, err
		}
		tok := token.NewOpaque()
		err = db.ReplaceVerificationToken(ctx, token.Hash(tok), u.ID, u.Email, verificationsPerHour, now.Add(v.ttl), now)
		if errors.Is(err, store.ErrLimited) || errors.Is(err, store.ErrNotFound) {
			log.Warn("verification link not mailed: the account's hourly limit is reached, or the account ended", "user_id", u.ID)
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, err
		}
		// No username, as in the reset mail: whoever registered chose it.
		// Anyone may sign up with another's address, so the mail says what
		// pressing does for whoever holds the password (a verified address
		// is what relying parties sign people in by), and how its owner
		// takes such an account instead: a reset ends all its sessions.
		body := "Someone signed up on this server with this email address.\n\n" +
			"If it was you, open this link within " + v.ttl.String() + " and press the button:\n\n" +
			v.link + "?token=" + tok + "\n\n" + // base64url: nothing to escape
			"If it was not you, do not press it: whoever signed up holds the account's password, and pressing " +
			"tells every application that trusts this server that this address is theirs. Ignore this message, " +
			"or take the account over by asking for a password reset for this address.\n\n" +
			"The link works once, and only until another is sent.\n"
		return u.Email, "Verify your email address", body, true, nil
	}
}

var (
	errVerifyToken      = &httpx.Error{Kind: httpx.KindInvalid, Code: "invalid_token", Message: "the verification token is invalid, used or expired"}
	errEmailNotVerified = &httpx.Error{Kind: httpx.KindForbidden, Code: "email_not_verified",
		Message: "the email address is not verified yet: open the verification link mailed to it"}
)

// refuseUnverified is the REQUIRE_EMAIL_VERIFICATION check of a login (REST
// and the login form), made only once the password is known to be right,
// so that a wrong password never learns whether an address is verified.
// A user it refuses cannot sign in to ask for a link, so is mailed one
// (within verificationsPerHour). Password change does not check: its
// caller holds a session already.
func (v verification) refuseUnverified(r *http.Request, log *slog.Logger, db *store.DB, u *store.User, now time.Time) error {
	if !v.required || u.EmailVerified {
		return nil
	}
	// Audited as a failed login of its own reason: whoever sent it knew
	// the password of an account whose address no one has confirmed.
	ev := auditEvent(r.Context(), actLoginFailure, store.FormatID(u.ID), outFailure, "reason", "email_not_verified")
	ev.Actor = ""
	if err := db.Audit(r.Context(), ev); err != nil {
		return err
	}
	v.send(db, u.ID, now, log)
	return errEmailNotVerified
}

// verifyEmail spends a verification token: the user's email_verified
// becomes true.
func verifyEmail(r *http.Request, log *slog.Logger, db *store.DB, tok string, now time.Time) error {
	if len(tok) != token.OpaqueLen {
		return errVerifyToken
	}
	e := auditEvent(r.Context(), actEmailVerified, "", outSuccess) // the store names the user
	id, err := db.VerifyEmail(store.WithEvent(r.Context(), e), token.Hash(tok), now)
	if errors.Is(err, store.ErrNotFound) {
		return errVerifyToken
	}
	if err != nil {
		return err
	}
	info := httpx.InfoFrom(r)
	info.UserID = store.FormatID(id)
	return nil
}

// handleVerifyEmail serves POST /api/v1/auth/verify-email: the token in the
// body is the credential.
func handleVerifyEmail(log *slog.Logger, db *store.DB, now func() time.Time) http.Handler {
	type request struct {
		Token token.Secret `json:"token"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		return http.StatusNoContent, nil, verifyEmail(r, log, db, req.Token.Reveal(), now())
	})
}

// handleVerifyResend serves POST /api/v1/auth/verify-email/resend: a new
// link for the caller's address, if it is not verified yet. The answer is
// the same either way.
func handleVerifyResend(log *slog.Logger, db *store.DB, v verification, now func() time.Time) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		if v.mail == nil {
			return http.StatusAccepted, map[string]string{"status": "accepted", "message": "this server sends no mail"}, nil
		}
		v.send(db, principalOf(r).user.ID, now(), log)
		return http.StatusAccepted, map[string]string{"status": "accepted",
			"message": "unless the address is verified already, a verification link has been sent to it"}, nil
	})
}

// handleVerifyPage serves GET and POST /email/verify, the page the mailed
// link opens. GET only shows a button: mail scanners that follow links
// must not spend the token, so only the POST it sends verifies. The token
// travels in a hidden field and is itself the credential (the form needs
// no CSRF token: a forged POST would have to hold it).
func handleVerifyPage(log *slog.Logger, db *store.DB, b *Browser, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := &pageData{Title: "Verify your email address", Error: "This link is invalid, used or expired: ask for a new one."}
		if r.Method != http.MethodPost { // GET, or HEAD (which the GET route takes, on its looser budget): never a form
			if tok := r.URL.Query().Get("token"); len(tok) == token.OpaqueLen {
				b.render(w, http.StatusOK, "verify", "", &pageData{Title: bad.Title, Hidden: []hidden{{"token", tok}}})
			} else {
				b.render(w, http.StatusBadRequest, "verify", "", bad)
			}
			return
		}
		form, err := readForm(r)
		if err == nil {
			err = verifyEmail(r, log, db, form.Get("token"), now())
		}
		switch {
		case err == nil:
			b.render(w, http.StatusOK, "verify", "", &pageData{Title: "Email verified", Done: true})
		case errors.Is(err, errVerifyToken):
			b.render(w, http.StatusBadRequest, "verify", "", bad)
		default: // a malformed form, or the database
			b.fail(w, r, err)
		}
	})
}
