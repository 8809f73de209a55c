// Package store keeps oauth2-api's state in SQL: embedded SQLite (pure Go,
// modernc.org/sqlite) or PostgreSQL (pgx through database/sql). One API, two
// backends; the queries are written once with $n placeholders, which both
// drivers bind by number. Migrations are SQL files embedded in the binary, one
// directory per dialect, recorded in schema_migrations.
//
// Times are stored as Unix seconds (BIGINT) in both databases, so comparisons
// in SQL mean the same thing on both and no time zone is ever involved.
//
// Secrets (refresh tokens, codes, client secrets, sessions, reset tokens) are
// stored only as SHA-256 hex digests; callers pass the digest, never the value.
//
// Errors callers branch on are ErrNotFound, ErrConflict and ErrUnavailable,
// checked with errors.Is; sql.ErrNoRows never leaves this package.
//
// # Security
//
// Every statement binds its values ($n); no SQL is built from input (the
// table names in the few composed statements are constants). Secrets are
// never stored, only their SHA-256 digests, and looked up by digest, so a
// timing difference in the lookup tells nothing about a secret. The checks
// that must not race are single statements or transactions: a refresh token
// is spent by one conditional UPDATE (RotateRefresh), a code by one
// (ExchangeCode), a login attempt is counted by one upsert
// (CountLoginAttempt), a password change or reset writes the password and
// ends the sessions in one transaction, and an email verification token is
// spent, and checked against the user's current address, in the transaction
// that marks the address verified (VerifyEmail). A failure of the database
// itself is ErrUnavailable; anything else is an error of its own (a bug), so
// that a bug never answers as an outage.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

var (
	// ErrNotFound means no live row matched.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique constraint refused the write (a duplicate).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the database could not do the work: it is down,
	// unreachable, timed out or busy. Handlers answer 503 (a retry may
	// succeed). Any other failure is an internal error: 500.
	ErrUnavailable error = unavailableError("database unavailable")
)

// unavailableError says Unavailable(): that is how the HTTP layer tells an
// outage from a bug without importing this package.
type unavailableError string

func (e unavailableError) Error() string   { return string(e) }
func (unavailableError) Unavailable() bool { return true }

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// OpTimeout bounds every statement, so that a database that stops answering
// turns into ErrUnavailable within seconds instead of a hung request.
const OpTimeout = 5 * time.Second

//go:embed migrations
var migrations embed.FS

// Options are pool settings (DB_MAX_OPEN_CONNS and friends).
type Options struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// DB is a handle on the database. For SQLite it holds two pools: one writer
// connection (SQLite allows one writer at a time; BEGIN IMMEDIATE makes a
// transaction take the write lock up front instead of failing on upgrade) and
// read-only readers, which WAL lets run beside the writer. For PostgreSQL both
// are the same pool.
type DB struct {
	dialect     string
	w, r        *sql.DB
	tableExists string // a query counting the tables named $1 in the current schema

	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// ParseURL reads DATABASE_URL: "postgres://" or "postgresql://" URLs are
// PostgreSQL; a plain path, a "sqlite://" URL or a "file:" URL is SQLite. It
// returns the dialect and the PostgreSQL URL or the SQLite file path.
func ParseURL(raw string) (dialect, target string, err error) {
	switch {
	case raw == "":
		return "", "", errors.New("empty database URL")
	case strings.ContainsAny(raw, "\x00\r\n"):
		return "", "", errors.New("control character in database URL")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", errors.New("malformed postgres URL") // the text may hold a password: do not echo it
		}
		if u.Host == "" {
			return "", "", errors.New("postgres URL without a host")
		}
		return Postgres, raw, nil
	case strings.HasPrefix(raw, "sqlite://"):
		target = strings.TrimPrefix(raw, "sqlite://")
	case strings.HasPrefix(raw, "file:"):
		target = strings.TrimPrefix(strings.TrimPrefix(raw, "file:"), "//")
	case strings.Contains(raw, "://"):
		return "", "", errors.New("unsupported database URL scheme (want postgres://, sqlite:// or a file path)")
	default:
		target = raw // a plain path is a path: '?' and '#' are legal in file names (Open escapes them)
	}
	if target != raw && strings.ContainsAny(target, "?#") {
		return "", "", errors.New("SQLite URL must be a plain path, without query or fragment (the server sets its own pragmas)")
	}
	if target == "" || strings.HasSuffix(target, "/") {
		return "", "", errors.New("SQLite path names no file")
	}
	return SQLite, target, nil
}

// Open connects to the database named by rawURL (see ParseURL) and checks
// that it answers. It does not migrate; call Migrate.
func Open(ctx context.Context, rawURL string, o Options) (*DB, error) {
	dialect, target, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 100
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 10
	}
	db := &DB{dialect: dialect, stmts: make(map[stmtKey]*sql.Stmt)}
	// Each driver is in a file of its own (sqlite.go, postgres.go), so a
	// lean build can leave one out (-tags nosqlite, nopostgres).
	if dialect == Postgres {
		db.w, db.r, err = openPostgres(target, o)
		db.tableExists = postgresTableExists
	} else {
		db.w, db.r, err = openSQLite(ctx, target, o)
		db.tableExists = sqliteTableExists
	}
	if err != nil {
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func pingWithin(ctx context.Context, p *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	return p.PingContext(ctx)
}

// Dialect returns SQLite or Postgres.
func (db *DB) Dialect() string { return db.dialect }

// Ping checks that the database answers, within OpTimeout.
func (db *DB) Ping(ctx context.Context) error {
	if err := pingWithin(ctx, db.r); err != nil {
		return fmt.Errorf("%w: ping: %v", ErrUnavailable, err)
	}
	if db.w != db.r {
		if err := pingWithin(ctx, db.w); err != nil {
			return fmt.Errorf("%w: ping: %v", ErrUnavailable, err)
		}
	}
	return nil
}

// Close closes every connection.
func (db *DB) Close() error {
	db.mu.Lock()
	for _, s := range db.stmts {
		s.Close()
	}
	db.stmts = nil
	db.mu.Unlock()
	err := db.w.Close()
	if db.r != db.w {
		err = errors.Join(err, db.r.Close())
	}
	return err
}

// stmt returns a prepared statement for query on pool, preparing it once.
// database/sql re-prepares it on each connection as needed.
func (db *DB) stmt(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{pool, query}
	db.mu.Lock()
	s, ok := db.stmts[k]
	db.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.stmts == nil {
		s.Close()
		return nil, errors.New("database closed")
	}
	if old, ok := db.stmts[k]; ok {
		s.Close()
		return old, nil
	}
	db.stmts[k] = s
	return s, nil
}

// txStmt returns the prepared statement for query bound to tx. The writer's
// statements are prepared once per connection, so a hot transaction does not
// parse its SQL every time.
// Only statements prepared by prepareHot are reused; others are prepared on
// the transaction (preparing on the pool from inside a transaction would wait
// for the SQLite writer's one connection, which the transaction holds).
func (db *DB) txStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	db.mu.Lock()
	s, ok := db.stmts[stmtKey{db.w, query}]
	db.mu.Unlock()
	if !ok {
		return tx.PrepareContext(ctx, query)
	}
	return tx.StmtContext(ctx, s), nil
}

// hotTx are the statements of the hottest write transactions.
var hotTx = []string{qSpendSQLite, qFamilyOwner, qInsertRefresh}

// prepareHot prepares hotTx on the writer pool, outside any transaction.
func (db *DB) prepareHot(ctx context.Context) error {
	if db.dialect != SQLite {
		return nil // PostgreSQL runs them as single statements; pgx caches those
	}
	for _, q := range hotTx {
		if _, err := db.stmt(ctx, db.w, q); err != nil {
			return err
		}
	}
	return nil
}

// queryRow runs a read on the reader pool.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *row {
	return db.rowOn(ctx, db.r, query, args...)
}

// writeRow runs a statement that returns one row (RETURNING) on the writer.
func (db *DB) writeRow(ctx context.Context, query string, args ...any) *row {
	return db.rowOn(ctx, db.w, query, args...)
}

func (db *DB) rowOn(ctx context.Context, pool *sql.DB, query string, args ...any) *row {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	s, err := db.stmt(ctx, pool, query)
	if err != nil {
		cancel()
		return &row{err: err}
	}
	return &row{r: s.QueryRowContext(ctx, args...), cancel: cancel}
}

// row is a *sql.Row that releases its timeout once scanned.
type row struct {
	r      *sql.Row
	err    error
	cancel context.CancelFunc
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.cancel()
	return r.r.Scan(dest...)
}

// exec runs a write on the writer and returns the number of rows affected;
// with an event in ctx, in a transaction that appends it.
func (db *DB) exec(ctx context.Context, query string, args ...any) (n int64, err error) {
	if pendingEvent(ctx) != nil {
		err = db.tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, query, args...)
			if err == nil {
				n, err = res.RowsAffected()
			}
			return err
		})
		return n, err
	}
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	s, err := db.stmt(ctx, db.w, query)
	if err != nil {
		return 0, err
	}
	res, err := s.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// tx runs fn in a write transaction, committing if fn returns nil, after
// appending ctx's audit event (WithEvent). On SQLite the transaction holds
// the write lock from its first statement.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	t, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback() // after a Commit, a no-op; after an error or a panic in fn, the undo
	if err := fn(t); err != nil {
		return err
	}
	if e := pendingEvent(ctx); e != nil {
		if err := appendEvent(ctx, t, e); err != nil {
			return err
		}
		defer func() { // not appended after all: the commit failed
			if err != nil {
				e.ID, e.Hash = 0, ""
			}
		}()
	}
	err = t.Commit()
	return err
}

// wrap turns a driver error into one of the package's sentinels, keeping the
// original for logs, and prefixes what was being done. A failure of the
// database itself (unreachable, timed out, busy, shutting down) wraps
// ErrUnavailable, which clients see as 503 and may retry; anything else
// (a constraint, a syntax error: a bug) stays an internal error, which
// they see as 500: a bug must not pass for an outage.
func wrap(errp *error, op string) {
	err := *errp
	switch {
	case err == nil:
		return
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrUnavailable), errors.Is(err, ErrReused), errors.Is(err, ErrLimited):
		*errp = fmt.Errorf("store: %s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		*errp = fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case isUniqueViolation(err):
		*errp = fmt.Errorf("store: %s: %w", op, ErrConflict)
	case unavailable(err):
		*errp = fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
	default:
		*errp = fmt.Errorf("store: %s: %w", op, err)
	}
}

// unavailable reports whether err says the database could not do the work
// (as opposed to refusing it): the connection failed or was lost, the
// statement timed out or was cancelled, the server is shutting down, out
// of resources or asks for a retry (serialization, deadlock), or SQLite
// found its file locked or could not read or write it.
func unavailable(err error) bool {
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &netErr) {
		return true
	}
	if known, unavailable := postgresUnavailable(err); known {
		return unavailable
	}
	if known, unavailable := sqliteUnavailable(err); known {
		return unavailable
	}
	// database/sql's own "sql: database is closed" has no sentinel; pgx
	// says "conn closed" when the server went away between statements.
	msg := err.Error()
	return strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "conn closed")
}

// storable reports whether s is text a row can hold on both backends: valid
// UTF-8 without NUL. PostgreSQL refuses any other value outright (SQLSTATE
// 22021), which would surface as ErrUnavailable and a 503 for what is only a
// client's bad input; a lookup by such a value finds nothing, so callers
// answer ErrNotFound without asking the database.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func isUniqueViolation(err error) bool { return postgresUnique(err) || sqliteUnique(err) }

// Migration is one embedded migration file.
type Migration struct {
	Version   string // file name without ".sql", e.g. "0001_users"
	AppliedAt time.Time
	Applied   bool
}

func (db *DB) migrationFiles() ([]string, error) {
	dir := path.Join("migrations", db.dialect)
	names, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// Migrate applies, in order, every embedded migration not yet recorded in
// schema_migrations, each in its own transaction together with its record, and
// returns the versions it applied. Running it again applies nothing. Several
// instances may start at once: PostgreSQL serialises them on an advisory lock
// held by each migration's transaction, SQLite on its write lock.
func (db *DB) Migrate(ctx context.Context, now time.Time) (applied []string, err error) {
	defer wrap(&err, "migrate")
	if err := db.createMigrationsTable(ctx); err != nil {
		return nil, err
	}
	files, err := db.migrationFiles()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		version := strings.TrimSuffix(path.Base(f), ".sql")
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		did := false
		err = db.migrateOne(ctx, version, string(body), now, &did)
		if err != nil {
			return applied, fmt.Errorf("%s: %w", version, err)
		}
		if did {
			applied = append(applied, version)
		}
	}
	if err := db.prepareHot(ctx); err != nil {
		return applied, err
	}
	return applied, nil
}

// migrationLock takes, on PostgreSQL, the advisory lock that serialises
// migrations across instances; it is held until t ends. On SQLite the
// writer's BEGIN IMMEDIATE already serialises them.
func (db *DB) migrationLock(ctx context.Context, t *sql.Tx) error {
	if db.dialect != Postgres {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte("oauth2-api schema_migrations"))
	_, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64()))
	return err
}

// createMigrationsTable creates schema_migrations if it is missing, under
// the migration lock: on PostgreSQL, CREATE TABLE IF NOT EXISTS is not safe
// against a twin running at the same moment (it fails with 23505, 42P07 or
// 42710 depending on timing).
func (db *DB) createMigrationsTable(ctx context.Context) error {
	return db.underMigrationLock(ctx, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version TEXT PRIMARY KEY,
	applied_at BIGINT NOT NULL)`)
		return err
	})
}

// underMigrationLock runs fn in a transaction holding the migration lock,
// committing if fn returns nil.
func (db *DB) underMigrationLock(ctx context.Context, fn func(*sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := db.migrationLock(ctx, t); err != nil {
		return err
	}
	if err := fn(t); err != nil {
		return err
	}
	return t.Commit()
}

func (db *DB) migrateOne(ctx context.Context, version, body string, now time.Time, did *bool) error {
	return db.underMigrationLock(ctx, func(t *sql.Tx) error {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := t.ExecContext(ctx, body); err != nil {
			return err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, now.Unix()); err != nil {
			return err
		}
		*did = true
		return nil
	})
}

// Migrations lists every embedded migration and whether it is applied.
func (db *DB) Migrations(ctx context.Context) (list []Migration, err error) {
	defer wrap(&err, "migration status")
	files, err := db.migrationFiles()
	if err != nil {
		return nil, err
	}
	applied := map[string]int64{}
	// A database never migrated has no schema_migrations: nothing applied.
	// Any other failure (the database away) is an error, not "pending".
	var tables int
	if err := db.r.QueryRowContext(ctx, db.tableExists, "schema_migrations").Scan(&tables); err != nil {
		return nil, err
	}
	if tables > 0 {
		rows, err := db.r.QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			var at int64
			if err := rows.Scan(&v, &at); err != nil {
				return nil, err
			}
			applied[v] = at
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		v := strings.TrimSuffix(path.Base(f), ".sql")
		at, ok := applied[v]
		m := Migration{Version: v, Applied: ok}
		if ok {
			m.AppliedAt = time.Unix(at, 0).UTC()
		}
		list = append(list, m)
	}
	return list, nil
}
