package auth

import (
	"context"
	"net/http"
	"testing"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// Two admins who demote, deactivate or delete each other at once, each on
// an instance of their own, both succeeded: each request was authorised
// (requireUser found an admin) before the other's write committed, and no
// active admin was left. Here ann's write waits on a lock of bob's row
// that the test holds, and bob's request, authorised meanwhile (bob is an
// admin until ann's write commits), goes on. A regression test: bob's
// request must wait for ann's (store.asAdmin), then be refused 403, as bob
// is no longer an admin; ann remains one. PostgreSQL only: the lock lines
// the two requests up (SQLite has one writer at a time).
func TestAdminsRemovingEachOtherLeaveOne(t *testing.T) {
	for _, removal := range []struct {
		name, method string
		body         any
	}{
		{"demotion", "PATCH", map[string]any{"role": "user"}},
		{"deactivation", "PATCH", map[string]any{"is_active": false}},
		{"deletion", "DELETE", nil},
	} {
		t.Run(removal.name, func(t *testing.T) {
			dbURL := storetest.URL(t, store.Postgres)
			db := storetest.OpenURL(t, dbURL)
			raw := storetest.Raw(t, store.Postgres, dbURL)
			annServer, bobServer := newEnvOn(t, db), newEnvOn(t, db)
			ann := annServer.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleAdmin)
			bob := annServer.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleAdmin)
			annAccess, _ := annServer.login("ann", "Ann-Password-1")
			bobAccess, _ := bobServer.login("bob", "Bob-Password-1")

			hold, err := raw.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Rollback()
			var holder, annPID int
			if err := hold.QueryRow(`SELECT pg_backend_pid() FROM users WHERE id = $1 FOR UPDATE`, bob.ID).Scan(&holder); err != nil {
				t.Fatal(err)
			}
			annDone := make(chan response, 1)
			go func() {
				annDone <- annServer.request(removal.method, userPath(bob.ID), removal.body, bearer(annAccess)...)
			}()
			waitUntil(t, "ann's write never waited for bob's row", func() bool {
				return raw.QueryRow(`SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holder).Scan(&annPID) == nil
			})
			// Bob's request answers at once (it waits for nothing), or waits for ann's.
			bobDone := make(chan response, 1)
			go func() {
				bobDone <- bobServer.request(removal.method, userPath(ann.ID), removal.body, bearer(bobAccess)...)
			}()
			waitUntil(t, "bob's request neither answered nor waited for ann's", func() bool {
				var n int
				err := raw.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, annPID).Scan(&n)
				return len(bobDone) > 0 || (err == nil && n > 0)
			})
			if err := hold.Rollback(); err != nil {
				t.Fatal(err)
			}
			if r := <-annDone; r.Code != http.StatusOK && r.Code != http.StatusNoContent {
				t.Fatalf("ann's %s of bob: %d %s", removal.name, r.Code, r.Body.String())
			}
			r := wantAPIError(<-bobDone, http.StatusForbidden, "forbidden")
			if msg := r.Str("message"); msg != "admin role required" {
				t.Errorf("bob's refused %s: message %q", removal.name, msg)
			}
			p := annServer.request("GET", "/api/v1/profile", nil, bearer(annAccess)...).want(http.StatusOK).JSON()
			if p["role"] != "admin" || p["is_active"] != true {
				t.Errorf("after each removed the other, ann is %v: no active admin left", p)
			}
		})
	}
}
