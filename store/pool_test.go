package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// Two requests that use a statement first at the same moment both prepare
// it, and the one that loses the race closes its copy. Closing a statement
// waits for the connection it was prepared on to finish its statement. When
// that statement waits in the database for a row lock (an audit append's
// UPDATE audit_head, queued behind another append), and the transaction
// holding the lock waits for the statement cache's lock before its next
// statement (txn asks the cache for every statement), the closer must not
// hold the cache's lock: if it does, nothing moves until OpTimeout, a wait
// cycle through the pool that the database's deadlock detector cannot see
// (TestLoginChecksBoundedUnderConcurrency answered 503 to most logins).
// Built step by step on a pool of two connections: A holds audit_head's row
// lock in a transaction; the losing prepare is made on B; B then runs an
// UPDATE queued on A's lock while the loser closes its copy; A's next
// statement must go through at once.
//
// Not on SQLite: its writer pool is the one connection a transaction holds,
// and its readers never wait for a lock.
func TestStmtCacheNoPoolCycle(t *testing.T) {
	const marker = "queued-behind-tx"
	waiting := map[string]string{
		store.Postgres: `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%` + marker + `%' AND pid <> pg_backend_pid()`,
		store.MySQL:    `SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE '%` + marker + `%'`,
	}
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			url := storetest.URL(t, d)
			o := storetest.Options()
			o.MaxOpenConns = 2
			db, err := store.Open(ctx, url, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
			raw := storetest.Raw(t, d, url)
			const lockHead = `UPDATE audit_head SET n = n WHERE one = 1`
			const query = `SELECT count(*) FROM audit_events`
			winner, err := db.Writer().PrepareContext(ctx, query) // the racing request's copy
			if err != nil {
				t.Fatal(err)
			}

			// A: a transaction holds the row lock, as an append does.
			locked, proceed, txDone := make(chan error, 1), make(chan struct{}), make(chan error, 1)
			// A wait below that fails must not leave A holding its
			// connection, nor the cache locked: db.Close would wait for
			// them, and the run hung to go test's timeout (seen on MariaDB
			// under load) instead of failing.
			var proceeded, released sync.Once
			let := func() { proceeded.Do(func() { close(proceed) }) }
			t.Cleanup(let)
			go func() {
				txDone <- db.TxExec(ctx, func(exec func(string) error) error {
					err := error(nil)
					if d == store.MySQL {
						// MariaDB ends a transaction idle TxIdleTimeout (5 s),
						// and A waits below for longer than that on a loaded
						// machine: the UPDATE then found no lock to wait for
						// (seen in CI beside other tests).
						err = exec(`SET @a = 0 /*M!, SESSION idle_transaction_timeout = 0 */`)
					}
					if err == nil {
						err = exec(lockHead)
					}
					locked <- err
					if err != nil {
						return err
					}
					<-proceed
					return exec(lockHead)
				})
			}()
			if err := <-locked; err != nil {
				t.Fatal(err)
			}
			// B is taken, so that the loser's prepare waits for it.
			b, err := db.Writer().Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lost := make(chan error, 1)
			go func() { lost <- db.PrepareWriter(ctx, query) }()
			waitFor(t, "the prepare to wait for a connection", func() bool { return db.Writer().Stats().WaitCount > 0 })
			hold := db.HoldStmts() // the loser stops after its prepare
			release := func() { released.Do(func() { hold(query, winner) }) }
			t.Cleanup(release)
			b.Close()
			waitFor(t, "the prepare to give B back", func() bool { return db.Writer().Stats().Idle == 1 })
			// B runs an UPDATE queued on A's lock; its deadline ends the
			// stall the old code made (10 s: a shorter one could end before a
			// loaded server showed the UPDATE waiting).
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			queued := make(chan error, 1)
			go func() {
				_, err := db.Writer().ExecContext(qctx, lockHead+` AND '`+marker+`' <> ''`)
				queued <- err
			}()
			waitFor(t, "the UPDATE to wait for the row lock", func() bool {
				var n int
				return raw.QueryRowContext(ctx, waiting[d]).Scan(&n) == nil && n > 0
			})
			release() // the racing request cached its copy first: the loser closes its own
			// Let the loser take the cache's lock before A asks for it.
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end) && !db.StmtsHeld(); {
				time.Sleep(time.Millisecond)
			}
			let()
			start := time.Now()
			select {
			case err := <-txDone:
				if err != nil {
					t.Errorf("transaction: %v", err)
				}
			case <-time.After(2 * time.Second):
				err := <-txDone
				t.Errorf("the transaction's next statement waited %v (then: %v): the loser closed its statement holding the cache's lock",
					time.Since(start).Round(time.Millisecond), err)
			}
			if err := <-lost; err != nil {
				t.Errorf("losing prepare: %v", err)
			}
			<-queued // on the old code, cancelled by its deadline
		})
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
