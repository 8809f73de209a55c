package store

import (
	"context"
	"database/sql"
	"io/fs"
	"strings"
	"testing/fstest"
	"time"
)

// Hooks for store_test's TestStmtCacheNoPoolCycle, which needs to stop the
// statement cache at one point (compiled into this package's tests only).

// Writer is the writer's pool.
func (db *DB) Writer() *sql.DB { return db.w }

// PrepareWriter prepares query on the writer through the cache (stmt).
func (db *DB) PrepareWriter(ctx context.Context, query string) error {
	_, err := db.stmt(ctx, db.w, query)
	return err
}

// HoldStmts takes the cache's lock and returns a function that caches s as
// the writer's statement for query (as a concurrent stmt that prepared it
// first would) and releases the lock.
func (db *DB) HoldStmts() (release func(query string, s *sql.Stmt)) {
	db.mu.Lock()
	return func(query string, s *sql.Stmt) {
		db.stmts[stmtKey{db.w, query}] = s
		db.mu.Unlock()
	}
}

// StmtsHeld reports whether another goroutine holds the cache's lock.
func (db *DB) StmtsHeld() bool {
	if db.mu.TryLock() {
		db.mu.Unlock()
		return false
	}
	return true
}

// TxExec runs fn in a write transaction (txOn), exec sending a statement in
// it as every transaction's statements are sent (txn).
func (db *DB) TxExec(ctx context.Context, fn func(exec func(query string) error) error) error {
	// Bounded by a minute, not OpTimeout: TestStmtCacheNoPoolCycle's
	// transaction waits for its steps, over 5 s on a loaded machine.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return db.txOn(withoutEvent(ctx), db.w, func(t *txn) error {
		return fn(func(query string) error {
			_, err := t.ExecContext(ctx, query)
			return err
		})
	})
}

// LiveUserWhere is the condition UserByEmail (false) and UserByUsername
// (true) look a user up by, for store_test's TestUserLookupsIndexed.
func (db *DB) LiveUserWhere(username bool) string { return db.liveUserWhere(username) }

// PurgeBatch is the most rows one purge statement deletes, for
// purge_test's backlogs of more than one batch.
const PurgeBatch = purgeBatch

// MigrateThrough applies the embedded migrations up to version and no
// later one, so that a test can write rows as they were before the next
// and then Migrate the rest.
func (db *DB) MigrateThrough(ctx context.Context, version string, now time.Time) error {
	all := db.driver
	defer func() { db.driver = all }()
	some := *all
	files, err := fs.Glob(all.Migrations, "*.sql")
	if err != nil {
		return err
	}
	older := fstest.MapFS{}
	for _, f := range files {
		if f <= version+".sql" {
			body, err := fs.ReadFile(all.Migrations, f)
			if err != nil {
				return err
			}
			older[f] = &fstest.MapFile{Data: body}
		}
	}
	some.Migrations = older
	db.driver = &some
	// No hot statement is prepared: they are written for the newest
	// schema, and may name what version lacks (refresh_tokens.bound).
	defer func(all map[string][]string) { hotTx = all }(hotTx)
	hotTx = nil
	_, err = db.Migrate(ctx, now)
	return err
}

// MaxLiveFamilies is how many live families a user may have, for
// caps_test's TestFamiliesCappedPerUser.
const MaxLiveFamilies = maxLiveFamilies

// MaxSignIns is how many live browser sign-ins a user may have, for
// caps_test's TestSignInsCappedPerUser.
const MaxSignIns = maxSignIns

// CreateOldClient stores a client of the authorization_code grant with
// only the columns every schema since migration 0008 has (CreateClient
// writes the newest's, clients.resource of 0024 included), so that a test
// may store one before a later migration (store_test's openThrough).
func (db *DB) CreateOldClient(ctx context.Context, id, backchannelURI string, now time.Time) error {
	return db.exec(ctx, nil, `INSERT INTO clients (id, name, grant_types, backchannel_logout_uri, created_at, updated_at)
VALUES ($1, $1, 'authorization_code', $2, $3, $3)`, id, backchannelURI, now.Unix())
}

// CachedStmts counts the statements in the cache whose text holds part,
// for purge_test's TestPurgeOneStatementText.
func (db *DB) CachedStmts(part string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for k := range db.stmts {
		if strings.Contains(k.query, part) {
			n++
		}
	}
	return n
}

// Classify is what the store makes of a driver's error (wrap).
func (db *DB) Classify(err error) error {
	db.wrap(&err, "test")
	return err
}
