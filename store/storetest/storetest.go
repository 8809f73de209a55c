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
// the suites on the other), and MySQL when the suites run with its driver
// (nomysql.go).
var Dialects = withMySQL(dialects)

func withMySQL(d []string) []string {
	if mysqlDriver == nil {
		return d
	}
	return append(d[:len(d):len(d)], store.MySQL)
}

// Options returns store options for a database from URL: the MySQL driver
// when the suites have one.
func Options() store.Options { return store.Options{MySQL: mysqlDriver} }

// URL returns a DATABASE_URL for a fresh, empty database of the dialect,
// removed when the test ends.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == store.SQLite {
		return filepath.Join(t.TempDir(), "oauth.db")
	}
	if dialect == store.MySQL {
		return mysqlURL(t)
	}
	base := os.Getenv("TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_POSTGRES_URL unset but CI is set: PostgreSQL tests must run in CI")
		}
		t.Skip("TEST_POSTGRES_URL unset: skipping PostgreSQL")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := "t_" + token.Hash(token.NewOpaque())[:16]
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL at TEST_POSTGRES_URL unreachable: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
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
	raw := URL(t, dialect)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(t, u.Host)
	return OpenURL(t, p.Via(t, raw)), p
}

// mysqlURL returns the URL of a fresh database on the MySQL server named by
// TEST_MYSQL_URL (mysql://user:pass@host:3306/db, an existing database the
// user may create others beside), dropped when the test ends.
func mysqlURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_MYSQL_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_MYSQL_URL unset but CI is set: MySQL tests must run in CI")
		}
		t.Skip("TEST_MYSQL_URL unset: skipping MySQL")
	}
	name := "t_" + token.Hash(token.NewOpaque())[:16]
	admin := func(stmt string) error {
		p, err := mysqlDriver.Open(base, store.Options{MaxOpenConns: 1})
		if err != nil {
			return err
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = p.ExecContext(ctx, stmt)
		return err
	}
	if err := admin("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("MySQL at TEST_MYSQL_URL unreachable: %v", err)
	}
	t.Cleanup(func() { admin("DROP DATABASE " + name) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_MYSQL_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Raw returns a plain pool on the database at rawURL (from URL), beside
// store's, for a test to read or break what store wrote. Its statements
// take the driver's own placeholders.
func Raw(t testing.TB, dialect, rawURL string) *sql.DB {
	t.Helper()
	var raw *sql.DB
	var err error
	switch dialect {
	case store.SQLite:
		raw, err = sql.Open("sqlite", rawURL)
	case store.Postgres:
		raw, err = sql.Open("pgx", rawURL)
	case store.MySQL:
		raw, err = mysqlDriver.Open(rawURL, store.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}
