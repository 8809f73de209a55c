package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
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
// user signed in, at_hash binding it to the access token, and sid naming
// the browser sign-in (Back-Channel Logout §2.1), as its logout token will.
// With the email scope it carries email and email_verified too: OIDC Core
// §5.4 promises them from userinfo, and relying parties commonly read them
// from the ID token, which may hold them as of its issue.
func mintIDToken(idTokens *token.Signer, ts *Tokens, clientID string, u *store.User, ac *store.Code, accessToken string, now time.Time) (string, error) {
	c := &token.Claims{
		Issuer: ts.Issuer, Subject: store.FormatID(u.ID), Audience: clientID,
		IssuedAt: now.Unix(), Expiry: now.Add(ts.AccessTTL).Unix(),
		AuthTime: ac.AuthTime.Unix(), Nonce: ac.Nonce, SessionID: ac.SID,
		AtHash: token.HalfHash(idTokens.Key().Alg, accessToken),
	}
	if hasScope(ac.Scope, scopeEmail) {
		verified := u.EmailVerified
		c.Email, c.EmailVerified = u.Email, &verified
	}
	return idTokens.Sign(token.TypeID, c)
}

// handleUserinfo serves GET and POST /oauth2/userinfo (OIDC Core §5.3) to
// the holder of an access token (its caller check): the claims of the
// token's user that its scopes allow. Errors follow RFC 6750 §3.
func handleUserinfo(log *slog.Logger, db *store.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := userinfo(r.Context(), db, principalOf(r).claims)
		writeOAuth(w, r, log, http.StatusOK, out, err)
	})
}

func userinfo(ctx context.Context, db *store.DB, c *token.Claims) (map[string]any, error) {
	if !hasScope(c.Scope, scopeOpenID) {
		return nil, &httpx.Error{Kind: httpx.KindInsufficientScope, Message: "the token lacks the openid scope",
			Authenticate: challenge(c.Cnf != nil, `error="insufficient_scope", error_description="the token lacks the openid scope"`)} // the scheme it came under (badToken)
	}
	u, err := tokenUser(ctx, db, c)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"sub": c.Subject}
	if hasScope(c.Scope, scopeEmail) {
		out["email"], out["email_verified"] = u.Email, u.EmailVerified
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
	return out, nil
}

// handleEndSession serves GET and POST /oauth2/logout (OpenID Connect
// RP-Initiated Logout 1.0, §2: both methods carry the same parameters).
// With a valid id_token_hint naming the browser's sign-in (its sid and
// user) the session ends at once. A valid hint that comes without a
// sign-in (no cookie, or one whose sign-in is gone) is a relying party
// calling from its back end, as
// zitadel/oidc's rp.EndSession does. Whenever the logout goes ahead, the
// sign-in the hint names ends by its sid, with the sessions it started,
// also when the browser signed in again since; once it has expired (its
// row purged or not), only the hint's relying party's sessions of it end
// (store.DeleteSessionBySID): only a holder of that sign-in's ID token can
// name it. Otherwise
// the user confirms on a page (which carries the hint on), whose form (action=logout, with a CSRF
// token) is the one POST that needs one, so a third-party page cannot sign
// people out. post_logout_redirect_uri is followed only if it
// is registered, exactly, for the client the hint (or client_id) names;
// the page's CSP then allows it as a form action, since browsers apply
// form-action to the redirect that follows the form.
func handleEndSession(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, b *Browser, oidc bool, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, t := r.Context(), now()
		params := r.URL.Query() // well formed, a POST's too: the route table refused any other (wellFormedQuery)
		// acted: the user confirmed on our page, or the hint names the
		// browser's sign-in; without either, a dynamically registered
		// client's URI, which anyone may have registered, is not followed.
		confirmed, acted, trusted := false, false, true
		if r.Method == http.MethodPost {
			form, err := readForm(r)
			if err != nil {
				b.fail(w, r, err)
				return
			}
			if form.Has("action") { // the confirmation page's own form
				if !b.csrfOK(r, form) || form.Get("action") != "logout" {
					b.fail(w, r, errFormExpired)
					return
				}
				confirmed, acted = true, true
			}
			params = form
		} else if err := checkParams(params); err != nil { // repeated, or not UTF-8: it says which
			b.fail(w, r, err)
			return
		}
		if !validState(params.Get("state")) { // it goes into the Location, as the authorization endpoint's
			b.fail(w, r, errBadState)
			return
		}
		clientID := params.Get("client_id")
		hintSID, hintSub := "", "" // the sign-in the hint names, and its user
		// A hint that does not verify (its key retired while the relying
		// party kept it, as relying parties keep an ID token for their
		// whole session) or that names another client is treated as absent
		// (§4): the user confirms, where refusing would leave them signed in.
		// A relying party's back end (no session cookie, and none of the
		// Sec-Fetch headers every current browser sends) has nobody to ask:
		// it is told, rather than sent a page it would take for a logout done.
		hint := params.Get("id_token_hint")
		c, err := parseIDTokenHint(ts, hint, t)
		backEnd := b.cookie(r, cookieSession) == "" && r.Header.Get("Sec-Fetch-Mode") == ""
		if valid := oidc && err == nil && (clientID == "" || clientID == c.Audience); !valid && hint != "" && oidc && backEnd {
			b.fail(w, r, httpx.E(httpx.KindInvalid, "The id_token_hint is not valid."))
			return
		} else if valid {
			clientID = c.Audience
			// Sign out at once only the sign-in the hint names (§2: ask
			// when the ID token does not belong to the current session):
			// any other valid ID token, another user's or another sign-in
			// of this user's (a phone's, an old one), must not let a link
			// sign the browser out. The same user signing in again keeps
			// the sid; a sign-in from before sids has "", which names none.
			// Without a sign-in there is nothing to end.
			sess, _, err := currentSession(ctx, db, b, r, t)
			if err != nil {
				b.fail(w, r, err)
				return
			}
			hintIsBrowsers := sess != nil && sess.SID != "" && sess.SID == c.SessionID && store.FormatID(sess.UserID) == c.Subject
			confirmed = confirmed || sess == nil || hintIsBrowsers
			acted = acted || hintIsBrowsers
			hintSID, hintSub = c.SessionID, c.Subject
		}
		target, page := "", &pageData{Title: "Sign out"}
		// Without a client to check it against, the URI is not followed (§3)
		// and the user signs out on our page.
		if p := params.Get("post_logout_redirect_uri"); p != "" && clientID != "" {
			c, err := cs.Get(ctx, clientID, t)
			if err != nil || !slices.Contains(c.PostLogoutRedirectURIs, p) {
				b.fail(w, r, httpx.E(httpx.KindInvalid, "The post_logout_redirect_uri is not registered for this client."))
				return
			}
			// The confirmation page says where it leads, and for whom: a
			// registered client's URI is followed once the user confirms.
			target, trusted, page.ClientName, page.RedirectHost = p, !c.Registered(), c.Name, shownHost(p)
			if st := params.Get("state"); st != "" {
				target = withQuery(p, url.Values{"state": {st}})
			}
		}
		if !confirmed {
			var keep []hidden
			if clientID != "" { // from the hint, when the request named no client_id
				keep = append(keep, hidden{"client_id", clientID})
			}
			keep = append(keep, hiddenFields(params, "id_token_hint", "post_logout_redirect_uri", "state")...)
			page.Hidden, page.CSRF = keep, b.csrfToken(w, r)
			b.render(w, http.StatusOK, "logout", target, page)
			return
		}
		if v := b.cookie(r, cookieSession); v != "" {
			sess, _, _ := currentSession(ctx, db, b, r, t)
			sub := ""
			if sess != nil {
				sub = store.FormatID(sess.UserID)
			}
			e := auditEvent(ctx, actSessionEnded, sub, outSuccess, "reason", "logout", "via", "browser")
			ended, err := db.DeleteSession(store.WithEvent(ctx, e), token.Hash(v), ts.AccessTTL, t)
			if err != nil {
				b.fail(w, r, err)
				return
			}
			ts.Ended(ended)
			// Cleared only when sent: a cross-site POST carries no Lax
			// cookie, and its answer must not sign the browser out. The
			// CSRF cookie goes too: the login form the browser keeps in
			// its history, password and all, would otherwise sign the user
			// in again when the next person at a shared computer goes Back
			// and resends it.
			b.setCookie(w, cookieSession, "", -1)
			b.setCookie(w, cookieCSRF, "", -1)
		}
		if hintSID != "" {
			e := auditEvent(ctx, actSessionEnded, hintSub, outSuccess, "reason", "logout", "via", "relying party", "sid", hintSID)
			ended, err := db.DeleteSessionBySID(store.WithEvent(ctx, e), hintSID, clientID, ts.AccessTTL, t)
			if err != nil {
				b.fail(w, r, err)
				return
			}
			ts.Ended(ended)
		}
		if target != "" && (trusted || acted) { // RFC 9700 §4.11.2
			redirectTo(w, r, target)
			return
		}
		b.render(w, http.StatusOK, "logout", "", &pageData{Title: "Signed out", Done: true})
	})
}

// parseIDTokenHint verifies an ID token we issued, for any client, even
// expired.
func parseIDTokenHint(ts *Tokens, raw string, now time.Time) (*token.Claims, error) {
	return ts.Verifier.Parse(raw, token.Expect{Type: token.TypeID, Issuer: ts.Issuer, AnyAudience: true, AllowExpired: true}, now)
}
