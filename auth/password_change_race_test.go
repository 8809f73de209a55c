package auth

import (
	"net/http"
	"strings"
	"testing"
	"time"

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
			for i := 0; ; i++ {
				var n int
				raw.QueryRow(`SELECT count(*) FROM login_failures`).Scan(&n)
				if n > 0 {
					break
				}
				if i > 500 {
					t.Fatal("the attacker's login never counted its attempt")
				}
				time.Sleep(10 * time.Millisecond)
			}

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
