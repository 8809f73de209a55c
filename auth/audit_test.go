package auth

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// auditTrail returns the audit events, oldest first.
func (e *env) auditTrail() []store.Event {
	e.t.Helper()
	list, err := e.db.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// Every action API.md lists, done through the server, leaves exactly one
// event with its subject, address and request id; the chain verifies; no
// stored byte of any event holds a password, secret, token or code the
// test used; the access log lines carry the hashes and /metrics counts.
func TestAuditEvents(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		uid := store.FormatID(u.ID)
		root, admin := e.admin()
		rootID := store.FormatID(root.ID)
		e.request("POST", "/api/v1/auth/register", map[string]string{"email": "bo@example.com", "username": "bob", "password": e.secret("Bo-Password-1")}).want(http.StatusCreated)
		at, rt := e.login("ann", "Ann-Password-1")
		e.loginAttempt("ann", "Wrong-Password-1").want(http.StatusUnauthorized)
		e.loginAttempt("nobody", "Wrong-Password-1").want(http.StatusUnauthorized)
		for range e.deps.Throttle.Max {
			e.loginAttempt("bob", "Wrong-Password-2")
		}
		e.loginAttempt("bob", "Wrong-Password-2").want(http.StatusTooManyRequests)
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Ann-Password-1", "new_password": e.secret("Ann-Password-2")}, bearer(at)...).want(http.StatusNoContent)
		tok := e.secret(token.NewOpaque())
		if err := e.db.ReplaceVerificationToken(t.Context(), token.Hash(tok), u.ID, u.Email, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.request("POST", "/api/v1/auth/verify-email", map[string]string{"token": tok}).want(http.StatusNoContent)
		e.request("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": rt}, bearer(at)...).want(http.StatusNoContent)

		// An OAuth session, revoked; another, whose refresh token is reused.
		id, secret := e.webClient()
		b := e.browser()
		_, ort := e.codeGrant(b, id, secret, "ann", "Ann-Password-2")
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {ort}}).want(http.StatusOK)
		_, ort = e.codeGrant(b, id, secret, "ann", "Ann-Password-2")
		e.secret(e.refreshGrant(id, secret, ort).want(http.StatusOK).Str("refresh_token"))
		e.refreshGrant(id, secret, ort).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		b.do("POST", "/oauth2/logout", url.Values{"action": {"logout"}, "csrf_token": {formOf(t, b.do("GET", "/oauth2/logout", nil).Body.String()).Get("csrf_token")}})

		// Clients and users, by the admin.
		c := e.request("POST", "/api/v1/clients", map[string]any{"name": "svc", "grant_types": []string{"client_credentials"}}, bearer(admin)...).want(http.StatusCreated)
		cid := c.Str("client_id")
		e.secret(c.Str("client_secret"))
		e.secret(e.request("POST", "/api/v1/clients/"+cid+"/secret", nil, bearer(admin)...).want(http.StatusOK).Str("client_secret"))
		e.request("DELETE", "/api/v1/clients/"+cid, nil, bearer(admin)...).want(http.StatusNoContent)
		// A client registered with an initial access token, then updated by its registrant.
		initial := e.initialToken(time.Hour)
		e.secret(token.Hash(initial))
		reg := e.registerClient(initial, webMetadata()).want(http.StatusCreated)
		rid := reg.Str("client_id")
		e.manage("PUT", rid, reg.Str("registration_access_token"), with(with(webMetadata(), "client_id", rid), "redirect_uris", []string{"https://app.example/cb2"})).want(http.StatusOK)
		e.request("PATCH", userPath(u.ID), map[string]any{"role": "admin"}, bearer(admin)...).want(http.StatusOK)
		e.request("DELETE", userPath(u.ID), nil, bearer(admin)...).want(http.StatusNoContent)
		// Refused: an admin demoting or deleting themself.
		e.request("PATCH", userPath(root.ID), map[string]any{"role": "user"}, bearer(admin)...).want(http.StatusForbidden)
		e.request("DELETE", userPath(root.ID), nil, bearer(admin)...).want(http.StatusForbidden)

		count := map[string]int{}
		var login, reuse, revocation *store.Event
		registration := map[string]store.Event{}
		for _, ev := range e.auditTrail() {
			count[ev.Action]++
			switch {
			case ev.Action == actInitialToken || ev.Action == actClientRegister || ev.Action == actClientUpdated:
				registration[ev.Action] = ev
			case ev.Action == actLoginFailure && ev.Subject == uid:
				login = &ev
			case ev.Action == actSessionEnded && ev.Detail["reason"] == "reuse":
				reuse = &ev
			case ev.Action == actSessionEnded && ev.Detail["reason"] == "revocation":
				revocation = &ev
			}
		}
		want := map[string]int{
			actUserCreated: 3, actLoginSuccess: 3, actLoginFailure: 2 + e.deps.Throttle.Max, actLoginLockout: 1, actPasswordChange: 1,
			actEmailVerified: 1, actSessionEnded: 4, actClientCreated: 2, actClientRotated: 1, actClientDeleted: 1,
			actUserUpdated: 2, actUserDeleted: 2, actInitialToken: 1, actClientRegister: 1, actClientUpdated: 1,
		}
		for a, n := range want {
			if count[a] != n {
				t.Errorf("%s: %d events; want %d (all: %v)", a, count[a], n, count)
			}
		}
		if login == nil || login.IP != "192.0.2.1" || login.RequestID == "" || login.Outcome != outFailure || login.Detail["reason"] != "bad_credentials" {
			t.Errorf("a failed login's event: %+v", login)
		}
		if reuse == nil || reuse.Subject != uid || reuse.ClientID != id || revocation == nil || revocation.Actor != id {
			t.Errorf("reuse %+v, revocation %+v", reuse, revocation)
		}
		// The registrant is the client it made: the actor of its registration as of its update.
		if ev := registration[actInitialToken]; ev.Actor != "cli" || ev.Detail["expires_at"] == "" {
			t.Errorf("an initial access token's event: %+v; want actor cli, its expiry", ev)
		}
		if ev := registration[actClientRegister]; ev.Actor != rid || ev.Subject != rid || ev.ClientID != rid || ev.IP != "192.0.2.1" {
			t.Errorf("a registration's event: %+v; want %s as actor, subject and client", ev, rid)
		}
		if ev := registration[actClientUpdated]; ev.Actor != rid || ev.Subject != rid || ev.Detail["changed"] != "redirect_uris" {
			t.Errorf("a registration update's event: %+v; want %s as actor and subject, changed redirect_uris", ev, rid)
		}
		refusals := 0
		for _, ev := range e.auditTrail() {
			if ev.Action == actUserDeleted && ev.Outcome == outSuccess && (ev.Actor != rootID || ev.Subject != uid) {
				t.Errorf("user deletion by %q of %q; want %s of %s", ev.Actor, ev.Subject, rootID, uid)
			}
			if ev.Outcome == outFailure && ev.Detail["reason"] == "self" && ev.Actor == rootID && ev.Subject == rootID {
				refusals++
			}
		}
		if refusals != 2 {
			t.Errorf("%d events of an admin's refused change to themself; want 2 (reason self)", refusals)
		}
		if n, err := e.db.VerifyAudit(t.Context(), ""); err != nil || n != len(e.auditTrail()) {
			t.Fatalf("VerifyAudit = %d, %v", n, err)
		}
		// Nothing secret in any stored event, field by field.
		e.mu.Lock()
		secrets := append([]string(nil), e.secrets...)
		e.mu.Unlock()
		for _, ev := range e.auditTrail() {
			text := fmt.Sprint(ev)
			for _, s := range secrets {
				if s != "" && strings.Contains(text, s) {
					t.Fatalf("event %d holds a secret (%.8s…): %s", ev.ID, s, text)
				}
			}
			if strings.Contains(text, "Wrong-Password") || strings.Contains(text, token.Hash(tok)) {
				t.Fatalf("event %d holds a password or a token's hash: %s", ev.ID, text)
			}
		}
		// The hashes reach the access log; the actions are counted.
		last := e.auditTrail()[len(e.auditTrail())-1]
		if !strings.Contains(e.logs.String(), last.Hash) {
			t.Error("the last event's hash is not in any log line")
		}
		m := e.request("GET", "/metrics", nil).Body.String()
		if !regexp.MustCompile(`oauth2_audit_events_total\{action="login.lockout"\} 1\b`).MatchString(m) {
			t.Errorf("oauth2_audit_events_total: %s", regexp.MustCompile(`(?m)^oauth2_audit.*$`).FindAllString(m, -1))
		}
		// The admin reads them, a page at a time.
		r := e.request("GET", "/api/v1/audit?action=login.failure&limit=2", nil, bearer(admin)...).want(http.StatusOK).JSON()
		if evs, _ := r["events"].([]any); len(evs) != 2 || r["next_after"] == nil {
			t.Errorf("GET /api/v1/audit: %v", r)
		}
		e.request("GET", "/api/v1/audit", nil, bearer(at)...).want(http.StatusUnauthorized)
	}, withSigningKey(t, key, nil), withDynamicRegistration(RegistrationToken))
}

// A failed login whose event cannot be written fails with 503 and leaves
// nothing half done; once the database is back, the same attempt is
// refused as usual and recorded, once.
func TestAuditFailedLoginNeedsItsEvent(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			db, p := storetest.OpenViaProxy(t, dialect)
			e := newEnvOn(t, db)
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			before := len(e.auditTrail())
			p.Cut()
			e.loginAttempt("ann", "Wrong-Password-1").want(http.StatusServiceUnavailable)
			p.Restore()
			e.loginAttempt("ann", "Wrong-Password-1").want(http.StatusUnauthorized)
			trail := e.auditTrail()
			if len(trail) != before+1 || trail[len(trail)-1].Action != actLoginFailure {
				t.Fatalf("events after a cut and a retry: %+v", trail[before:])
			}
		})
	}
}

// The audit list's filters come from the query string: a user that no row
// can hold (invalid UTF-8, NUL) matches nothing, on every database.
// PostgreSQL refuses such a parameter outright (SQLSTATE 22021), which was
// answered 500 for what is only bad input. An action is one of the audit's
// own (AuditActions): a misspelt one (login_failure) answered no events,
// which in an incident reads as nothing having happened.
func TestAuditListFilterNoRowCanHold(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()
		for _, q := range []string{"action=%FF", "action=login%00", "action=login_failure", "action=LOGIN.FAILURE"} {
			wantAPIError(e.request("GET", "/api/v1/audit?"+q, nil, bearer(admin)...), http.StatusUnprocessableEntity, "validation_failed")
		}
		for _, q := range []string{"user=%C0%AF", "user=1%00"} {
			r := e.request("GET", "/api/v1/audit?"+q, nil, bearer(admin)...)
			if r.Code != http.StatusOK {
				t.Errorf("GET /api/v1/audit?%s: %d %s; want 200 and no events", q, r.Code, r.Body.String())
				continue
			}
			if evs, ok := r.JSON()["events"].([]any); !ok || len(evs) != 0 {
				t.Errorf("GET /api/v1/audit?%s: %s; want no events", q, r.Body.String())
			}
		}
	})
}

// A session ends once and is recorded once: a repeated revocation, a spent
// refresh token replayed again, a logout whose sign-in has ended or never
// was end nothing and append no event, as an access token's revocation,
// which ends no session, appends none. Each appended one: anyone could
// fill the audit log (kept a year), each append queueing every audited
// write on every instance behind audit_head's lock.
func TestRepeatsAppendNoEvent(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.webClient()
		b := e.browser()
		at, rt := e.codeGrant(b, id, secret, "ann", "Ann-Password-1")
		_, spent := e.codeGrant(b, id, secret, "ann", "Ann-Password-1")
		// An access token revoked ends no session and appends nothing: a
		// client refreshing and revoking would fill the log.
		e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {at}}).want(http.StatusOK)
		e.secret(e.refreshGrant(id, secret, spent).want(http.StatusOK).Str("refresh_token"))
		signIn := b.cookies[cookieSession]
		for _, cookie := range []string{signIn, signIn, token.NewOpaque()} {
			e.formPost("/oauth2/revoke", id, secret, url.Values{"token": {rt}}).want(http.StatusOK)
			e.refreshGrant(id, secret, spent).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
			b.cookies[cookieSession] = cookie
			csrf := formOf(t, b.do("GET", "/oauth2/logout", nil).Body.String()).Get("csrf_token")
			if w := b.do("POST", "/oauth2/logout", url.Values{"action": {"logout"}, "csrf_token": {csrf}}); w.Code != http.StatusOK {
				t.Fatalf("POST /oauth2/logout: %d %s", w.Code, w.Body.String())
			}
		}
		ended := map[string]int{}
		for _, ev := range e.auditTrail() {
			if ev.Action == actSessionEnded {
				ended[ev.Detail["reason"]]++
			}
		}
		if want := map[string]int{"revocation": 1, "reuse": 1, "logout": 1}; !maps.Equal(ended, want) {
			t.Fatalf("session.ended events by reason: %v; want %v", ended, want)
		}
	})
}

// A lockout is one event: the attempt that locks an account appends
// login.lockout, and those refused while it lasts (a REST login, the
// browser's form, a password change) are answered 429, logged for fail2ban
// and counted, but append nothing. Each appended one: anyone who knows a
// login could fill the audit log, one row per request from as many
// addresses as they have. The next lockout, after the window, is another.
func TestLockoutAuditedOnce(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const good = "Ann-Password-1"
		uid := store.FormatID(e.createUser("ann@example.com", "ann", good, store.RoleUser).ID)
		at, _ := e.login("ann", good)
		id, _ := e.webClient()
		b := e.browser()
		change := map[string]string{"current_password": good, "new_password": e.secret("Ann-Password-2")}
		const refusals = 3 // per way in, per lockout
		for round := 1; round <= 2; round++ {
			for range e.deps.Throttle.Max {
				e.loginAttempt("ann", "Wrong-Password-1").want(http.StatusUnauthorized)
			}
			form := formOf(t, b.do("GET", authorizeURL(id, newPKCE()), nil).Body.String())
			form.Set("login", "ann")
			form.Set("password", good)
			for range refusals {
				retryAfter(wantAPIError(e.loginAttempt("ann", good), http.StatusTooManyRequests, "too_many_attempts"))
				if w := b.do("POST", "/oauth2/authorize", form); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
					t.Fatalf("the sign-in form of a locked account: %d, Retry-After %q; want 429 with one", w.Code, w.Header().Get("Retry-After"))
				}
				retryAfter(e.request("POST", "/api/v1/profile/password", change, bearer(at)...).want(http.StatusTooManyRequests))
			}
			lockouts, failures := 0, 0
			for _, ev := range e.auditTrail() {
				switch {
				case ev.Action == actLoginLockout && ev.Subject == uid && ev.Outcome == outFailure && ev.Detail["reason"] == "throttled":
					lockouts++
				case ev.Action == actLoginFailure && ev.Subject == uid && ev.Detail["reason"] == "bad_credentials":
					failures++
				}
			}
			if lockouts != round || failures != round*e.deps.Throttle.Max {
				t.Fatalf("after %d lockouts: %d login.lockout and %d login.failure events; want %d and %d",
					round, lockouts, failures, round, round*e.deps.Throttle.Max)
			}
			throttled := 0
			for _, l := range e.logLines() {
				if l["msg"] == "login failed" && l["reason"] == "throttled" {
					throttled++
				}
			}
			if throttled != round*3*refusals {
				t.Errorf("%d \"login failed\" lines of reason throttled; want %d", throttled, round*3*refusals)
			}
			e.clock.Add(e.deps.Throttle.Window)
		}
		if want := fmt.Sprintf("oauth2_login_failures_total %d\n", 2*(e.deps.Throttle.Max+3*refusals)); !strings.Contains(e.metricsText(), want) {
			t.Errorf("/metrics has no %q", want)
		}
	})
}

// Across instances too: of logins sent at once to two instances on one
// database, Max are checked and refused (a login.failure each), the others
// answered 429, and one of those, on whichever instance, appends the
// lockout's event: the one whose count was the first over the limit.
func TestLockoutAuditedOnceAcrossInstances(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			a, b := newEnvOn(t, storetest.OpenURL(t, url)), newEnvOn(t, storetest.OpenURL(t, url))
			a.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			n := a.deps.Throttle.Max + 30
			codes := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { codes[i] = []*env{a, b}[i%2].loginAttempt("ann", "Wrong-Password-1").Code })
			}
			wg.Wait()
			count := map[int]int{}
			for _, c := range codes {
				count[c]++
			}
			if want := map[int]int{http.StatusUnauthorized: a.deps.Throttle.Max, http.StatusTooManyRequests: n - a.deps.Throttle.Max}; !maps.Equal(count, want) {
				t.Fatalf("statuses %v; want %v", count, want)
			}
			events := map[string]int{}
			for _, ev := range a.auditTrail() {
				if strings.HasPrefix(ev.Action, "login.") {
					events[ev.Action]++
				}
			}
			if want := map[string]int{actLoginFailure: a.deps.Throttle.Max, actLoginLockout: 1}; !maps.Equal(events, want) {
				t.Fatalf("audit events by action: %v; want %v", events, want)
			}
		})
	}
}

// The audit trail names whose sign-in a browser logout ended, also when
// its cookie has expired (the sign-in's row is still there, and ends), and
// a failed browser login has no actor: the relying party whose page it was
// did not try it. Regression tests: the logout's event had no subject, the
// failed login the client's id as its actor.
func TestAuditNamesWhoseSignInEnded(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, _ := e.webClient()
		b := e.browser()
		form := formOf(t, b.do("GET", authorizeURL(id, newPKCE()), nil).Body.String())
		form.Set("login", "ann")
		form.Set("password", "wrong password")
		b.do("POST", "/oauth2/authorize", form)
		e.secret(b.signIn(authorizeURL(id, newPKCE()), "ann", "Ann-Password-1"))
		e.clock.Add(e.deps.Browser.SessionTTL + time.Minute) // the cookie has expired; no purge ran
		confirm := formOf(t, b.do("GET", "/oauth2/logout", nil).Body.String())
		confirm.Set("action", "logout")
		b.do("POST", "/oauth2/logout", confirm)
		var failed, ended *store.Event
		for _, ev := range e.auditTrail() {
			switch ev.Action {
			case actLoginFailure:
				failed = &ev
			case actSessionEnded:
				ended = &ev
			}
		}
		if failed == nil || failed.Actor != "" || failed.Subject != store.FormatID(u.ID) {
			t.Errorf("the failed browser login's event: %+v; want no actor, subject %d", failed, u.ID)
		}
		if ended == nil || ended.Subject != store.FormatID(u.ID) {
			t.Errorf("the browser logout's event: %+v; want subject %d", ended, u.ID)
		}
	})
}
