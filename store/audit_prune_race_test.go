package store_test

import (
	"fmt"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// PruneAudit picks the last event to prune before it takes any lock,
// and then sets the base unconditionally. Two instances' janitors pruning at
// once (every minute, each with its own clock, or during a rollout that
// changes AUDIT_RETENTION_DAYS) on PostgreSQL: B reads its snapshot while A's
// prune is uncommitted, waits on A's locks, then writes its own, older base
// over A's. The base moves back past events that are gone, and `audit
// verify` reports an intact log as tampered ("event N is missing") for good.
// Here A is PruneAudit's own statements on a raw connection, held open.
// A regression test: PruneAudit now never lowers the base.
func TestAuditConcurrentPrunesKeepBase(t *testing.T) {
	for _, d := range storetest.Dialects {
		if d == store.SQLite {
			continue // one writer at a time: BEGIN IMMEDIATE serialises the prunes
		}
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			for i := range 6 {
				e := event("login.failure", fmt.Sprint(i))
				e.Time = t0.Add(time.Duration(i) * time.Hour)
				if err := db.Audit(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			// Instance A prunes up to event 4 (its cutoff after 4h), not yet committed.
			var h4 string
			raw.QueryRow(`SELECT hash FROM audit_events WHERE id = 4`).Scan(&h4)
			a, pid := holdRow(t, raw, d, `DELETE FROM audit_events WHERE id <= 4`)
			if _, err := a.Exec(fmt.Sprintf(`UPDATE audit_head SET base_n = 4, base_hash = '%s' WHERE one = 1`, h4)); err != nil {
				t.Fatal(err)
			}
			// Instance B prunes with a cutoff a little earlier (after 2h).
			done := make(chan error, 1)
			go func() { done <- db.PruneAudit(ctx, t0.Add(150*time.Minute), t0.Add(150*time.Minute)) }()
			waitBlocked(t, raw, d, pid, 1) // B has read its snapshot and waits on A's locks
			if err := a.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n, err := db.VerifyAudit(ctx, ""); err != nil {
				var baseN int
				raw.QueryRow(`SELECT base_n FROM audit_head`).Scan(&baseN)
				t.Errorf("two prunes at once, nothing tampered: VerifyAudit = %d, %v (base_n now %d)", n, err, baseN)
			}
		})
	}
}
