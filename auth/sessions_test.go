package auth

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// Regression tests for API.md "Sessions and revocation": each of them fails
// on the code before these rules were enforced.

// codeGrant runs the browser part of a code flow with b and exchanges the
// code: the access and refresh tokens of a new OAuth session.
func (e *env) codeGrant(b *browser, id, secret, login, password string) (access, refresh string) {
	e.t.Helper()
	p := newPKCE()
	code := e.secret(b.signIn(authorizeURL(id, p), login, password))
	r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
	return e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
}

// signedIn reports whether b's sign-in at the authorization endpoint still
// stands: a signed-in browser that consented is sent straight back with a
// code; one that is not signed in sees the login form.
func (b *browser) signedIn(clientID string) bool {
	b.e.t.Helper()
	w := b.do("GET", authorizeURL(clientID, newPKCE()), nil)
	switch {
	case w.Code == http.StatusFound:
		b.e.secret(callback(b.e.t, w, http.StatusFound).Get("code"))
		return true
	case w.Code == http.StatusOK && strings.Contains(w.Body.String(), `name="password"`):
		return false
	}
	b.e.t.Fatalf("authorize: %d %s", w.Code, w.Body.String())
	return false
}

func (e *env) refreshGrant(id, secret, rt string) response {
	e.t.Helper()
	return e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// Item 1: a password change ends every other session of the user (refresh
// tokens, access tokens, browser sign-ins and the codes they issued) and
// keeps the caller's.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const oldPW, newPW = "Old-Password-1", "New-Password-2"
		e.secret(newPW)
		e.createUser("lee@example.com", "lee", oldPW, store.RoleUser)
		id, secret := e.webClient()
		// Someone with the stolen password signs in with a browser and
		// holds a token pair, a pending code, and a REST session.
		thief := e.browser()
		oat, ort := e.codeGrant(thief, id, secret, "lee", oldPW)
		p := newPKCE()
		pending := e.secret(thief.signIn(authorizeURL(id, p), "lee", oldPW))
		a2, r2 := e.login("lee", oldPW)
		// The owner, signed in too, changes the password.
		a1, r1 := e.login("lee", oldPW)
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": oldPW, "new_password": newPW}, bearer(a1)...).want(http.StatusNoContent)

		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(a2)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(r2), http.StatusUnauthorized, "invalid_token")
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Errorf("the other session's OAuth access token is still active: %v", in)
		}
		e.refreshGrant(id, secret, ort).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		e.token(id, secret, codeForm(pending, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if thief.signedIn(id) {
			t.Error("the browser sign-in survived the password change")
		}
		// The caller's session goes on.
		e.request("GET", "/api/v1/profile", nil, bearer(a1)...).want(http.StatusOK)
		res := e.refresh(r1).want(http.StatusOK)
		e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))
	})
}

// Item 1: a reset ends every session of the user, the caller's included,
// and clears the account's login failures.
func TestPasswordResetEndsEverySession(t *testing.T) {
	sink, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		const oldPW, newPW = "Old-Password-1", "New-Password-2"
		e.secret(newPW)
		u := e.createUser("lee@example.com", "lee", oldPW, store.RoleUser)
		id, secret := e.webClient()
		b := e.browser()
		oat, ort := e.codeGrant(b, id, secret, "lee", oldPW)
		a1, r1 := e.login("lee", oldPW)
		for i := 0; i < e.deps.Throttle.Max; i++ {
			e.loginAttempt("lee", "Wrong-Password-1").want(http.StatusUnauthorized)
		}
		e.loginAttempt("lee", newPW).want(http.StatusTooManyRequests)

		tok := e.secret(token.NewOpaque())
		if err := e.db.ReplaceResetToken(context.Background(), token.Hash(tok), u.ID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": newPW}).want(http.StatusNoContent)

		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(a1)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.refresh(r1), http.StatusUnauthorized, "invalid_token")
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Errorf("OAuth access token still active after the reset: %v", in)
		}
		e.refreshGrant(id, secret, ort).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if b.signedIn(id) {
			t.Error("the browser sign-in survived the reset")
		}
		// The count is cleared: the owner signs in at once.
		e.login("lee", newPW)
	}, withReset(t, sink, clientTLS, SMTPStartTLS))
}

// Taking an account back (a reset, a password change, a deactivation)
// forgets its consents. While an intruder held it (a stolen password, or
// an account registered first with the owner's address when addresses
// need no verification), they consented to a client of their own, M. The
// owner took it back; sessions and tokens ended, the consent stayed: any
// page that sent the owner's signed-in browser to M with prompt=none got
// M a code for the owner (a regression test).
func TestTakingAnAccountBackForgetsItsConsents(t *testing.T) {
	sink, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("lee@example.com", "lee", "Password-0", store.RoleUser)
		_, admin := e.admin()
		m, _ := e.webClient()
		ours, _ := e.newClient(ClientSpec{Name: "Ours", RedirectURIs: []string{"https://app.example/cb"}, FirstParty: true})
		for i, how := range []string{"reset", "password change", "deactivation"} {
			e.clock.Add(time.Second) // past the user revocation of the change before
			old, pw := fmt.Sprintf("Password-%d", i), e.secret(fmt.Sprintf("Password-%d", i+1))
			e.secret(e.browser().signIn(authorizeURL(m, newPKCE()), "lee", old)) // the intruder consents to M
			switch how {
			case "reset":
				tok := e.secret(token.NewOpaque())
				if err := e.db.ReplaceResetToken(t.Context(), token.Hash(tok), u.ID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
					t.Fatal(err)
				}
				e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": pw}).want(http.StatusNoContent)
			case "password change":
				at, _ := e.login("lee", old)
				e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": old, "new_password": pw}, bearer(at)...).want(http.StatusNoContent)
			case "deactivation":
				pw = old
				for _, active := range []bool{false, true} {
					e.request("PATCH", userPath(u.ID), map[string]any{"is_active": active}, bearer(admin)...).want(http.StatusOK)
				}
			}
			owner := e.browser() // signs in again, at a first-party client
			e.secret(owner.signIn(authorizeURL(ours, newPKCE()), "lee", pw))
			q := callback(t, owner.do("GET", authorizeURL(m, newPKCE(), "prompt", "none"), nil), http.StatusFound)
			if e.secret(q.Get("code")) != "" || q.Get("error") != errConsentRequired {
				t.Errorf("after the %s, prompt=none for the intruder's client: %v; want error=consent_required, no code", how, q)
			}
		}
	}, withReset(t, sink, clientTLS, SMTPStartTLS))
}

// RP-initiated logout ends the sessions that the sign-in's codes and
// device approvals started, refresh and access tokens, on every instance
// within a revocation poll (OIDC Back-Channel Logout 1.0 §2.7: refresh
// tokens issued without offline_access, which this server never grants,
// go with the sign-in). Before, only the sign-in and its unused codes
// ended: a relying party without a back-channel URI, even the one that
// sent the logout, refreshed for up to REFRESH_TOKEN_MAX_DAYS (a
// regression test). By the signed-in browser, and by a relying party's
// back end (no cookie).
func TestLogoutEndsTheSignInsSessions(t *testing.T) {
	key := ecKey(t)
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL := storetest.URL(t, d)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL), withSigningKey(t, key, nil))
			other := newEnvOn(t, storetest.OpenURL(t, dbURL), withSigningKey(t, key, nil), func(d *Deps) { d.Now = e.clock.Now })
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
			tv, _ := e.deviceClient("TV", false, false, "openid")
			rest, restRT := e.login("ann", "Ann-Password-1") // not the sign-in's: goes on
			for _, by := range []string{"browser", "back end"} {
				b, p := e.browser(), newPKCE()
				r := e.token(id, secret, codeForm(e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1")), p)).want(http.StatusOK)
				at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
				dev := e.startDevice(tv, "", "openid")
				wantPage(t, b.approve(dev.userCode, "ann", "Ann-Password-1", "allow"), http.StatusOK, donePage)
				devRT := e.secret(e.poll(tv, "", dev.deviceCode).want(http.StatusOK).Str("refresh_token"))
				logout := e.browser()
				if by == "browser" {
					logout = b
				}
				logout.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {r.Str("id_token")}}.Encode(), nil)
				if b.signedIn(id) {
					t.Fatalf("logout by the %s: the sign-in goes on", by)
				}
				e.refreshGrant(id, secret, rt).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
				e.clientPost("/oauth2/token", tv, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {devRT}}).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
				if err := other.deps.Tokens.Revoked.Load(t.Context(), other.db, e.clock.Now()); err != nil { // the other instance polls
					t.Fatal(err)
				}
				for name, in := range map[string]*env{"this": e, "the other": other} {
					if got := in.introspect(id, secret, at); got["active"] != false {
						t.Errorf("logout by the %s: introspection of the relying party's access token on %s instance: %v; want active:false", by, name, got)
					}
				}
			}
			e.request("GET", "/api/v1/profile", nil, bearer(rest)...).want(http.StatusOK)
			e.secret(e.refresh(restRT).want(http.StatusOK).Str("refresh_token"))
			other.secrets = append(other.secrets, e.secrets...)
		})
	}
}

// A relying party's logout ends the sessions of the sign-in its ID token
// names also when that sign-in is no longer the browser's: it expired and
// the browser signed in again (sid B, for another client), or it expired
// and was purged, then logged out from the relying party's back end, or
// from a browser another user signed in to since. A browser signed in
// again, as anyone, confirms on the page (RP-Initiated Logout §2).
// Before, only a sign-in row found by the hint's sid (and only without a
// cookie) ended its families: the relying party's refresh token went on
// (a regression test). Only its own: another relying party's session of
// that sign-in outlives it, as it outlived the sign-in's expiry; any
// holder of an old ID token of the sign-in ended them all (a regression
// test too).
func TestLogoutEndsTheHintsSessionsAfterItsSignIn(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
		rp2, _ := e.newClient(ClientSpec{Name: "RP2", RedirectURIs: []string{"https://app.example/cb"}, FirstParty: true, Scopes: []string{"openid"}})
		rp3, secret3 := e.newClient(ClientSpec{Name: "RP3", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
		for _, since := range []string{"signed in again", "purged", "another user"} {
			b, p, p3 := e.browser(), newPKCE(), newPKCE()
			r := e.token(id, secret, codeForm(e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1")), p)).want(http.StatusOK)
			rt, hint := e.secret(r.Str("refresh_token")), url.Values{"id_token_hint": {r.Str("id_token")}}.Encode()
			e.secret(r.Str("access_token"))
			r = e.token(rp3, secret3, codeForm(e.secret(b.signIn(authorizeURL(rp3, p3, "scope", "openid"), "ann", "Ann-Password-1")), p3)).want(http.StatusOK)
			rt3 := e.secret(r.Str("refresh_token"))
			e.secret(r.Str("access_token"))
			e.clock.Add(13 * time.Hour) // the sign-in has expired; its session has not
			rt = e.secret(e.refreshGrant(id, secret, rt).want(http.StatusOK).Str("refresh_token"))
			if since != "signed in again" {
				ts := e.deps.Tokens
				if err := e.db.Purge(t.Context(), store.Retention{LoginWindow: time.Minute, AccessTTL: ts.AccessTTL, MaxAge: ts.MaxAge}, e.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			switch since {
			case "signed in again":
				e.secret(b.signIn(authorizeURL(rp2, newPKCE(), "scope", "openid"), "ann", "Ann-Password-1"))
			case "purged":
				e.browser().do("GET", "/oauth2/logout?"+hint, nil) // the back end: no cookie
			case "another user":
				e.secret(b.signIn(authorizeURL(rp2, newPKCE(), "scope", "openid"), "bob", "Bob-Password-1"))
			}
			if since != "purged" {
				w := b.do("GET", "/oauth2/logout?"+hint, nil)
				form := formOf(t, w.Body.String())
				form.Set("action", "logout")
				b.do("POST", "/oauth2/logout", form)
			}
			if b.signedIn(rp2) {
				t.Errorf("%s: the browser's sign-in goes on after the logout", since)
			}
			if w := e.refreshGrant(id, secret, rt); w.Code == http.StatusOK {
				e.secret(w.Str("refresh_token"))
				t.Errorf("%s: the relying party's refresh token still works after its logout", since)
			}
			if w := e.refreshGrant(rp3, secret3, rt3); w.Code != http.StatusOK {
				t.Errorf("%s: another relying party's session of the expired sign-in ended with the logout: %d %s", since, w.Code, w.Body.String())
			} else {
				e.secret(w.Str("refresh_token"))
				e.secret(w.Str("access_token"))
			}
		}
	}, withSigningKey(t, ecKey(t), nil))
}

// A reset (or a deactivation) ends every session of the user with the
// access tokens it minted, also one minted by a refresh that began after
// the reset read its clock and before it committed: while it hashed the new
// password, or waited for a hashing slot. The user revocation covers only
// tokens minted until the reset's now; that token was minted after (a
// regression test: it served /api/v1 after the reset, on every instance,
// for its whole lifetime, and introspected active after a deactivation).
func TestUserRevocationCoversTokensRefreshedDuringIt(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.createUser("lee@example.com", "lee", "Old-Password-1", store.RoleUser)
		_, rt := e.login("lee", "Old-Password-1") // a stolen session
		tok := e.secret(token.NewOpaque())
		if err := e.db.ReplaceResetToken(ctx, token.Hash(tok), u.ID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		resetAt := e.clock.Now() // the reset reads its clock, then hashes the new password;
		e.clock.Add(time.Second) // meanwhile the stolen session refreshes
		r := e.refresh(rt).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		if err := resetPassword(ctx, e.db, e.deps.Passwords, e.deps.Tokens, tok, e.secret("New-Password-2"), resetAt); err != nil {
			t.Fatal(err)
		}
		if r := e.request("GET", "/api/v1/profile", nil, bearer(at)...); r.Code != http.StatusUnauthorized {
			t.Fatalf("a token refreshed during the reset, after it: %d %s; want 401", r.Code, r.Body.String())
		}
		other := newEnvOn(t, e.db, func(d *Deps) {
			d.Now = e.clock.Now
			if err := d.Tokens.Revoked.Load(ctx, e.db, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
		})
		other.secrets = e.secrets
		other.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)

		// A deactivation, with an OAuth session refreshed while it ran.
		id, secret := e.webClient()
		_, ort := e.codeGrant(e.browser(), id, secret, "lee", "New-Password-2")
		deactivateAt := e.clock.Now()
		e.clock.Add(time.Second)
		r = e.refreshGrant(id, secret, ort).want(http.StatusOK)
		oat := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		inactive := false
		root, _ := e.admin()
		_, ended, err := e.db.UpdateUserAdmin(ctx, root.ID, u.ID, nil, &inactive, e.deps.Tokens.AccessTTL, deactivateAt)
		if err != nil {
			t.Fatal(err)
		}
		e.deps.Tokens.Ended(ended)
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Fatalf("a token refreshed during the deactivation introspects %v; want inactive", in)
		}
	})
}

// Item 2: every user access token names its session in sid, and ending the
// session revokes it: logout, refresh-token reuse, revocation of the
// refresh token, a replayed code.
func TestEndingASessionRevokesItsAccessTokens(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
		profile := func(at string) int { return e.request("GET", "/api/v1/profile", nil, bearer(at)...).Code }

		// Logout: the access tokens minted earlier in the session go too.
		a1, r1 := e.login("hal", "Hal-Password-1")
		res := e.refresh(r1).want(http.StatusOK)
		a1b := e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))
		e.request("POST", "/api/v1/auth/logout", nil, bearer(a1b)...).want(http.StatusNoContent)
		if c := profile(a1); c != http.StatusUnauthorized {
			t.Errorf("after logout, the session's earlier access token: %d; want 401", c)
		}

		// Reuse detected: the thief's access token stops working.
		_, r2 := e.login("hal", "Hal-Password-1")
		res = e.refresh(r2).want(http.StatusOK) // the thief rotates first
		thief := e.secret(res.Str("access_token"))
		e.secret(res.Str("refresh_token"))
		e.refresh(r2).want(http.StatusUnauthorized) // the owner presents the spent token
		if c := profile(thief); c != http.StatusUnauthorized {
			t.Errorf("after reuse detection, the thief's access token: %d; want 401", c)
		}

		// Revoking a refresh token at /oauth2/revoke ends its session.
		id, secret := e.webClient()
		oat, ort := e.codeGrant(e.browser(), id, secret, "hal", "Hal-Password-1")
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {ort}}).want(http.StatusOK)
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Errorf("after revoking the refresh token, its session's access token: %v", in)
		}

		// Every user access token carries its session, refresh tokens or not.
		noRefresh, nrSecret := e.newClient(ClientSpec{Name: "no refresh", RedirectURIs: []string{"https://app.example/cb"}, GrantTypes: []string{"authorization_code"}})
		at, _ := e.codeGrant(e.browser(), noRefresh, nrSecret, "hal", "Hal-Password-1")
		if c, err := e.deps.Tokens.Verify(at, e.clock.Now()); err != nil || c.SessionID == "" {
			t.Errorf("access token without refresh token: sid %q, %v; want a session", c.SessionID, err)
		}
	})
}

// A user's live sessions had no cap (see store.TestFamiliesCappedPerUser).
// Past it (store's maxLiveFamilies: 1,000), a login or a code exchange ends
// the user's oldest session, and the access tokens minted from it stop
// working at once on this instance, as any other ending of a session does
// (the other instances read its sid revocation from the database).
func TestOldestSessionEndsPastTheCap(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL := storetest.URL(t, d)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL))
			u := e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
			first, _ := e.login("hal", "Hal-Password-1")
			e.clock.Add(time.Second)
			id, secret := e.webClient()
			second, _ := e.codeGrant(e.browser(), id, secret, "hal", "Hal-Password-1")
			// 998 more, started later: 1,000 live.
			born := e.clock.Now().Unix() + 1
			var rows []string
			for i := range 998 {
				rows = append(rows, fmt.Sprintf("('f%d', %d, 'c1', %d, %d)", i, u.ID, born, born+int64(i)))
			}
			if _, err := storetest.Raw(t, d, dbURL).Exec(`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at) VALUES ` + strings.Join(rows, ", ")); err != nil {
				t.Fatal(err)
			}
			if c := e.request("GET", "/api/v1/profile", nil, bearer(first)...).Code; c != http.StatusOK {
				t.Fatalf("the first session's access token, with 1,000 sessions live: %d; want 200", c)
			}
			e.clock.Add(time.Second) // the new sessions are not the oldest
			e.login("hal", "Hal-Password-1")
			if c := e.request("GET", "/api/v1/profile", nil, bearer(first)...).Code; c != http.StatusUnauthorized {
				t.Errorf("the oldest session's access token, after a login past the cap: %d; want 401", c)
			}
			if in := e.introspect(id, secret, second); in["active"] != true {
				t.Fatalf("the second session's access token, now the oldest: %v; want active", in)
			}
			e.codeGrant(e.browser(), id, secret, "hal", "Hal-Password-1")
			if in := e.introspect(id, secret, second); in["active"] != false {
				t.Errorf("the oldest session's access token, after a code exchange past the cap: %v; want inactive", in)
			}
		})
	}
}

// A user's browser sign-ins had no cap either (see
// store.TestSignInsCappedPerUser). Past it (store's maxSignIns: 1,000), a
// sign-in in another browser ends the user's oldest as a logout of it
// would for the sign-in itself: its browser is signed out, its code not
// yet exchanged is void, and the relying party it reached is told.
func TestOldestSignInEndsPastTheCap(t *testing.T) {
	key := ecKey(t)
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL := storetest.URL(t, d)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL), withSigningKey(t, key, nil), withBackchannel(t))
			rp := newRelyingParty(t)
			u := e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
			id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}, BackchannelLogoutURI: rp.URL})
			first := e.browser()
			sid, _ := e.oidcSignIn(first, id, secret, "hal", "Hal-Password-1")
			p := newPKCE()
			pending := e.secret(first.signIn(authorizeURL(id, p, "scope", "openid"), "hal", "Hal-Password-1"))
			// 999 more, begun later: 1,000 live.
			born := e.clock.Now().Unix() + 1
			var rows []string
			for i := range 999 {
				rows = append(rows, fmt.Sprintf("('h%d', %d, %d, %d, 's%d')", i, u.ID, born+int64(i), born+3600, i))
			}
			if _, err := storetest.Raw(t, d, dbURL).Exec(`INSERT INTO sessions (hash, user_id, auth_time, expires_at, sid) VALUES ` + strings.Join(rows, ", ")); err != nil {
				t.Fatal(err)
			}
			if !first.signedIn(id) {
				t.Fatal("the first sign-in, with 1,000 live, is over")
			}
			e.clock.Add(time.Second) // the new sign-in is not the oldest
			e.secret(e.browser().signIn(authorizeURL(id, newPKCE()), "hal", "Hal-Password-1"))
			if first.signedIn(id) {
				t.Fatal("the oldest sign-in still stands after a sign-in past the cap")
			}
			e.token(id, secret, codeForm(pending, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
			if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
				t.Errorf("logout token sid %q; want the oldest sign-in's, %q", c.SessionID, sid)
			}
		})
	}
}

// RFC 7009 §2.1: revoking a refresh token ends its session, access tokens
// included, expired or not. With REFRESH_TOKEN_TTL shorter than the access
// tokens' life, the revocation of an expired refresh token read it as
// unknown, did nothing and answered 200: the access token minted with it
// lived on for its hour. A regression test: the refresh token has expired
// and a purge has run, and its revocation still ends the session; the
// expired token does nothing else (no refresh, no introspection, nothing
// when another client revokes it).
func TestRevokingAnExpiredRefreshTokenEndsItsSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret, oat, ort := expiredRefreshSession(t, e)
		other, otherSecret := e.newClient(ClientSpec{Name: "Other", RedirectURIs: []string{"https://other.example/cb"}})
		e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ort}}).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if in := e.introspect(id, secret, ort); in["active"] != false {
			t.Errorf("an expired refresh token introspects %v; want inactive", in)
		}
		e.formPost("/oauth2/revoke", other, otherSecret, url.Values{"token": {ort}}).want(http.StatusOK)
		if in := e.introspect(id, secret, oat); in["active"] != true {
			t.Fatalf("another client's revocation of the refresh token ended the session: %v", in)
		}
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {ort}}).want(http.StatusOK)
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Errorf("after the revocation of its expired refresh token, the session's access token introspects %v; want inactive", in)
		}
	}, func(d *Deps) { d.Tokens.RefreshTTL = time.Minute })
}

// TestLogoutWithAnExpiredRefreshTokenEndsItsSession: the REST logout names,
// besides the caller's own session, the one a refresh token of the caller's
// belongs to; an expired one still names it (its access tokens may outlive
// it), as at the revocation endpoint.
func TestLogoutWithAnExpiredRefreshTokenEndsItsSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		id, secret, oat, ort := expiredRefreshSession(t, e)
		at, _ := e.login("hal", "Hal-Password-1")
		e.request("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": ort}, bearer(at)...).want(http.StatusNoContent)
		if in := e.introspect(id, secret, oat); in["active"] != false {
			t.Errorf("after a logout naming its expired refresh token, the session's access token introspects %v; want inactive", in)
		}
	}, func(d *Deps) { d.Tokens.RefreshTTL = time.Minute })
}

// RFC 9700 §4.14.2: a spent refresh token presented again ends its
// session, after its own expiry too. A thief who refreshed a stolen token
// keeps the session going; the client, back after the token it holds has
// expired, presents it. A regression test: it was refused as expired (and
// purged as such), and the thief's session lived on to its max age.
func TestSpentRefreshTokenReusedAfterItsExpiryEndsTheSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
		id, secret := e.webClient()
		_, stolen := e.codeGrant(e.browser(), id, secret, "hal", "Hal-Password-1")
		refresh := func(rt string) response {
			return e.token(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		}
		e.clock.Add(10 * time.Minute)
		r := refresh(stolen).want(http.StatusOK) // the thief, first
		e.secret(r.Str("access_token"))
		rt := e.secret(r.Str("refresh_token"))
		e.clock.Add(55 * time.Minute) // the stolen token expired at 60 min; the thief's lives to 70
		r = refresh(rt).want(http.StatusOK)
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		e.purgeNow(t)
		refresh(stolen).wantOAuthError(http.StatusBadRequest, errInvalidGrant) // the client, back
		if in := e.introspect(id, secret, at); in["active"] != false {
			t.Errorf("after the reuse of an expired spent refresh token, the thief's access token introspects %v; want inactive", in)
		}
		refresh(rt).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	}, func(d *Deps) { d.Tokens.RefreshTTL = time.Hour })
}

// expiredRefreshSession signs hal in at a web client (e's refresh tokens
// live a minute), moves the clock two minutes on and purges: the refresh
// token has expired and the purge has run, the access token (an hour) has
// not expired. It returns the client, its secret and the two tokens.
func expiredRefreshSession(t *testing.T, e *env) (id, secret, at, rt string) {
	t.Helper()
	e.createUser("hal@example.com", "hal", "Hal-Password-1", store.RoleUser)
	id, secret = e.webClient()
	at, rt = e.codeGrant(e.browser(), id, secret, "hal", "Hal-Password-1")
	e.clock.Add(2 * time.Minute)
	e.purgeNow(t)
	return id, secret, at, rt
}

// purgeNow runs the janitor's purge at e's clock, with e's lifetimes.
func (e *env) purgeNow(t *testing.T) {
	t.Helper()
	ts := e.deps.Tokens
	if err := e.db.Purge(context.Background(), store.Retention{LoginWindow: time.Minute, AccessTTL: ts.AccessTTL, MaxAge: ts.MaxAge}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
}

// A revocation is kept as long as a token minted when it was written can
// live: ACCESS_TOKEN_TTL then. A token minted under a longer TTL, before a
// restart that lowered it, lives no longer than the new TTL either. A
// regression test: once its logout's revocation was purged, the token
// minted under the old TTL verified again for the rest of its hour.
func TestTokenMintedUnderALongerTTLStaysRevoked(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		at, _ := e.login("bob", "Bob-Password-1") // exp: an hour on
		e.deps.Tokens.AccessTTL = 5 * time.Minute // ACCESS_TOKEN_TTL lowered, the instance restarted
		e.request("POST", "/api/v1/auth/logout", map[string]string{}, bearer(at)...).want(http.StatusNoContent)
		e.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)
		e.clock.Add(10 * time.Minute)
		e.purgeNow(t)
		e.deps.Tokens.Revoked.prune(e.clock.Now().Unix())
		if r := e.request("GET", "/api/v1/profile", nil, bearer(at)...); r.Code != http.StatusUnauthorized {
			t.Errorf("the logged-out token minted under the longer TTL, its revocation purged: %d; want 401", r.Code)
		}
	})
}

// A redeemed device code replayed after its expiry's hour ends the session
// it started, as a used authorization code does for as long as its session
// lives. A regression test: the purge deleted it an hour after expiry, and
// the replay, unknown, ended nothing.
func TestDeviceCodeReplayedAfterPurgeEndsItsSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", store.RoleUser)
		tv, sec := e.deviceClient("TV", true, false, "read")
		d := e.startDevice(tv, sec, "")
		wantPage(t, e.browser().approve(d.userCode, "ann", "correct horse", "allow"), http.StatusOK, "Device connected")
		e.clock.Add(5 * time.Second)
		rt := e.secret(e.poll(tv, sec, d.deviceCode).want(http.StatusOK).Str("refresh_token"))
		e.clock.Add(2 * time.Hour)
		e.purgeNow(t)
		r := e.clientPost("/oauth2/token", tv, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		e.poll(tv, sec, d.deviceCode).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		if m := e.introspect(tv, sec, at); m["active"] != false {
			t.Errorf("after a replay of the redeemed device code, its session's access token introspects %v; want inactive", m)
		}
	})
}

// Item 3: no session outlives REFRESH_TOKEN_MAX_DAYS from its login, whatever
// the rotations.
func TestSessionMaxAge(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("amy@example.com", "amy", "Amy-Password-1", store.RoleUser)
		id, secret := e.webClient()
		_, rt := e.login("amy", "Amy-Password-1")
		_, ort := e.codeGrant(e.browser(), id, secret, "amy", "Amy-Password-1")
		// Rotate every 20 days: each rotation would grant 30 more.
		for day := 20; day < 90; day += 20 {
			e.clock.Add(20 * 24 * time.Hour)
			res := e.refresh(rt).want(http.StatusOK)
			rt = e.secret(res.Str("refresh_token"))
			e.secret(res.Str("access_token"))
			r := e.refreshGrant(id, secret, ort).want(http.StatusOK)
			ort = e.secret(r.Str("refresh_token"))
			e.secret(r.Str("access_token"))
		}
		e.clock.Add(10 * 24 * time.Hour) // day 90
		wantAPIError(e.refresh(rt), http.StatusUnauthorized, "invalid_token")
		e.refreshGrant(id, secret, ort).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	}, func(d *Deps) { d.Tokens.MaxAge = 90 * 24 * time.Hour })
}

// A session started by a code ends REFRESH_TOKEN_MAX_DAYS after its login,
// not after the code's redemption: a code from a browser sign-in 11 hours
// old gave its refresh tokens 11 hours past the bound.
func TestSessionMaxAgeCountsFromTheLogin(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("amy@example.com", "amy", "Amy-Password-1", store.RoleUser)
		id, secret := e.webClient()
		b := e.browser()
		end := e.clock.Now().Add(e.deps.Tokens.MaxAge) // the login
		e.codeGrant(b, id, secret, "amy", "Amy-Password-1")
		e.clock.Add(11 * time.Hour)
		p := newPKCE()
		w := b.do("GET", authorizeURL(id, p), nil) // still signed in: a code at once
		code := e.secret(callback(t, w, http.StatusFound).Get("code"))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		rt := e.secret(r.Str("refresh_token"))
		e.secret(r.Str("access_token"))
		e.clock.Add(end.Sub(e.clock.Now()) - time.Second)
		r = e.refreshGrant(id, secret, rt).want(http.StatusOK)
		rt = e.secret(r.Str("refresh_token"))
		e.secret(r.Str("access_token"))
		if in := r.JSON()["expires_in"]; in != 1.0 {
			t.Errorf("refreshed 1 s before the session's end, counted from its login: expires_in %v; want 1", in)
		}
		e.clock.Add(time.Second)
		e.refreshGrant(id, secret, rt).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
	}, func(d *Deps) { d.Tokens.MaxAge = 24 * time.Hour })
}

// The first access token of a session from a code ends with the session
// too: REFRESH_TOKEN_MAX_DAYS after the login, not ACCESS_TOKEN_TTL after
// the exchange (it was a full 20 hours from a code 11 hours after a login
// whose session lasts 24).
func TestCodeExchangeEndsWithItsSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("amy@example.com", "amy", "Amy-Password-1", store.RoleUser)
		id, secret := e.webClient()
		b := e.browser()
		e.codeGrant(b, id, secret, "amy", "Amy-Password-1")
		e.clock.Add(11 * time.Hour)
		p := newPKCE()
		code := e.secret(callback(t, b.do("GET", authorizeURL(id, p), nil), http.StatusFound).Get("code"))
		r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if in, exp := r.JSON()["expires_in"], e.claimsOf(e.secret(r.Str("access_token"))).Expiry; in != float64(13*3600) || exp != e.clock.Now().Add(13*time.Hour).Unix() {
			t.Errorf("a code 11 h into a 24 h session: expires_in %v, exp %v; want 13 h", in, time.Unix(exp, 0))
		}
	}, func(d *Deps) { d.Tokens.MaxAge, d.Tokens.AccessTTL = 24*time.Hour, 20*time.Hour })
}

// A session is a refresh-token family with the access tokens minted from it
// (API.md), so a refresh just before REFRESH_TOKEN_MAX_DAYS mints an access
// token that ends with the session, not ACCESS_TOKEN_TTL later: at the REST
// API and at the token endpoint alike.
func TestSessionMaxAgeEndsItsAccessTokens(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("amy@example.com", "amy", "Amy-Password-1", store.RoleUser)
		id, secret := e.webClient()
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		end := e.clock.Now().Add(e.deps.Tokens.MaxAge) // both sessions start now
		_, rt := e.login("amy", "Amy-Password-1")
		_, ort := e.codeGrant(e.browser(), id, secret, "amy", "Amy-Password-1")
		e.clock.Add(e.deps.Tokens.MaxAge - time.Second)
		pairs := []response{e.refresh(rt).want(http.StatusOK), e.refreshGrant(id, secret, ort).want(http.StatusOK)}
		for _, r := range pairs {
			at := e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
			if exp, in := e.claimsOf(at).Expiry, r.JSON()["expires_in"]; exp > end.Unix() || in != 1.0 {
				t.Fatalf("refreshed 1s before the session's end: exp %v, expires_in %v; want exp at most %v, expires_in 1", time.Unix(exp, 0), in, end)
			}
			if !e.introspect(rs, rsSecret, at)["active"].(bool) {
				t.Fatal("a fresh access token is inactive")
			}
		}
		e.clock.Add(time.Second) // the session's end
		for _, r := range pairs {
			if e.introspect(rs, rsSecret, r.Str("access_token"))["active"].(bool) {
				t.Fatal("an access token is active at introspection past its session's REFRESH_TOKEN_MAX_DAYS")
			}
		}
		e.clock.Add(token.Leeway) // and past the clock skew a bearer check allows
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(pairs[0].Str("access_token"))...), http.StatusUnauthorized, "invalid_token")
	}, func(d *Deps) { d.Tokens.MaxAge = 24 * time.Hour })
}

// Item 4: at most LOGIN_MAX_FAILURES password checks of one account per
// window (between successes, which clear the count), however many requests
// arrive at once.
func TestLoginChecksBoundedUnderConcurrency(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const good = "Kim-Password-1"
		e.createUser("kim@example.com", "kim", good, store.RoleUser)
		const n = 60
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pw := fmt.Sprintf("Wrong-Password-%d", i)
				if i == n/2 {
					pw = good
				}
				e.secret(pw)
				statuses[i] = e.loginAttempt("kim", pw).Code
			}()
		}
		wg.Wait()
		checked := 0
		for i, s := range statuses {
			switch s {
			case http.StatusOK, http.StatusUnauthorized:
				checked++
			case http.StatusTooManyRequests:
			default:
				t.Errorf("attempt %d: status %d", i, s)
			}
		}
		// A success clears the count (API.md), so the attempts counted
		// after it get checks of their own: Max more at most.
		limit := e.deps.Throttle.Max
		if statuses[n/2] == http.StatusOK {
			limit *= 2
		}
		if checked > limit {
			t.Fatalf("%d of %d parallel logins had their password checked; want at most %d", checked, n, limit)
		}
	}, func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 8, 10*time.Second) })
}

// Item 5: once an account's username is throttled, a try with an email
// answers the same whether or not the email belongs to that account.
func TestLockoutDoesNotLinkNames(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("dora@example.com", "dora", "Dora-Password-1", store.RoleUser)
		e.createUser("emil@example.com", "emil", "Emil-Password-1", store.RoleUser)
		for i := 0; i < e.deps.Throttle.Max; i++ {
			e.loginAttempt("dora", "Wrong-Password-1").want(http.StatusUnauthorized)
		}
		e.loginAttempt("dora", "Wrong-Password-1").want(http.StatusTooManyRequests)
		same := e.loginAttempt("dora@example.com", "Wrong-Password-2")
		other := e.loginAttempt("emil@example.com", "Wrong-Password-2")
		nobody := e.loginAttempt("nobody@example.com", "Wrong-Password-2")
		for name, r := range map[string]response{"another account's email": other, "an unknown email": nobody} {
			if r.Code != same.Code || r.Body.String() != same.Body.String() || r.Header().Get("Retry-After") != same.Header().Get("Retry-After") {
				t.Errorf("the throttled account's email: %d %s %q; %s: %d %s %q", same.Code, same.Body.String(), same.Header().Get("Retry-After"),
					name, r.Code, r.Body.String(), r.Header().Get("Retry-After"))
			}
		}
		// And the right password by the email is not checked either.
		wantAPIError(e.loginAttempt("dora@example.com", "Dora-Password-1"), http.StatusUnauthorized, "invalid_credentials")
	})
}

// cutDBs make the database unable to take writes until restore is called:
// on PostgreSQL and MySQL by cutting the network path to it, on SQLite (no network)
// by another connection holding the write lock, so that writes time out
// (after the 5 s busy timeout).
type cutDB func(t *testing.T) (db *store.DB, cut, restore func())

var cutDBs = map[string]cutDB{
	store.SQLite: func(t *testing.T) (*store.DB, func(), func()) {
		path := storetest.URL(t, store.SQLite)
		db := storetest.OpenURL(t, path)
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		var lock *sql.Conn
		return db, func() {
				if lock, err = raw.Conn(context.Background()); err != nil {
					t.Fatal(err)
				}
				if _, err := lock.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
					t.Fatal(err)
				}
			}, func() {
				lock.ExecContext(context.Background(), "ROLLBACK")
				lock.Close()
			}
	},
	store.Postgres: cutServer(store.Postgres),
	store.MySQL:    cutServer(store.MySQL),
}

func cutServer(dialect string) cutDB {
	return func(t *testing.T) (*store.DB, func(), func()) {
		db, p := storetest.OpenViaProxy(t, dialect)
		return db, p.Cut, p.Restore
	}
}

// Item 6: a revocation is acknowledged only once stored; a failed one
// changes nothing here either, and its retry stores it.
func TestRevocationStoredBeforeAcknowledged(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			db, cut, restore := cutDBs[dialect](t)
			e := newEnvOn(t, db)
			e.createUser("rex@example.com", "rex", "Rex-Password-1", store.RoleUser)
			id, secret := e.webClient()
			at, _ := e.codeGrant(e.browser(), id, secret, "rex", "Rex-Password-1")
			e.introspect(id, secret, at) // the client is cached: introspection needs no database

			cut()
			r := e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {at}})
			if r.Code != http.StatusServiceUnavailable {
				t.Fatalf("revocation with the database away: %d %s; want 503", r.Code, r.Body.String())
			}
			if in := e.introspect(id, secret, at); in["active"] != true {
				t.Fatalf("a revocation that was not stored took effect here: %v", in)
			}
			restore()
			e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {at}}).want(http.StatusOK)
			c, err := e.deps.Tokens.Verifier.Parse(at, token.Expect{Type: token.TypeAccess, Issuer: testIssuer, Audience: testIssuer}, e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			found := false
			_, err = db.RevocationsSince(context.Background(), time.Unix(0, 0), e.clock.Now(), revocationPage, func(page []store.Revocation) {
				for _, rv := range page {
					found = found || (rv.Kind == store.RevokeJTI && rv.Subject == c.ID)
				}
			})
			if err != nil || !found {
				t.Fatalf("after the retry's 200 the revocation is not stored (other instances accept the token): %v", err)
			}
			if in := e.introspect(id, secret, at); in["active"] != false {
				t.Fatalf("revoked token still active: %v", in)
			}
		})
	}
}

// Item 7: an id_token_hint signs out at once only the user it names.
func TestLogoutHintMustNameSignedInUser(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"},
			PostLogoutRedirectURIs: []string{"https://app.example/bye"}, Scopes: []string{"openid"}})
		idToken := func(b *browser, login, pw string) string {
			p := newPKCE()
			code := e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), login, pw))
			r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
			e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
			return r.Str("id_token")
		}
		victim, attacker := e.browser(), e.browser()
		idToken(victim, "ann", "Ann-Password-1")
		bobs := idToken(attacker, "bob", "Bob-Password-1")
		// A link with someone else's ID token asks the victim first.
		w := victim.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {bobs}, "post_logout_redirect_uri": {"https://app.example/bye"}}.Encode(), nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) {
			t.Fatalf("logout with another user's hint: %d %q; want the confirmation page", w.Code, w.Header().Get("Location"))
		}
		if !victim.signedIn(id) {
			t.Fatal("another user's id_token_hint signed the victim out")
		}
		// The page's form, confirmed, lands on the registered URI (the
		// client comes from the hint).
		form := formOf(t, w.Body.String())
		if form.Get("client_id") != id {
			t.Fatalf("confirmation form %v; want the hint's client_id", form)
		}
		form.Set("action", "logout")
		if w := victim.do("POST", "/oauth2/logout", form); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://app.example/bye" {
			t.Fatalf("confirmed logout: %d %q", w.Code, w.Header().Get("Location"))
		}
		if victim.signedIn(id) {
			t.Fatal("still signed in after confirming")
		}
		// The user's own hint, even expired, signs out at once.
		anns := idToken(victim, "ann", "Ann-Password-1")
		e.clock.Add(2 * time.Hour)
		w = victim.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {anns}}.Encode(), nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Signed out") || victim.signedIn(id) {
			t.Fatalf("logout with the user's own hint: %d; still signed in: %v", w.Code, victim.signedIn(id))
		}
	}, withSigningKey(t, key, nil))
}

// RP-Initiated Logout §2: the OP must ask when the hint's ID token does
// not belong to the browser's sign-in. Ann signs in twice (her laptop and
// her phone: two sids); a link sent to the laptop with an ID token of the
// phone's sign-in, expired or not, shows the confirmation page, ends
// nothing, and does not follow a dynamically registered client's
// post_logout_redirect_uri; confirmed, it ends both as before. A
// regression test: only the hint's sub was compared, so any ID token of
// the user (a leaked one, an old one) signed the laptop out unasked.
func TestLogoutHintOfAnotherSignInAsks(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		ours, _ := e.newClient(ClientSpec{Name: "Ours", RedirectURIs: []string{"https://app.example/cb"}, FirstParty: true, Scopes: []string{"openid"}})
		r := e.registerClient("", map[string]any{"client_name": "RP", "redirect_uris": []string{"https://app.example/cb"},
			"post_logout_redirect_uris": []string{"https://rp.example/bye"}, "scope": "openid",
			"token_endpoint_auth_method": "client_secret_post"}).want(http.StatusCreated)
		id, secret := r.Str("client_id"), r.Str("client_secret")
		idToken := func(b *browser) string {
			p := newPKCE()
			r := e.token(id, secret, codeForm(e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1")), p)).want(http.StatusOK)
			e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
			return e.secret(r.Str("id_token"))
		}
		laptop, phone := e.browser(), e.browser()
		idToken(laptop)
		q := url.Values{"id_token_hint": {idToken(phone)}, "post_logout_redirect_uri": {"https://rp.example/bye"}}.Encode()
		var w *httptest.ResponseRecorder
		for _, expired := range []bool{false, true} {
			if expired {
				e.clock.Add(2 * time.Hour) // the ID token has expired, the sign-ins have not
			}
			w = laptop.do("GET", "/oauth2/logout?"+q, nil)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="logout"`) {
				t.Fatalf("expired %v: logout with another sign-in's hint: %d Location %q; want the confirmation page", expired, w.Code, w.Header().Get("Location"))
			}
			if !laptop.signedIn(ours) || !phone.signedIn(ours) {
				t.Fatalf("expired %v: another sign-in's id_token_hint ended a sign-in unasked (laptop %v, phone %v)", expired, laptop.signedIn(ours), phone.signedIn(ours))
			}
		}
		form := formOf(t, w.Body.String())
		form.Set("action", "logout")
		if w := laptop.do("POST", "/oauth2/logout", form); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://rp.example/bye" {
			t.Fatalf("confirmed logout: %d %q", w.Code, w.Header().Get("Location"))
		}
		if laptop.signedIn(ours) || phone.signedIn(ours) {
			t.Fatal("a sign-in goes on after the confirmed logout")
		}
	}, withDynamicRegistration(RegistrationOpen), withSigningKey(t, ecKey(t), nil))
}

// Item 8: a client learns only about its own tokens, unless registered
// --resource-server: then about the access tokens for its resource too,
// here (no RESOURCES) every one, all for the ISSUER, which a resource
// server registered without a resource is (TestIntrospectionAtItsResource).
func TestIntrospectionOwnTokensOrResourceServer(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("uma@example.com", "uma", "Uma-Password-1", store.RoleUser)
		id, secret := e.webClient()
		at, _ := e.codeGrant(e.browser(), id, secret, "uma", "Uma-Password-1")
		rest, _ := e.login("uma", "Uma-Password-1")
		other, otherSecret := e.newClient(ClientSpec{Name: "other", GrantTypes: []string{"client_credentials"}})
		rs, rsSecret := e.newClient(ClientSpec{Name: "API", GrantTypes: []string{"client_credentials"}, ResourceServer: true})
		own := e.secret(e.token(other, otherSecret, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK).Str("access_token"))
		for _, tok := range []string{at, rest} {
			if in := e.introspect(other, otherSecret, tok); len(in) != 1 || in["active"] != false {
				t.Errorf("another client introspected a token not issued to it: %v", in)
			}
			if in := e.introspect(rs, rsSecret, tok); in["active"] != true || in["sub"] == nil {
				t.Errorf("a resource server introspected: %v; want active", in)
			}
		}
		if in := e.introspect(id, secret, at); in["active"] != true {
			t.Errorf("own token: %v", in)
		}
		if in := e.introspect(other, otherSecret, own); in["active"] != true {
			t.Errorf("own client-credentials token: %v", in)
		}
		if _, _, err := CreateClient(context.Background(), e.db, 0, ClientSpec{Name: "x", Public: true, ResourceServer: true, RedirectURIs: []string{"https://a.example/cb"}}, false, nil, e.clock.Now()); err == nil {
			t.Error("a public client registered as a resource server")
		}
	})
}

// Item 9: tokens of first-party clients work at /api/v1; third-party
// clients' tokens do not.
func TestFirstPartyClientTokensAtAPI(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ned@example.com", "ned", "Ned-Password-1", store.RoleUser)
		spa, _ := e.newClient(ClientSpec{Name: "SPA", Public: true, FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}})
		third, thirdSecret := e.webClient()
		b := e.browser()
		p := newPKCE()
		code := e.secret(b.signIn(authorizeURL(spa, p), "ned", "Ned-Password-1"))
		form := codeForm(code, p)
		form.Set("client_id", spa)
		r := e.formPost("/oauth2/token", "", "", form).want(http.StatusOK)
		first := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
		if p := e.request("GET", "/api/v1/profile", nil, bearer(first)...).want(http.StatusOK).JSON(); p["username"] != "ned" {
			t.Fatalf("profile with a first-party client's token: %v", p)
		}
		at, _ := e.codeGrant(b, third, thirdSecret, "ned", "Ned-Password-1")
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(at)...), http.StatusUnauthorized, "invalid_token")
		wantAPIError(e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Ned-Password-1", "new_password": "Other-Password-9"}, bearer(at)...), http.StatusUnauthorized, "invalid_token")
		// Logout with the first-party token ends its session.
		e.request("POST", "/api/v1/auth/logout", nil, bearer(first)...).want(http.StatusNoContent)
		wantAPIError(e.request("GET", "/api/v1/profile", nil, bearer(first)...), http.StatusUnauthorized, "invalid_token")
	})
}

// /health answers 503 within HealthTimeout when the database stops
// answering, not after the 5 s statement timeout: a probe's timeout is
// shorter than that. (The bound checked is generous: this catches the hang,
// it does not time the server.)
func TestHealthBoundedWhenDatabaseStalls(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			db, p := storetest.OpenViaProxy(t, dialect)
			e := newEnvOn(t, db)
			e.request("GET", "/health", nil).want(http.StatusOK)
			p.Stall()
			e.clock.Add(time.Second) // past the first answer's second
			start := time.Now()
			r := e.request("GET", "/health", nil)
			took := time.Since(start)
			if r.Code != http.StatusServiceUnavailable || r.Str("status") != "unhealthy" {
				t.Fatalf("/health with the database stalled: %d %s; want 503 unhealthy", r.Code, r.Body.String())
			}
			if took > 4*time.Second {
				t.Fatalf("/health took %v with the database stalled; want about %v", took, HealthTimeout)
			}
			p.Restore()
			deadline := time.Now().Add(15 * time.Second)
			for e.request("GET", "/health", nil).Code != http.StatusOK {
				if time.Now().After(deadline) {
					t.Fatal("/health did not recover once the database answered again")
				}
				time.Sleep(100 * time.Millisecond)
				e.clock.Add(time.Second)
			}
		})
	}
}

// /health pings the database at most once a second, whoever asks: a
// request within the second gets the last ping's answer without a ping of
// its own. The database closed after the first request shows it (a ping
// would fail at once); once the clock reaches the second, the next request
// pings and answers 503.
func TestHealthPingsOnceASecond(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.request("GET", "/health", nil).want(http.StatusOK)
		e.db.Close()
		e.clock.Add(time.Second - time.Millisecond)
		if r := e.request("GET", "/health", nil); r.Code != http.StatusOK || r.Str("status") != "healthy" {
			t.Fatalf("/health within the second of a good ping, the database closed since: %d %s; want the cached 200", r.Code, r.Body.String())
		}
		e.clock.Add(time.Millisecond)
		if r := e.request("GET", "/health", nil); r.Code != http.StatusServiceUnavailable || r.Str("status") != "unhealthy" || r.Header().Get("Retry-After") != "1" {
			t.Fatalf("/health a second after the last ping, the database closed: %d %s; want 503 unhealthy, Retry-After 1", r.Code, r.Body.String())
		}
	})
}

// A reset or a password change ends the sessions that its transaction
// finds, and voids the codes not yet exchanged. A code exchanged while it
// runs started a session it did not find (its family was revoked first,
// the codes deleted after), which lived on: refreshable for
// REFRESH_TOKEN_MAX_DAYS on a password the owner had just replaced (a
// regression test). On PostgreSQL the reset is held between its
// statements by a lock the test takes on a table its sign-in part reads,
// and the code is exchanged meanwhile; SQLite runs one writer at a time.
func TestSessionStartedDuringResetEnds(t *testing.T) {
	for _, change := range []string{"reset", "password change"} {
		t.Run(change, func(t *testing.T) {
			ctx := context.Background()
			dbURL := storetest.URL(t, store.Postgres)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL))
			raw := storetest.Raw(t, store.Postgres, dbURL)
			u := e.createUser("lee@example.com", "lee", "Old-Password-1", store.RoleUser)
			at, _ := e.login("lee", "Old-Password-1")
			id, secret := e.webClient()
			p := newPKCE()
			code := e.secret(e.browser().signIn(authorizeURL(id, p), "lee", "Old-Password-1")) // an attacker's, with the old password
			tok := e.secret(token.NewOpaque())
			if err := e.db.ReplaceResetToken(ctx, token.Hash(tok), u.ID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
				t.Fatal(err)
			}
			lock, err := raw.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback()
			if _, err := lock.ExecContext(ctx, "LOCK TABLE session_clients IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			newPW := e.secret("New-Password-2")
			done := make(chan error, 1)
			go func() {
				if change == "reset" {
					done <- resetPassword(ctx, e.db, e.deps.Passwords, e.deps.Tokens, tok, newPW, e.clock.Now())
					return
				}
				r := e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Old-Password-1", "new_password": newPW}, bearer(at)...)
				done <- map[bool]error{true: nil, false: fmt.Errorf("password change: %d %s", r.Code, r.Body.String())}[r.Code == http.StatusNoContent]
			}()
			deadline := time.Now().Add(30 * time.Second) // the waits below fail, never hang
			var changer int                              // the change's backend, once it waits for the lock
			for raw.QueryRowContext(ctx, "SELECT pid FROM pg_locks WHERE relation = 'session_clients'::regclass AND NOT granted").Scan(&changer) != nil {
				select {
				case err := <-done:
					t.Fatalf("the %s did not wait for the lock: %v", change, err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("the %s never waited for the lock", change)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The code is exchanged meanwhile. The exchange holds the user's
			// row first (store.stillPassword), which the change already
			// holds: it may wait for the change, which waits for the lock,
			// so the lock goes once the exchange has answered or waits too.
			exchanged := make(chan response, 1)
			go func() { exchanged <- e.token(id, secret, codeForm(code, p)) }()
			var r response
			// Waits counted on the whole server (other tests') let the lock go early.
			for waiting := 0; r.ResponseRecorder == nil && waiting == 0; time.Sleep(10 * time.Millisecond) {
				select {
				case r = <-exchanged:
				default:
					if err := raw.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", changer).Scan(&waiting); err != nil {
						t.Fatal(err)
					}
					if time.Now().After(deadline) {
						t.Fatal("the exchange neither answered nor waited for the change")
					}
				}
			}
			lock.Rollback()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if r.ResponseRecorder == nil {
				r = <-exchanged
			}
			if r.Code == http.StatusBadRequest && r.Str("error") == errInvalidGrant {
				return // refused: the change voided the code first
			} else if r.Code != http.StatusOK {
				t.Fatalf("the exchange during the %s: %d %s; want 200 or invalid_grant (a 5xx is a deadlock or a fault)", change, r.Code, r.Body.String())
			}
			e.secret(r.Str("access_token"))
			rt := e.secret(r.Str("refresh_token"))
			if r := e.refreshGrant(id, secret, rt); r.Code == http.StatusOK {
				e.secret(r.Str("access_token"))
				e.secret(r.Str("refresh_token"))
				t.Fatalf("a session started with the old password during the %s refreshes after it", change)
			}
		})
	}
}

// Two logins sent at once with one cookie (a double click on "Sign in",
// two tabs with prompt=login) both continue the browser's sign-in. The
// second took the first's having replaced the old row for a logout
// (store.ErrConflict) and started a new sign-in; the browser kept one of
// the two cookies, and if it kept that one, its logout left the sign-in
// the relying party held live, with its refresh tokens. Both logins read
// the sign-in, then wait for the one hashing slot. Whichever cookie the
// browser keeps, its logout ends both, and the relying party's session.
func TestSignInAgainTwiceAtOnce(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			e := newEnvOn(t, storetest.OpenURL(t, url), func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second) })
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			id, secret := e.webClient()
			b := e.browser()
			_, rt := e.codeGrant(b, id, secret, "ann", "Ann-Password-1")
			form := formOf(t, b.do("GET", authorizeURL(id, newPKCE(), "prompt", "login"), nil).Body.String())
			form.Set("login", "ann")
			form.Set("password", "Ann-Password-1")
			tabs := []*browser{b, {e: e, cookies: maps.Clone(b.cookies)}}
			e.deps.Passwords.slots <- struct{}{} // the one hashing slot is busy
			done := make(chan *httptest.ResponseRecorder, len(tabs))
			for _, tab := range tabs {
				go func() { done <- tab.do("POST", "/oauth2/authorize", form) }()
			}
			waitCounted(t, storetest.Raw(t, d, url), len(tabs))
			<-e.deps.Passwords.slots
			for range tabs {
				e.secret(callback(t, <-done, http.StatusSeeOther).Get("code"))
			}
			logout := formOf(t, b.do("GET", "/oauth2/logout?client_id="+id, nil).Body.String())
			logout.Set("action", "logout")
			if w := b.do("POST", "/oauth2/logout", logout); w.Code != http.StatusOK {
				t.Fatalf("logout: %d", w.Code)
			}
			if r := e.refreshGrant(id, secret, rt); r.Code == http.StatusOK {
				e.secret(r.Str("access_token"))
				e.secret(r.Str("refresh_token"))
				t.Errorf("the relying party's session refreshes after the browser signed out")
			}
			if tabs[1].signedIn(id) {
				t.Errorf("the other login's cookie is signed in after the browser signed out")
			}
		})
	}
}

// The same user signing in again (prompt=login) continues the sign-in
// under its sid; if that sign-in ends meanwhile (a logout in another tab
// while the password is checked: store.ErrConflict), the right password
// showed "Your sign-in expired" and left no audit event. It starts a new
// sign-in, under a new sid, and the login is audited as any other. The
// login waits for a hashing slot, so the logout lands after it has read
// the sign-in and before it continues it.
func TestSignInAgainAfterItEnded(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			raw := storetest.Raw(t, d, url)
			e := newEnvOn(t, storetest.OpenURL(t, url), func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second) })
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			id, _ := e.webClient()
			b := e.browser()
			e.secret(b.signIn(authorizeURL(id, newPKCE()), "ann", "Ann-Password-1"))
			logins := func() (sids []string) {
				for _, ev := range e.auditTrail() {
					if ev.Action == actLoginSuccess {
						sids = append(sids, ev.Detail["sid"])
					}
				}
				return sids
			}
			first := logins()
			form := formOf(t, b.do("GET", authorizeURL(id, newPKCE(), "prompt", "login"), nil).Body.String())
			form.Set("login", "ann")
			form.Set("password", "Ann-Password-1")
			otherTab := &browser{e: e, cookies: maps.Clone(b.cookies)}

			e.deps.Passwords.slots <- struct{}{} // the one hashing slot is busy
			done := make(chan *httptest.ResponseRecorder, 1)
			go func() { done <- b.do("POST", "/oauth2/authorize", form) }()
			waitCounted(t, raw, 1)
			logout := formOf(t, otherTab.do("GET", "/oauth2/logout?client_id="+id, nil).Body.String())
			logout.Set("action", "logout")
			if w := otherTab.do("POST", "/oauth2/logout", logout); w.Code != http.StatusOK || otherTab.signedIn(id) {
				t.Fatalf("logout in the other tab: %d", w.Code)
			}
			<-e.deps.Passwords.slots
			w := <-done
			if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "code=") {
				t.Fatalf("a right password after the sign-in it continued ended: %d, Location %q; want a code", w.Code, w.Header().Get("Location"))
			}
			e.secret(callback(t, w, http.StatusSeeOther).Get("code"))
			sids := logins()
			if len(first) != 1 || len(sids) != 2 || sids[1] == "" || sids[1] == first[0] || !b.signedIn(id) {
				t.Fatalf("login events' sids %v after %v; want a second login, under a new sid, signed in", sids, first)
			}
		})
	}
}
