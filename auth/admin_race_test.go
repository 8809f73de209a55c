package auth

import (
	"context"
	"database/sql"
	"fmt"
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
			_, raw, ann, bob := twoAdmins(t)

			hold, err := raw.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Rollback()
			var holder, annPID int
			if err := hold.QueryRow(`SELECT pg_backend_pid() FROM users WHERE id = $1 FOR UPDATE`, bob.user.ID).Scan(&holder); err != nil {
				t.Fatal(err)
			}
			annDone := make(chan response, 1)
			go func() {
				annDone <- ann.server.request(removal.method, userPath(bob.user.ID), removal.body, bearer(ann.access)...)
			}()
			waitUntil(t, "ann's write never waited for bob's row", func() bool {
				return raw.QueryRow(`SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holder).Scan(&annPID) == nil
			})
			// Bob's request answers at once (it waits for nothing), or waits for ann's.
			bobDone := make(chan response, 1)
			go func() {
				bobDone <- bob.server.request(removal.method, userPath(ann.user.ID), removal.body, bearer(bob.access)...)
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
			if ev := ann.server.auditTrail(); ev[len(ev)-1].Actor != store.FormatID(bob.user.ID) || ev[len(ev)-1].Detail["reason"] != "not_admin" {
				t.Errorf("bob's refused %s: last event %+v; want bob's, reason not_admin", removal.name, ev[len(ev)-1])
			}
			p := ann.server.request("GET", "/api/v1/profile", nil, bearer(ann.access)...).want(http.StatusOK).JSON()
			if p["role"] != "admin" || p["is_active"] != true {
				t.Errorf("after each removed the other, ann is %v: no active admin left", p)
			}
		})
	}
}

// An admin's request to create a client, delete one or rotate its secret
// completed although another admin had demoted them while it was on its
// way: only changes to users were checked when they commit. Here bob's
// demotion of ann waits for the admins' row of cap_locks, and ann's
// request, authorised meanwhile (she is an admin until the demotion
// commits), waits for the clients table: the test holds both. Bob's
// demotion goes first and commits; then ann's write must be refused 403
// (store.asAdmin), change nothing and leave a failure event
// (reason not_admin). PostgreSQL only, as above.
func TestAdminDemotedDuringClientWrite(t *testing.T) {
	for _, w := range []struct {
		name, method, path, action string
		body                       any
		subject                    string // the refused event's: none for a client never stored
	}{
		{"creation", "POST", "/api/v1/clients", actClientCreated, map[string]any{"name": "new", "grant_types": []string{"client_credentials"}}, ""},
		{"deletion", "DELETE", "/api/v1/clients/svc", actClientDeleted, nil, "svc"},
		{"rotation", "POST", "/api/v1/clients/svc/secret", actClientRotated, nil, "svc"},
	} {
		t.Run(w.name, func(t *testing.T) {
			db, raw, ann, bob := twoAdmins(t)
			if err := db.CreateClient(t.Context(), 0, &store.Client{ID: "svc", Name: "svc", SecretHash: "old", GrantTypes: []string{"client_credentials"}}, ann.server.clock.Now()); err != nil {
				t.Fatal(err)
			}
			var holders [2]int
			holds := [2]*sql.Tx{}
			for i, lock := range []string{`SELECT 1 FROM cap_locks WHERE name = 'admins' FOR UPDATE`, `LOCK TABLE clients IN SHARE MODE`} {
				hold, err := raw.BeginTx(t.Context(), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer hold.Rollback()
				if _, err := hold.Exec(lock); err != nil {
					t.Fatal(err)
				}
				if err := hold.QueryRow(`SELECT pg_backend_pid()`).Scan(&holders[i]); err != nil {
					t.Fatal(err)
				}
				holds[i] = hold
			}
			waiting := func() int {
				var n int
				// Who waits for the holders, directly or behind another.
				err := raw.QueryRow(`WITH RECURSIVE w(pid) AS (SELECT unnest($1::int[]) UNION
  SELECT a.pid FROM pg_stat_activity a, w WHERE w.pid = ANY(pg_blocking_pids(a.pid)))
SELECT count(*) - 2 FROM w`, fmt.Sprintf("{%d,%d}", holders[0], holders[1])).Scan(&n)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			bobDone := make(chan response, 1)
			go func() {
				bobDone <- bob.server.request("PATCH", userPath(ann.user.ID), map[string]any{"role": "user"}, bearer(bob.access)...)
			}()
			waitUntil(t, "bob's demotion never waited for the admins' row", func() bool { return waiting() == 1 })
			annDone := make(chan response, 1)
			go func() { annDone <- ann.server.request(w.method, w.path, w.body, bearer(ann.access)...) }()
			// Ann's write waits behind bob's (the admins' row), or for the clients table.
			waitUntil(t, "ann's write never waited", func() bool { return waiting() == 2 })
			if err := holds[0].Rollback(); err != nil {
				t.Fatal(err)
			}
			(<-bobDone).want(http.StatusOK)
			if err := holds[1].Rollback(); err != nil {
				t.Fatal(err)
			}
			r := <-annDone
			if r.Code != http.StatusForbidden || r.JSON()["message"] != "admin role required" {
				t.Fatalf("ann's client %s, committed after bob demoted her: %d %s; want 403", w.name, r.Code, r.Body.String())
			}
			var refused []store.Event
			for _, ev := range ann.server.auditTrail() {
				if ev.Action == w.action && ev.Actor == store.FormatID(ann.user.ID) {
					refused = append(refused, ev)
				}
			}
			if len(refused) != 1 || refused[0].Outcome != outFailure || refused[0].Detail["reason"] != "not_admin" || refused[0].Subject != w.subject {
				t.Errorf("ann's refused %s left events %+v; want one failure, reason not_admin, subject %q", w.name, refused, w.subject)
			}
			list, _, err := db.ListClients(t.Context(), 100, 0)
			if err != nil || len(list) != 1 || list[0].ID != "svc" || list[0].SecretHash != "old" {
				t.Errorf("after ann's refused %s the clients are %+v (%v); want svc as it was", w.name, list, err)
			}
		})
	}
}

// signedIn is an admin signed in on a server of their own.
type signedIn struct {
	server *env
	user   *store.User
	access string
}

// twoAdmins starts two servers on one fresh PostgreSQL schema, each with an
// admin signed in, ann and bob; with the store and a raw pool on it.
func twoAdmins(t *testing.T) (db *store.DB, raw *sql.DB, ann, bob signedIn) {
	dbURL := storetest.URL(t, store.Postgres)
	db, raw = storetest.OpenURL(t, dbURL), storetest.Raw(t, store.Postgres, dbURL)
	ann.server, bob.server = newEnvOn(t, db), newEnvOn(t, db)
	ann.user = ann.server.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleAdmin)
	bob.user = ann.server.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleAdmin)
	ann.access, _ = ann.server.login("ann", "Ann-Password-1")
	bob.access, _ = bob.server.login("bob", "Bob-Password-1")
	return db, raw, ann, bob
}
