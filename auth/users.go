package auth

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// userJSON is a user as API.md shows it: never the password hash.
type userJSON struct {
	ID            int64     `json:"id"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	Username      string    `json:"username"`
	FirstName     string    `json:"first_name"`
	LastName      string    `json:"last_name"`
	Role          string    `json:"role"`
	IsActive      bool      `json:"is_active"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func toJSON(u *store.User) userJSON {
	return userJSON{u.ID, u.Email, u.EmailVerified, u.Username, u.FirstName, u.LastName, u.Role, u.IsActive, u.CreatedAt, u.UpdatedAt}
}

// restHandler adapts a REST endpoint: it decodes the JSON body into a new In
// (not when In is struct{}, nor when the body is empty and optional), calls
// do, and answers do's error, or out as JSON with status (no body when out
// is nil), every answer no-store.
func restHandler[In any](log *slog.Logger, optional bool, do func(r *http.Request, in *In) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A parameter named twice is refused: Query().Get would read the
		// first, so that ?limit=5&limit=100 were one more form of limit=5.
		for _, v := range r.URL.Query() {
			if len(v) > 1 {
				httpx.WriteError(w, r, log, httpx.E(httpx.KindInvalid, "a query parameter is repeated"))
				return
			}
		}
		in := new(In)
		if _, none := any(in).(*struct{}); !none && !(optional && noBody(r)) {
			if err := httpx.DecodeJSON(r, in); err != nil {
				httpx.WriteError(w, r, log, err)
				return
			}
		}
		// No answer is stored on the way: a profile, a user list or an
		// audit page holds personal data (ASVS 8.3.1), a token pair or a
		// new client secret a secret (RFC 6749 §5.1).
		httpx.NoStore(w)
		status, out, err := do(r, in)
		switch {
		case err != nil:
			httpx.WriteError(w, r, log, err)
		case out == nil:
			w.WriteHeader(status)
		default:
			if o, ok := out.(shownOnce); ok {
				out = o.body
			}
			httpx.JSON(w, status, out)
		}
	})
}

// noBody reports whether r's body is empty: of length 0, or of a length
// not announced (chunked, or HTTP/2 without content-length) with no byte
// in it, which read as a body that is not JSON (a logout so sent failed,
// and its session lived on). A byte read is put back.
func noBody(r *http.Request) bool {
	if r.ContentLength != -1 {
		return r.ContentLength == 0
	}
	var first [1]byte
	n, err := io.ReadFull(r.Body, first[:])
	if n == 0 && err == io.EOF {
		return true
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(first[:n]), r.Body), r.Body}
	return false
}

// shownOnce is an answer holding a secret that is shown this once and must
// not be stored on the way: a new client secret.
type shownOnce struct{ body any }

func invalid(field, msg string) *httpx.Error {
	return httpx.E(httpx.KindValidation, "%s: %s", field, msg)
}

// handleRegister serves POST /api/v1/auth/register, and mails the new
// user a verification link when mail is configured.
func handleRegister(log *slog.Logger, db *store.DB, pw *Passwords, enabled bool, v verification, now func() time.Time) http.Handler {
	type request struct {
		Email     string       `json:"email"`
		Username  string       `json:"username"`
		Password  token.Secret `json:"password"`
		FirstName string       `json:"first_name"`
		LastName  string       `json:"last_name"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		if !enabled {
			return 0, nil, &httpx.Error{Kind: httpx.KindForbidden, Code: "registration_disabled", Message: "registration is disabled"}
		}
		u, err := Register(r.Context(), db, pw, req.Email, req.Username, req.Password.Reveal(), req.FirstName, req.LastName, store.RoleUser, false, now())
		if err != nil {
			return 0, nil, err
		}
		httpx.InfoFrom(r).UserID = store.FormatID(u.ID)
		v.send(db, u.ID, now(), log)
		return http.StatusCreated, toJSON(u), nil
	})
}

// Register validates and creates a user; the CLI uses it too, and only it
// may pass verified (the operator vouches for the address). Validation
// failures are *httpx.Error values (422, or 409 for a duplicate).
func Register(ctx context.Context, db *store.DB, pw *Passwords, email, username, password, first, last, role string, verified bool, now time.Time) (*store.User, error) {
	email = foldEmail(email)
	switch {
	case !validEmail(email):
		return nil, invalid("email", "must be a valid email address")
	case !validUsername(username):
		return nil, invalid("username", "3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case !validPassword(password):
		return nil, invalid("password", "must be 8 to 128 characters of UTF-8")
	case !validName(first):
		return nil, invalid("first_name", "at most 100 characters, no control characters")
	case !validName(last):
		return nil, invalid("last_name", "at most 100 characters, no control characters")
	case role != store.RoleUser && role != store.RoleAdmin:
		return nil, invalid("role", "must be user or admin")
	}
	hash, err := pw.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	u := &store.User{Email: email, Username: username, PasswordHash: hash, FirstName: first, LastName: last, Role: role, IsActive: true, EmailVerified: verified}
	e := auditEvent(ctx, actUserCreated, "", outSuccess, "role", role) // the store names the new user
	if err := db.CreateUser(store.WithEvent(ctx, e), u, now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, httpx.E(httpx.KindConflict, "email or username already taken")
		}
		return nil, err
	}
	return u, nil
}

// handleLogin serves POST /api/v1/auth/login: a token pair for the REST
// API. Every failure that concerns the credentials answers the same 401
// body, whether the account exists or not; each is logged with the client
// IP (msg "login failed") for fail2ban. With REQUIRE_EMAIL_VERIFICATION,
// the right password of an unverified address answers 403
// email_not_verified.
func handleLogin(log *slog.Logger, db *store.DB, ts *Tokens, pw *Passwords, th Throttle, m *Metrics, v verification, now func() time.Time) http.Handler {
	type request struct {
		Login    string       `json:"login"`
		Password token.Secret `json:"password"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		if req.Login == "" || len(req.Login) > 254 || req.Password == "" || len(req.Password) > 4*maxPassword {
			return 0, nil, invalid("login", "login and password are required")
		}
		t := now()
		u, err := authenticate(r.Context(), log, db, pw, th, req.Login, req.Password.Reveal(), t)
		if err != nil {
			return 0, nil, cmp.Or(logLoginFailure(r, log, db, m, u, err), err)
		}
		if err := v.refuseUnverified(r, log, db, u, t); err != nil {
			return 0, nil, err
		}
		httpx.InfoFrom(r).UserID = store.FormatID(u.ID)
		ev := auditEvent(r.Context(), actLoginSuccess, store.FormatID(u.ID), outSuccess, "via", "rest")
		pair, err := ts.StartSession(store.WithEvent(r.Context(), ev), db, u, RESTClientID, "", t, t)
		if errors.Is(err, errChangedMeanwhile) { // the password changed since it was verified
			err = cmp.Or(logLoginFailure(r, log, db, m, u, err), err)
		}
		if err != nil {
			return 0, nil, err
		}
		m.TokensIssued.With(grantPassword).Inc()
		return http.StatusOK, pair, nil
	})
}

// logLoginFailure writes the line fail2ban matches: msg "login failed" and
// the client IP, and the audit event (login.failure, or login.lockout for
// the attempt that spent the account's count), naming the user u when the
// login named one. Neither holds the login text or the password. The
// attempts refused while the lock lasts are logged and counted, not
// audited: they change nothing, and anyone may send them. An event that
// cannot be written is the request's error.
func logLoginFailure(r *http.Request, log *slog.Logger, db *store.DB, m *Metrics, u *store.User, err error) error {
	var e *httpx.Error
	if !errors.As(err, &e) || (e.Kind != httpx.KindInvalidCredentials && e.Kind != httpx.KindThrottled) {
		return nil // the database or hashing failed: not the client's doing
	}
	reason, action := "bad_credentials", actLoginFailure
	if e.Kind == httpx.KindThrottled {
		reason, action = "throttled", actLoginLockout
	} else if errors.Is(err, errChangedMeanwhile) {
		reason = "changed_meanwhile"
	}
	m.LoginFailures.Inc()
	info := httpx.InfoFrom(r)
	log.WarnContext(r.Context(), "login failed", "client_ip", info.ClientIP.String(), "reason", reason, "request_id", info.ID)
	if action == actLoginLockout && !errors.Is(err, errLockedNow) {
		return nil
	}
	subject := ""
	if u != nil {
		subject = store.FormatID(u.ID)
	}
	ev := auditEvent(r.Context(), action, subject, outFailure, "reason", reason)
	// The token's user for a password change; for a login no one is known
	// (store.Event), and the relying party whose page it was did not try it.
	ev.Actor = info.UserID
	return db.Audit(r.Context(), ev)
}

// handleRefresh serves POST /api/v1/auth/refresh: the refresh token in the
// body is the credential.
func handleRefresh(log *slog.Logger, db *store.DB, ts *Tokens, m *Metrics, now func() time.Time) http.Handler {
	type request struct {
		RefreshToken token.Secret `json:"refresh_token"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		pair, old, err := ts.Rotate(r.Context(), db, req.RefreshToken.Reveal(), RESTClientID, Narrow{}, now())
		if err != nil {
			return 0, nil, refreshFailure(r.Context(), log, httpx.InfoFrom(r), err, false)
		}
		httpx.InfoFrom(r).UserID = store.FormatID(old.Family.UserID)
		m.TokensIssued.With(grantRefreshToken).Inc()
		return http.StatusOK, pair, nil
	})
}

// handleLogout serves POST /api/v1/auth/logout: the caller's session ends
// (API.md "Sessions and revocation"): the family the token names in sid,
// with every access token minted from it, and the family of the
// refresh_token in the body if one is sent and is the user's. Each is
// stored before the answer, so a 204 means every instance will honour it.
func handleLogout(log *slog.Logger, db *store.DB, ts *Tokens, now func() time.Time) http.Handler {
	type request struct {
		RefreshToken token.Secret `json:"refresh_token"`
	}
	return restHandler(log, true, func(r *http.Request, req *request) (int, any, error) {
		p, t := principalOf(r), now()
		families := []string{p.claims.SessionID}
		if p.claims.SessionID == "" { // a token minted before every session was named in sid
			families = nil
			if err := ts.RevokeAccess(r.Context(), db, p.claims); err != nil {
				return 0, nil, err
			}
		}
		if req.RefreshToken != "" {
			// Expired or not, as at the revocation endpoint: its session's
			// access tokens may outlive it (RFC 7009 §2.1).
			rt, err := db.AnyRefreshToken(r.Context(), token.Hash(req.RefreshToken.Reveal()))
			if err == nil && rt.Family.UserID == p.user.ID && rt.Family.ID != p.claims.SessionID {
				families = append(families, rt.Family.ID)
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				return 0, nil, err
			}
		}
		for _, f := range families {
			if err := ts.endSessionAudited(r.Context(), db, p.user.ID, f, "logout", t); err != nil {
				return 0, nil, err
			}
		}
		return http.StatusNoContent, nil, nil
	})
}

// handleProfileGet serves GET /api/v1/profile.
func handleProfileGet(log *slog.Logger) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		return http.StatusOK, toJSON(principalOf(r).user), nil
	})
}

// handleProfilePatch serves PATCH /api/v1/profile.
func handleProfilePatch(log *slog.Logger, db *store.DB, now func() time.Time) http.Handler {
	type request struct {
		FirstName *string `json:"first_name"`
		LastName  *string `json:"last_name"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		if req.FirstName != nil && !validName(*req.FirstName) {
			return 0, nil, invalid("first_name", "at most 100 characters, no control characters")
		}
		if req.LastName != nil && !validName(*req.LastName) {
			return 0, nil, invalid("last_name", "at most 100 characters, no control characters")
		}
		u, err := db.UpdateProfile(r.Context(), principalOf(r).user.ID, req.FirstName, req.LastName, now())
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, toJSON(u), nil
	})
}

// handlePasswordChange serves POST /api/v1/profile/password: the current
// password is checked (throttled like a login), the new one set, and every
// other session of the user ended (refresh and access tokens, browser
// sign-ins); the caller's session goes on.
func handlePasswordChange(log *slog.Logger, db *store.DB, ts *Tokens, pw *Passwords, th Throttle, m *Metrics, now func() time.Time) http.Handler {
	type request struct {
		CurrentPassword token.Secret `json:"current_password"`
		NewPassword     token.Secret `json:"new_password"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		p := principalOf(r)
		if !validPassword(req.NewPassword.Reveal()) {
			return 0, nil, invalid("new_password", "must be 8 to 128 characters of UTF-8")
		}
		if req.CurrentPassword == "" || len(req.CurrentPassword) > 4*maxPassword {
			return 0, nil, invalid("current_password", "required")
		}
		t := now()
		u, err := authenticate(r.Context(), log, db, pw, th, p.user.Username, req.CurrentPassword.Reveal(), t)
		var ended store.Ended
		if err == nil {
			var hash string
			if hash, err = pw.Hash(r.Context(), req.NewPassword.Reveal()); err != nil {
				return 0, nil, err
			}
			ev := auditEvent(r.Context(), actPasswordChange, store.FormatID(p.user.ID), outSuccess)
			// Written only while the hash verified is the user's, active
			// (store.SetPassword): a reset, change or deactivation that
			// committed meanwhile makes the current password a wrong one.
			ended, err = db.SetPassword(store.WithEvent(r.Context(), ev), p.user.ID, u.PasswordHash, hash, p.claims.SessionID, ts.AccessTTL, t)
			if errors.Is(err, store.ErrNotFound) {
				err = errChangedMeanwhile
			}
		}
		if err != nil {
			err = cmp.Or(logLoginFailure(r, log, db, m, u, err), err) // as a login does
			if errors.Is(err, errBadCredentials) || errors.Is(err, errChangedMeanwhile) {
				err = &httpx.Error{Kind: httpx.KindForbidden, Code: "invalid_current_password", Message: "the current password is wrong"}
			}
			return 0, nil, err
		}
		ts.Ended(ended)
		return http.StatusNoContent, nil, nil
	})
}

// handleUserList serves GET /api/v1/users?limit=&offset= (admin).
func handleUserList(log *slog.Logger, db *store.DB) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		limit, offset, err := page(r)
		if err != nil {
			return 0, nil, err
		}
		users, total, err := db.ListUsers(r.Context(), limit, offset)
		if err != nil {
			return 0, nil, err
		}
		out := make([]userJSON, len(users))
		for i := range users {
			out[i] = toJSON(&users[i])
		}
		return http.StatusOK, map[string]any{"users": out, "total": total}, nil
	})
}

// page returns an admin list's ?limit=&offset=: 20 by default, at most 100.
func page(r *http.Request) (limit, offset int, err error) {
	limit, ok1 := queryInt(r, "limit", 20, 1, 100)
	offset, ok2 := queryInt(r, "offset", 0, 0, 1<<31-1)
	if !ok1 || !ok2 {
		return 0, 0, httpx.E(httpx.KindInvalid, "limit must be 1 to 100 and offset at least 0")
	}
	return limit, offset, nil
}

// queryInt returns the query parameter name, or def when it is absent, and
// whether it is a decimal from lo to hi.
func queryInt(r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, ok := Decimal(s, int64(hi))
	return int(n), ok && n >= int64(lo)
}

var errNoSuchUser = httpx.E(httpx.KindNotFound, "no such user")

// adminWriteError is what a client hears of err, the failure of an admin's
// change to a user whose event is e: the user is not there, or the admin is
// no longer one (notAdmin).
func adminWriteError(ctx context.Context, db *store.DB, e *store.Event, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNoSuchUser
	}
	return notAdmin(ctx, db, e, err)
}

// notAdmin is err, the failure of an admin's write whose event is e; if
// the admin is no longer an active admin (store.ErrNotAdmin), the refusal
// (refused, reason not_admin): a 403, as requireUser answers.
func notAdmin(ctx context.Context, db *store.DB, e *store.Event, err error) error {
	if !errors.Is(err, store.ErrNotAdmin) {
		return err
	}
	return refused(ctx, db, e, "not_admin", errAdminRequired)
}

// refused records e, the event of an admin's write refused for reason, as
// a failure, and returns refusal; or the error of writing it, as for a
// failed login (logLoginFailure). The write itself changed nothing.
func refused(ctx context.Context, db *store.DB, e *store.Event, reason string, refusal error) error {
	e.Outcome = outFailure
	e.Detail["reason"] = reason
	return cmp.Or(db.Audit(ctx, e), refusal)
}

func pathID(r *http.Request) (int64, error) {
	id, ok := Decimal(r.PathValue("id"), math.MaxInt64)
	if !ok || id == 0 {
		return 0, errNoSuchUser
	}
	return id, nil
}

// handleUserPatch serves PATCH /api/v1/users/{id} (admin). An admin cannot
// demote or deactivate themself, so the last admin cannot lock everyone out;
// nor can an admin demoted, deactivated or deleted while the request was on
// its way (store.ErrNotAdmin: 403, as an admin's request checked after it
// would be), so that two admins demoting each other never leave none.
// Deactivation ends every session of the user.
func handleUserPatch(log *slog.Logger, db *store.DB, ts *Tokens, now func() time.Time) http.Handler {
	type request struct {
		Role     *string `json:"role"`
		IsActive *bool   `json:"is_active"`
	}
	return restHandler(log, false, func(r *http.Request, req *request) (int, any, error) {
		admin := principalOf(r).user
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		if req.Role != nil && *req.Role != store.RoleUser && *req.Role != store.RoleAdmin {
			return 0, nil, invalid("role", "must be user or admin")
		}
		var detail []string
		if req.Role != nil {
			detail = append(detail, "role", *req.Role)
		}
		if req.IsActive != nil {
			detail = append(detail, "is_active", strconv.FormatBool(*req.IsActive))
		}
		e := auditEvent(r.Context(), actUserUpdated, store.FormatID(id), outSuccess, detail...)
		if id == admin.ID && ((req.Role != nil && *req.Role != store.RoleAdmin) || (req.IsActive != nil && !*req.IsActive)) {
			return 0, nil, refused(r.Context(), db, e, "self", httpx.E(httpx.KindForbidden, "admins cannot demote or deactivate themselves"))
		}
		u, ended, err := db.UpdateUserAdmin(store.WithEvent(r.Context(), e), admin.ID, id, req.Role, req.IsActive, ts.AccessTTL, now())
		if err != nil {
			return 0, nil, adminWriteError(r.Context(), db, e, err)
		}
		ts.Ended(ended)
		return http.StatusOK, toJSON(u), nil
	})
}

// handleUserDelete serves DELETE /api/v1/users/{id} (admin): a soft delete
// that ends every session of the user. An admin cannot delete themself, nor
// delete anyone once no longer an admin (see handleUserPatch).
func handleUserDelete(log *slog.Logger, db *store.DB, ts *Tokens, now func() time.Time) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		admin := principalOf(r).user
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		e := auditEvent(r.Context(), actUserDeleted, store.FormatID(id), outSuccess)
		if id == admin.ID {
			return 0, nil, refused(r.Context(), db, e, "self", httpx.E(httpx.KindForbidden, "admins cannot delete themselves"))
		}
		ended, err := db.DeleteUser(store.WithEvent(r.Context(), e), admin.ID, id, ts.AccessTTL, now())
		if err != nil {
			return 0, nil, adminWriteError(r.Context(), db, e, err)
		}
		ts.Ended(ended)
		return http.StatusNoContent, nil, nil
	})
}
