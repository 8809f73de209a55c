package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Metrics are the authentication series of API.md.
type Metrics struct {
	TokensIssued  *metrics.CounterVec // oauth2_tokens_issued_total{grant_type}
	LoginFailures *metrics.Counter    // oauth2_login_failures_total
	MailFailures  *metrics.CounterVec // oauth2_mail_failures_total{reason}: refused or error
	MailDropped   *metrics.Counter    // oauth2_mail_dropped_total: queue full, or closed
}

// NewMetrics registers the series in reg.
func NewMetrics(reg *metrics.Registry) *Metrics {
	m := &Metrics{
		TokensIssued:  reg.CounterVec("oauth2_tokens_issued_total", "Access tokens issued, by grant type.", "grant_type"),
		LoginFailures: reg.Counter("oauth2_login_failures_total", "Failed logins (wrong password, unknown account, or throttled)."),
		MailFailures: reg.CounterVec("oauth2_mail_failures_total",
			"Mail not sent: refused (the server did not offer STARTTLS, or AUTH with SMTP_USERNAME set) or error.", "reason"),
		MailDropped: reg.Counter("oauth2_mail_dropped_total", "Mail dropped unsent: the queue was full, or closed at shutdown."),
	}
	for _, g := range []string{grantPassword, grantAuthorizationCode, grantRefreshToken, grantClientCredentials} {
		m.TokensIssued.With(g) // every grant type present at 0 from the start
	}
	m.MailFailures.With(mailRefused)
	m.MailFailures.With(mailError)
	return m
}

// Grant types (RFC 6749 §4; "password" is the first-party REST login).
const (
	grantPassword          = "password"
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
)

// userJSON is a user as API.md shows it: never the password hash.
type userJSON struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Username  string    `json:"username"`
	FirstName string    `json:"first_name"`
	LastName  string    `json:"last_name"`
	Role      string    `json:"role"`
	IsActive  bool      `json:"is_active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toJSON(u *store.User) userJSON {
	return userJSON{u.ID, u.Email, u.Username, u.FirstName, u.LastName, u.Role, u.IsActive, u.CreatedAt, u.UpdatedAt}
}

// apiError turns an internal error into what a REST client may see.
func apiError(err error) error {
	var he *httpx.Error
	var locked *lockedError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &locked):
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "too_many_attempts",
			Message: "too many failed logins for this account; retry later", RetryAfter: locked.Wait}
	case errors.Is(err, errBadCredentials):
		return httpx.Errorf(http.StatusUnauthorized, "invalid_credentials", "invalid login or password")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, ErrBusy):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Code: "service_unavailable",
			Message: "the service is temporarily unavailable; retry later", RetryAfter: 5 * time.Second}
	}
	return err
}

func writeAPIError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := apiError(err)
	var he *httpx.Error
	if errors.As(e, &he) && he.Status == http.StatusServiceUnavailable {
		log.WarnContext(r.Context(), "service unavailable", "request_id", httpx.InfoFrom(r).ID, "err", err)
	}
	httpx.WriteError(w, r, log, e)
}

func invalid(field, msg string) *httpx.Error {
	return httpx.Errorf(http.StatusUnprocessableEntity, "validation_failed", "%s: %s", field, msg)
}

// handleRegister serves POST /api/v1/auth/register.
func handleRegister(log *slog.Logger, db *store.DB, pw *Passwords, enabled bool, now func() time.Time) http.Handler {
	type request struct {
		Email     string       `json:"email"`
		Username  string       `json:"username"`
		Password  token.Secret `json:"password"`
		FirstName string       `json:"first_name"`
		LastName  string       `json:"last_name"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !enabled {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusForbidden, "registration_disabled", "registration is disabled"))
			return
		}
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		u, err := Register(r.Context(), db, pw, req.Email, req.Username, req.Password.Reveal(), req.FirstName, req.LastName, store.RoleUser, now())
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		httpx.InfoFrom(r).UserID = userSubject(u.ID)
		log.InfoContext(r.Context(), "user registered", "request_id", httpx.InfoFrom(r).ID, "user_id", u.ID)
		httpx.JSON(w, http.StatusCreated, toJSON(u))
	})
}

// Register validates and creates a user; the CLI uses it too. Validation
// failures are *httpx.Error values (422, or 409 for a duplicate).
func Register(ctx context.Context, db *store.DB, pw *Passwords, email, username, password, first, last, role string, now time.Time) (*store.User, error) {
	email = foldEmail(email)
	switch {
	case !validEmail(email):
		return nil, invalid("email", "must be a valid email address")
	case !validUsername(username):
		return nil, invalid("username", "3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case !validPassword(password):
		return nil, invalid("password", "must be 8 to 128 characters")
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
	u := &store.User{Email: email, Username: username, PasswordHash: hash, FirstName: first, LastName: last, Role: role, IsActive: true}
	if err := db.CreateUser(ctx, u, now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, httpx.Errorf(http.StatusConflict, "conflict", "email or username already taken")
		}
		return nil, err
	}
	return u, nil
}

// handleLogin serves POST /api/v1/auth/login: a token pair for a first-party
// client. Every failure that concerns the credentials answers the same 401
// body, whether the account exists or not; each is logged with the client IP
// (msg "login failed") for fail2ban.
func handleLogin(log *slog.Logger, db *store.DB, ts *Tokens, pw *Passwords, th Throttle, m *Metrics, now func() time.Time) http.Handler {
	type request struct {
		Login    string       `json:"login"`
		Password token.Secret `json:"password"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if req.Login == "" || len(req.Login) > 254 || req.Password == "" || len(req.Password) > 4*maxPassword {
			writeAPIError(w, r, log, invalid("login", "login and password are required"))
			return
		}
		t := now()
		u, err := authenticate(r.Context(), db, pw, th, req.Login, req.Password.Reveal(), t)
		if err != nil {
			logLoginFailure(r, log, m, err)
			writeAPIError(w, r, log, err)
			return
		}
		pair, _, err := ts.StartSession(r.Context(), db, u.ID, RESTClientID, "", t, t)
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		httpx.InfoFrom(r).UserID = userSubject(u.ID)
		m.TokensIssued.With(grantPassword).Inc()
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, pair)
	})
}

// logLoginFailure writes the line fail2ban matches: msg "login failed" and
// the client IP. It never holds the login text or the password.
func logLoginFailure(r *http.Request, log *slog.Logger, m *Metrics, err error) {
	var locked *lockedError
	reason := ""
	switch {
	case errors.Is(err, errBadCredentials):
		reason = "bad_credentials"
	case errors.As(err, &locked):
		reason = "throttled"
	default:
		return // the database or hashing failed: not the client's doing
	}
	m.LoginFailures.Inc()
	info := httpx.InfoFrom(r)
	log.WarnContext(r.Context(), "login failed", "client_ip", info.ClientIP.String(), "reason", reason, "request_id", info.ID)
}

// handleRefresh serves POST /api/v1/auth/refresh.
func handleRefresh(log *slog.Logger, db *store.DB, ts *Tokens, m *Metrics, now func() time.Time) http.Handler {
	type request struct {
		RefreshToken token.Secret `json:"refresh_token"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		pair, old, err := ts.Rotate(r.Context(), db, req.RefreshToken.Reveal(), RESTClientID, "", now())
		if err != nil {
			if errors.Is(err, ErrRefreshReused) {
				log.WarnContext(r.Context(), "refresh token reuse: family revoked", "request_id", httpx.InfoFrom(r).ID, "client_ip", httpx.InfoFrom(r).ClientIP.String())
			}
			if isRefreshFailure(err) {
				err = &httpx.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "refresh token is invalid, expired or revoked"}
			}
			writeAPIError(w, r, log, err)
			return
		}
		httpx.InfoFrom(r).UserID = userSubject(old.Family.UserID)
		m.TokensIssued.With(grantRefreshToken).Inc()
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, pair)
	})
}

func isRefreshFailure(err error) bool {
	return errors.Is(err, ErrRefreshInvalid) || errors.Is(err, ErrRefreshReused) || errors.Is(err, ErrRefreshClient) || errors.Is(err, ErrRefreshScope)
}

// bearerToken returns the token of an "Authorization: Bearer" header
// (RFC 6750 §2.1; the scheme is case-insensitive), or "".
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Bearer challenges (RFC 6750 §3).
const (
	challengeMissing = `Bearer realm="oauth2-api"`
	challengeInvalid = `Bearer realm="oauth2-api", error="invalid_token", error_description="the access token is invalid, expired or revoked"`
)

// requireBearer verifies the request's access token and passes its claims on.
// No token: 401 with a bare challenge; a bad one: 401 invalid_token.
func requireBearer(log *slog.Logger, ts *Tokens, now func() time.Time, next func(http.ResponseWriter, *http.Request, *token.Claims)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := bearerToken(r)
		if raw == "" {
			writeAPIError(w, r, log, &httpx.Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a bearer token is required", Authenticate: challengeMissing})
			return
		}
		c, err := ts.Verify(raw, now())
		if err != nil {
			writeAPIError(w, r, log, &httpx.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "the access token is invalid, expired or revoked", Authenticate: challengeInvalid})
			return
		}
		info := httpx.InfoFrom(r)
		info.ClientID = c.ClientID
		if c.ClientID != c.Subject {
			info.UserID = c.Subject
		}
		next(w, r, c)
	})
}

// requireUser is requireBearer for the REST API: the token must come from
// the first-party login or a client registered first-party, and its user
// must still exist and be active.
func requireUser(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time, next func(http.ResponseWriter, *http.Request, *token.Claims, *store.User)) http.Handler {
	return requireBearer(log, ts, now, func(w http.ResponseWriter, r *http.Request, c *token.Claims) {
		denied := &httpx.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "the access token is invalid, expired or revoked", Authenticate: challengeInvalid}
		first, err := firstParty(r.Context(), cs, c.ClientID, now())
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if !first {
			writeAPIError(w, r, log, denied)
			return
		}
		id, err := strconv.ParseInt(c.Subject, 10, 64)
		if err != nil {
			writeAPIError(w, r, log, denied)
			return
		}
		u, err := db.UserByID(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
			writeAPIError(w, r, log, denied)
			return
		}
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		next(w, r, c, u)
	})
}

// firstParty reports whether tokens of clientID may call /api/v1: those of
// the REST login and of clients registered first-party (API.md).
func firstParty(ctx context.Context, cs *Clients, clientID string, now time.Time) (bool, error) {
	if clientID == RESTClientID {
		return true, nil
	}
	c, err := cs.Get(ctx, clientID, now)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return c.FirstParty, nil
}

// requireAdmin is requireUser for users whose current role (read from the
// database, not the token) is admin; others get 403.
func requireAdmin(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time, next func(http.ResponseWriter, *http.Request, *store.User)) http.Handler {
	return requireUser(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, _ *token.Claims, u *store.User) {
		if u.Role != store.RoleAdmin {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusForbidden, "forbidden", "admin role required"))
			return
		}
		next(w, r, u)
	})
}

// handleLogout serves POST /api/v1/auth/logout: the caller's session ends
// (API.md "Sessions and revocation"): the family the token names in sid,
// with every access token minted from it, and the family of the
// refresh_token in the body if one is sent and is the user's. Each is
// stored before the answer, so a 204 means every instance will honour it.
func handleLogout(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	type request struct {
		RefreshToken token.Secret `json:"refresh_token"`
	}
	return requireUser(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, c *token.Claims, u *store.User) {
		var req request
		if r.ContentLength != 0 {
			if err := httpx.DecodeJSON(r, &req); err != nil {
				writeAPIError(w, r, log, err)
				return
			}
		}
		t := now()
		families := []string{c.SessionID}
		if c.SessionID == "" { // a token minted before every session was named in sid
			if err := ts.RevokeAccess(r.Context(), db, c, t); err != nil {
				writeAPIError(w, r, log, err)
				return
			}
		}
		if req.RefreshToken != "" {
			rt, err := db.RefreshTokenByHash(r.Context(), token.Hash(req.RefreshToken.Reveal()), t)
			if err == nil && rt.Family.UserID == u.ID {
				families = append(families, rt.Family.ID)
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				writeAPIError(w, r, log, err)
				return
			}
		}
		for _, f := range families {
			if f == "" {
				continue
			}
			if err := ts.EndSession(r.Context(), db, f, t); err != nil {
				writeAPIError(w, r, log, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleProfileGet serves GET /api/v1/profile.
func handleProfileGet(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireUser(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, _ *token.Claims, u *store.User) {
		httpx.JSON(w, http.StatusOK, toJSON(u))
	})
}

// handleProfilePatch serves PATCH /api/v1/profile.
func handleProfilePatch(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	type request struct {
		FirstName *string `json:"first_name"`
		LastName  *string `json:"last_name"`
	}
	return requireUser(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, _ *token.Claims, u *store.User) {
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if req.FirstName != nil && !validName(*req.FirstName) {
			writeAPIError(w, r, log, invalid("first_name", "at most 100 characters, no control characters"))
			return
		}
		if req.LastName != nil && !validName(*req.LastName) {
			writeAPIError(w, r, log, invalid("last_name", "at most 100 characters, no control characters"))
			return
		}
		u, err := db.UpdateProfile(r.Context(), u.ID, req.FirstName, req.LastName, now())
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, toJSON(u))
	})
}

// handlePasswordChange serves POST /api/v1/profile/password: the current
// password is checked (throttled like a login), the new one set, and every
// other session of the user ended (refresh and access tokens, browser
// sign-ins); the caller's session goes on.
func handlePasswordChange(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, pw *Passwords, th Throttle, m *Metrics, now func() time.Time) http.Handler {
	type request struct {
		CurrentPassword token.Secret `json:"current_password"`
		NewPassword     token.Secret `json:"new_password"`
	}
	return requireUser(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, c *token.Claims, u *store.User) {
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if !validPassword(req.NewPassword.Reveal()) {
			writeAPIError(w, r, log, invalid("new_password", "must be 8 to 128 characters"))
			return
		}
		if req.CurrentPassword == "" || len(req.CurrentPassword) > 4*maxPassword {
			writeAPIError(w, r, log, invalid("current_password", "required"))
			return
		}
		t := now()
		if _, err := authenticate(r.Context(), db, pw, th, u.Username, req.CurrentPassword.Reveal(), t); err != nil {
			logLoginFailure(r, log, m, err)
			if errors.Is(err, errBadCredentials) {
				err = httpx.Errorf(http.StatusForbidden, "invalid_current_password", "the current password is wrong")
			}
			writeAPIError(w, r, log, err)
			return
		}
		hash, err := pw.Hash(r.Context(), req.NewPassword.Reveal())
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		revs, err := db.SetPassword(r.Context(), u.ID, hash, c.SessionID, ts.AccessTTL, t)
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		for _, rv := range revs {
			ts.Revoked.Add(rv)
		}
		log.InfoContext(r.Context(), "password changed", "request_id", httpx.InfoFrom(r).ID, "user_id", u.ID)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleUserList serves GET /api/v1/users?limit=&offset= (admin).
func handleUserList(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, _ *store.User) {
		limit, err1 := queryInt(r, "limit", 20, 1, 100)
		offset, err2 := queryInt(r, "offset", 0, 0, 1<<31-1)
		if err1 != nil || err2 != nil {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusBadRequest, "invalid_request", "limit must be 1 to 100 and offset at least 0"))
			return
		}
		users, total, err := db.ListUsers(r.Context(), limit, offset)
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		out := make([]userJSON, len(users))
		for i := range users {
			out[i] = toJSON(&users[i])
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"users": out, "total": total})
	})
}

func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errors.New("out of range")
	}
	return n, nil
}

func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// handleUserPatch serves PATCH /api/v1/users/{id} (admin). An admin cannot
// demote or deactivate themself, so the last admin cannot lock everyone out.
func handleUserPatch(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	type request struct {
		Role     *string `json:"role"`
		IsActive *bool   `json:"is_active"`
	}
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, admin *store.User) {
		id, ok := pathID(r)
		if !ok {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusNotFound, "not_found", "no such user"))
			return
		}
		var req request
		if err := httpx.DecodeJSON(r, &req); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if req.Role != nil && *req.Role != store.RoleUser && *req.Role != store.RoleAdmin {
			writeAPIError(w, r, log, invalid("role", "must be user or admin"))
			return
		}
		if id == admin.ID && ((req.Role != nil && *req.Role != store.RoleAdmin) || (req.IsActive != nil && !*req.IsActive)) {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusForbidden, "forbidden", "admins cannot demote or deactivate themselves"))
			return
		}
		t := now()
		u, err := db.UpdateUserAdmin(r.Context(), id, req.Role, req.IsActive, ts.AccessTTL, t)
		if errors.Is(err, store.ErrNotFound) {
			err = httpx.Errorf(http.StatusNotFound, "not_found", "no such user")
		}
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		if req.IsActive != nil && !*req.IsActive {
			ts.Revoked.Add(store.UserRevocation(id, ts.AccessTTL, t))
		}
		log.InfoContext(r.Context(), "user updated", "request_id", httpx.InfoFrom(r).ID, "user_id", id, "by", admin.ID)
		httpx.JSON(w, http.StatusOK, toJSON(u))
	})
}

// handleUserDelete serves DELETE /api/v1/users/{id} (admin): a soft delete
// after which the user's tokens stop working.
func handleUserDelete(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, admin *store.User) {
		id, ok := pathID(r)
		if !ok {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusNotFound, "not_found", "no such user"))
			return
		}
		if id == admin.ID {
			writeAPIError(w, r, log, httpx.Errorf(http.StatusForbidden, "forbidden", "admins cannot delete themselves"))
			return
		}
		t := now()
		err := db.DeleteUser(r.Context(), id, ts.AccessTTL, t)
		if errors.Is(err, store.ErrNotFound) {
			err = httpx.Errorf(http.StatusNotFound, "not_found", "no such user")
		}
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		ts.Revoked.Add(store.UserRevocation(id, ts.AccessTTL, t))
		log.InfoContext(r.Context(), "user deleted", "request_id", httpx.InfoFrom(r).ID, "user_id", id, "by", admin.ID)
		w.WriteHeader(http.StatusNoContent)
	})
}
