package auth

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// OpenID Connect scopes (OIDC Core §5.4).
const (
	scopeOpenID  = "openid"
	scopeProfile = "profile"
	scopeEmail   = "email"
)

// mintIDToken makes the ID token of a code exchange (OIDC Core §2, §3.1.3.6):
// audience the client, the nonce of the authorization request, the time the
// user signed in, and at_hash binding it to the access token.
func mintIDToken(o *OAuth, clientID string, u *store.User, ac *store.Code, accessToken string, now time.Time) (string, error) {
	c := &token.Claims{
		Issuer: o.Tokens.Issuer, Subject: userSubject(u.ID), Audience: clientID,
		IssuedAt: now.Unix(), Expiry: now.Add(o.Tokens.AccessTTL).Unix(),
		AuthTime: ac.AuthTime.Unix(), Nonce: ac.Nonce,
		AtHash: token.HalfHash(o.IDTokens.Key().Alg, accessToken),
	}
	return o.IDTokens.Sign(token.TypeID, c)
}

// handleUserinfo serves GET and POST /oauth2/userinfo (OIDC Core §5.3): the
// claims of the token's user that its scopes allow. Errors follow RFC 6750 §3.
func handleUserinfo(o *OAuth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status int, code, desc string) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oauth2-api", error="`+code+`", error_description="`+desc+`"`)
			httpx.NoStore(w)
			httpx.JSON(w, status, map[string]string{"error": code, "error_description": desc})
		}
		raw := bearerToken(r)
		if raw == "" {
			// RFC 6750 §3.1: no error code when the request has no credentials.
			w.Header().Set("WWW-Authenticate", challengeMissing)
			httpx.NoStore(w)
			httpx.JSON(w, http.StatusUnauthorized, map[string]string{"error_description": "a bearer token is required"})
			return
		}
		c, err := o.Tokens.Verify(raw, o.Now())
		if err != nil {
			fail(http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
			return
		}
		if !hasScope(c.Scope, scopeOpenID) {
			fail(http.StatusForbidden, "insufficient_scope", "the token lacks the openid scope")
			return
		}
		id, err := strconv.ParseInt(c.Subject, 10, 64)
		if err != nil {
			fail(http.StatusUnauthorized, "invalid_token", "the token has no user")
			return
		}
		u, err := o.DB.UserByID(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !u.IsActive) {
			fail(http.StatusUnauthorized, "invalid_token", "the user no longer exists")
			return
		}
		if err != nil {
			writeOAuthError(w, r, o.Log, err)
			return
		}
		httpx.InfoFrom(r).UserID, httpx.InfoFrom(r).ClientID = c.Subject, c.ClientID
		out := map[string]any{"sub": c.Subject}
		if hasScope(c.Scope, scopeEmail) {
			// Addresses are not verified by this server; say so (OIDC Core §5.1).
			out["email"], out["email_verified"] = u.Email, false
		}
		if hasScope(c.Scope, scopeProfile) {
			out["preferred_username"] = u.Username
			if u.FirstName != "" {
				out["given_name"] = u.FirstName
			}
			if u.LastName != "" {
				out["family_name"] = u.LastName
			}
			out["updated_at"] = u.UpdatedAt.Unix()
		}
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, out)
	})
}

// handleEndSession serves GET and POST /oauth2/logout (OpenID Connect
// RP-Initiated Logout 1.0). With a valid id_token_hint naming the signed-in
// user the session ends at once; otherwise the user confirms on a page (a
// POST with a CSRF token), so a third-party page cannot sign people out. post_logout_redirect_uri is
// followed only if it is registered, exactly, for the client the hint (or
// client_id) names.
func handleEndSession(o *OAuth, b *Browser) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, now := r.Context(), o.Now()
		var params url.Values
		confirmed := false
		if r.Method == http.MethodPost {
			form, err := readForm(r)
			if err != nil || !b.csrfOK(r, form) {
				b.render(w, http.StatusForbidden, "error", "", &pageData{Title: "Request refused", Error: "The form expired. Please try again."})
				return
			}
			params, confirmed = form, form.Get("action") == "logout"
		} else {
			params = r.URL.Query()
		}
		if err := checkParams(params); err != nil {
			b.render(w, http.StatusBadRequest, "error", "", &pageData{Title: "Invalid request", Error: "The request repeats a parameter."})
			return
		}
		clientID := params.Get("client_id")
		if hint := params.Get("id_token_hint"); hint != "" && o.IDTokens != nil {
			// The audience is the client; check the signature and issuer first.
			c, err := parseIDTokenHint(o, hint, now)
			if err != nil || (clientID != "" && clientID != c.Audience) {
				b.render(w, http.StatusBadRequest, "error", "", &pageData{Title: "Invalid request", Error: "The id_token_hint is not valid."})
				return
			}
			clientID = c.Audience
			// Sign out at once only the user the hint names: any valid ID
			// token (another user's, an old one) must not let a link sign
			// a victim out. Without a sign-in there is nothing to end.
			sess, _, err := currentSession(ctx, o, b, r, now)
			if err != nil {
				writeAuthorizeFailure(w, r, o, b, err)
				return
			}
			confirmed = confirmed || sess == nil || userSubject(sess.UserID) == c.Subject
		}
		target := ""
		if p := params.Get("post_logout_redirect_uri"); p != "" {
			c, err := o.Clients.Get(ctx, clientID, now)
			if err != nil || !slices.Contains(c.PostLogoutRedirectURIs, p) {
				b.render(w, http.StatusBadRequest, "error", "", &pageData{Title: "Invalid request", Error: "The post_logout_redirect_uri is not registered for this client."})
				return
			}
			target = p
			if st := params.Get("state"); st != "" {
				sep := "?"
				if strings.Contains(target, "?") {
					sep = "&"
				}
				target += sep + url.Values{"state": {st}}.Encode()
			}
		}
		if !confirmed {
			var keep []hidden
			if clientID != "" { // from the hint, when the request named no client_id
				keep = append(keep, hidden{"client_id", clientID})
			}
			for _, k := range []string{"post_logout_redirect_uri", "state"} {
				if params.Has(k) {
					keep = append(keep, hidden{k, params.Get(k)})
				}
			}
			b.render(w, http.StatusOK, "logout", "", &pageData{Title: "Sign out", Hidden: keep, CSRF: b.csrfToken(w, r)})
			return
		}
		if v := b.cookie(r, cookieSession); v != "" {
			if err := o.DB.DeleteSession(ctx, token.Hash(v)); err != nil {
				writeAuthorizeFailure(w, r, o, b, err)
				return
			}
		}
		b.setCookie(w, cookieSession, "", -1)
		if target != "" {
			w.Header().Set("Location", target)
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusSeeOther)
			} else {
				w.WriteHeader(http.StatusFound)
			}
			return
		}
		b.render(w, http.StatusOK, "logout", "", &pageData{Title: "Signed out", Done: true})
	})
}

// parseIDTokenHint verifies an ID token we issued, for any client, even
// expired.
func parseIDTokenHint(o *OAuth, raw string, now time.Time) (*token.Claims, error) {
	return o.Tokens.Verifier.Parse(raw, token.Expect{Type: token.TypeID, Issuer: o.Tokens.Issuer, AnyAudience: true, AllowExpired: true}, now)
}
