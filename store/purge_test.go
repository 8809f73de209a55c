package store_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// backlog is more rows than one purge statement deletes: a backlog of
// three batches, the last of one row.
const backlog = 2*store.PurgeBatch + 1

// The purge deleted every expired row of a table in one statement, within
// OpTimeout: a backlog too large to delete in that time (millions of rows
// after an outage, a first prune of a large audit log), or a row locked in
// its midst, timed the statement out and rolled back all it had deleted,
// every run, while the table grew without bound. Now it deletes in batches,
// each a statement (or for the audit log a transaction) of its own.

// A backlog of more than a batch is purged in one call, on every dialect:
// the expired refresh tokens and dead families, the audit events past
// retention, the chain verifying from its new base, and the email and
// username of the users deleted before it. What is live stays.
func TestPurgeBacklog(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			userID := liveFamily(t, db)
			insertRows(t, raw, "token_families", "id, user_id, client_id, auth_time, created_at", backlog, func(i int) string {
				return fmt.Sprintf("'f%06d', %d, 'c1', %d, %d", i, userID, t0.Unix(), t0.Unix())
			})
			insertRows(t, raw, "refresh_tokens", "hash, family_id, created_at, expires_at", backlog, func(i int) string {
				return fmt.Sprintf("'rt%06d', 'f%06d', %d, %d", i, i, t0.Unix(), t0.Unix()+int64(i))
			})
			insertRows(t, raw, "users", "email, username, password_hash, created_at, updated_at, deleted_at", backlog, func(i int) string {
				return fmt.Sprintf("'u%06d@example.com', 'u%06d', '', %d, %d, %d", i, i, t0.Unix(), t0.Unix(), t0.Unix())
			})
			pruned := fillAuditLog(t, db, raw)
			kept := event("login.failure", "kept")
			kept.Time = t0.Add(24 * time.Hour)
			if err := db.Audit(ctx, kept); err != nil {
				t.Fatal(err)
			}

			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge, Audit: 12 * time.Hour}
			if err := db.Purge(ctx, ret, pruned.Add(ret.Audit)); err != nil {
				t.Fatal(err)
			}
			if f, rt := count(t, raw, "token_families"), count(t, raw, "refresh_tokens"); f != 1 || rt != 1 {
				t.Errorf("after purging a backlog of %d dead families with their expired tokens: %d families, %d refresh tokens left; want the live one and its token", backlog, f, rt)
			}
			if n := count(t, raw, "users WHERE email LIKE '%@%'"); n != 1 {
				t.Errorf("after purging a backlog of %d users deleted before the audit retention: %d users named; want the live one", backlog, n)
			}
			if got, err := db.AnyRefreshToken(ctx, token.Hash("live")); err != nil || got.Family.ID != "live" {
				t.Errorf("the live family's token after the purge: %+v, %v", got, err)
			}
			if n, err := db.VerifyAudit(ctx, kept.Hash); err != nil || n != 1 {
				t.Errorf("after pruning a backlog of %d audit events: VerifyAudit = %d, %v; want the one event kept, verifying", backlog+1, n, err)
			}
		})
	}
}

// A row locked in the midst of a backlog: on PostgreSQL the purge skips
// it (left for the next run); on MySQL its batch waits for it until
// OpTimeout and fails. Either way every batch before it is deleted and
// kept. (Before, nothing was: the one statement waited, timed out and
// rolled back, run after run.)
func TestPurgeKeepsBatchesBeforeALock(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			liveFamily(t, db)
			insertRows(t, raw, "refresh_tokens", "hash, family_id, created_at, expires_at", backlog, func(i int) string {
				return fmt.Sprintf("'rt%06d', 'live', %d, %d", i, t0.Unix(), t0.Unix()+int64(i))
			})
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			now := t0.Add(4 * time.Hour)

			// Locked: the expired token that every order of the table
			// reaches last (by key, by expiry, as inserted).
			hold, waiting := lockRow(t, d, raw, fmt.Sprintf(`SELECT 1 FROM refresh_tokens WHERE hash = 'rt%06d' FOR UPDATE`, backlog))
			done := doneOrWaiting(t, func() error { return db.Purge(ctx, ret, now) }, waiting)
			if n := count(t, raw, "refresh_tokens"); n != 2 {
				t.Fatalf("with one expired refresh token of %d locked, the purge left %d tokens; want only the live one and the locked one", backlog, n)
			}
			if err := hold.Rollback(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil && d == store.Postgres {
				t.Errorf("a purge beside a locked row on PostgreSQL: %v; want the row skipped", err)
			}
			if err := db.Purge(ctx, ret, now); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "refresh_tokens"); n != 1 {
				t.Errorf("once the lock was gone, the purge left %d refresh tokens; want the live one", n)
			}
		})
	}
}

// A family whose last refresh token expired is ended before the token
// goes: when ending it fails (its row locked past OpTimeout), the token
// stays for the next run. Deleted anyway, it left the family unended and
// tokenless, which no index of the dead finds, until its max age.
func TestPurgeKeepsAnExpiredTokenWhoseFamilyWasNotEnded(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			liveFamily(t, db) // its one token expires at t0+24h
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			now := t0.Add(26 * time.Hour)
			hold, _ := holdRow(t, raw, d, `SELECT 1 FROM token_families WHERE id = 'live' FOR UPDATE`)
			if err := db.Purge(ctx, ret, now); err == nil {
				t.Fatal("a purge beside the locked family succeeded; want it to fail ending it")
			}
			if n := count(t, raw, "refresh_tokens"); n != 1 {
				t.Fatalf("%d refresh tokens after a purge that could not end their family; want the expired one kept", n)
			}
			hold.Rollback()
			if err := db.Purge(ctx, ret, now); err != nil {
				t.Fatal(err)
			}
			if f, rt := count(t, raw, "token_families"), count(t, raw, "refresh_tokens"); f != 0 || rt != 0 {
				t.Errorf("once the lock was gone: %d families, %d refresh tokens; want none", f, rt)
			}
		})
	}
}

// A dead family's refresh tokens were deleted by its row's ON DELETE
// CASCADE, in the statement that deleted a batch of families: a family
// rotated at its rate limit for a month has millions of spent tokens, the
// statement passed OpTimeout and rolled back, and the same batch came
// first every run, so that no family was purged again. Here a revoked
// family holds more spent, unexpired tokens than a batch, and a statement
// that deletes the last of them by the family's cascade cannot: on SQLite
// a trigger refuses to delete a token whose family is gone (a cascade),
// elsewhere the last token is locked. The tokens must go by batches of
// their own (on SQLite all of them; elsewhere all but the locked one),
// then the family, once nothing is left; the live family stays.
func TestPurgeDeadFamilyTokensInBatches(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			userID := liveFamily(t, db)
			if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at, revoked_at) VALUES ('dead', %d, 'c1', %d, %d, %d)`,
				userID, t0.Unix(), t0.Unix(), t0.Unix())); err != nil {
				t.Fatal(err)
			}
			insertRows(t, raw, "refresh_tokens", "hash, family_id, created_at, expires_at, used_at", backlog, func(i int) string {
				return fmt.Sprintf("'rt%06d', 'dead', %d, %d, %d", i, t0.Unix(), t0.Add(30*24*time.Hour).Unix(), t0.Unix())
			})
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			now := t0.Add(4 * time.Hour)
			left, release := 0, func() {}
			if d == store.SQLite {
				if _, err := raw.Exec(`CREATE TRIGGER no_cascade BEFORE DELETE ON refresh_tokens
WHEN NOT EXISTS (SELECT 1 FROM token_families WHERE id = OLD.family_id)
BEGIN SELECT RAISE(ABORT, 'a refresh token deleted by its family''s cascade'); END`); err != nil {
					t.Fatal(err)
				}
				if err := db.Purge(ctx, ret, now); err != nil {
					t.Errorf("purge: %v", err)
				}
			} else {
				hold, waiting := lockRow(t, d, raw, fmt.Sprintf(`SELECT 1 FROM refresh_tokens WHERE hash = 'rt%06d' FOR UPDATE`, backlog))
				done := doneOrWaiting(t, func() error { return db.Purge(ctx, ret, now) }, waiting)
				left, release = 1, func() {
					if err := hold.Rollback(); err != nil {
						t.Fatal(err)
					}
					<-done
				}
			}
			if n := count(t, raw, "refresh_tokens WHERE family_id = 'dead'"); n != left {
				t.Errorf("a dead family with %d spent tokens: %d left after the purge; want %d", backlog, n, left)
			}
			release()
			if err := db.Purge(ctx, ret, now); err != nil {
				t.Fatal(err)
			}
			if f, rt := count(t, raw, "token_families"), count(t, raw, "refresh_tokens"); f != 1 || rt != 1 {
				t.Errorf("after the purge: %d families, %d refresh tokens; want the live one and its token", f, rt)
			}
		})
	}
}

// A deleted account kept its password hash, names, email and username for
// ever (a DELETE of the row fails on its foreign keys). The deletion now
// blanks the hash and the names; the purge replaces the email and username
// with 'deleted:<id>' once the deletion is older than the audit retention,
// never without one (a zero Retention.Audit, which the config never sets, prunes nothing), and leaves live users, one
// who signed up again with the same address and name included.
func TestDeletedUserForgotten(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			ann := &store.User{Email: "ann@example.com", Username: "Ann", PasswordHash: "$argon2id$x", FirstName: "Annabel", LastName: "Privata", IsActive: true}
			if err := db.CreateUser(ctx, ann, t0); err != nil {
				t.Fatal(err)
			}
			if _, err := db.DeleteUser(ctx, newAdmin(t, db), ann.ID, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			again := newUser(t, db, "ann@example.com", "ann")
			row := func(u *store.User) string {
				t.Helper()
				var r [5]string
				if err := raw.QueryRow(`SELECT email, username, password_hash, first_name, last_name FROM users WHERE id = `+store.FormatID(u.ID)).Scan(&r[0], &r[1], &r[2], &r[3], &r[4]); err != nil {
					t.Fatal(err)
				}
				return strings.Join(r[:], " ")
			}
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge, Audit: 24 * time.Hour}
			for _, c := range []struct {
				now        time.Time
				audit      time.Duration
				ann, again string
			}{
				{t0, ret.Audit, "ann@example.com Ann   ", "ann@example.com ann $argon2id$x  "},
				{t0.Add(1000 * time.Hour), 0, "ann@example.com Ann   ", "ann@example.com ann $argon2id$x  "},
				{t0.Add(ret.Audit - time.Second), ret.Audit, "ann@example.com Ann   ", "ann@example.com ann $argon2id$x  "},
				{t0.Add(ret.Audit), ret.Audit, fmt.Sprintf("deleted:%d deleted:%[1]d   ", ann.ID), "ann@example.com ann $argon2id$x  "},
			} {
				ret.Audit = c.audit
				if err := db.Purge(ctx, ret, c.now); err != nil {
					t.Fatal(err)
				}
				if got, gotAgain := row(ann), row(again); got != c.ann || gotAgain != c.again {
					t.Errorf("deleted at %v, purged at %v with audit retention %v: the deleted row is %q, the live one %q; want %q, %q",
						t0, c.now, c.audit, got, gotAgain, c.ann, c.again)
				}
			}
		})
	}
}

// The dead families' tokens were deleted by a list of as many ids as the
// last chunk held: up to a hundred statement texts, each prepared on every
// connection and kept (on MySQL, against max_prepared_stmt_count). Now one.
func TestPurgeOneStatementText(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			userID := liveFamily(t, db)
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			texts := 0 // after the first purge
			for round, dead := range []int{1, 2, 3} {
				for i := range dead {
					id := fmt.Sprintf("dead%d-%d", round, i)
					if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at, revoked_at) VALUES ('%s', %d, 'c1', %d, %d, %d)`,
						id, userID, t0.Unix(), t0.Unix(), t0.Unix())); err != nil {
						t.Fatal(err)
					}
					if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO refresh_tokens (hash, family_id, created_at, expires_at, used_at) VALUES ('rt-%s', '%s', %d, %d, %d)`,
						id, id, t0.Unix(), t0.Add(30*24*time.Hour).Unix(), t0.Unix())); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.Purge(ctx, ret, t0.Add(4*time.Hour)); err != nil {
					t.Fatal(err)
				}
				if n := count(t, raw, "refresh_tokens WHERE family_id LIKE 'dead%'"); n != 0 {
					t.Fatalf("%d dead families: %d of their tokens left after the purge", dead, n)
				}
				if n := db.CachedStmts("family_id IN ("); round == 0 {
					texts = n
				} else if n != texts {
					t.Fatalf("a purge of %d dead families cached %d statement texts naming families by id; one of 1 had %d", dead, n, texts)
				}
			}
		})
	}
}

// The audit log's prune, whose batch waits for a locked event on every
// dialect, keeps the batches before it, each of which left a chain that
// verifies from its base. (Before, nothing was pruned.)
func TestPruneAuditKeepsBatchesBeforeALock(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			insertRows(t, raw, "users", "email, username, password_hash, created_at, updated_at, deleted_at", backlog, func(i int) string {
				return fmt.Sprintf("'u%06d@example.com', 'u%06d', '', %d, %d, %d", i, i, t0.Unix(), t0.Unix(), t0.Unix())
			})
			pruned := fillAuditLog(t, db, raw)
			kept := event("login.failure", "kept")
			kept.Time = t0.Add(24 * time.Hour)
			if err := db.Audit(ctx, kept); err != nil {
				t.Fatal(err)
			}
			// Locked: the last event past retention.
			hold, waiting := lockRow(t, d, raw, fmt.Sprintf(`SELECT 1 FROM audit_events WHERE id = %d FOR UPDATE`, backlog+1))
			done := doneOrWaiting(t, func() error { return db.PruneAudit(ctx, pruned, pruned) }, waiting)
			if n := count(t, raw, "audit_events"); n != 3 {
				t.Fatalf("with the last of %d audit events past retention locked, the prune left %d events; want only its batch (two) and the one kept", backlog+1, n)
			}
			if n, err := db.VerifyAudit(ctx, kept.Hash); err != nil || n != 3 {
				t.Errorf("with a prune cut short by a lock: VerifyAudit = %d, %v; want 3 events, verifying", n, err)
			}
			if err := hold.Rollback(); err != nil {
				t.Fatal(err)
			}
			<-done
			if err := db.PruneAudit(ctx, pruned, pruned); err != nil {
				t.Fatal(err)
			}
			if n, err := db.VerifyAudit(ctx, kept.Hash); err != nil || n != 1 {
				t.Errorf("after the prune: VerifyAudit = %d, %v; want the one event kept, verifying", n, err)
			}
		})
	}
}

// lockRow holds the row lock of lock (holdRow) and returns its transaction
// with a function that reports whether a statement waits for it: on
// PostgreSQL, whose statements in a transaction wait for as long as their
// caller's context lets them, one behind it (blockedBy); on MySQL never, as
// there a wait for a row lock ends by itself, at OpTimeout (its
// innodb_lock_wait_timeout).
func lockRow(t *testing.T, dialect string, raw *sql.DB, lock string) (*sql.Tx, func() bool) {
	t.Helper()
	hold, pid := holdRow(t, raw, dialect, lock)
	if dialect == store.MySQL {
		return hold, func() bool { return false }
	}
	return hold, func() bool { return len(blockedBy(t, raw, dialect, pid)) > 0 }
}

// doneOrWaiting runs f, and returns once f has returned or waiting() says
// it waits for a lock; f's error comes on the channel. It asks every
// 200 ms, as MySQL's lock tables are fresh only that often (waitBlocked).
func doneOrWaiting(t *testing.T, f func() error, waiting func() bool) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	for i := 0; len(done) == 0 && !waiting(); i++ {
		if i > 300 {
			t.Fatal("neither done nor waiting for the lock after a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return done
}

// liveFamily adds a user with a family, "live", whose one refresh token
// (token.Hash("live")) expires at t0+24h, and returns the user's id.
func liveFamily(t *testing.T, db *store.DB) int64 {
	t.Helper()
	u := newUser(t, db, "ann@example.com", "ann")
	live := store.Family{ID: "live", UserID: u.ID, ClientID: "c1", AuthTime: t0}
	if _, err := db.CreateFamily(ctx, live, token.Hash("live"), t0.Add(24*time.Hour), time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// fillAuditLog adds backlog+1 audit events to db's log, and returns a
// time after all of them: all but the last two written as rows (their
// hashes do not chain: a prune reads no pruned event but the last), the
// last two appended as ever (Audit), so that the chain verifies from the
// first of them once the rest are pruned. Two, so that a lock on the last
// is within the last batch, not at its start: on MySQL a DELETE of the
// batch before it would wait for it too (InnoDB locks the row past a
// range it scans).
func fillAuditLog(t *testing.T, db *store.DB, raw *sql.DB) time.Time {
	t.Helper()
	insertRows(t, raw, "audit_events", "id, time_ms, action, actor, subject, client_id, ip, request_id, outcome, detail, hash", backlog-1, func(i int) string {
		return fmt.Sprintf("%d, %d, 'login.failure', 'cli', '', '', '', '', 'failure', '{}', 'h%06d'", i, t0.UnixMilli()+int64(i), i)
	})
	if _, err := raw.Exec(fmt.Sprintf(`UPDATE audit_head SET n = %d, hash = 'h%06d'`, backlog-1, backlog-1)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e := event("login.failure", fmt.Sprint(i))
		e.Time = t0.Add(time.Hour)
		if err := db.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return t0.Add(time.Hour + time.Minute)
}

// insertRows inserts n rows into table's cols, row(i) giving the values
// of row i (1 to n), a thousand rows a statement.
func insertRows(t *testing.T, raw *sql.DB, table, cols string, n int, row func(i int) string) {
	t.Helper()
	for first := 1; first <= n; first += 1000 {
		var values []string
		for i := first; i < first+1000 && i <= n; i++ {
			values = append(values, "("+row(i)+")")
		}
		if _, err := raw.Exec("INSERT INTO " + table + " (" + cols + ") VALUES " + strings.Join(values, ", ")); err != nil {
			t.Fatal(err)
		}
	}
}
