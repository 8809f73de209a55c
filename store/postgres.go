//go:build !nopostgres

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// postgresDriver opens PostgreSQL pools (openPostgres).
var postgresDriver = &Driver{Open: openPostgres, Unavailable: postgresUnavailable, Unique: postgresUnique,
	ForeignKey: postgresForeignKey, LockTimeout: postgresLockTimeout, Migrations: embedded(Postgres)}

// openPostgres opens a pool on the PostgreSQL URL (ParseURL checked it),
// with a connect timeout so that a dead server cannot hang a request.
func openPostgres(_ context.Context, target string, o Options) (w, r *sql.DB, err error) {
	u, _ := url.Parse(target)
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
	}
	// sql.Open parses nothing (each connection does): parse now, so that a
	// bad setting is said at once and not retried as an unreachable
	// database. pgconn's text masks the password, in the user info and
	// the query (the URL parsed: it knows where they are).
	if _, err := pgconn.ParseConfig(u.String()); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	p, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, nil, errors.New("open postgres: bad connection settings") // the URL may hold a password: not echoed
	}
	p.SetMaxOpenConns(o.MaxOpenConns)
	p.SetMaxIdleConns(o.MaxIdleConns)
	p.SetConnMaxLifetime(o.ConnMaxLifetime)
	return p, p, nil
}

// postgresUnavailable: the connection failed or was lost, the statement
// timed out or waited too long for a lock, or the server is shutting down,
// out of resources or asks for a retry (serialization failure, deadlock).
func postgresUnavailable(err error) (known, unavailable bool) {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) || postgresLockTimeout(err) {
		return true, true
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false, false
	}
	switch pg.Code {
	case "25P03", "25P04", // idle-in-transaction, transaction timeout: a late COMMIT refused (TxIdleTimeout)
		"25006": // read_only_sql_transaction: a write to a standby, during a failover (MySQL's 1290, SQLite's READONLY)
		return true, true
	}
	switch pg.Code[:2] {
	case "08", "40", "53", "57", "58": // connection, rollback (retry), resources, operator, system
		return true, true
	}
	return true, false
}

func postgresLockTimeout(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "55P03" // lock_not_available (lock_timeout)
}

func postgresUnique(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505" // unique_violation
}

func postgresForeignKey(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23503" // foreign_key_violation
}
