package mysql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"oauth2-api/store"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		in             string
		addr, user, db string
		tls            string
		bad            bool
	}{
		{in: "mysql://app:s3cret@db:3306/oauth", addr: "db:3306", user: "app", db: "oauth"},
		{in: "mysql://app@db/oauth", addr: "db:3306", user: "app", db: "oauth"},
		{in: "mysql://app:s3cret@[::1]:3307/oauth?tls=true", addr: "[::1]:3307", user: "app", db: "oauth", tls: "true"},
		{in: "mysql://app:s3cret@db/oauth?tls=skip-verify", addr: "db:3306", user: "app", db: "oauth", tls: "skip-verify"},
		{in: "mysql://app:s3cret@db/oauth?tls=maybe", bad: true},
		{in: "mysql://app:s3cret@db/oauth?multiStatements=true", bad: true},
		{in: "mysql://app:s3cret@db/oauth?parseTime=true", bad: true},
		{in: "mysql://app:s3cret@db/oauth?interpolateParams=true", bad: true},
		{in: "postgres://app:s3cret@db/oauth", bad: true},
		{in: "mysql://app:s3cret@[::1/oauth", bad: true},
	} {
		cfg, err := config(tc.in)
		if tc.bad {
			if !errors.Is(err, store.ErrBadURL) { // main: exit 2, not retried as a database down
				t.Errorf("config(%q) = %+v, %v; want ErrBadURL", tc.in, cfg, err)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("config(%q) error %q holds the password", tc.in, err)
			}
			continue
		}
		if err != nil || cfg.Addr != tc.addr || cfg.User != tc.user || cfg.DBName != tc.db || cfg.TLSConfig != tc.tls {
			t.Errorf("config(%q) = %+v, %v; want %s %s %s tls=%q", tc.in, cfg, err, tc.addr, tc.user, tc.db, tc.tls)
			continue
		}
		// What the server relies on, whatever the URL says.
		if cfg.ParseTime || !cfg.ClientFoundRows || cfg.InterpolateParams || cfg.MultiStatements || cfg.Collation != "utf8mb4_bin" {
			t.Errorf("config(%q) = %+v; want parseTime off, clientFoundRows on, no interpolation, one statement at a time, utf8mb4_bin", tc.in, cfg)
		}
	}
}

// A server that is not there is ErrUnavailable (503, retry), within the
// connect timeout, and the password is in no error.
func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = store.Open(context.Background(), "mysql://app:s3cret@"+addr+"/oauth", store.Options{MySQL: Driver})
	if !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open(unreachable) = %v; want ErrUnavailable without the password", err)
	}
	if took := time.Since(start); took > 2*store.OpTimeout {
		t.Errorf("Open(unreachable) took %v", took)
	}
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		err                error
		known, unavailable bool
		unique             bool
	}{
		{err: &gomysql.MySQLError{Number: 1062, SQLState: [5]byte{'2', '3', '0', '0', '0'}}, known: true, unique: true},
		{err: &gomysql.MySQLError{Number: 1213, SQLState: [5]byte{'4', '0', '0', '0', '1'}}, known: true, unavailable: true},
		{err: &gomysql.MySQLError{Number: 1205, SQLState: [5]byte{'H', 'Y', '0', '0', '0'}}, known: true, unavailable: true},
		{err: &gomysql.MySQLError{Number: 1461, SQLState: [5]byte{'4', '2', '0', '0', '0'}}, known: true, unavailable: true},
		{err: &gomysql.MySQLError{Number: 1064, SQLState: [5]byte{'4', '2', '0', '0', '0'}}, known: true}, // a syntax error: a bug, 500
		{err: &gomysql.MySQLError{Number: 1406, SQLState: [5]byte{'2', '2', '0', '0', '1'}}, known: true}, // too long for its column
		{err: fmt.Errorf("exec: %w", gomysql.ErrInvalidConn), known: true, unavailable: true},
		{err: errors.New("something else")},
	} {
		known, unavail := unavailable(tc.err)
		if known != tc.known || unavail != tc.unavailable || unique(tc.err) != tc.unique {
			t.Errorf("%v: known %v, unavailable %v, unique %v; want %v, %v, %v", tc.err, known, unavail, unique(tc.err), tc.known, tc.unavailable, tc.unique)
		}
	}
}
