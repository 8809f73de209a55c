package store_test

import (
	"net/url"
	"strings"
	"testing"

	"oauth2-api/store"
)

// FuzzParseURL: DATABASE_URL parsing never panics; a SQLite target is a
// path (no control character; from a URL form, no query or fragment, so no
// pragma can be smuggled in: Open escapes the path), and a PostgreSQL URL is
// returned unchanged with a host.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"oauth.db", "/var/lib/x.db", "sqlite:///a.db", "file:a.db", "file:a.db?_pragma=x",
		"postgres://u:p@h:5432/d?sslmode=disable", "postgresql://h/d", "postgres://", "mysql://x", "mysql://u:p@h:3306/db", "mysql://h/a/b", "a\x00b", "dir/", "sqlite://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		dialect, target, err := store.ParseURL(raw)
		if err != nil {
			if dialect != "" || target != "" {
				t.Fatalf("ParseURL(%q) failed with results %q %q", raw, dialect, target)
			}
			// The errors are constant texts; the one "@" they may hold is
			// the example of the mysql form.
			if strings.Contains(strings.ReplaceAll(err.Error(), "user:pass@host", ""), "@") && strings.Contains(raw, "@") {
				t.Fatalf("error %q may echo credentials", err)
			}
			return
		}
		switch dialect {
		case store.SQLite:
			// A plain path is taken as it is ('?' and '#' are legal in
			// file names); a URL form may not carry a query or fragment.
			if target == "" || strings.ContainsAny(target, "\x00\r\n") || strings.HasSuffix(target, "/") ||
				(target != raw && strings.ContainsAny(target, "?#")) || (target == raw && strings.Contains(raw, "://")) {
				t.Fatalf("ParseURL(%q) = sqlite %q", raw, target)
			}
		case store.Postgres:
			u, err := url.Parse(target)
			if target != raw || err != nil || u.Host == "" {
				t.Fatalf("ParseURL(%q) = postgres %q", raw, target)
			}
		case store.MySQL:
			// One database named, on a host.
			u, err := url.Parse(target)
			if target != raw || err != nil || u.Host == "" || !strings.HasPrefix(raw, "mysql://") {
				t.Fatalf("ParseURL(%q) = mysql %q", raw, target)
			}
			if db := strings.Trim(u.Path, "/"); db == "" || strings.Contains(db, "/") {
				t.Fatalf("ParseURL(%q) = mysql, naming database %q", raw, db)
			}
		default:
			t.Fatalf("ParseURL(%q) dialect %q", raw, dialect)
		}
	})
}
