package store_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

func event(action, subject string) *store.Event {
	return &store.Event{Time: t0, Action: action, Actor: "cli", Subject: subject, IP: "192.0.2.1", RequestID: "r1", Outcome: "success",
		Detail: map[string]string{"k": "v"}}
}

// An event rides on the write it records and commits with it, or not at
// all; alone, Audit appends it. The chain verifies, and after any edit,
// deletion, reordering or cut tail it does not, naming the event.
func TestAuditChain(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			e := event("user.deleted", store.FormatID(u.ID))
			by := newAdmin(t, db)
			if _, err := db.DeleteUser(store.WithEvent(ctx, e), by, u.ID, time.Hour, t0); err != nil || e.ID != 1 || len(e.Hash) != 64 {
				t.Fatalf("DeleteUser with an event: %v, %+v", err, e)
			}
			// A failed write appends nothing.
			f := event("user.deleted", "x")
			if _, err := db.DeleteUser(store.WithEvent(ctx, f), by, u.ID, time.Hour, t0); !errors.Is(err, store.ErrNotFound) || f.Hash != "" {
				t.Fatalf("a failed write: %v, %+v", err, f)
			}
			for i := range 5 {
				if err := db.Audit(ctx, event("login.failure", fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			list, err := db.ListAudit(ctx, store.AuditFilter{Limit: 100})
			if err != nil || len(list) != 6 || list[0].Action != "user.deleted" || list[5].ID != 6 || list[0].Detail["k"] != "v" {
				t.Fatalf("ListAudit = %+v, %v", list, err)
			}
			if got, _ := db.ListAudit(ctx, store.AuditFilter{User: "3", Limit: 10}); len(got) != 1 || got[0].Subject != "3" {
				t.Fatalf("filter by user: %+v", got)
			}
			// A filter names what it says on every database: no event has
			// a NUL or a space (PostgreSQL refused the NUL: 500; MySQL's
			// text comparison took " " for "", no filter at all).
			for _, f := range []store.AuditFilter{{Action: "\x00", Limit: 10}, {User: "\xff", Limit: 10}, {Action: " ", Limit: 10}, {User: " ", Limit: 10}} {
				if got, err := db.ListAudit(ctx, f); err != nil || len(got) != 0 {
					t.Errorf("ListAudit(action %+q, user %+q) = %d events, %v; want none", f.Action, f.User, len(got), err)
				}
			}
			head := list[3].Hash
			if n, err := db.VerifyAudit(ctx, head); err != nil || n != 6 {
				t.Fatalf("VerifyAudit = %d, %v", n, err)
			}
			tamper := func(name string, stmts ...string) {
				t.Helper()
				tx, _ := raw.Begin()
				defer tx.Rollback()
				for _, s := range stmts {
					if _, err := tx.Exec(s); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
				tx.Commit()
			}
			check := func(name, want string, head string) {
				t.Helper()
				_, err := db.VerifyAudit(ctx, head)
				if !errors.Is(err, store.ErrChainBroken) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: VerifyAudit = %v; want a broken chain naming %q", name, err, want)
				}
			}
			snapshot := func() []string {
				rows, _ := raw.Query(`SELECT id, outcome, ip, hash FROM audit_events ORDER BY id`)
				defer rows.Close()
				var out []string
				for rows.Next() {
					var id int
					var o, ip, h string
					rows.Scan(&id, &o, &ip, &h)
					out = append(out, fmt.Sprintf("UPDATE audit_events SET outcome = '%s', ip = '%s', hash = '%s' WHERE id = %d", o, ip, h, id))
				}
				return out
			}
			restore := snapshot()
			tamper("edit", `UPDATE audit_events SET outcome = 'failure' WHERE id = 3`)
			check("an edited field", "event 3", "")
			tamper("restore", restore...)
			if _, err := db.VerifyAudit(ctx, ""); err != nil {
				t.Fatalf("after restoring: %v", err)
			}
			tamper("swap", `UPDATE audit_events SET id = -2 WHERE id = 2`, `UPDATE audit_events SET id = 2 WHERE id = 3`,
				`UPDATE audit_events SET id = 3 WHERE id = -2`)
			check("a swapped pair", "event 2", "")
			tamper("unswap", `UPDATE audit_events SET id = -2 WHERE id = 2`, `UPDATE audit_events SET id = 2 WHERE id = 3`,
				`UPDATE audit_events SET id = 3 WHERE id = -2`)
			if _, err := db.VerifyAudit(ctx, ""); err != nil {
				t.Fatalf("after swapping back: %v", err)
			}
			tamper("delete", `DELETE FROM audit_events WHERE id = 3`)
			check("a deleted middle row", "event 3 is missing", "")
			// A deleted tail with the head row rewritten to match: only the
			// head hash copied from elsewhere shows it.
			tamper("cut", `DELETE FROM audit_events WHERE id >= 3`)
			var h2 string
			raw.QueryRow(`SELECT hash FROM audit_events WHERE id = 2`).Scan(&h2)
			tamper("head", fmt.Sprintf(`UPDATE audit_head SET n = 2, hash = '%s'`, h2))
			if _, err := db.VerifyAudit(ctx, ""); err != nil {
				t.Fatalf("a cut tail with its head rewritten verifies by itself (as it must): %v", err)
			}
			check("a cut tail against a copied head", "not in the log", head)
		})
	}
}

// Appends from many writers (two stores on one database, as two
// instances) leave one valid chain.
func TestAuditConcurrentAppends(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			a, b := storetest.OpenURL(t, url), storetest.OpenURL(t, url)
			var wg sync.WaitGroup
			errs := make(chan error, 1000)
			for w := range 20 {
				wg.Go(func() {
					db := []*store.DB{a, b}[w%2]
					for i := range 50 {
						for {
							err := db.Audit(context.Background(), event("login.failure", fmt.Sprint(w, "-", i)))
							if err == nil {
								break
							}
							if !errors.Is(err, store.ErrUnavailable) { // SQLite busy: retried as a client would
								errs <- err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n, err := a.VerifyAudit(ctx, ""); err != nil || n != 1000 {
				t.Fatalf("after 1,000 concurrent appends: %d, %v", n, err)
			}
		})
	}
}

// Pruning keeps the rest verifiable from its base.
func TestAuditPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		var first string
		for i := range 4 {
			e := event("login.failure", fmt.Sprint(i))
			e.Time = t0.Add(time.Duration(i) * time.Hour)
			if err := db.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
			first = cmp.Or(first, e.Hash)
		}
		if err := db.PruneAudit(ctx, t0.Add(150*time.Minute), t0.Add(150*time.Minute)); err != nil {
			t.Fatal(err)
		}
		list, _ := db.ListAudit(ctx, store.AuditFilter{Limit: 10})
		if len(list) != 1 || list[0].ID != 4 {
			t.Fatalf("after pruning: %+v", list)
		}
		if n, err := db.VerifyAudit(ctx, ""); err != nil || n != 1 {
			t.Fatalf("VerifyAudit after pruning: %d, %v", n, err)
		}
		// A head copied before the pruning cannot be checked, and the
		// error says it may have been pruned, not only cut.
		if _, err := db.VerifyAudit(ctx, first); err == nil || !strings.Contains(err.Error(), "or pruned with the events up to 3") {
			t.Fatalf("VerifyAudit of a pruned head: %v", err)
		}
		if err := db.Audit(ctx, event("login.failure", "x")); err != nil {
			t.Fatal(err)
		}
		if n, err := db.VerifyAudit(ctx, ""); err != nil || n != 2 {
			t.Fatalf("VerifyAudit after pruning and appending: %d, %v", n, err)
		}
	})
}

// An event's time is its instance's clock: one stamped a year back (an
// instance started before its clock was set) must not take the recent
// events before it with it. On the old code a prune kept only the last.
func TestAuditPruneKeepsRecentEventsBeforeAnOldStamp(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		now := t0.Add(400 * 24 * time.Hour)
		for i, at := range []time.Time{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), t0, now} {
			e := event("login.failure", fmt.Sprint(i))
			e.Time = at
			if err := db.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.PruneAudit(ctx, now.Add(-365*24*time.Hour), now); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.ListAudit(ctx, store.AuditFilter{Limit: 10}); len(list) != 4 {
			t.Fatalf("after pruning events older than a year: %d of 4 kept; want all (the old one waits for those before it)", len(list))
		}
		// Once those before it are old too, it goes with them.
		if err := db.PruneAudit(ctx, now.Add(-time.Hour), now); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.ListAudit(ctx, store.AuditFilter{Limit: 10}); len(list) != 1 || list[0].ID != 4 {
			t.Fatalf("after pruning events older than an hour: %+v; want event 4 alone", list)
		}
		if n, err := db.VerifyAudit(ctx, ""); err != nil || n != 1 {
			t.Fatalf("VerifyAudit after pruning: %d, %v", n, err)
		}
		// An event stamped a year ahead (a clock ahead) is no newer one: the
		// old events around it go with it, up to the first newer one.
		later := now.Add(31 * 24 * time.Hour)
		for i, at := range []time.Time{now.Add(365 * 24 * time.Hour), now.Add(time.Minute), now.Add(2 * time.Minute), later} {
			e := event("login.failure", fmt.Sprint("ahead", i))
			e.Time = at
			if err := db.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.PruneAudit(ctx, later.Add(-30*24*time.Hour), later); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.ListAudit(ctx, store.AuditFilter{Limit: 10}); len(list) != 1 || !list[0].Time.Equal(later) {
			t.Fatalf("after pruning past a future stamp: %+v; want the newest event alone", list)
		}
	})
}

// BenchmarkAuditedLogin is what the audit log adds to a login's one write:
// the session and refresh token created alone ("plain"), and with the
// login's event appended in the same transaction ("audited": an insert and
// the head row's update). A login also hashes its password with argon2id
// (tens of milliseconds); this is the whole of the log's share. Each user
// starts MaxLiveFamilies sessions, so that none ends one (past the cap,
// each login would end the oldest).
func BenchmarkAuditedLogin(b *testing.B) {
	for _, d := range storetest.Dialects {
		db := storetest.Open(b, d)
		var u *store.User
		logins := 0
		for _, audited := range []bool{false, true} {
			name := map[bool]string{false: "plain", true: "audited"}[audited]
			b.Run(d+"/"+name, func(b *testing.B) {
				for b.Loop() {
					if logins%store.MaxLiveFamilies == 0 {
						b.StopTimer()
						u = newUser(b, db, fmt.Sprint("u", logins, "@example.com"), fmt.Sprint("u", logins))
						b.StartTimer()
					}
					logins++
					c := ctx
					if audited {
						c = store.WithEvent(ctx, event("login.success", store.FormatID(u.ID)))
					}
					f := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: "c1", Scope: "a b", AuthTime: t0}
					if _, err := db.CreateFamily(c, f, token.Hash(token.NewOpaque()), t0.Add(time.Hour), time.Hour, t0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
