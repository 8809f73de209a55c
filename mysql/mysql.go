// Package mysql is what oauth2-api needs of MySQL 8 and MariaDB 10.11+ that
// is not in the root module: the driver (github.com/go-sql-driver/mysql),
// its connection settings, the meaning of its errors, and the migrations.
// The statements are store's, written once for every dialect; Driver hands
// the rest to store.Open (store.Options.MySQL). oauth2-api-mysql is the root
// main package built from this module with overlay.json, which replaces the
// root's nomysql.go with _overlay/mysql_main.go (see the Makefile's
// build-mysql): the root module never imports this one.
//
// # Security
//
// Every statement is prepared on the server and binds its values
// (interpolateParams stays off) and is sent alone (multiStatements stays
// off). Connections run in strict SQL mode, so a value that does not fit is
// an error, never silently cut; tables compare text byte for byte
// (utf8mb4_bin). The URL's password is never in an error, and the driver's
// own log, which would go to stderr outside the server's JSON log, is off:
// what it would say comes back as the error.
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"oauth2-api/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationFiles is migrations/ (a constant directory: fs.Sub cannot fail).
var migrationFiles, _ = fs.Sub(migrations, "migrations")

// Driver is the store.Driver for mysql:// URLs.
var Driver = &store.Driver{Open: Open, Unavailable: unavailable, Unique: unique, ForeignKey: foreignKey, LockTimeout: lockTimeout, Migrations: migrationFiles}

// Open returns a pool on rawURL, mysql://user:pass@host:3306/db (the port
// defaults to 3306), as both the writer's and the readers'. The one
// parameter it takes is tls (true, false, skip-verify or preferred, as the
// driver reads them); the server sets everything else itself.
func Open(_ context.Context, rawURL string, o store.Options) (w, r *sql.DB, err error) {
	cfg, err := config(rawURL)
	if err != nil {
		return nil, nil, err
	}
	c, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bad connection settings", store.ErrBadURL) // the error may quote the password: not echoed
	}
	p := sql.OpenDB(session{c})
	p.SetMaxOpenConns(o.MaxOpenConns)
	p.SetMaxIdleConns(o.MaxIdleConns)
	p.SetConnMaxLifetime(o.ConnMaxLifetime)
	return p, p, nil
}

func config(rawURL string) (*gomysql.Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return nil, fmt.Errorf("%w: want mysql://user:pass@host:3306/db", store.ErrBadURL) // the text may hold a password: not echoed
	}
	cfg := gomysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net, cfg.Addr = "tcp", u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = strings.Trim(u.Path, "/")
	for k, v := range u.Query() {
		switch {
		case k == "tls" && len(v) == 1 && (v[0] == "true" || v[0] == "false" || v[0] == "skip-verify" || v[0] == "preferred"):
			cfg.TLSConfig = v[0]
		case k == "tls":
			return nil, fmt.Errorf("%w: tls must be true, false, skip-verify or preferred", store.ErrBadURL)
		default:
			return nil, fmt.Errorf("%w: unknown parameter %q (tls is the only one: the server sets the others itself)", store.ErrBadURL, k)
		}
	}
	// Times are BIGINT Unix seconds everywhere: the driver parses none.
	cfg.ParseTime = false
	// RowsAffected counts the rows an UPDATE matched, as on PostgreSQL and
	// SQLite, not only those whose values changed: store reads it as "found".
	cfg.ClientFoundRows = true
	cfg.InterpolateParams, cfg.MultiStatements = false, false
	cfg.Collation = "utf8mb4_bin"
	// A dead server is an error within seconds: store bounds every
	// statement with a context deadline, which the driver honours by
	// closing the connection. The read and write timeouts only catch what
	// has no deadline; they outlast the minute a migration may wait for
	// another instance's (GET_LOCK).
	cfg.Timeout = 5 * time.Second
	cfg.ReadTimeout, cfg.WriteTimeout = 90*time.Second, 90*time.Second
	cfg.Logger = &gomysql.NopLogger{}
	return cfg, nil
}

// session makes each new connection ready before its first statement.
type session struct{ driver.Connector }

// sessionSettings: strict mode (a value that does not fit, a zero date or
// a division by zero is an error); READ COMMITTED, PostgreSQL's default,
// which the statements are written for (each sees what committed before
// it; the single-winner writes lock their rows and re-read them, see
// store); a lock wait as long as store's statement deadline, so that
// the server gives up when the client does; and, on MariaDB, a transaction
// whose next statement or COMMIT comes store.TxIdleTimeout late is ended
// and rolled back, so that a revocation commits within the polls' overlap
// or not at all (store's txn.written). Every transaction of ours is bounded
// by OpTimeout anyway (a migration's statements follow each other): only a
// late one is ended. MySQL 8 has no idle_transaction_timeout, and reads
// what /*M! */ holds as a comment.
var sessionSettings = []string{
	`SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'`,
	`SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`,
	fmt.Sprintf(`SET SESSION innodb_lock_wait_timeout = %d /*M!, idle_transaction_timeout = %d */`, int(store.OpTimeout/time.Second), int(store.TxIdleTimeout/time.Second)),
}

func (s session) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := s.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	for _, q := range sessionSettings {
		if _, err := c.(driver.ExecerContext).ExecContext(ctx, q, nil); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// unavailable: the connection failed or was lost, the statement was
// interrupted or waited too long for a lock, the transaction was chosen as
// a deadlock's victim (a retry may succeed), or the server is shutting
// down, read-only, out of connections, memory, disk or prepared statements
// (max_prepared_stmt_count is the server's: each pooled connection of each
// instance holds its own of every statement store prepares).
func unavailable(err error) (known, unavailable bool) {
	for _, e := range []error{gomysql.ErrInvalidConn, gomysql.ErrMalformPkt, gomysql.ErrPktSync, gomysql.ErrPktSyncMul, gomysql.ErrBusyBuffer} {
		if errors.Is(err, e) {
			return true, true
		}
	}
	var my *gomysql.MySQLError
	if !errors.As(err, &my) {
		return false, false
	}
	switch my.Number {
	case 1021, 1037, 1038, 1041, // disk full, out of memory
		1040, 1203, 1226, 1461, // too many connections, or prepared statements
		1053, 1077, 1078, 1079, 1080, 1927, // shutting down, connection killed
		1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161, // the network
		1205, 1213, // lock wait timeout, deadlock
		1290, 1792, 1836, // read-only (a failover, or a READ ONLY transaction: PostgreSQL's 25006)
		1317, 1969, 3024: // query interrupted, over MariaDB's max_statement_time, over MySQL's max_execution_time
		return true, true
	}
	switch string(my.SQLState[:2]) {
	case "08", "40": // connection, rollback (retry): as on PostgreSQL
		return true, true
	}
	return true, false
}

func unique(err error) bool {
	var my *gomysql.MySQLError
	return errors.As(err, &my) && (my.Number == 1062 || my.Number == 1169 || my.Number == 1586) // duplicate entry
}

func foreignKey(err error) bool {
	var my *gomysql.MySQLError
	return errors.As(err, &my) && (my.Number == 1452 || my.Number == 1216) // no referenced row
}

// lockTimeout: a lock waited for longer than lock_wait_timeout (a table's
// metadata lock) or innodb_lock_wait_timeout (a row's).
func lockTimeout(err error) bool {
	var my *gomysql.MySQLError
	return errors.As(err, &my) && my.Number == 1205
}
