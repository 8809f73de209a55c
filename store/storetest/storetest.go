// Package storetest opens real, migrated databases for tests: a SQLite file in
// a temporary directory, a fresh schema on the PostgreSQL server named by
// TEST_POSTGRES_URL and, when the suites run from the nested module mysql/
// (mysql/test.sh), a fresh database on the MySQL server named by
// TEST_MYSQL_URL. Without its variable a server's tests skip, except when
// CI is set: there a missing or unreachable database fails the test.
//
// # Security
//
// Test support only: imported by _test files, never by the server, and
// excluded from its line count. Each test gets a fresh schema, dropped
// when it ends.
package storetest

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Dialects lists the backends every store-level suite runs on: those this
// build has (dialects*.go: a lean build, -tags nosqlite or nopostgres, runs
// the suites on the other), or MySQL alone when the suites run with its
// driver (nomysql.go: mysql/test.sh, after make test has run them on
// SQLite and PostgreSQL).
var Dialects = withMySQL(dialects)

func withMySQL(d []string) []string {
	if mysqlDriver == nil {
		return d
	}
	return []string{store.MySQL}
}

// Options returns store options for a database from URL: the MySQL driver
// when the suites have one.
func Options() store.Options { return store.Options{MySQL: mysqlDriver} }

// URL returns a DATABASE_URL for a fresh, empty database of the dialect,
// removed when the test ends: a file in a temporary directory (SQLite), or
// on the server at TEST_POSTGRES_URL or TEST_MYSQL_URL a schema
// (PostgreSQL) or a database beside the one the URL names (MySQL). A
// dialect this build lacks skips the test.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	// A lean build (-tags nosqlite, nopostgres) has no driver for the
	// other dialect, and mysql/test.sh runs the suites for MySQL alone: a
	// test that names another skips there, even in CI.
	if !slices.Contains(Dialects, dialect) {
		t.Skipf("%s is not among this run's dialects %v", dialect, Dialects)
	}
	if dialect == store.SQLite {
		return filepath.Join(t.TempDir(), "oauth.db")
	}
	env := "TEST_POSTGRES_URL"
	if dialect == store.MySQL {
		env = "TEST_MYSQL_URL"
	}
	base := os.Getenv(env)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s unset but CI is set: %s tests must run in CI", env, dialect)
		}
		t.Skipf("%s unset: skipping %s", env, dialect)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	name := "t_" + token.Hash(token.NewOpaque())[:16]
	create, drop := "CREATE SCHEMA "+name, "DROP SCHEMA "+name+" CASCADE"
	if dialect == store.MySQL {
		create, drop = "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "DROP DATABASE "+name
		u.Path = "/" + name
	} else {
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
	}
	if err := exec(dialect, base, create); err != nil {
		t.Fatalf("%s at %s unreachable: %v", dialect, env, err)
	}
	t.Cleanup(func() { exec(dialect, base, drop) })
	return u.String()
}

// Open returns a migrated store on a fresh database of the dialect.
func Open(t testing.TB, dialect string) *store.DB {
	t.Helper()
	return OpenURL(t, URL(t, dialect))
}

// Each runs f as a subtest on every dialect.
func Each(t *testing.T, f func(t *testing.T, db *store.DB)) {
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) { f(t, Open(t, d)) })
	}
}

// OpenURL returns a migrated store on rawURL (from URL).
func OpenURL(t testing.TB, rawURL string) *store.DB {
	t.Helper()
	o := Options()
	o.MaxOpenConns = 20
	db, err := store.Open(context.Background(), rawURL, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background(), time.Now()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// Servers lists the dialects of Dialects reached over the network
// (PostgreSQL, MySQL): those whose database a Proxy can cut.
func Servers() []string {
	return slices.DeleteFunc(slices.Clone(Dialects), func(d string) bool { return d == store.SQLite })
}

// OpenViaProxy returns a migrated store on a fresh database of dialect (one
// of Servers) reached through a Proxy the test can cut.
func OpenViaProxy(t testing.TB, dialect string) (*store.DB, *Proxy) {
	t.Helper()
	p, via := NewProxy(t, URL(t, dialect))
	return OpenURL(t, via), p
}

// Raw returns a plain pool on the database at rawURL (from URL), beside
// store's, for a test to read or break what store wrote. Its statements
// take the driver's own placeholders.
func Raw(t testing.TB, dialect, rawURL string) *sql.DB {
	t.Helper()
	raw, err := open(dialect, rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// open returns a plain pool on rawURL, with the dialect's driver.
func open(dialect, rawURL string) (*sql.DB, error) {
	switch dialect {
	case store.SQLite:
		return sql.Open("sqlite", rawURL)
	case store.MySQL:
		p, _, err := mysqlDriver.Open(context.Background(), rawURL, store.Options{})
		return p, err
	}
	return sql.Open("pgx", rawURL)
}

// exec runs stmt on a pool of its own on the server at rawURL, bounded by
// a deadline so that a server that does not answer fails the test.
func exec(dialect, rawURL, stmt string) error {
	db, err := open(dialect, rawURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}
