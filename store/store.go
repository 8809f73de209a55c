// Package store keeps oauth2-api's state in SQL: embedded SQLite (pure Go,
// modernc.org/sqlite) or PostgreSQL (pgx through database/sql), and MySQL 8
// or MariaDB 10.11+ when the binary has its driver. One API, three
// backends; the queries are written once with $n placeholders, which SQLite
// and pgx bind by number. Migrations are SQL files embedded in the binary, one
// directory per dialect, recorded in schema_migrations.
//
// MySQL's driver is not in this module: oauth2-api-mysql, built from the
// nested module mysql/, passes it to Open (Options.MySQL, a Driver: the pool,
// the meaning of its errors, the migrations), and every other build refuses
// a mysql:// URL. The statements stay here: bind rewrites $n as the ? that
// driver takes, and where MySQL lacks a form (UPDATE … RETURNING, ON
// CONFLICT) the few statements concerned say, beside their MySQL form, why
// it is as safe there (appendEvent, CountLoginAttempt, RotateRefresh).
//
// Times are stored as Unix seconds (BIGINT) in every database, so comparisons
// in SQL mean the same thing on all and no time zone is ever involved.
//
// Secrets (refresh tokens, codes, client secrets, sessions, reset tokens) are
// stored only as SHA-256 hex digests; callers pass the digest, never the value.
//
// Errors callers branch on are ErrNotFound, ErrConflict and ErrUnavailable
// (and ErrBadURL from Open), checked with errors.Is; sql.ErrNoRows never leaves this package.
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
// (CountLoginAttempt; on MySQL, which has no RETURNING, each followed in its
// transaction by a SELECT of the row it locked), a password change or reset writes the password and
// ends the sessions in one transaction, and an email verification token is
// spent, and checked against the user's current address, in the transaction
// that marks the address verified (VerifyEmail); an admin's change to a
// user or a client commits only while that admin is still one, one such
// change at a time (asAdmin). A failure of the database
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
	"slices"
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
	// ErrBadURL means the driver refuses the URL's settings (an unknown
	// sslmode, a malformed port), or this build has no driver for it: bad
	// input, which no retry fixes.
	ErrBadURL = errors.New("bad database URL")
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
	MySQL    = "mysql" // MySQL 8 and MariaDB 10.11+, with a Driver from outside this module
)

// OpTimeout bounds every statement, so that a database that stops answering
// turns into ErrUnavailable within seconds instead of a hung request.
const OpTimeout = 5 * time.Second

// TxIdleTimeout is how long the database waits for the next statement (its
// COMMIT too) of a transaction that stamps a revocation (on MariaDB, of
// any: mysql/mysql.go) before it ends the session, rolling the transaction
// back (txn.written). A transaction's statements are sent within
// OpTimeout of its start, so one that commits does so within OpTimeout +
// TxIdleTimeout = 10 s of its stamp, however late its COMMIT reaches the
// server: inside the polls' 15 s overlap (auth.PollOverlap), which is how
// they find every revocation.
const TxIdleTimeout = 5 * time.Second

//go:embed migrations
var migrations embed.FS

// Options are pool settings (DB_MAX_OPEN_CONNS and friends), and the MySQL
// driver when the binary has one.
type Options struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
	// MySQL is the driver for mysql:// URLs: oauth2-api-mysql passes the one
	// its nested module (mysql/) holds, so that oauth2-api links none of it.
	// Without it, Open refuses a mysql:// URL.
	MySQL *Driver
}

// Driver is what this package needs of a database's driver: opening its
// pools, telling its errors apart, and its migrations. SQLite's and
// PostgreSQL's are built in (sqlite.go, postgres.go); MySQL's is not in
// this module, but in the nested module mysql/. The statements are this
// package's, written once for every dialect.
type Driver struct {
	// Open returns the writer's pool and the readers' on target (what
	// ParseURL returned: a file path for SQLite, else the URL), with the
	// driver's connection settings; the two are one pool but for SQLite
	// (openSQLite). Its error never holds the URL's password.
	Open func(ctx context.Context, target string, o Options) (w, r *sql.DB, err error)
	// Unavailable reports whether the driver knows err, and whether err
	// says the database could not do the work (see unavailable).
	Unavailable func(err error) (known, unavailable bool)
	// Unique reports whether err is a unique constraint's refusal.
	Unique func(err error) bool
	// ForeignKey reports whether err is a foreign key's refusal of a row
	// that names one not there.
	ForeignKey func(err error) bool
	// LockTimeout reports whether err is a statement's refusal to wait
	// longer for a lock (migrationLockWait); nil: the dialect has none.
	LockTimeout func(err error) bool
	// Migrations holds NNNN_name.sql files, the same versions for every
	// dialect. MySQL's are run statement by statement, so each is a list of
	// statements ended by ";" at the end of a line (statements); the
	// others run each file as one text.
	Migrations fs.FS
}

// DB is a handle on the database. For SQLite it holds two pools: one writer
// connection (SQLite allows one writer at a time; BEGIN IMMEDIATE makes a
// transaction take the write lock up front instead of failing on upgrade) and
// read-only readers, which WAL lets run beside the writer. For PostgreSQL and
// MySQL both are the same pool.
type DB struct {
	dialect string
	w, r    *sql.DB
	driver  *Driver // the dialect's: its errors and its migrations

	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// ParseURL reads DATABASE_URL: "postgres://" or "postgresql://" URLs are
// PostgreSQL, "mysql://" URLs MySQL; a plain path, a "sqlite://" URL or a
// "file:" URL is SQLite. It returns the dialect and the PostgreSQL or MySQL
// URL or the SQLite file path.
func ParseURL(raw string) (dialect, target string, err error) {
	switch {
	case raw == "":
		return "", "", errors.New("empty database URL")
	case strings.ContainsAny(raw, "\x00\r\n"):
		return "", "", errors.New("control character in database URL")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"), strings.HasPrefix(raw, "mysql://"):
		dialect = Postgres
		if strings.HasPrefix(raw, "mysql://") {
			dialect = MySQL
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("malformed %s URL", dialect) // the text may hold a password: do not echo it
		}
		if u.Host == "" {
			return "", "", fmt.Errorf("%s URL without a host", dialect)
		}
		if dialect == MySQL && (strings.Trim(u.Path, "/") == "" || strings.Contains(strings.Trim(u.Path, "/"), "/")) {
			return "", "", errors.New("mysql URL must name one database: mysql://user:pass@host:3306/db")
		}
		return dialect, raw, nil
	case strings.HasPrefix(raw, "sqlite://"):
		target = strings.TrimPrefix(raw, "sqlite://")
	case strings.HasPrefix(raw, "file:"):
		target = strings.TrimPrefix(strings.TrimPrefix(raw, "file:"), "//")
	case strings.Contains(raw, "://"):
		return "", "", errors.New("unsupported database URL scheme (want postgres://, mysql://, sqlite:// or a file path)")
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
	// Each driver is in a file of its own (sqlite.go, postgres.go), so a
	// lean build can leave one out (-tags nosqlite, nopostgres: nil then);
	// MySQL's is in another module, nil without it.
	drivers := map[string]*Driver{SQLite: sqliteDriver, Postgres: postgresDriver, MySQL: o.MySQL}
	if drivers[dialect] == nil {
		refusal := map[string]string{
			SQLite:   "this oauth2-api was built without SQLite (-tags nosqlite): set DATABASE_URL to a postgres:// URL",
			Postgres: "this oauth2-api was built without PostgreSQL (-tags nopostgres): set DATABASE_URL to a SQLite path",
			MySQL:    "this oauth2-api was built without MySQL: use oauth2-api-mysql (make build-mysql)",
		}
		// ErrBadURL: no retry or restart helps (exit 2, which systemd does not restart).
		return nil, fmt.Errorf("%w: %s", ErrBadURL, refusal[dialect])
	}
	db := &DB{dialect: dialect, driver: drivers[dialect], stmts: make(map[stmtKey]*sql.Stmt)}
	if db.w, db.r, err = db.driver.Open(ctx, target, o); err != nil {
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// embedded returns the dialect's embedded migrations (a constant
// directory: fs.Sub cannot fail).
func embedded(dialect string) fs.FS {
	sub, _ := fs.Sub(migrations, path.Join("migrations", dialect))
	return sub
}

func pingWithin(ctx context.Context, p *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	return p.PingContext(ctx)
}

// Dialect returns SQLite, Postgres or MySQL.
func (db *DB) Dialect() string { return db.dialect }

// Ping checks that the database answers, within OpTimeout.
func (db *DB) Ping(ctx context.Context) error {
	err := pingWithin(ctx, db.r)
	if err == nil && db.w != db.r {
		err = pingWithin(ctx, db.w)
	}
	if err != nil {
		return fmt.Errorf("%w: ping: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes every connection.
func (db *DB) Close() error {
	db.mu.Lock()
	stmts := db.stmts
	db.stmts = nil
	db.mu.Unlock()
	for _, s := range stmts { // outside db.mu: see stmt
		s.Close()
	}
	err := db.w.Close()
	if db.r != db.w {
		err = errors.Join(err, db.r.Close())
	}
	return err
}

// stmt returns a prepared statement for query on pool, preparing it once.
// database/sql re-prepares it on each connection as needed.
//
// db.mu is never held across a call into database/sql: closing a
// statement waits for the connection it was prepared on to finish its
// statement, which may be waiting in the database for a lock held by a
// transaction whose next statement waits for db.mu (txn calls hot). A
// pool wait cycle that the database's deadlock detector cannot see: every
// request on it stalls until OpTimeout.
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
	old, dup := db.stmts[k]
	closed := db.stmts == nil
	if !closed && !dup {
		db.stmts[k] = s
	}
	db.mu.Unlock()
	switch {
	case closed:
		s.Close()
		return nil, errors.New("database closed")
	case dup: // a concurrent call prepared it first
		s.Close()
		return old, nil
	}
	return s, nil
}

// hot returns the writer's statement prepareHot prepared for query (as
// bound), or nil.
func (db *DB) hot(query string) *sql.Stmt {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.stmts[stmtKey{db.w, query}]
}

// hotTx are the statements of the hottest write transactions: refresh
// rotation's (RotateRefresh) and, on MySQL, a DPoP proof's (SpendProof).
// MySQL's driver would otherwise prepare, run and close each one: three
// round trips for one.
var hotTx = map[string][]string{
	SQLite: {qSpendSQLite, qFamilyOwner, qInsertRefresh},
	MySQL:  {qSpend, qSpentMySQL, qFamilyOwner, qInsertRefresh, qDropProof, qInsertProof},
}

// prepareHot prepares hotTx on the writer pool, outside any transaction
// (PostgreSQL runs rotation as one statement; pgx caches those).
func (db *DB) prepareHot(ctx context.Context) error {
	for _, q := range hotTx[db.dialect] {
		q, _ = positional(db.dialect, q)
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
	query, args = db.bind(query, args)
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
	if r.cancel != nil {
		defer r.cancel()
	}
	return r.r.Scan(dest...)
}

// exec runs a write on the writer and returns none when it matched no row
// (nil for a caller that does not ask); with an event in ctx, in a
// transaction that appends it.
func (db *DB) exec(ctx context.Context, none error, query string, args ...any) error {
	if pendingEvent(ctx) != nil {
		return db.tx(ctx, func(tx *txn) error { return tx.execOr(ctx, none, query, args...) })
	}
	n, err := db.written(ctx, query, args...)
	if err == nil && n == 0 {
		return none
	}
	return err
}

// written runs a write on the writer, as a statement of its own (no audit
// event), and returns how many rows it wrote.
func (db *DB) written(ctx context.Context, query string, args ...any) (int64, error) {
	query, args = db.bind(query, args)
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
func (db *DB) tx(ctx context.Context, fn func(*txn) error) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	return db.txOn(ctx, db.w, fn)
}

// errNoChange, from a transaction's fn, ends it as a success that changed
// nothing and appends no audit event: what it was to end had ended
// already (a repeated revocation or logout). Each repeat appended an event,
// kept for a year and taking audit_head's lock, which serialises every
// audited write on every instance: a client could add them by the million.
var errNoChange = errors.New("no change")

// txOn is tx on pool: the writer, or a migration's (underMigrationLock).
// The caller bounds ctx.
func (db *DB) txOn(ctx context.Context, pool beginner, fn func(*txn) error) error {
	sqlTx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := &txn{Tx: sqlTx, db: db, ctx: ctx}
	defer t.Rollback() // after a Commit, a no-op; after an error or a panic in fn, the undo
	if err := fn(t); errors.Is(err, errNoChange) {
		return nil
	} else if err != nil {
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
	if err != nil && ctx.Err() != nil {
		// The deadline passed after the last statement: database/sql rolled
		// back, and Commit says only sql.ErrTxDone. It is the timeout (503).
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// wrap turns a driver error into one of the package's sentinels, keeping the
// original for logs, and prefixes what was being done. A failure of the
// database itself (unreachable, timed out, busy, shutting down) wraps
// ErrUnavailable, which clients see as 503 and may retry; anything else
// (a constraint, a syntax error: a bug) stays an internal error, which
// they see as 500: a bug must not pass for an outage. A foreign key's
// refusal is ErrNotFound: what the row names is gone.
func (db *DB) wrap(errp *error, op string) {
	err := *errp
	switch {
	case err == nil:
		return
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrUnavailable), errors.Is(err, ErrReused), errors.Is(err, ErrLimited), errors.Is(err, ErrNotAdmin):
		*errp = fmt.Errorf("store: %s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		*errp = fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case db.driver.Unique(err):
		*errp = fmt.Errorf("store: %s: %w", op, ErrConflict)
	case db.driver.ForeignKey(err):
		// A row naming a client deleted meanwhile (on another instance,
		// whose deletion this one's client cache has not heard of yet).
		// No parent row is ever deleted while rows refer to it: each
		// reference is ON DELETE CASCADE, and users are only marked deleted.
		*errp = fmt.Errorf("store: %s: %w: %w", op, ErrNotFound, err)
	case db.unavailable(err):
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
func (db *DB) unavailable(err error) bool {
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &netErr) {
		return true
	}
	if known, unavailable := db.driver.Unavailable(err); known {
		return unavailable
	}
	// database/sql's own "sql: database is closed" has no sentinel; pgx
	// says "conn closed" when the server went away between statements.
	msg := err.Error()
	return strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "conn closed")
}

// storable reports whether s is text a row can hold on both backends: valid
// UTF-8 without NUL. PostgreSQL refuses any other value outright (SQLSTATE
// 22021), which would surface as an internal error and a 500 for what is
// only a client's bad input; a lookup by such a value finds nothing, so callers
// answer ErrNotFound without asking the database.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// Migration is one embedded migration file, or one applied that this build
// does not know (Unknown).
type Migration struct {
	Version   string // file name without ".sql", e.g. "0001_users"
	AppliedAt time.Time
	Applied   bool
	// Unknown: applied, but not one of this build's: a newer release
	// migrated the database, and this one is older (a rollback, or the old
	// instances of a rolling upgrade). It works on that schema (each
	// release's migrations keep the one before working), and says so.
	Unknown bool
}

func (db *DB) migrationFiles() ([]string, error) {
	names, err := fs.Glob(db.driver.Migrations, "*.sql")
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
// held by each migration's transaction, SQLite on its write lock, MySQL on a
// named lock held by one connection for the whole run (lockMySQL).
func (db *DB) Migrate(ctx context.Context, now time.Time) (applied []string, err error) {
	defer db.wrap(&err, "migrate")
	var pool beginner = db.w
	if db.dialect == MySQL {
		c, err := db.lockMySQL(ctx)
		if err != nil {
			return nil, err
		}
		defer db.unlockMySQL(c)
		pool = c
	}
	if err := db.createMigrationsTable(ctx, pool); err != nil {
		return nil, err
	}
	files, err := db.migrationFiles()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		version := strings.TrimSuffix(path.Base(f), ".sql")
		body, err := fs.ReadFile(db.driver.Migrations, f)
		if err != nil {
			return nil, err
		}
		did := false
		err = db.migrateOne(ctx, pool, version, string(body), now, &did)
		if err != nil {
			return applied, fmt.Errorf("%s: %w", version, err)
		}
		if did {
			applied = append(applied, version)
		}
	}
	return applied, db.prepareHot(ctx)
}

// createMigrationsTable creates schema_migrations if it is missing, under
// the migration lock: on PostgreSQL, CREATE TABLE IF NOT EXISTS is not safe
// against a twin running at the same moment (it fails with 23505, 42P07 or
// 42710 depending on timing).
func (db *DB) createMigrationsTable(ctx context.Context, pool beginner) error {
	version := "TEXT"
	if db.dialect == MySQL {
		version = "VARCHAR(255)" // a MySQL key cannot be TEXT
	}
	return db.underMigrationLock(ctx, pool, func(t *txn) error {
		_, err := t.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version `+version+` PRIMARY KEY,
	applied_at BIGINT NOT NULL)`)
		return err
	})
}

// mysqlLock is the name of the lock that serialises migrations on a MySQL
// database. MySQL's named locks are the server's, not a database's: the
// name holds the database's, so that databases on one server migrate
// independently (a name is at most 64 characters).
const mysqlLock = `CONCAT('oauth2-api migrate ', LEFT(DATABASE(), 40))`

// lockMySQL takes the migration lock on a connection of its own and returns
// that connection, which must run the migrations and unlockMySQL. MySQL
// commits before and after each DDL statement, so no transaction can hold a
// lock across a migration as PostgreSQL's does: the lock is the session's.
// It waits up to a minute for another instance's migrations.
func (db *DB) lockMySQL(ctx context.Context) (*sql.Conn, error) {
	c, err := db.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, `SELECT GET_LOCK(`+mysqlLock+`, 60)`).Scan(&got); err != nil {
		c.Close()
		return nil, err
	}
	if got.Int64 != 1 {
		c.Close()
		return nil, fmt.Errorf("%w: another instance held the migration lock for a minute", ErrUnavailable)
	}
	// A table's metadata lock, which an ALTER waits for behind any open
	// transaction that read the table while every later statement on it
	// waits behind the ALTER, is waited for migrationLockWait at most (see
	// underMigrationLock). Set after GET_LOCK, which has its own wait.
	if _, err := c.ExecContext(ctx, fmt.Sprintf(`SET SESSION lock_wait_timeout = %d`, int(migrationLockWait/time.Second))); err != nil {
		db.unlockMySQL(c)
		return nil, err
	}
	return c, nil
}

// unlockMySQL releases the lock and the connection, which goes back to the
// pool with the server's lock_wait_timeout again; closing a connection
// releases its locks too, should the statement fail.
func (db *DB) unlockMySQL(c *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	c.ExecContext(ctx, `DO RELEASE_LOCK(`+mysqlLock+`)`)
	c.ExecContext(ctx, `SET SESSION lock_wait_timeout = DEFAULT`)
	c.Close()
}

// beginner is where migrations run: the writer pool, or on MySQL the
// connection that holds the migration lock (lockMySQL).
type beginner interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}

// migrationLockWait is the longest a migration's statement waits for a
// table's lock, and the pause before it tries again. While a DDL statement
// waits for its lock (behind an open transaction that read the table: a
// pg_dump, a long report), every later statement on the table waits behind
// it: every instance's logins and refreshes, for as long as it waits.
const migrationLockWait = 2 * time.Second

// underMigrationLock runs fn in a transaction on pool holding the migration
// lock, committing if fn returns nil. On MySQL pool is the connection that
// holds the lock already (lockMySQL). It appends no audit event. A
// statement that waited migrationLockWait for a table's lock fails, and fn
// runs again after as long a pause, within a minute: traffic waits ~2 s at
// a time, not the minute, and one long reader does not fail the deploy.
func (db *DB) underMigrationLock(ctx context.Context, pool beginner, fn func(*txn) error) error {
	ctx, cancel := context.WithTimeout(withoutEvent(ctx), time.Minute)
	defer cancel()
	for {
		err := db.txOn(ctx, pool, func(t *txn) error {
			// On PostgreSQL, the advisory lock that serialises migrations across
			// instances, held until t ends, then the bound on every later lock's
			// wait (not the advisory lock's: another instance's migrations may
			// take their time). On SQLite the writer's BEGIN IMMEDIATE already
			// serialises them; MySQL's bound is its session's (lockMySQL).
			if db.dialect == Postgres {
				h := fnv.New64a()
				h.Write([]byte("oauth2-api schema_migrations"))
				if _, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
					return err
				}
				if _, err := t.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, migrationLockWait.Milliseconds())); err != nil {
					return err
				}
			}
			return fn(t)
		})
		if err == nil || db.driver.LockTimeout == nil || !db.driver.LockTimeout(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(migrationLockWait):
		}
	}
}

func (db *DB) migrateOne(ctx context.Context, pool beginner, version, body string, now time.Time, did *bool) error {
	return db.underMigrationLock(ctx, pool, func(t *txn) error {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		// MySQL's driver runs one statement at a time, and each DDL
		// statement commits: a migration is recorded only once all its
		// statements succeeded, and each is written to be run again
		// (IF NOT EXISTS) should an earlier try have stopped half way.
		for _, s := range db.statements(body) {
			if _, err := t.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, now.Unix()); err != nil {
			return err
		}
		*did = true
		return nil
	})
}

// tableExists counts the tables named $1 in the current schema.
var tableExists = map[string]string{
	SQLite:   `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1`,
	Postgres: `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`,
	MySQL:    `SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = $1`,
}

// Migrations lists every embedded migration and whether it is applied,
// then those applied that this build does not know (Unknown).
func (db *DB) Migrations(ctx context.Context) (list []Migration, err error) {
	defer db.wrap(&err, "migration status")
	files, err := db.migrationFiles()
	if err != nil {
		return nil, err
	}
	var applied []Migration
	// A database never migrated has no schema_migrations: nothing applied.
	// Any other failure (the database away) is an error, not "pending".
	var tables int
	if err := db.queryRow(ctx, tableExists[db.dialect], "schema_migrations").Scan(&tables); err != nil {
		return nil, err
	}
	if tables > 0 {
		applied, err = readAll(ctx, db, func(s scanner) (*Migration, error) {
			m := Migration{Applied: true, Unknown: true} // until found among the files
			if err := s.Scan(&m.Version, unix{&m.AppliedAt}); err != nil {
				return nil, err
			}
			return &m, nil
		}, `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
		if err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		m := Migration{Version: strings.TrimSuffix(path.Base(f), ".sql")}
		if i := slices.IndexFunc(applied, func(a Migration) bool { return a.Version == m.Version }); i >= 0 {
			applied[i].Unknown = false
			m = applied[i]
		}
		list = append(list, m)
	}
	for _, m := range applied {
		if m.Unknown {
			list = append(list, m)
		}
	}
	return list, nil
}
