package auth

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// A login reads the user, with its password hash, before it counts
// the attempt and checks the password; the session it then starts
// (store.CreateFamily) is not conditional on that hash still being the
// user's. A password change that commits in between ends "every other
// session" and misses the one this login is about to start: a login with
// the old password, begun before the change, keeps a working session
// (refreshable for REFRESH_TOKEN_MAX_DAYS) after the change has returned.
// An attacker holding a stolen password keeps logging in (on any instance)
// and survives the owner's password change. Here the login waits for a
// hashing slot, deterministically; in production it is the argon2id time
// and the database round trips between the read and the insert. A
// regression test: the login's session was not conditional on the hash it
// verified (store.stillPassword now holds the user's row).
func TestPasswordChangeVoidsInFlightLogin(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := storetest.Raw(t, d, url)
			attacker := newEnvOn(t, db, func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second) })
			owner := newEnvOn(t, db)
			owner.createUser("ann@example.com", "ann", "Ann-Password-1", "user")
			ownerAccess, _ := owner.login("ann", "Ann-Password-1")

			// The attacker's instance is busy hashing: its login reads ann,
			// counts the attempt, then waits for a slot.
			pw := attacker.deps.Passwords
			pw.slots <- struct{}{}
			type result struct {
				code    int
				refresh string
			}
			done := make(chan result, 1)
			go func() {
				r := attacker.request("POST", "/api/v1/auth/login", map[string]string{"login": "ann", "password": "Ann-Password-1"})
				res := result{code: r.Code}
				if r.Code == http.StatusOK {
					res.refresh = attacker.secret(r.Str("refresh_token"))
				}
				done <- res
			}()
			waitCounted(t, raw, 1)

			// The owner changes the password: every other session ends.
			owner.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Ann-Password-1",
				"new_password": owner.secret("Ann-Password-2")}, bearer(ownerAccess)...).want(http.StatusNoContent)

			<-pw.slots // the hashing slot frees up
			res := <-done
			if res.code != http.StatusOK {
				// Refused, as it should be, and logged for fail2ban as any failed login.
				if !strings.Contains(attacker.logs.String(), `"msg":"login failed"`) {
					t.Errorf("the refused login (%d) wrote no \"login failed\" line", res.code)
				}
				// Its reason is its own: the password was right until the
				// owner changed it (a regression test: bad_credentials).
				if !strings.Contains(attacker.logs.String(), `"reason":"changed_meanwhile"`) {
					t.Errorf("the refused login's failure is not marked changed_meanwhile:\n%s", attacker.logs)
				}
				return
			}
			r := owner.request("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": res.refresh})
			if r.Code == http.StatusOK {
				owner.secret(r.Str("access_token"))
				owner.secret(r.Str("refresh_token"))
				t.Errorf("a login with the old password, begun before the change, holds a session that still refreshes after the change returned")
			}
		})
	}
}

// waitCounted waits until logins of one account have counted n attempts,
// after reading the user (and the browser's sign-in): they then wait for a
// hashing slot where a test holds the only one.
func waitCounted(t testing.TB, raw *sql.DB, n int) {
	t.Helper()
	for i := 0; ; i++ {
		var got int
		raw.QueryRow(`SELECT COALESCE(MAX(failures), 0) FROM login_failures`).Scan(&got)
		if got >= n {
			return
		}
		if i > 500 {
			t.Fatal("the login never counted its attempt")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A code (or device code) exchange that is in flight when the password
// changes: its transaction has spent the code, holding the code's row,
// and has not yet committed the session it starts. The change revoked the
// user's sessions as its first statements saw them, without that one, then
// waited on the code's row to delete the pending codes, and went on once
// the exchange committed: the new session survived the change, refreshable
// for REFRESH_TOKEN_MAX_DAYS. A thief holding the browser sign-in, taking
// and exchanging codes in a loop, could keep a session past the owner's
// password change. PostgreSQL only (SQLite has one writer at a time): the
// test holds the exchange between its statements with a lock on
// refresh_tokens, the change starts on another instance, and the lock is
// let go once the change waits on the exchange. A regression test: the
// exchange did not hold the user's row (store.stillPassword now does, as a
// login's session does).
func TestPasswordChangeEndsGrantExchangedMeanwhile(t *testing.T) {
	const pw = "Ann-Password-1"
	for _, grant := range []string{"code", "device code"} {
		t.Run(grant, func(t *testing.T) {
			dbURL := storetest.URL(t, store.Postgres)
			db := storetest.OpenURL(t, dbURL)
			raw := storetest.Raw(t, store.Postgres, dbURL)
			thief, owner := newEnvOn(t, db), newEnvOn(t, db)
			owner.createUser("ann@example.com", "ann", pw, store.RoleUser)
			ownerAccess, _ := owner.login("ann", pw)
			// The thief's browser is signed in: it holds a code, or has approved a device.
			var exchange, refresh func(rt string) response
			if grant == "code" {
				id, secret := thief.webClient()
				p := newPKCE()
				code := thief.secret(thief.browser().signIn(authorizeURL(id, p), "ann", pw))
				exchange = func(string) response { return thief.token(id, secret, codeForm(code, p)) }
				refresh = func(rt string) response { return thief.refreshGrant(id, secret, rt) }
			} else {
				id, _ := thief.deviceClient("TV", false, false, "read")
				d := thief.startDevice(id, "", "read")
				wantPage(t, thief.browser().approve(d.userCode, "ann", pw, "allow"), http.StatusOK, donePage)
				exchange = func(string) response { return thief.poll(id, "", d.deviceCode) }
				refresh = func(rt string) response {
					return thief.clientPost("/oauth2/token", id, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				}
			}

			ctx := context.Background()
			hold, err := raw.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Rollback()
			if _, err := hold.ExecContext(ctx, `LOCK TABLE refresh_tokens IN EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			exchanged := make(chan response, 1)
			go func() { exchanged <- exchange("") }()
			var pid int // the exchange's backend, stopped at its refresh token
			waitUntil(t, "the exchange never reached its refresh token", func() bool {
				return raw.QueryRow(`SELECT pid FROM pg_locks WHERE relation = 'refresh_tokens'::regclass AND NOT granted`).Scan(&pid) == nil
			})
			changed := make(chan int, 1)
			go func() {
				changed <- owner.request("POST", "/api/v1/profile/password", map[string]string{"current_password": pw,
					"new_password": owner.secret("Ann-Password-2")}, bearer(ownerAccess)...).Code
			}()
			waitUntil(t, "the password change never waited on the exchange", func() bool {
				var n int
				err := raw.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n)
				return err == nil && n > 0
			})
			if err := hold.Commit(); err != nil {
				t.Fatal(err)
			}
			if code := <-changed; code != http.StatusNoContent {
				t.Fatalf("password change: %d", code)
			}
			r := <-exchanged
			if r.Code == http.StatusBadRequest && r.Str("error") == errInvalidGrant {
				return // refused: nothing started
			} else if r.Code != http.StatusOK {
				t.Fatalf("the %s exchanged while the password changed: %d %s; want 200 or invalid_grant (a 5xx is a deadlock or a fault)", grant, r.Code, r.Body.String())
			}
			thief.secret(r.Str("access_token"))
			if r = refresh(thief.secret(r.Str("refresh_token"))); r.Code == http.StatusOK {
				thief.secret(r.Str("access_token"))
				thief.secret(r.Str("refresh_token"))
				t.Errorf("a %s exchanged while the password changed holds a session that still refreshes after the change returned", grant)
			}
		})
	}
}

// whileHashing holds e's only hashing slot (its Passwords made with one)
// and sends the request meanwhile: the request waits for a slot once it
// needs one, until free lets the slot go.
func (e *env) whileHashing(method, target string, body any, headers ...string) (done <-chan response, free func()) {
	slots, out := e.deps.Passwords.slots, make(chan response, 1)
	slots <- struct{}{}
	go func() { out <- e.request(method, target, body, headers...) }()
	return out, func() { <-slots }
}

// waitUntil polls cond until it holds, or fails the test with msg.
func waitUntil(t *testing.T, msg string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 500 {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A password reset, a deactivation and a deletion ended the user's
// sessions by revoking their families and recording a 'user' revocation
// dated with the request's time, taken before the reset hashed the new
// password (tens of milliseconds, or seconds while hashing slots are
// busy). A refresh committed meanwhile minted an access token dated after
// that time, from a family the reset then revoked: nothing covered it, and
// it worked for its hour after the reset had returned. A thief refreshing
// in a loop lands one in that window. Here the reset waits for a hashing
// slot on one instance while the refresh runs on another, a second later.
// A regression test: the families are now revoked by sid as well
// (store.revokeFamiliesTx), as a password change revokes them.
func TestResetEndsSessionRefreshedMeanwhile(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db := storetest.OpenURL(t, storetest.URL(t, d))
			owner := newEnvOn(t, db, func(d *Deps) {
				d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second)
				d.Reset = &Reset{TTL: time.Hour, URL: "https://auth.example.com/password/reset"}
			})
			thief := newEnvOn(t, db)
			thief.clock.Add(owner.clock.Now().Sub(thief.clock.Now()))
			u := owner.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			_, refresh := thief.login("ann", "Ann-Password-1")
			// The owner's instance is busy hashing.
			reset, free := owner.whileHashing("POST", "/api/v1/auth/password/reset", map[string]string{"token": owner.resetLink(u.ID),
				"new_password": owner.secret("Ann-Password-2")})
			thief.clock.Add(time.Second)
			r := thief.request("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": refresh}).want(http.StatusOK)
			access := thief.secret(r.Str("access_token"))
			thief.secret(r.Str("refresh_token"))
			free()
			if code := (<-reset).Code; code != http.StatusNoContent {
				t.Fatalf("reset: %d", code)
			}
			if err := thief.deps.Tokens.Revoked.Load(context.Background(), db, thief.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if r := thief.request("GET", "/api/v1/profile", nil, bearer(access)...); r.Code != http.StatusUnauthorized {
				t.Errorf("an access token refreshed while the password was being reset still works after the reset: %d", r.Code)
			}
		})
	}
}

// Two logins of one user right after the argon2 parameters changed: both
// verify the old hash, and the first stores its new one. The second's
// rehash then changed no row (store.RehashPassword) and it kept the old
// hash as the one its session must still find (store.stillPassword): a
// 401 with the right password, logged as a failed login (fail2ban counts
// it) and audited as login.failure. Here the second login waits for its
// instance's one hashing slot, held by the test, while the first completes
// on another instance.
func TestConcurrentLoginsAfterRehash(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			older := testArgon2
			older.Time++ // the parameters before the change
			newEnvOn(t, db, func(d *Deps) { d.Passwords = NewPasswords(older, 1, 10*time.Second) }).createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			first := newEnvOn(t, db)
			second := newEnvOn(t, db, func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second) })

			pw := second.deps.Passwords
			pw.slots <- struct{}{}
			done := make(chan response, 1)
			go func() {
				done <- second.request("POST", "/api/v1/auth/login", map[string]string{"login": "ann", "password": "Ann-Password-1"})
			}()
			waitCounted(t, storetest.Raw(t, d, url), 1) // the second has read the old hash
			first.login("ann", "Ann-Password-1")        // and the first stores its new one
			<-pw.slots
			r := (<-done).want(http.StatusOK)
			second.secret(r.Str("access_token"))
			second.secret(r.Str("refresh_token"))
			if strings.Contains(second.logs.String(), `"msg":"login failed"`) {
				t.Errorf("the second login succeeded but logged a failed login")
			}
		})
	}
}

// A password change is authorised by the current password, which
// authenticate verifies against the hash it read; the change's write
// (store.SetPassword) required neither that hash to be still the user's
// nor the user to be active. An intruder who knew the password and held an
// access token changed it while the owner took the account back on another
// instance (a reset, their own change, an admin's deactivation): the
// intruder's write committed after the owner's, the password became the
// intruder's, the owner's new one failed, and the owner's new sessions
// ended. Here the intruder's change waits, after reading the hash, for its
// instance's one hashing slot, which the test holds; in production it is
// two argon2id runs, each of which may wait up to 10 s for a slot the
// intruder can keep busy. A regression test: the change is now refused as
// a wrong current password would be (403, logged as a failed login) and
// writes nothing.
func TestPasswordChangeRefusedAfterOwnerTookAccountBack(t *testing.T) {
	const p0, pa, p1, rootPW = "Ann-Password-0", "Intruder-Password", "Ann-Password-1", "Root-Password-1"
	for _, d := range storetest.Dialects {
		for _, by := range []string{"reset", "change", "deactivation"} {
			t.Run(d+"/"+by, func(t *testing.T) {
				ctx, url := context.Background(), storetest.URL(t, d)
				db := storetest.OpenURL(t, url)
				intruder := newEnvOn(t, db, func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, 10*time.Second) })
				owner := newEnvOn(t, db, func(d *Deps) { d.Reset = &Reset{TTL: time.Hour, URL: "https://auth.example.com/password/reset"} })
				u := owner.createUser("ann@example.com", "ann", p0, store.RoleUser)
				owner.createUser("root@example.com", "root", rootPW, store.RoleAdmin)
				ownerAccess, _ := owner.login("ann", p0)
				adminAccess, _ := owner.login("root", rootPW)
				intruderAccess, _ := intruder.login("ann", p0)
				link := owner.resetLink(u.ID)

				// The intruder's instance is busy hashing.
				changed, free := intruder.whileHashing("POST", "/api/v1/profile/password", map[string]string{"current_password": p0,
					"new_password": intruder.secret(pa)}, bearer(intruderAccess)...)
				waitCounted(t, storetest.Raw(t, d, url), 1) // the intruder's change has read the hash
				switch by {
				case "reset":
					owner.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": link,
						"new_password": owner.secret(p1)}).want(http.StatusNoContent)
				case "change":
					owner.request("POST", "/api/v1/profile/password", map[string]string{"current_password": p0,
						"new_password": owner.secret(p1)}, bearer(ownerAccess)...).want(http.StatusNoContent)
				default:
					owner.request("PATCH", userPath(u.ID), map[string]any{"is_active": false}, bearer(adminAccess)...).want(http.StatusOK)
				}
				taken, err := db.UserByID(ctx, u.ID)
				if err != nil {
					t.Fatal(err)
				}
				free() // the hashing slot frees up
				if r := <-changed; r.Code == http.StatusNoContent {
					t.Errorf("the intruder's change, checked against the old password, was written after the owner's %s", by)
				} else {
					r.wantError(http.StatusForbidden, "invalid_current_password")
					if !strings.Contains(intruder.logs.String(), `"msg":"login failed","client_ip":"192.0.2.1","reason":"changed_meanwhile"`) {
						t.Errorf("the refused change wrote no \"login failed\" line of its own reason: %s", intruder.logs.String())
					}
				}
				if after, err := db.UserByID(ctx, u.ID); err != nil || after.PasswordHash != taken.PasswordHash {
					t.Errorf("after the owner's %s, the intruder's change replaced the password hash (%v)", by, err)
				}
				if by != "deactivation" {
					owner.login("ann", p1)
					owner.request("POST", "/api/v1/auth/login", map[string]string{"login": "ann", "password": pa}).want(http.StatusUnauthorized)
				}
			})
		}
	}
}
