package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

var (
	ctx = context.Background()
	t0  = time.Unix(1_800_000_000, 0)
)

const maxAge = 90 * 24 * time.Hour

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, dialect, target string
		bad                 bool
	}{
		{in: "oauth.db", dialect: store.SQLite, target: "oauth.db"},
		{in: "/var/lib/oauth2-api/oauth.db", dialect: store.SQLite, target: "/var/lib/oauth2-api/oauth.db"},
		{in: "sqlite:///data/oauth.db", dialect: store.SQLite, target: "/data/oauth.db"},
		{in: "sqlite://oauth.db", dialect: store.SQLite, target: "oauth.db"},
		{in: "file:oauth.db", dialect: store.SQLite, target: "oauth.db"},
		{in: "file:///data/o.db", dialect: store.SQLite, target: "/data/o.db"},
		{in: "postgres://u:p@db:5432/x?sslmode=disable", dialect: store.Postgres, target: "postgres://u:p@db:5432/x?sslmode=disable"},
		{in: "postgresql://db/x", dialect: store.Postgres, target: "postgresql://db/x"},
		{in: "", bad: true},
		{in: "mysql://u:p@db:3306/x?tls=true", dialect: store.MySQL, target: "mysql://u:p@db:3306/x?tls=true"},
		{in: "mysql://db/x", dialect: store.MySQL, target: "mysql://db/x"},
		{in: "mysql://db", bad: true},
		{in: "mysql://db/x/y", bad: true},
		{in: "mysql:///x", bad: true},
		{in: "ftp://db/x", bad: true},
		{in: "file:o.db?_pragma=foreign_keys(0)", bad: true},
		{in: "sqlite://o.db#x", bad: true},
		{in: "data#1/o?x.db", dialect: store.SQLite, target: "data#1/o?x.db"}, // a plain path is a path
		{in: "postgres://", bad: true},
		{in: "postgres://u:p@[::1/x", bad: true},
		{in: "dir/", bad: true},
		{in: "a\nb", bad: true},
	} {
		d, target, err := store.ParseURL(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseURL(%q) = %q, %q; want error", tc.in, d, target)
			}
			continue
		}
		if err != nil || d != tc.dialect || target != tc.target {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, d, target, err, tc.dialect, tc.target)
		}
	}
}

// A plain path naming a file whose directory and name hold '?' and '#'
// opens that very file: the driver gets them escaped, not as a query.
func TestOpenPathWithURLCharacters(t *testing.T) {
	if !slices.Contains(storetest.Dialects, store.SQLite) {
		t.Skip("built without SQLite")
	}
	dir := filepath.Join(t.TempDir(), "data#1?x=y")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "o?a#b.db")
	db := storetest.OpenURL(t, path)
	if err := db.CreateClient(ctx, 0, &store.Client{ID: "c", Name: "x", GrantTypes: []string{"client_credentials"}}, t0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("the database is not at %q: %v", path, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) < 1 {
		t.Fatalf("nothing written in %q", dir)
	}
}

func TestMigrateTwice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		applied, err := db.Migrate(ctx, t0)
		if err != nil || len(applied) != 0 {
			t.Fatalf("second Migrate = %v, %v; want nothing applied", applied, err)
		}
		list, err := db.Migrations(ctx)
		if err != nil || len(list) < 2 {
			t.Fatalf("Migrations = %v, %v", list, err)
		}
		for _, m := range list {
			if !m.Applied {
				t.Errorf("%s not applied", m.Version)
			}
		}
	})
}

func TestMigrateConcurrently(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			counts := make([]int, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := store.Open(ctx, url, storetest.Options())
					if err != nil {
						errs[i] = err
						return
					}
					defer db.Close()
					applied, err := db.Migrate(ctx, t0)
					counts[i], errs[i] = len(applied), err
				}()
			}
			wg.Wait()
			total := 0
			for i, err := range errs {
				if err != nil {
					t.Fatalf("instance %d: %v", i, err)
				}
				total += counts[i]
			}
			db, err := store.Open(ctx, url, storetest.Options())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			list, _ := db.Migrations(ctx)
			if total != len(list) {
				t.Fatalf("4 instances applied %d migrations in all; want each of %d once", total, len(list))
			}
		})
	}
}

// A migration that waits for a table's lock (PostgreSQL's DROP INDEX in
// 0026 wants refresh_tokens to itself, MySQL's ALTER its metadata lock)
// behind an open transaction that read the table (a pg_dump, a long
// report) makes every later statement on the table wait behind it: every
// instance's logins and refreshes. It waited up to its minute; it now
// gives up after about 2 s and tries again. Here a reader is held open while
// 0026 runs, and a query of refresh_tokens from another connection must get
// through within 30 s: a bound on a hang with a wide margin (it waits ~2 s
// at most, and waited the migration's whole minute before), not a timing.
// SQLite has no such queue: readers never wait for its writer (WAL).
func TestMigrationLockWaitBounded(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, url := openThrough(t, d, "0025_username_ascii_lower")
			raw := rawDB(t, d, url)
			holder, err := raw.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback()
			var n int
			if err := holder.QueryRow(`SELECT count(*) FROM refresh_tokens`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				applied, err := db.Migrate(ctx, t0)
				if err == nil && !slices.Contains(applied, "0026_refresh_unspent") {
					err = fmt.Errorf("applied %v; want 0026 and any later", applied)
				}
				done <- err
			}()
			waiting := map[string]string{
				store.Postgres: `SELECT count(*) FROM pg_locks WHERE relation = 'refresh_tokens'::regclass AND NOT granted`,
				store.MySQL:    `SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() AND state = 'Waiting for table metadata lock'`,
			}[d]
			waiters := 0
			for deadline := time.Now().Add(30 * time.Second); waiters == 0; time.Sleep(10 * time.Millisecond) {
				select {
				case err := <-done:
					t.Fatalf("Migrate = %v before it waited for refresh_tokens", err)
				default:
				}
				if err := raw.QueryRow(waiting).Scan(&waiters); err != nil || time.Now().After(deadline) {
					t.Fatalf("the migration never waited for refresh_tokens' lock (%v)", err)
				}
			}
			bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := raw.QueryRowContext(bounded, `SELECT count(*) FROM refresh_tokens`).Scan(&n); err != nil {
				t.Fatalf("a read of refresh_tokens while the migration waited: %v", err)
			}
			holder.Rollback()
			if err := <-done; err != nil {
				t.Fatalf("Migrate once the reader ended = %v", err)
			}
			exists := map[string]string{
				store.Postgres: `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'refresh_tokens_unspent'`,
				store.MySQL:    `SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name = 'refresh_tokens_unspent'`,
			}[d]
			if err := raw.QueryRow(exists).Scan(&n); err != nil || n == 0 {
				t.Fatalf("refresh_tokens_unspent: %d, %v; want it made", n, err)
			}
		})
	}
}

func newUser(t testing.TB, db *store.DB, email, username string) *store.User {
	t.Helper()
	u := &store.User{Email: email, Username: username, PasswordHash: "$argon2id$x", IsActive: true}
	if err := db.CreateUser(ctx, u, t0); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u
}

// newAdmin adds an admin, for the writes only an admin may ask for
// (UpdateUserAdmin, DeleteUser), and returns its id.
func newAdmin(t testing.TB, db *store.DB) int64 {
	t.Helper()
	u := &store.User{Email: "admin@example.com", Username: "admin", PasswordHash: "$argon2id$x", Role: store.RoleAdmin, IsActive: true}
	if err := db.CreateUser(ctx, u, t0); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// A username lookup compares with what the caller lower-cased (ASCII), not
// with what the database's lower() makes of it: PostgreSQL folds a Kelvin
// sign into k, SQLite does not.
func TestLookupsExact(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		newUser(t, db, "kate@example.com", "kate")
		if _, err := db.UserByUsername(ctx, "\u212Aate"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByUsername(Kelvin sign + ate) = %v; want ErrNotFound", err)
		}
		if _, err := db.UserByEmail(ctx, "\u212Aate@example.com"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByEmail(Kelvin sign + ate) = %v; want ErrNotFound", err)
		}
		// MySQL's text collations ignore trailing spaces: keys are bytes there.
		if _, err := db.UserByEmail(ctx, "kate@example.com "); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByEmail(with a trailing space) = %v; want ErrNotFound", err)
		}
		if _, err := db.UserByUsername(ctx, "kate "); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByUsername(with a trailing space) = %v; want ErrNotFound", err)
		}
		if err := db.CreateClient(ctx, 0, &store.Client{ID: "app", Name: "x", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClientByID(ctx, "app "); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ClientByID(with a trailing space) = %v; want ErrNotFound", err)
		}
	})
}

// A login finds its user through an index on every database. MySQL has
// neither partial nor expression indexes: its unique keys on users index
// generated columns (live_email, live_username), which the lookups did not
// name, so every login and forgotten password read the whole table there
// (a stranger's login attempt cost a scan of every account). Each lookup's
// plan, as the database explains it, must use an index.
func TestUserLookupsIndexed(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			for i := range 20 {
				newUser(t, db, fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("user%d", i))
			}
			raw := rawDB(t, d, url)
			for username, name := range map[bool]string{false: "'u7@example.com'", true: "'user7'"} {
				q := "SELECT id FROM users WHERE " + strings.ReplaceAll(db.LiveUserWhere(username), "$1", name)
				if plan, indexed := explain(t, d, raw, q); !indexed {
					t.Errorf("%s: plan %q reads the whole table", q, plan)
				}
			}
		})
	}
}

// The statements that delete or update rows by a column beside their key
// (with the deletions a client's ON DELETE CASCADE makes) find them through
// an index on every database. PostgreSQL and SQLite had none for a
// sign-in's codes and device requests by sid, which a logout with any old
// ID token of the sign-in deletes, nor for what a client's deletion ends by
// client_id; no database had one for its families (migration 0021, which
// runs again on MySQL, whose DDL commits by itself, without harm).
func TestDeletesIndexed(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			if d == store.MySQL { // 0021 runs again, as after a stop before its record
				if _, err := raw.Exec(`DELETE FROM schema_migrations WHERE version = '0021_delete_indexes'`); err != nil {
					t.Fatal(err)
				}
				if applied, err := db.Migrate(ctx, t0); err != nil || len(applied) != 1 {
					t.Fatalf("Migrate = %v, %v; want 0021 run again", applied, err)
				}
			}
			// The deleted users still named, past the audit retention (0027),
			// as store.Purge reads them: MySQL, with no partial index, by
			// its generated column.
			named, namedIndex := `deleted_at <= 1 AND email LIKE '%@%'`, "users_deleted_named"
			if d == store.MySQL {
				named, namedIndex = `named_deleted <= 1`, "users_named_deleted"
			}
			for _, c := range []struct{ q, index string }{
				{`DELETE FROM auth_codes WHERE sid = 'sid'`, "auth_codes_sid"},
				{`DELETE FROM device_codes WHERE sid = 'sid'`, "device_codes_sid"},
				{`DELETE FROM device_codes WHERE status = 'approved' AND user_id = 1`, "device_codes_user"},
				{`UPDATE token_families SET revoked_at = 1 WHERE client_id = 'c' AND revoked_at IS NULL`, "token_families_client"},
				{`DELETE FROM auth_codes WHERE client_id = 'c'`, "auth_codes_client"},
				{`DELETE FROM consents WHERE client_id = 'c'`, "consents_client"}, // not its key: PostgreSQL reads all of that
				{`DELETE FROM pushed_requests WHERE client_id = 'c'`, "pushed_requests_client"},
				// The purge's, which reads the unspent only (migration 0026).
				{`DELETE FROM refresh_tokens WHERE expires_at <= 1 AND created_at <= 1 AND used_at IS NULL`, "refresh_tokens_unspent"},
				{`UPDATE users SET email = 'x' WHERE ` + named, namedIndex},
				// The dead families, and what goes with them, and the rest of
				// the purge's (migration 0028): none reads the live rows.
				{`SELECT id FROM token_families WHERE revoked_at IS NOT NULL AND revoked_at <= 1 LIMIT 5000`, "token_families_revoked"},
				{`SELECT id FROM token_families WHERE created_at <= 1 LIMIT 5000`, "token_families_created"},
				{`SELECT rt.family_id FROM refresh_tokens rt JOIN token_families f ON f.id = rt.family_id
WHERE rt.expires_at <= 1 AND rt.created_at <= 1 AND rt.used_at IS NULL AND f.revoked_at IS NULL ORDER BY rt.expires_at LIMIT 5000`, "refresh_tokens_unspent"},
				{`DELETE FROM auth_codes WHERE family_id IN ('a', 'b')`, "auth_codes_unused"},
				{`DELETE FROM auth_codes WHERE family_id IS NULL AND expires_at <= 1`, "auth_codes_unused"},
				{`DELETE FROM device_codes WHERE family_id IN ('a', 'b')`, "device_codes_unused"},
				{`DELETE FROM device_codes WHERE family_id IS NULL AND expires_at <= 1`, "device_codes_unused"},
				{`DELETE FROM sessions WHERE expires_at <= 1`, "sessions_expires"},
				{`DELETE FROM login_failures WHERE window_start <= 1`, "login_failures_window"},
				{`DELETE FROM reset_tokens WHERE expires_at <= 1 AND created_at <= 1`, "reset_tokens_expires"},
				{`DELETE FROM email_verification_tokens WHERE (expires_at <= 1 OR used_at IS NOT NULL) AND created_at <= 1`, "email_verification_tokens_created"},
			} {
				// MySQL names its own index of a foreign key's column.
				if plan, indexed := explain(t, d, raw, c.q); !indexed || (d != store.MySQL || c.index == namedIndex) && !strings.Contains(plan, c.index) {
					t.Errorf("%s: plan %q; want it to read %s", c.q, plan, c.index)
				}
			}
		})
	}
}

// explain returns the plan of q as the database tells it, and whether it
// reads each table through an index: SQLite's query plan (SCAN: the whole
// table, or the whole of an index); PostgreSQL's with sequential scans
// priced out (a small table is otherwise scanned whatever its indexes);
// MySQL's access types (ALL: a full scan; index: a full scan of an index).
func explain(t *testing.T, dialect string, raw *sql.DB, q string) (plan string, indexed bool) {
	t.Helper()
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prefix := "EXPLAIN "
	switch dialect {
	case store.SQLite:
		prefix = "EXPLAIN QUERY PLAN "
	case store.Postgres:
		if _, err := tx.Exec("SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(prefix + q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	m := map[string]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			m[c] += vals[i].String + "\n"
		}
	}
	switch dialect {
	case store.SQLite:
		return m["detail"], strings.Contains(m["detail"], "INDEX") && !strings.Contains(m["detail"], "SCAN ")
	case store.Postgres:
		return m["QUERY PLAN"], !strings.Contains(m["QUERY PLAN"], "Seq Scan")
	}
	types := "\n" + m["type"]
	return "type " + m["type"] + "key " + m["key"], !strings.Contains(types, "\nALL\n") && !strings.Contains(types, "\nindex\n") && !strings.Contains("\n"+m["key"], "\n\n")
}

func TestUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		by := newAdmin(t, db)
		a := newUser(t, db, "ann@example.com", "Ann")
		if a.ID == 0 || a.Role != store.RoleUser {
			t.Fatalf("created %+v", a)
		}
		for _, dup := range [][2]string{{"ann@example.com", "other"}, {"x@example.com", "ANN"}} {
			err := db.CreateUser(ctx, &store.User{Email: dup[0], Username: dup[1], PasswordHash: "h"}, t0)
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("duplicate %v: %v; want ErrConflict", dup, err)
			}
		}
		// Lookups compare exactly what the caller folded, the same on
		// every database (TestLookupsExact).
		if u, err := db.UserByEmail(ctx, "ann@example.com"); err != nil || u.ID != a.ID {
			t.Errorf("UserByEmail = %v, %v", u, err)
		}
		if u, err := db.UserByUsername(ctx, "ann"); err != nil || u.ID != a.ID {
			t.Errorf("UserByUsername = %v, %v", u, err)
		}
		for _, f := range []func() (*store.User, error){
			func() (*store.User, error) { return db.UserByEmail(ctx, "ANN@example.com") },
			func() (*store.User, error) { return db.UserByUsername(ctx, "nobody") },
		} {
			if _, err := f(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("lookup = %v; want ErrNotFound", err)
			}
		}
		first := "Ann"
		u, err := db.UpdateProfile(ctx, a.ID, &first, nil, t0.Add(time.Minute))
		if err != nil || u.FirstName != "Ann" || u.LastName != "" || !u.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("UpdateProfile = %+v, %v", u, err)
		}
		admin, off := store.RoleAdmin, false
		u, ended, err := db.UpdateUserAdmin(ctx, by, a.ID, &admin, nil, time.Hour, t0)
		if err != nil || u.Role != store.RoleAdmin || !u.IsActive || len(ended.Revocations)+len(ended.SignIns) != 0 {
			t.Fatalf("UpdateUserAdmin = %+v, %+v, %v", u, ended, err)
		}
		bad := "root"
		if _, _, err := db.UpdateUserAdmin(ctx, by, a.ID, &bad, nil, time.Hour, t0); err == nil {
			t.Fatal("UpdateUserAdmin accepted role root")
		}
		bob := newUser(t, db, "bob@example.com", "bob")
		list, total, err := db.ListUsers(ctx, 1, 2)
		if err != nil || total != 3 || len(list) != 1 || list[0].Username != "bob" {
			t.Fatalf("ListUsers(1,2) = %v, %d, %v", list, total, err)
		}
		// Only an active admin may, and only as one still after the write;
		// a refused write changes nothing.
		if _, err := db.DeleteUser(ctx, bob.ID, a.ID, time.Hour, t0); !errors.Is(err, store.ErrNotAdmin) {
			t.Fatalf("DeleteUser by a user = %v; want ErrNotAdmin", err)
		}
		if _, err := db.DeleteUser(ctx, by, by, time.Hour, t0); !errors.Is(err, store.ErrNotAdmin) {
			t.Fatalf("DeleteUser of the admin by itself = %v; want ErrNotAdmin", err)
		}
		if _, _, err := db.UpdateUserAdmin(ctx, by, by, nil, &off, time.Hour, t0); !errors.Is(err, store.ErrNotAdmin) {
			t.Fatalf("UpdateUserAdmin deactivating the admin by itself = %v; want ErrNotAdmin", err)
		}
		if u, err := db.UserByID(ctx, by); err != nil || !u.IsActive {
			t.Fatalf("after refused writes, the admin is %+v, %v", u, err)
		}
		if u, err := db.UserByID(ctx, a.ID); err != nil {
			t.Fatalf("after a refused delete, the user is %+v, %v", u, err)
		}
		if _, err := db.DeleteUser(ctx, by, a.ID, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UserByID(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted user found: %v", err)
		}
		if _, err := db.DeleteUser(ctx, by, a.ID, time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete = %v; want ErrNotFound", err)
		}
		// The address and name are free again.
		newUser(t, db, "ann@example.com", "ann")
		revs, err := revocations(db, time.Unix(0, 0), t0)
		if err != nil || len(revs) != 1 || revs[0].Kind != store.RevokeUser || revs[0].Subject != store.FormatID(a.ID) {
			t.Fatalf("revocations after delete = %+v, %v", revs, err)
		}
	})
}

func TestLoginAttempts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const window = 15 * time.Minute
		u := newUser(t, db, "ann@example.com", "ann")
		text := token.Hash("ann")
		for i := 1; i <= 3; i++ {
			byLogin, byUser, err := db.CountLoginAttempt(ctx, text, u.ID, window, t0.Add(time.Duration(i)*time.Second))
			want := store.LoginCount{Attempts: i, Start: t0.Add(time.Second), Ends: t0.Add(time.Second + window)}
			if err != nil || byLogin != want || byUser != want {
				t.Fatalf("attempt %d: %+v, %+v, %v; want %+v twice", i, byLogin, byUser, err, want)
			}
		}
		// Another name of the same user shares the user's count only.
		byLogin, byUser, err := db.CountLoginAttempt(ctx, token.Hash("ann@example.com"), u.ID, window, t0.Add(time.Minute))
		if err != nil || byLogin.Attempts != 1 || byUser.Attempts != 4 {
			t.Fatalf("by email: %+v, %+v, %v; want 1 and 4", byLogin, byUser, err)
		}
		// An unknown login has its own count and no user's.
		byLogin, byUser, err = db.CountLoginAttempt(ctx, token.Hash("nobody"), 0, window, t0)
		if err != nil || byLogin.Attempts != 1 || byUser.Attempts != 0 {
			t.Fatalf("unknown: %+v, %+v, %v", byLogin, byUser, err)
		}
		// An attempt after the window starts a new one.
		byLogin, _, _ = db.CountLoginAttempt(ctx, text, u.ID, window, t0.Add(2*window))
		if byLogin.Attempts != 1 || !byLogin.Start.Equal(t0.Add(2*window)) || !byLogin.Ends.Equal(t0.Add(3*window)) {
			t.Fatalf("after the window: %+v; want a new window", byLogin)
		}
		// Clearing forgets every count that names the user, not others.
		if err := db.ClearLoginFailures(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		byLogin, byUser, _ = db.CountLoginAttempt(ctx, token.Hash("ann@example.com"), u.ID, window, t0.Add(time.Minute))
		if byLogin.Attempts != 1 || byUser.Attempts != 1 {
			t.Fatalf("after clear: %+v, %+v; want 1 and 1", byLogin, byUser)
		}
		if byLogin, _, _ = db.CountLoginAttempt(ctx, token.Hash("nobody"), 0, window, t0); byLogin.Attempts != 2 {
			t.Fatalf("an unknown login's count was cleared: %+v", byLogin)
		}
	})
}

// Concurrent attempts each get a count of their own: the property that
// bounds password checks per window (API.md "Sessions and revocation").
func TestLoginAttemptsConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		const n = 40
		seen := make([]atomic.Int32, 2*n+1)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				login := []string{"ann", "ann@example.com"}[i%2]
				_, byUser, err := db.CountLoginAttempt(ctx, token.Hash(login), u.ID, time.Hour, t0)
				if err != nil {
					t.Errorf("CountLoginAttempt: %v", err)
					return
				}
				seen[byUser.Attempts].Add(1)
			}()
		}
		wg.Wait()
		for i := 1; i <= n; i++ {
			if seen[i].Load() != 1 {
				t.Fatalf("count %d handed out %d times; want once each of 1..%d", i, seen[i].Load(), n)
			}
		}
	})
}

func newFamily(t testing.TB, db *store.DB, userID int64) (store.Family, string) {
	t.Helper()
	f := store.Family{ID: token.NewOpaque(), UserID: userID, ClientID: "c1", Scope: "a b", AuthTime: t0}
	rt := token.NewOpaque()
	if _, err := db.CreateFamily(ctx, f, token.Hash(rt), t0.Add(time.Hour), time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	return f, rt
}

func TestRefreshRotation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		f, rt := newFamily(t, db, u.ID)
		got, err := db.AnyRefreshToken(ctx, token.Hash(rt))
		if err != nil || got.Family.ID != f.ID || got.Used || got.Family.Revoked || got.Scope != "a b" || got.Family.UserID != u.ID || !got.UserActive {
			t.Fatalf("AnyRefreshToken = %+v, %v", got, err)
		}
		// The new token has the old one's scope (RFC 6749 §6).
		rt2 := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(rt2), "c1", "", false, time.Hour, maxAge, t0); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		if n, err := db.AnyRefreshToken(ctx, token.Hash(rt2)); err != nil || n.Scope != "a b" || n.Family.Scope != "a b" {
			t.Fatalf("narrowed token %+v, %v", n, err)
		}
		if old, _ := db.AnyRefreshToken(ctx, token.Hash(rt)); old == nil || !old.Used {
			t.Fatalf("old token not spent: %+v", old)
		}
		// A spent token changes nothing.
		rt3 := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(rt3), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("replay = %v; want ErrNotFound", err)
		}
		if _, err := db.AnyRefreshToken(ctx, token.Hash(rt3)); !errors.Is(err, store.ErrNotFound) {
			t.Fatal("a refused rotation stored its new token")
		}
		// Nothing rotates in a revoked family.
		if r, err := db.RevokeSession(ctx, f.ID, time.Hour, t0); err != nil || r == nil || r.Kind != store.RevokeSID || r.Subject != f.ID {
			t.Fatalf("RevokeSession = %+v, %v", r, err)
		}
		if r, err := db.RevokeSession(ctx, f.ID, time.Hour, t0); err != nil || r != nil {
			t.Fatalf("RevokeSession again = %+v, %v; want nothing new", r, err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(rt2), token.Hash(rt3), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("rotation in a revoked family = %v; want ErrNotFound", err)
		}
		if got, _ := db.AnyRefreshToken(ctx, token.Hash(rt2)); got == nil || !got.Family.Revoked || got.Used {
			t.Fatalf("after revocation: %+v", got)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash("unknown"), token.Hash(rt3), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown token = %v; want ErrNotFound", err)
		}
		// Expired tokens are neither found nor rotated.
		_, old := newFamily(t, db, u.ID)
		if got, err := db.AnyRefreshToken(ctx, token.Hash(old)); err != nil || got.ExpiresAt.After(t0.Add(2*time.Hour)) {
			t.Fatalf("expired token = %+v, %v; want it found, expired", got, err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(old), token.Hash(rt3), "c1", "", false, time.Hour, maxAge, t0.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired token rotated: %v", err)
		}
	})
}

// newSignIn stores a browser sign-in and an unexchanged code it gave a
// client with a back-channel logout URI; ended is what ending it announces.
func newSignIn(t testing.TB, db *store.DB, userID int64) (session, code string, ended store.SignIn) {
	t.Helper()
	session, code = token.Hash(token.NewOpaque()), token.Hash(token.NewOpaque())
	ended = store.SignIn{SID: "sid-" + code[:8], UserID: userID, ClientID: "c-" + code[:8], URI: "https://rp.example/bc/" + code[:8]}
	if _, err := db.CreateSession(ctx, session, store.Session{SID: ended.SID, UserID: userID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOldClient(ctx, ended.ClientID, ended.URI, t0); err != nil { // also before later migrations (TestEndSignInEndsItsFamilies)
		t.Fatal(err)
	}
	if err := db.CreateCode(ctx, &store.Code{Hash: code, ClientID: ended.ClientID, UserID: userID, CodeChallenge: "x", AuthTime: t0,
		SID: ended.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
		t.Fatal(err)
	}
	return session, code, ended
}

// A password change ends every other session of the user in the same
// transaction as the password write: other families with a sid revocation
// each, every browser sign-in, and the codes not yet exchanged.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		keep, keepRT := newFamily(t, db, u.ID)
		other, otherRT := newFamily(t, db, u.ID)
		session, code, signIn := newSignIn(t, db, u.ID)
		bob := newUser(t, db, "bob@example.com", "bob")
		bobFamily, _ := newFamily(t, db, bob.ID)
		bobSession, _, _ := newSignIn(t, db, bob.ID)
		ended, err := db.SetPassword(ctx, u.ID, u.PasswordHash, "$new", keep.ID, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		want := store.SessionRevocation(other.ID, time.Hour, t0)
		if revs := ended.Revocations; len(revs) != 1 || revs[0] != want {
			t.Fatalf("SetPassword revocations = %+v; want [%+v]", revs, want)
		}
		if len(ended.SignIns) != 1 || ended.SignIns[0] != signIn {
			t.Fatalf("SetPassword ended sign-ins = %+v; want [%+v]", ended.SignIns, signIn)
		}
		if stored, _ := revocations(db, time.Unix(0, 0), t0); len(stored) != 1 || stored[0] != want {
			t.Fatalf("stored revocations = %+v; want [%+v]", stored, want)
		}
		k, _ := db.AnyRefreshToken(ctx, token.Hash(keepRT))
		o, _ := db.AnyRefreshToken(ctx, token.Hash(otherRT))
		if k.Family.Revoked || !o.Family.Revoked {
			t.Fatalf("after password change: kept revoked=%v, other revoked=%v", k.Family.Revoked, o.Family.Revoked)
		}
		if _, err := db.SessionByHash(ctx, session, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("browser sign-in survived the password change: %v", err)
		}
		if _, err := db.CodeByHash(ctx, code); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("pending code survived the password change: %v", err)
		}
		if _, err := db.SessionByHash(ctx, bobSession, t0); err != nil {
			t.Fatalf("another user's sign-in ended: %v", err)
		}
		if r, err := db.RevokeSession(ctx, bobFamily.ID, time.Hour, t0); err != nil || r == nil {
			t.Fatalf("another user's family was revoked: %+v, %v", r, err)
		}
		got, _ := db.UserByID(ctx, u.ID)
		if got.PasswordHash != "$new" {
			t.Fatal("password not changed")
		}
		// A change verified against a hash that is no longer the user's (a
		// reset or another change committed since), or for a user since
		// deactivated, writes nothing and ends nothing.
		if _, err := db.SetPassword(ctx, u.ID, u.PasswordHash, "$stale", "", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SetPassword verified against a replaced hash = %v; want ErrNotFound", err)
		}
		if k, _ := db.AnyRefreshToken(ctx, token.Hash(keepRT)); k.Family.Revoked {
			t.Fatal("a refused password change revoked the caller's family")
		}
		admin, inactive := newAdmin(t, db), false
		if _, _, err := db.UpdateUserAdmin(ctx, admin, bob.ID, nil, &inactive, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetPassword(ctx, bob.ID, bob.PasswordHash, "$x", "", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SetPassword on a deactivated user = %v; want ErrNotFound", err)
		}
		if got, _ := db.UserByID(ctx, u.ID); got.PasswordHash != "$new" {
			t.Fatalf("password hash %q after a refused change; want $new", got.PasswordHash)
		}
		// A failure leaves nothing half done: a password write for a
		// deleted user revokes nothing.
		if _, err := db.DeleteUser(ctx, admin, bob.ID, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetPassword(ctx, bob.ID, bob.PasswordHash, "$x", "", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SetPassword on a deleted user = %v; want ErrNotFound", err)
		}
	})
}

// A reset ends every session of the user and clears its login failures,
// in one transaction with the password write: each family with a sid
// revocation, and the user's tokens with a user revocation.
func TestResetEndsEverySession(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		f, rt := newFamily(t, db, u.ID)
		session, code, signIn := newSignIn(t, db, u.ID)
		for i := 0; i < 3; i++ {
			db.CountLoginAttempt(ctx, token.Hash("ann"), u.ID, time.Hour, t0)
		}
		reset := token.Hash(token.NewOpaque())
		if err := db.ReplaceResetToken(ctx, reset, u.ID, 3, t0.Add(time.Hour), t0); err != nil {
			t.Fatal(err)
		}
		id, ended, err := db.ResetPassword(ctx, reset, "$new", time.Hour, t0)
		// The family by sid too: a refresh committed while the reset was
		// on its way mints a token dated after t0 (auth.TestResetEndsSessionRefreshedMeanwhile).
		want := []store.Revocation{store.SessionRevocation(f.ID, time.Hour, t0), store.UserRevocation(u.ID, time.Hour, t0)}
		if err != nil || id != u.ID || !slices.Equal(ended.Revocations, want) || len(ended.SignIns) != 1 || ended.SignIns[0] != signIn {
			t.Fatalf("ResetPassword = %d, %+v, %v", id, ended, err)
		}
		if got, _ := db.AnyRefreshToken(ctx, token.Hash(rt)); got == nil || !got.Family.Revoked {
			t.Fatalf("family not revoked by the reset: %+v", got)
		}
		if _, err := db.SessionByHash(ctx, session, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("browser sign-in survived the reset: %v", err)
		}
		if _, err := db.CodeByHash(ctx, code); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("pending code survived the reset: %v", err)
		}
		if stored, _ := revocations(db, time.Unix(0, 0), t0); len(stored) != 2 || !slices.Contains(stored, want[0]) || !slices.Contains(stored, want[1]) {
			t.Fatalf("stored revocations = %+v; want %+v", stored, want)
		}
		if byLogin, byUser, _ := db.CountLoginAttempt(ctx, token.Hash("ann"), u.ID, time.Hour, t0); byLogin.Attempts != 1 || byUser.Attempts != 1 {
			t.Fatalf("login failures not cleared by the reset: %+v, %+v", byLogin, byUser)
		}
		if _, _, err := db.ResetPassword(ctx, reset, "$again", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("reset token used twice: %v", err)
		}
	})
}

// Deactivating or deleting a user spends its outstanding reset links: one
// mailed before would otherwise replace the password of the inactive
// account, a password that then held after a reactivation. Its
// verification links too: one verified a deactivated user's address (204,
// an email.verified event). Its consents go as well (a deletion is soft:
// no foreign key cascades).
func TestEndingAUserSpendsItsLinks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		by, inactive := newAdmin(t, db), false
		if err := db.CreateClient(ctx, 0, &store.Client{ID: "c1", Name: "x", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			end  func(id int64) error
		}{
			{"deactivation", func(id int64) error {
				_, _, err := db.UpdateUserAdmin(ctx, by, id, nil, &inactive, time.Hour, t0)
				return err
			}},
			{"deletion", func(id int64) error { _, err := db.DeleteUser(ctx, by, id, time.Hour, t0); return err }},
		} {
			u := newUser(t, db, c.name+"@example.com", c.name)
			reset := token.Hash(token.NewOpaque())
			if err := db.ReplaceResetToken(ctx, reset, u.ID, 3, t0.Add(time.Hour), t0); err != nil {
				t.Fatal(err)
			}
			if err := db.SaveConsent(ctx, u.ID, "", clientOf("c1"), "", "read", t0); err != nil {
				t.Fatal(err)
			}
			link := newLink(t, db, u, u.Email, t0.Add(time.Hour), t0)
			if err := c.end(u.ID); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if _, ok, err := db.ConsentedScope(ctx, u.ID, "c1", ""); ok || err != nil {
				t.Fatalf("a consent outlived the %s (%v)", c.name, err)
			}
			if _, _, err := db.ResetPassword(ctx, reset, "$new", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a reset link mailed before the %s still reset the password: %v", c.name, err)
			}
			if _, err := db.VerifyEmail(ctx, link, t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a verification link mailed before the %s still verified the address: %v", c.name, err)
			}
		}
	})
}

// A reset spent its link, then wrote the user's row; a password change, a
// deactivation or a deletion writes the user's row, then spends the
// user's links (revokeUserTx). Side by side, each held what the other
// waited for: PostgreSQL ended one as a deadlock's victim, answered 503.
// Here a lock on the link's row lines them up deterministically: the
// reset waits at it first, the other second. A regression test: both
// must succeed, the reset first (it now takes the user's row first); a
// password change checked against the password the reset replaced is
// refused then.
func TestResetBesideAUsersEndNoDeadlock(t *testing.T) {
	db, raw := onPostgres(t)
	by, inactive := newAdmin(t, db), false
	for _, c := range []struct {
		name string
		end  func(id int64) error
	}{
		// The change verified the password the reset replaces (newUser's
		// hash): it waits for the reset, then finds that hash gone, and is
		// refused without writing (SetPassword).
		{"password change", func(id int64) error {
			if _, err := db.SetPassword(ctx, id, "$argon2id$x", "$other", "", time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%v; want ErrNotFound", err)
			}
			return nil
		}},
		{"deactivation", func(id int64) error {
			_, _, err := db.UpdateUserAdmin(ctx, by, id, nil, &inactive, time.Hour, t0)
			return err
		}},
		{"deletion", func(id int64) error { _, err := db.DeleteUser(ctx, by, id, time.Hour, t0); return err }},
	} {
		u := newUser(t, db, strings.ReplaceAll(c.name, " ", "")+"@example.com", strings.ReplaceAll(c.name, " ", ""))
		reset := token.Hash(token.NewOpaque())
		if err := db.ReplaceResetToken(ctx, reset, u.ID, 3, t0.Add(time.Hour), t0); err != nil {
			t.Fatal(err)
		}
		hold, holder := holdRow(t, raw, store.Postgres, `SELECT 1 FROM reset_tokens WHERE hash = $1 FOR UPDATE`, reset)
		resetDone, endDone := make(chan error, 1), make(chan error, 1)
		go func() { _, _, err := db.ResetPassword(ctx, reset, "$new", time.Hour, t0); resetDone <- err }()
		waitBlocked(t, raw, store.Postgres, holder, 1)
		go func() { endDone <- c.end(u.ID) }()
		waitBlocked(t, raw, store.Postgres, holder, 2)
		if err := hold.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := <-resetDone; err != nil {
			t.Errorf("a reset beside a %s: %v", c.name, err)
		}
		if err := <-endDone; err != nil {
			t.Errorf("a %s beside a reset: %v", c.name, err)
		}
	}
}

// A client's deletion beside an exchange of one of its codes, lined up on
// a row lock in either order: no deadlock (the exchange locks the user's
// row, then the code's, then inserts its family; the deletion locks the
// client's row, its codes' (ON DELETE CASCADE), then its families'; token
// families have no foreign key to clients), and no session of the client
// outlives the deletion: the deletion takes the codes before it revokes
// the families, so an exchange that holds the code commits its family
// first and the revocation finds it, and one that comes second finds its
// code gone.
func TestClientDeletionBesideCodeExchange(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u, other := newUser(t, db, "ann@example.com", "ann"), newUser(t, db, "bob@example.com", "bob")
			for _, exchangeFirst := range []bool{true, false} {
				_, code, signIn := newSignIn(t, db, u.ID)
				c := signIn.ClientID
				f := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: c, AuthTime: t0}
				is := store.Issued{Family: &f, RefreshHash: token.Hash(token.NewOpaque()), RefreshExp: t0.Add(time.Hour)}
				exchange := func() error { _, err := db.ExchangeCode(ctx, code, is, time.Hour, t0); return err }
				deletion := func() error { return db.DeleteClient(ctx, 0, c, "", store.ClientDeletion(c, time.Hour, t0), t0) }
				// The exchange, holding the code, waits to insert its family
				// behind a transaction inserting that id (for another user:
				// on MySQL a foreign key check share-locks the user's row).
				first, second := exchange, deletion
				lock, args := `INSERT INTO token_families (id, user_id, client_id, auth_time, created_at) VALUES ($1, $2, $3, 0, 0)`, []any{f.ID, other.ID, c}
				if !exchangeFirst { // the deletion, holding the codes, waits to revoke a family of the client
					older := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: c, AuthTime: t0}
					if _, err := db.CreateFamily(ctx, older, "", t0, time.Hour, t0); err != nil {
						t.Fatal(err)
					}
					first, second = deletion, exchange
					lock, args = `SELECT 1 FROM token_families WHERE id = $1 FOR UPDATE`, []any{older.ID}
				}
				exErr, delErr := lineUp(t, raw, d, first, second, lock, args...)
				if !exchangeFirst {
					exErr, delErr = delErr, exErr
				}
				if delErr != nil {
					t.Errorf("exchange first %v: the deletion: %v", exchangeFirst, delErr)
				}
				rt, err := db.AnyRefreshToken(ctx, is.RefreshHash)
				switch {
				case exchangeFirst && (exErr != nil || err != nil || !rt.Family.Revoked):
					t.Errorf("the exchange before the deletion: %v; its session %+v, %v; want it stored, then revoked", exErr, rt, err)
				case !exchangeFirst && (!errors.Is(exErr, store.ErrReused) || !errors.Is(err, store.ErrNotFound)):
					t.Errorf("the exchange after the deletion: %v; its session %+v, %v; want ErrReused and none", exErr, rt, err)
				}
			}
		})
	}
}

// A client's deletion beside a write that takes a row of the client's
// (one the deletion deletes, ON DELETE CASCADE), then the client's row: a
// device approval (its request, then the foreign key check of its
// sign-in's new session_clients row), and the same user signing in again
// (the old sign-in's session_clients rows moved to the new one, whose
// foreign keys MySQL checks again; PostgreSQL checks only a changed key,
// and there the write did not wait). Lined up behind a lock on one of the
// client's codes, the deletion holds the client's row and waits to delete
// its codes, then its other rows; the write, meanwhile, took one of those
// rows and waits for the client's: each held what the other waited for,
// and the database ended one as a deadlock's victim (503). A regression
// test: both now take the client's row first, so they wait for the
// deletion; then the approval finds its request gone, and the sign-in is
// stored without the client.
func TestClientDeletionNoDeadlock(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			for _, approval := range []bool{true, false} {
				old, code, c := newSignIn(t, db, u.ID) // the sign-in has given c a code
				write, want := func() error {
					_, err := db.CreateSession(ctx, token.Hash(token.NewOpaque()), store.Session{SID: c.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour), Continues: old})
					return err
				}, error(nil)
				if approval {
					session, _, signIn := newSignIn(t, db, u.ID) // its own client's: it has given c nothing yet
					dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: "mac", ClientID: c.ClientID, ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
					if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
						t.Fatal(err)
					}
					s := &store.Session{SID: signIn.SID, Hash: session, UserID: u.ID, AuthTime: t0}
					write, want = func() error { return db.DecideDeviceCode(ctx, dc.UserCode, true, s, t0) }, store.ErrNotFound
				}
				deletion := func() error {
					return db.DeleteClient(ctx, 0, c.ClientID, "", store.ClientDeletion(c.ClientID, time.Hour, t0), t0)
				}
				delErr, err := lineUp(t, raw, d, deletion, write, `SELECT 1 FROM auth_codes WHERE hash = $1 FOR UPDATE`, code)
				if delErr != nil || !errors.Is(err, want) {
					t.Errorf("approval %v: the client's deletion: %v; the write meanwhile: %v; want it deleted, then %v", approval, delErr, err, want)
				}
			}
		})
	}
}

// Two rotations of one client's secret at once, the second waiting for
// the first: the second revokes the secret the first set, as well as the
// one before (the first revokes it). A read of the old hash before the
// row's lock found the one both replaced, so the secret the first set
// was never revoked, and the tokens an instance that still took it mints
// would have lived.
func TestSecretRotationsBesideEachOther(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "c", Name: "c", SecretHash: "h0"}, t0); err != nil {
				t.Fatal(err)
			}
			rotate := func(hash string) func() error {
				return func() error {
					_, err := db.SetClientSecret(ctx, 0, "c", hash, time.Hour, t0)
					return err
				}
			}
			if err1, err2 := lineUp(t, raw, d, rotate("h1"), rotate("h2"), `SELECT id FROM clients WHERE id = $1 FOR UPDATE`, "c"); err1 != nil || err2 != nil {
				t.Fatalf("rotations: %v, %v", err1, err2)
			}
			c, err := db.ClientByID(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			list, err := revocations(db, time.Unix(0, 0), t0)
			if err != nil {
				t.Fatal(err)
			}
			revoked := map[string]bool{}
			for _, r := range list {
				revoked[r.Subject] = true
			}
			for _, h := range []string{"h0", "h1", "h2"} {
				if got, want := revoked[store.SecretTag(h)], h != c.SecretHash; got != want {
					t.Errorf("secret %s (the client's is %s) revoked: %v; want %v", h, c.SecretHash, got, want)
				}
			}
		})
	}
}

// A refresh rotation beside a password change that has revoked the user's
// families and waits to commit (behind the audit chain's head, as any
// audited write may). No deadlock: the rotation locks its token's row and
// reads its family, whose row its new token's foreign key check locks; the
// change locks the user's row and the families' but never a refresh
// token. On PostgreSQL that check's key-share lock passes the change's
// non-key update, and the rotation commits first; on MySQL its share lock
// waits for the change, and commits after. Either way the rotation
// succeeds, as it read the family live, and the change's sid revocation
// names the family: the new refresh token refreshes nothing and the access
// token minted with it is revoked.
func TestRefreshRotationBesidePasswordChange(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			f, rt := newFamily(t, db, u.ID)
			hold, holder := holdRow(t, raw, d, `SELECT 1 FROM audit_head WHERE one = 1 FOR UPDATE`)
			type change struct {
				ended store.Ended
				err   error
			}
			changed := make(chan change, 1)
			go func() {
				e := &store.Event{Action: "password.change", Actor: store.FormatID(u.ID), Outcome: "success"}
				ended, err := db.SetPassword(store.WithEvent(ctx, e), u.ID, u.PasswordHash, "$new", "", time.Hour, t0)
				changed <- change{ended, err}
			}()
			waitBlocked(t, raw, d, holder, 1)
			next := token.NewOpaque()
			rotated := make(chan error, 1)
			go func() {
				_, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "c1", "", false, time.Hour, maxAge, t0)
				rotated <- err
			}()
			var rotErr error
			if d == store.MySQL {
				waitBlocked(t, raw, d, holder, 2)
			} else if rotErr = <-rotated; rotErr != nil { // bounded by OpTimeout if it waited after all
				t.Fatalf("the rotation beside the change: %v; want it done without waiting", rotErr)
			}
			if err := hold.Rollback(); err != nil {
				t.Fatal(err)
			}
			c := <-changed
			if d == store.MySQL {
				rotErr = <-rotated
			}
			if c.err != nil || rotErr != nil {
				t.Fatalf("the change: %v; the rotation beside it: %v", c.err, rotErr)
			}
			if !slices.Contains(c.ended.Revocations, store.SessionRevocation(f.ID, time.Hour, t0)) {
				t.Errorf("the change ended %+v; want the family's sid revocation", c.ended.Revocations)
			}
			if got, err := db.AnyRefreshToken(ctx, token.Hash(next)); err != nil || !got.Family.Revoked {
				t.Errorf("the rotated token after the change: %+v, %v; want its family revoked", got, err)
			}
			if _, err := db.RotateRefresh(ctx, token.Hash(next), token.Hash(token.NewOpaque()), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refresh with the rotated token after the change: %v; want ErrNotFound", err)
			}
		})
	}
}

// No session outlives maxAge from its start, whatever the rotations, and a
// rotation never mints a token that would.
func TestRotateRefreshMaxAge(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		_, rt := newFamily(t, db, u.ID) // created at t0
		const ttl, age = time.Hour, 90 * time.Minute
		next := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "c1", "", false, ttl, age, t0.Add(50*time.Minute)); err != nil {
			t.Fatal(err)
		}
		n, err := db.AnyRefreshToken(ctx, token.Hash(next))
		if err != nil || !n.ExpiresAt.Equal(t0.Add(age)) {
			t.Fatalf("rotated token = %+v, %v; want it to expire at the session's end %v", n, err, t0.Add(age))
		}
		// A token that would still be valid is refused once the session
		// is maxAge old (made directly, as a larger maxAge would have).
		g := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: "c1", AuthTime: t0}
		long := token.NewOpaque()
		if _, err := db.CreateFamily(ctx, g, token.Hash(long), t0.Add(48*time.Hour), time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(long), token.Hash(token.NewOpaque()), "c1", "", false, ttl, age, t0.Add(age)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("rotation at the session's end = %v; want ErrNotFound", err)
		}
		if got, _ := db.AnyRefreshToken(ctx, token.Hash(long)); got == nil || got.Used || got.Family.ID != g.ID {
			t.Fatalf("a refused rotation spent the token: %+v", got)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(long), token.Hash(token.NewOpaque()), "c1", "", false, ttl, age, t0.Add(age-time.Second)); err != nil {
			t.Fatalf("rotation a second before the session's end = %v", err)
		}
	})
}

// A revocation is polled by when it was written, whatever the time of its
// request (t0, far from now): see written.
func TestRevocationsSince(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := store.Revocation{Kind: store.RevokeJTI, Subject: "j1", ExpiresAt: t0.Add(time.Hour).Unix()}
		before := time.Now()
		if err := db.Revoke(ctx, r); err != nil {
			t.Fatal(err)
		}
		if list, _ := revocations(db, before, t0); len(list) != 1 || list[0] != r {
			t.Fatalf("RevocationsSince = %+v", list)
		}
		if list, _ := revocations(db, time.Now().Add(time.Second), t0); len(list) != 0 {
			t.Fatalf("entries from before since: %+v", list)
		}
		if list, _ := revocations(db, before, t0.Add(time.Hour)); len(list) != 0 {
			t.Fatalf("expired entries: %+v", list)
		}
		if err := db.Purge(ctx, store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: maxAge}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := db.Revoke(ctx, store.Revocation{Kind: "bogus", Subject: "x", ExpiresAt: 1}); err == nil {
			t.Fatal("accepted an unknown revocation kind")
		}
	})
}

// revocations returns every revocation RevocationsSince reads.
func revocations(db *store.DB, since, now time.Time) (list []store.Revocation, err error) {
	_, err = db.RevocationsSince(ctx, since, now, 1000, func(page []store.Revocation) { list = append(list, page...) })
	return list, err
}

// RevocationsSince reads in pages, each a statement of its own: one for
// every row passed OpTimeout from about 4 million rows on PostgreSQL. Every
// row written at or after since is read exactly once, however its
// created_at lies against its id (a transaction commits after its stamp),
// many with equal created_at, and none before since or expired.
func TestRevocationsSinceInPages(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			since, live, want := t0.Unix(), t0.Add(time.Hour).Unix(), map[string]int{}
			var values []string
			for i, created := range []int64{since - 1, since, since, since + 1, since, since, since - 5, since, since + 2, since, since, since} {
				expires := live
				if i == 5 {
					expires = t0.Unix() // expired at t0
				} else if created >= since {
					want[fmt.Sprint("j", i)] = 1
				}
				values = append(values, fmt.Sprintf("('jti', 'j%d', 0, %d, %d)", i, expires, created))
			}
			if _, err := rawDB(t, d, url).Exec(`INSERT INTO revocations (kind, subject, not_before_ms, expires_at, created_at) VALUES ` + strings.Join(values, ", ")); err != nil {
				t.Fatal(err)
			}
			var pages []int
			got := map[string]int{}
			_, err := db.RevocationsSince(ctx, t0, t0, 3, func(page []store.Revocation) {
				pages = append(pages, len(page))
				for _, r := range page {
					got[r.Subject]++
				}
			})
			if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(pages) != "[3 3 3 0]" {
				t.Fatalf("RevocationsSince read %v in pages of %v, %v; want %v in pages of [3 3 3 0]", got, pages, err, want)
			}
		})
	}
}

// The conditions of a rotation, and concurrent rotations of one token.
// A connection that drops while a rotation's answer is on its way is an
// error the caller can tell from a spent token: nothing below the store runs
// the statement again on another connection, since the repeat would find the
// token it had just spent, which the token endpoint reads as a reuse and ends
// the session for. (pgx before 5.13 could let database/sql repeat a statement
// after some connection failures; this test does not reach that path.)
func TestRotationWhoseAnswerIsLostIsNoReuse(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			db, p := storetest.OpenViaProxy(t, dialect)
			u := newUser(t, db, "ann@example.com", "ann")
			_, rt := newFamily(t, db, u.ID)
			p.DropAnswerTo(token.Hash(rt))
			_, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(token.NewOpaque()), "c1", "", false, time.Hour, maxAge, t0)
			if err == nil || errors.Is(err, store.ErrNotFound) {
				t.Fatalf("rotation whose answer was lost = %v; want an error that is not ErrNotFound", err)
			}
		})
	}
}

// A revocation's created_at is stamped before its transaction commits, and
// the other instances' polls look back auth.PollOverlap (15 s) for rows
// committed late. A logout whose COMMIT reached PostgreSQL 25 s late (a
// network stall) answered 503 and committed a sid revocation no poll read:
// the logged-out token worked on every other instance until it expired,
// and the client's retry found the session ended and changed nothing. The
// database now ends a revoking transaction left idle TxIdleTimeout, so the
// late COMMIT commits nothing and the retry revokes.
func TestLateCommitOfARevocationIsRefused(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			url := storetest.URL(t, dialect)
			p, via := storetest.NewProxy(t, url)
			a, b := storetest.OpenURL(t, url), storetest.OpenURL(t, via) // two instances, b's path to the database unreliable
			f, _ := newFamily(t, a, newUser(t, a, "ann@example.com", "ann").ID)
			start := time.Now()
			commit := map[string]string{store.Postgres: "commit", store.MySQL: "COMMIT"}[dialect]
			passed := p.HoldRequest(commit, store.TxIdleTimeout+2*time.Second)
			if _, err := b.RevokeSession(ctx, f.ID, time.Hour, t0); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("logout whose COMMIT is held = %v; want ErrUnavailable", err)
			}
			<-passed
			// The retry's UPDATE waits for the first transaction to end, if it has not.
			if r, err := b.RevokeSession(ctx, f.ID, time.Hour, t0); err != nil || r == nil {
				t.Fatalf("retry = %v, %v; want the session ended now (the late COMMIT must commit nothing)", r, err)
			}
			if list, err := revocations(a, start, t0); err != nil || len(list) != 1 || list[0].Subject != f.ID {
				t.Fatalf("the other instance's poll reads %+v, %v; want the retry's revocation", list, err)
			}
		})
	}
}

func TestRotateRefreshConditions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		f, rt := newFamily(t, db, u.ID)
		next := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "other-client", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("another client: %v; want ErrNotFound", err)
		}
		got, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "c1", "", false, time.Hour, maxAge, t0)
		if err != nil || got.Family.ID != f.ID || got.Family.UserID != u.ID || got.Scope != "a b" || !got.Family.AuthTime.Equal(t0) {
			t.Fatalf("RotateRefresh = %+v, %v", got, err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(token.NewOpaque()), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("spent token: %v; want ErrNotFound", err)
		}
		n, err := db.AnyRefreshToken(ctx, token.Hash(next))
		if err != nil || n.Used || n.Scope != "a b" || n.Family.ID != f.ID {
			t.Fatalf("new token %+v, %v", n, err)
		}
		off := false
		if _, _, err := db.UpdateUserAdmin(ctx, newAdmin(t, db), u.ID, nil, &off, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(next), token.Hash(token.NewOpaque()), "c1", "", false, time.Hour, maxAge, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("inactive user: %v; want ErrNotFound", err)
		}
		// Concurrent rotations of one token: exactly one wins.
		v := newUser(t, db, "bob@example.com", "bob")
		for round := 0; round < 5; round++ {
			_, tok := newFamily(t, db, v.ID)
			var wins atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := db.RotateRefresh(ctx, token.Hash(tok), token.Hash(token.NewOpaque()), "c1", "", false, time.Hour, maxAge, t0)
					if err == nil {
						wins.Add(1)
					} else if !errors.Is(err, store.ErrNotFound) {
						t.Errorf("rotate: %v", err)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("round %d: %d wins; want 1", round, wins.Load())
			}
		}
	})
}

// Migration 0005 turns space-joined URI lists into JSON arrays, splitting
// only on the ASCII space that joined them: an element that smuggled a
// U+00A0 stays whole.
func TestMigrateURIListsToJSON(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			if d == store.MySQL {
				t.Skip("MySQL's schema starts with JSON lists: its 0005 has nothing to rewrite")
			}
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := storetest.Raw(t, d, url)
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "legacy", Name: "x", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			// As rows were before 0005: joined with one space.
			for _, q := range []string{
				"UPDATE clients SET redirect_uris = 'https://a.example/cb https://b.example/cb\u00a0http://evil.example/', post_logout_redirect_uris = ''",
				"DELETE FROM schema_migrations WHERE version = '0005_uri_lists'",
			} {
				if _, err := raw.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			if applied, err := db.Migrate(ctx, t0); err != nil || len(applied) != 1 {
				t.Fatalf("Migrate = %v, %v; want 0005 applied again", applied, err)
			}
			c, err := db.ClientByID(ctx, "legacy")
			want := []string{"https://a.example/cb", "https://b.example/cb\u00a0http://evil.example/"}
			if err != nil || !slices.Equal(c.RedirectURIs, want) || len(c.PostLogoutRedirectURIs) != 0 {
				t.Fatalf("after 0005: %q, %q, %v; want %q and none", c.RedirectURIs, c.PostLogoutRedirectURIs, err, want)
			}
		})
	}
}

// count returns the number of rows of table, read with a raw connection.
func count(t testing.TB, raw *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := raw.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rawDB opens a second, plain connection to the database at url.
func rawDB(t testing.TB, dialect, url string) *sql.DB {
	t.Helper()
	return storetest.Raw(t, dialect, url)
}

// A purge statement that fails (a backlog it cannot delete within
// OpTimeout, a lock) stopped the purge: every table after it was left to
// grow (revocations come first, the DPoP replay cache and pushed requests
// near the end). Here revocations is renamed away, and the tables after
// it must still be purged, the failure still reported.
func TestPurgeGoesOnPastAFailure(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			if err := db.SpendProof(ctx, token.Hash("proof"), t0.Add(time.Minute), t0); err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(`ALTER TABLE revocations RENAME TO revocations_gone`); err != nil {
				t.Fatal(err)
			}
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			if err := db.Purge(ctx, ret, t0.Add(2*time.Minute)); err == nil {
				t.Error("Purge without its revocations table = nil; want the failure reported")
			}
			if n := count(t, raw, "dpop_proofs"); n != 0 {
				t.Errorf("%d expired DPoP proofs left: the purge stopped at the first table it could not purge", n)
			}
		})
	}
}

// Purge keeps a family while it can mint and while an access token it
// minted may be alive; then the family, its spent tokens and the code that
// started it go. Nothing live is touched.
// A session without refresh tokens (a client without the grant) goes once
// its access token has expired, however old the browser sign-in its code
// came from: its row was dated from that sign-in, outside the hour the
// purge reads such sessions from, and stayed for REFRESH_TOKEN_MAX_DAYS.
func TestPurgeRefreshlessFamilyFromAnOldSignIn(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			f := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: "c1", AuthTime: t0.Add(-11 * time.Hour)}
			if _, err := db.CreateFamily(ctx, f, "", time.Time{}, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 90 * 24 * time.Hour}
			if err := db.Purge(ctx, ret, t0.Add(time.Hour+2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "token_families"); n != 0 {
				t.Fatalf("%d families once the refresh-less session's access token expired; want none", n)
			}
		})
	}
}

func TestPurgeFamilies(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 10 * time.Hour}
			mk := func(exp time.Duration) (store.Family, string) {
				f := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: "c1", AuthTime: t0}
				rt := token.NewOpaque()
				if _, err := db.CreateFamily(ctx, f, token.Hash(rt), t0.Add(exp), time.Hour, t0); err != nil {
					t.Fatal(err)
				}
				return f, rt
			}
			live, liveRT := mk(5 * time.Hour)   // can mint until t0+5h
			revoked, _ := mk(5 * time.Hour)     // revoked at t0
			expired, _ := mk(30 * time.Minute)  // its only token expires at t0+30m
			rotated, rotRT := mk(5 * time.Hour) // rotated at t0+3h, then revoked
			if _, err := db.RevokeSession(ctx, revoked.ID, ret.AccessTTL, t0); err != nil {
				t.Fatal(err)
			}
			next := token.NewOpaque()
			if _, err := db.RotateRefresh(ctx, token.Hash(rotRT), token.Hash(next), "c1", "", false, 2*time.Hour, ret.MaxAge, t0.Add(3*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if _, err := db.RevokeSession(ctx, rotated.ID, ret.AccessTTL, t0.Add(3*time.Hour)); err != nil {
				t.Fatal(err)
			}
			families := func() int { return count(t, raw, "token_families") }
			if n := families(); n != 4 {
				t.Fatalf("%d families; want 4", n)
			}
			// Within an access token's life of their last mint, all stay.
			if err := db.Purge(ctx, ret, t0.Add(59*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := families(); n != 4 {
				t.Fatalf("after a purge at t0+59m: %d families; want 4 (access tokens may be alive)", n)
			}
			// At t0+2h: the revoked and the expired go; the live one stays,
			// and so does the one rotated at t0+3h... which is not yet
			// minted at t0+2h in this story, so look at t0+3h30 instead.
			if err := db.Purge(ctx, ret, t0.Add(3*time.Hour+30*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := families(); n != 2 {
				t.Fatalf("after a purge at t0+3h30: %d families; want 2 (live, and rotated 30 min ago)", n)
			}
			for _, f := range []store.Family{revoked, expired} {
				if r, _ := db.RevokeSession(ctx, f.ID, ret.AccessTTL, t0); r != nil {
					t.Fatalf("family %s survived the purge", f.ID)
				}
			}
			if err := db.Purge(ctx, ret, t0.Add(4*time.Hour+2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n, rts := families(), count(t, raw, "refresh_tokens"); n != 1 || rts != 1 {
				t.Fatalf("after a purge at t0+4h02: %d families, %d refresh tokens; want the live one only", n, rts)
			}
			if got, err := db.AnyRefreshToken(ctx, token.Hash(liveRT)); err != nil || got.Family.ID != live.ID {
				t.Fatalf("the live family's token: %+v, %v", got, err)
			}
			// Past its max age the live family goes too, with its token.
			if err := db.Purge(ctx, ret, t0.Add(ret.MaxAge+2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n, rts := families(), count(t, raw, "refresh_tokens"); n != 0 || rts != 0 {
				t.Fatalf("after every lifetime: %d families, %d refresh tokens; want none", n, rts)
			}
		})
	}
}

// At most one reset link works at a time, and at most max are made per
// account per hour.
func TestResetTokensPerAccount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		var links []string
		for i := 0; i < 3; i++ {
			h := token.Hash(token.NewOpaque())
			if err := db.ReplaceResetToken(ctx, h, u.ID, 3, t0.Add(time.Hour), t0.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatalf("link %d: %v", i, err)
			}
			links = append(links, h)
		}
		if err := db.ReplaceResetToken(ctx, token.Hash(token.NewOpaque()), u.ID, 3, t0.Add(time.Hour), t0.Add(10*time.Minute)); !errors.Is(err, store.ErrLimited) {
			t.Fatalf("a fourth link within the hour: %v; want ErrLimited", err)
		}
		// Only the newest works.
		for i, h := range links[:2] {
			if _, _, err := db.ResetPassword(ctx, h, "$x", time.Hour, t0.Add(11*time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("replaced link %d still works: %v", i, err)
			}
		}
		// An hour later the account may have a new one.
		if err := db.ReplaceResetToken(ctx, token.Hash(token.NewOpaque()), u.ID, 3, t0.Add(2*time.Hour), t0.Add(61*time.Minute)); err != nil {
			t.Fatalf("a link an hour later: %v", err)
		}
		if _, _, err := db.ResetPassword(ctx, links[2], "$x", time.Hour, t0.Add(62*time.Minute)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the link replaced an hour later still works: %v", err)
		}
	})
}

// A refused statement (a CHECK constraint: a bug) is an internal error, not
// ErrUnavailable, so it answers 500 and not a 503 that invites retries;
// a database that cannot answer is ErrUnavailable.
func TestErrorClasses(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			err := db.Revoke(ctx, store.Revocation{Kind: "bogus", Subject: "x", ExpiresAt: 1})
			if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) {
				t.Fatalf("a CHECK violation = %v; want an internal error", err)
			}
			other, err := store.Open(ctx, url, storetest.Options())
			if err != nil {
				t.Fatal(err)
			}
			other.Close()
			if err := other.Revoke(ctx, store.Revocation{Kind: store.RevokeJTI, Subject: "x", ExpiresAt: 1}); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("a write on a closed handle = %v; want ErrUnavailable", err)
			}
			// A deadline that passes after the last statement, before COMMIT:
			// database/sql rolled back, and Commit says only sql.ErrTxDone.
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			err = db.TxExec(short, func(exec func(string) error) error {
				if err := exec(`UPDATE audit_head SET n = n WHERE one = 1`); err != nil {
					return err
				}
				<-short.Done()
				time.Sleep(100 * time.Millisecond) // database/sql's watcher rolls back
				return nil
			})
			if err = db.Classify(err); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("a COMMIT past its deadline = %v; want ErrUnavailable", err)
			}
			if d == store.SQLite {
				return
			}
			// A standby, or a failover under way: writes refused as read-only
			// (PostgreSQL 25006, MariaDB 1792). And a statement over the
			// server's time limit (PostgreSQL 57014, MariaDB 1969).
			conn, err := storetest.Raw(t, d, url).Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			slow := map[string]string{store.Postgres: `SET statement_timeout = 10; SELECT pg_sleep(1)`,
				store.MySQL: `SET STATEMENT max_statement_time = 0.01 FOR SELECT SLEEP(1)`}[d]
			for _, q := range []string{`START TRANSACTION READ ONLY`, `UPDATE audit_head SET n = n WHERE one = 1`, `ROLLBACK`, slow} {
				_, err := conn.ExecContext(ctx, q)
				switch q {
				case `START TRANSACTION READ ONLY`, `ROLLBACK`:
					if err != nil {
						t.Fatal(err)
					}
				default:
					if err = db.Classify(err); !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("%s = %v; want ErrUnavailable", q, err)
					}
				}
			}
		})
	}
}

// Ending one browser sign-in (RP-initiated logout) returns it with each
// client it gave a code to that has a back-channel logout URI, voids its
// unexchanged codes, and touches no other sign-in. The record of which
// clients a sign-in reached goes with the sign-in, the client, or the purge.
func TestEndSignIn(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			session, code, signIn := newSignIn(t, db, u.ID)
			other, otherCode, _ := newSignIn(t, db, u.ID)
			// A second code for the same client and sign-in records nothing new;
			// a client without a back-channel URI is not announced.
			quiet := store.Client{ID: "quiet", Name: "x", GrantTypes: []string{"authorization_code"}}
			if err := db.CreateClient(ctx, 0, &quiet, t0); err != nil {
				t.Fatal(err)
			}
			for _, cl := range []string{signIn.ClientID, "quiet"} {
				if err := db.CreateCode(ctx, &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: cl, UserID: u.ID, CodeChallenge: "x",
					AuthTime: t0, SID: signIn.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
					t.Fatal(err)
				}
			}
			if n := count(t, raw, "session_clients"); n != 3 {
				t.Fatalf("%d session_clients rows; want 3", n)
			}
			ended, err := db.DeleteSession(ctx, session, time.Hour, t0)
			if err != nil || len(ended.Revocations) != 0 || len(ended.SignIns) != 1 || ended.SignIns[0] != signIn {
				t.Fatalf("DeleteSession = %+v, %v; want [%+v]", ended, err, signIn)
			}
			if _, err := db.CodeByHash(ctx, code); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("pending code survived its sign-in: %v", err)
			}
			if _, err := db.SessionByHash(ctx, other, t0); err != nil {
				t.Fatalf("the other sign-in ended: %v", err)
			}
			if _, err := db.CodeByHash(ctx, otherCode); err != nil {
				t.Fatalf("the other sign-in's code went: %v", err)
			}
			if n := count(t, raw, "session_clients"); n != 1 {
				t.Fatalf("%d session_clients rows after the logout; want 1", n)
			}
			// Ending it again announces nothing.
			if ended, err := db.DeleteSession(ctx, session, time.Hour, t0); err != nil || len(ended.SignIns) != 0 {
				t.Fatalf("second DeleteSession = %+v, %v", ended, err)
			}
			// The expired sign-in is purged with its record.
			if err := db.Purge(ctx, store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: time.Hour}, t0.Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "session_clients"); n != 0 {
				t.Fatalf("%d session_clients rows after the purge; want 0", n)
			}
		})
	}
}

// What the purge before migration 0028 left where it could not finish (a
// session with no unspent token, not revoked; a used code and a redeemed
// device request whose session was gone) is ended by 0028 and then purged:
// the purge by indexes of the dead never finds it otherwise.
func TestPurgeAfter0028TakesWhatTheOldOneLeft(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, url := openThrough(t, d, "0027_deleted_users")
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "c1", Name: "x", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			old, young := now.Add(-48*time.Hour).Unix(), now.Add(-time.Minute).Unix()
			for _, q := range []string{
				fmt.Sprintf(`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at) VALUES ('spent', %d, 'c1', %d, %d), ('young', %d, 'c1', %d, %d)`, u.ID, old, old, u.ID, young, young),
				fmt.Sprintf(`INSERT INTO refresh_tokens (hash, family_id, created_at, expires_at, used_at) VALUES ('rt-spent', 'spent', %d, %d, %d)`, old, old+60, old),
				fmt.Sprintf(`INSERT INTO auth_codes (hash, client_id, user_id, redirect_uri, code_challenge, auth_time, created_at, expires_at, used_at, family_id) VALUES ('orphan', 'c1', %d, 'x', 'x', %d, %d, %d, %d, 'gone')`, u.ID, old, old, old, old),
				fmt.Sprintf(`INSERT INTO device_codes (hash, user_code, client_id, scope, created_at, expires_at, interval_s, status, family_id) VALUES ('orphan', 'BCDFGHJK', 'c1', '', %d, %d, 5, 'redeemed', 'gone')`, old, old),
			} {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			migrateRest(t, d, db, raw, "0028_purge_indexes")
			if err := db.Purge(ctx, store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 90 * 24 * time.Hour}, now); err != nil {
				t.Fatal(err)
			}
			for table, want := range map[string]int{"token_families": 1, "refresh_tokens": 0, "auth_codes": 0, "device_codes": 0} {
				if n := count(t, raw, table); n != want {
					t.Errorf("%d %s after 0028 and a purge; want %d (the young session alone)", n, table, want)
				}
			}
		})
	}
}

// openThrough opens a fresh database of dialect d with the migrations up
// to version applied, and returns it with its URL: a test stores rows as
// they were before a later migration, then runs it (db.Migrate).
func openThrough(t *testing.T, d, version string) (*store.DB, string) {
	t.Helper()
	url := storetest.URL(t, d)
	db, err := store.Open(ctx, url, storetest.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.MigrateThrough(ctx, version, t0); err != nil {
		t.Fatal(err)
	}
	return db, url
}

// migrateRest applies the migrations openThrough left out; on MySQL, whose
// DDL commits by itself, version then runs again, as after a stop before
// its record, and must do so without harm.
func migrateRest(t *testing.T, d string, db *store.DB, raw *sql.DB, version string) {
	t.Helper()
	if _, err := db.Migrate(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if d != store.MySQL {
		return
	}
	if _, err := raw.Exec(`DELETE FROM schema_migrations WHERE version = '` + version + `'`); err != nil {
		t.Fatal(err)
	}
	if applied, err := db.Migrate(ctx, t0); err != nil || len(applied) != 1 {
		t.Fatalf("Migrate = %v, %v; want %s run again", applied, err, version)
	}
}

// Ending a browser sign-in (a logout) ends the sessions its codes and
// device approvals started, each with a sid revocation, and no other: not
// another sign-in's, nor a REST login's. Families from before migration
// 0020 take their sign-in's sid from the code or device request that
// started them; on MySQL, whose DDL commits by itself, 0020 runs again
// (stopped before its record) without harm.
func TestEndSignInEndsItsFamilies(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, url := openThrough(t, d, "0019_device_address")
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			session, code, signIn := newSignIn(t, db, u.ID)
			_, otherCode, _ := newSignIn(t, db, u.ID)
			for _, q := range []string{ // sessions started before 0020
				// Made at t0: 0028 ends a day-old session without refresh tokens.
				`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at) VALUES ('by-code', %[1]d, 'c', 0, %[6]d), ('by-device', %[1]d, 'c', 0, %[6]d), ('other', %[1]d, 'c', 0, %[6]d)`,
				`UPDATE auth_codes SET used_at = 1, family_id = 'by-code' WHERE hash = '%[2]s'`,
				`UPDATE auth_codes SET used_at = 1, family_id = 'other' WHERE hash = '%[3]s'`,
				`INSERT INTO device_codes (hash, user_code, client_id, created_at, expires_at, interval_s, status, user_id, sid, family_id)
VALUES ('d', 'd', '%[4]s', 0, 0, 5, 'redeemed', %[1]d, '%[5]s', 'by-device')`,
			} {
				if _, err := raw.Exec(fmt.Sprintf(q, u.ID, code, otherCode, signIn.ClientID, signIn.SID, t0.Unix())); err != nil {
					t.Fatal(err)
				}
			}
			migrateRest(t, d, db, raw, "0020_family_sid")
			// Started since: by a code of the sign-in, and by a REST login.
			second := token.Hash(token.NewOpaque())
			if err := db.CreateCode(ctx, &store.Code{Hash: second, ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x", AuthTime: t0,
				SID: signIn.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
				t.Fatal(err)
			}
			f := store.Family{ID: "by-new-code", UserID: u.ID, ClientID: signIn.ClientID, AuthTime: t0, SID: signIn.SID}
			if _, err := db.ExchangeCode(ctx, second, store.Issued{Family: &f}, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			rest, _ := newFamily(t, db, u.ID)
			ended, err := db.DeleteSession(ctx, session, time.Hour, t0)
			var want []store.Revocation
			for _, id := range []string{"by-code", "by-device", "by-new-code"} {
				want = append(want, store.SessionRevocation(id, time.Hour, t0))
			}
			bySubject := func(a, b store.Revocation) int { return strings.Compare(a.Subject, b.Subject) }
			slices.SortFunc(ended.Revocations, bySubject)
			if err != nil || !slices.Equal(ended.Revocations, want) {
				t.Fatalf("DeleteSession revocations = %+v, %v; want %+v", ended.Revocations, err, want)
			}
			stored, _ := revocations(db, time.Unix(0, 0), t0)
			if slices.SortFunc(stored, bySubject); !slices.Equal(stored, want) {
				t.Fatalf("stored revocations = %+v; want %+v", stored, want)
			}
			for _, id := range []string{"other", rest.ID} {
				if r, err := db.RevokeSession(ctx, id, time.Hour, t0); err != nil || r == nil {
					t.Fatalf("family %s, not the sign-in's, was revoked: %+v, %v", id, r, err)
				}
			}
		})
	}
}

// A logout by the sid of a sign-in whose row is gone (expired, purged)
// still ends what it started: its families, each with a sid revocation,
// and its codes not exchanged yet, with one audit event; a repeat (in the
// same second) ends nothing and appends none. Before, no row was nothing
// to end (a regression test).
func TestEndSignInAfterItsPurge(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		session, code, signIn := newSignIn(t, db, u.ID)
		f := store.Family{ID: "by-code", UserID: u.ID, ClientID: signIn.ClientID, AuthTime: t0, SID: signIn.SID}
		if _, err := db.ExchangeCode(ctx, code, store.Issued{Family: &f}, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		late := token.Hash(token.NewOpaque()) // outlives its sign-in
		if err := db.CreateCode(ctx, &store.Code{Hash: late, ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x", AuthTime: t0,
			SID: signIn.SID, SessionHash: session, ExpiresAt: t0.Add(2 * time.Hour)}, t0); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Hour)
		if err := db.Purge(ctx, store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}, now); err != nil {
			t.Fatal(err)
		}
		if ended, err := db.DeleteSessionBySID(ctx, signIn.SID, "", time.Hour, now); err != nil || ended.Revocations != nil {
			t.Fatalf("logout of the purged sign-in for no relying party: %+v, %v; want nothing ended", ended.Revocations, err)
		}
		for i, want := range [][]store.Revocation{{store.SessionRevocation(f.ID, time.Hour, now)}, nil} {
			e := event("session.ended", store.FormatID(u.ID))
			ended, err := db.DeleteSessionBySID(store.WithEvent(ctx, e), signIn.SID, signIn.ClientID, time.Hour, now)
			if err != nil || !slices.Equal(ended.Revocations, want) || (e.Hash != "") != (want != nil) {
				t.Fatalf("logout %d of the purged sign-in: %+v, %v, event appended: %v; want %+v", i+1, ended.Revocations, err, e.Hash != "", want)
			}
		}
		g := store.Family{ID: "late", UserID: u.ID, ClientID: signIn.ClientID, AuthTime: t0, SID: signIn.SID}
		if _, err := db.ExchangeCode(ctx, late, store.Issued{Family: &g}, time.Hour, now); !errors.Is(err, store.ErrReused) {
			t.Fatalf("exchange of the purged sign-in's code after its logout: %v; want ErrReused", err)
		}
	})
}

// A client's DPoP, PAR and resource-server settings read back (its
// resource too, migration 0024). A DPoP proof is spent once until it
// expires; a pushed request is taken
// once, by its own client, then read by the sign-in's forms until it is
// finished or expires; a bound family rotates only with its key. All of it
// is purged at expiry.
func TestDPoPAndPushedRequests(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			p := token.Hash("jkt.jti")
			if err := db.SpendProof(ctx, p, t0.Add(time.Minute), t0); err != nil {
				t.Fatal(err)
			}
			if err := db.SpendProof(ctx, p, t0.Add(time.Minute), t0.Add(59*time.Second)); !errors.Is(err, store.ErrReused) {
				t.Fatalf("a replayed proof: %v; want ErrReused", err)
			}
			if err := db.SpendProof(ctx, p, t0.Add(2*time.Minute), t0.Add(time.Minute)); err != nil {
				t.Fatalf("the same proof once its record expired: %v", err)
			}

			for _, id := range []string{"c1", "c2"} {
				c := &store.Client{ID: id, Name: id, GrantTypes: []string{"authorization_code"}, RequireDPoP: id == "c1", RequirePAR: true, ResourceServer: true}
				if id == "c1" {
					c.Resource = "https://api.example.com/v2"
				}
				if err := db.CreateClient(ctx, 0, c, t0); err != nil {
					t.Fatal(err)
				}
			}
			if c, err := db.ClientByID(ctx, "c1"); err != nil || !c.RequireDPoP || !c.RequirePAR || !c.ResourceServer || c.Resource != "https://api.example.com/v2" {
				t.Fatalf("client flags read back: %+v, %v", c, err)
			}
			h, taken := token.Hash("urn:ietf:params:oauth:request_uri:x"), token.Hash("urn:ietf:params:oauth:request_uri:x taken")
			if err := db.PushRequest(ctx, h, "c1", "scope=a", t0.Add(time.Minute), t0); err != nil {
				t.Fatal(err)
			}
			if _, err := db.PushedRequest(ctx, h, "c1", t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("read before it was taken: %v", err)
			}
			if _, err := db.TakePushedRequest(ctx, h, taken, "c2", t0.Add(10*time.Minute), t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("taken by another client: %v", err)
			}
			if got, err := db.TakePushedRequest(ctx, h, taken, "c1", t0.Add(10*time.Minute), t0.Add(time.Second)); err != nil || got != "scope=a" {
				t.Fatalf("take = %q, %v", got, err)
			}
			if _, err := db.TakePushedRequest(ctx, h, taken, "c1", t0.Add(10*time.Minute), t0.Add(2*time.Second)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("taken twice: %v", err)
			}
			if _, err := db.PushedRequest(ctx, h, "c1", t0.Add(9*time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("read under the request_uri's own name once taken: %v", err)
			}
			if got, err := db.PushedRequest(ctx, taken, "c1", t0.Add(9*time.Minute)); err != nil || got != "scope=a" {
				t.Fatalf("read by the forms = %q, %v", got, err)
			}
			if err := db.FinishPushedRequest(ctx, taken); err != nil {
				t.Fatal(err)
			}
			if _, err := db.PushedRequest(ctx, taken, "c1", t0.Add(9*time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("read after it was finished: %v", err)
			}
			late := token.Hash("late")
			db.PushRequest(ctx, late, "c1", "x=1", t0.Add(time.Minute), t0)
			if _, err := db.TakePushedRequest(ctx, late, token.Hash("late taken"), "c1", t0.Add(time.Hour), t0.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("taken after it expired: %v", err)
			}

			u := newUser(t, db, "ann@example.com", "ann")
			f := store.Family{ID: token.NewOpaque(), UserID: u.ID, ClientID: "c1", AuthTime: t0, DPoPJKT: "thumb-1"}
			rt := token.NewOpaque()
			if _, err := db.CreateFamily(ctx, f, token.Hash(rt), t0.Add(time.Hour), time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			for _, jkt := range []string{"", "thumb-2"} {
				if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(token.NewOpaque()), "c1", jkt, false, time.Hour, time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("a bound family rotated with key %q: %v", jkt, err)
				}
			}
			if got, err := db.AnyRefreshToken(ctx, token.Hash(rt)); err != nil || got.Used || got.Family.DPoPJKT != "thumb-1" {
				t.Fatalf("after refused rotations: %+v, %v; want unspent, bound to thumb-1", got, err)
			}
			if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(token.NewOpaque()), "c1", "thumb-1", false, time.Hour, time.Hour, t0); err != nil {
				t.Fatalf("rotation with the family's key: %v", err)
			}

			if err := db.Purge(ctx, store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: time.Hour}, t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n, m := count(t, raw, "dpop_proofs"), count(t, raw, "pushed_requests"); n != 0 || m != 0 {
				t.Fatalf("after the purge: %d proofs, %d pushed requests; want 0", n, m)
			}
		})
	}
}

// A refresh token is Bound when its family was bound to a DPoP key as it
// was issued: the first token of a family created bound, and each one a
// rotation issues once the family is bound, by that rotation (bind) too;
// not one issued before, nor one from a rotation that proves a key but
// does not bind (a confidential client's). A token from before migration
// 0022 reads as not bound, whatever its family; on MySQL, whose DDL
// commits by itself, 0022 runs again (stopped before its record).
func TestRefreshTokenBound(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, url := openThrough(t, d, "0021_delete_indexes")
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			old := token.NewOpaque()
			for _, q := range []string{ // a bound family's token from before 0022
				`INSERT INTO token_families (id, user_id, client_id, auth_time, created_at, dpop_jkt) VALUES ('old', %[1]d, 'c1', 0, %[2]d, 'thumb-1')`,
				`INSERT INTO refresh_tokens (hash, family_id, created_at, expires_at) VALUES ('%[3]s', 'old', %[2]d, %[2]d + 3600)`,
			} {
				if _, err := raw.Exec(fmt.Sprintf(q, u.ID, t0.Unix(), token.Hash(old))); err != nil {
					t.Fatal(err)
				}
			}
			migrateRest(t, d, db, raw, "0022_refresh_bound")
			rotate := func(rt, jkt string, bind bool) string {
				t.Helper()
				next := token.NewOpaque()
				if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "c1", jkt, bind, time.Hour, time.Hour, t0); err != nil {
					t.Fatalf("RotateRefresh(key %q, bind %v): %v", jkt, bind, err)
				}
				return next
			}
			start := func(id, jkt string) string {
				t.Helper()
				rt := token.NewOpaque()
				if _, err := db.CreateFamily(ctx, store.Family{ID: id, UserID: u.ID, ClientID: "c1", AuthTime: t0, DPoPJKT: jkt}, token.Hash(rt), t0.Add(time.Hour), time.Hour, t0); err != nil {
					t.Fatal(err)
				}
				return rt
			}
			b0 := start("bound", "thumb-1")
			u0 := start("unbound", "")
			u1 := rotate(u0, "thumb-2", false)
			u2 := rotate(u1, "thumb-2", true)
			for _, c := range []struct {
				name, rt string
				want     bool
			}{
				{"from before 0022, of a bound family", old, false},
				{"its successor", rotate(old, "thumb-1", false), true},
				{"the first of a family created bound", b0, true},
				{"its successor", rotate(b0, "thumb-1", true), true},
				{"the first of an unbound family", u0, false},
				{"issued by a rotation with a key, without bind", u1, false},
				{"issued by the rotation that bound the family", u2, true},
				{"its successor", rotate(u2, "thumb-2", true), true},
			} {
				got, err := db.AnyRefreshToken(ctx, token.Hash(c.rt))
				if err != nil || got.Bound != c.want {
					t.Errorf("%s: AnyRefreshToken = %+v, %v; want Bound %v", c.name, got, err, c.want)
				}
			}
			if got, err := db.AnyRefreshToken(ctx, token.Hash(u2)); err != nil || got.Family.DPoPJKT != "thumb-2" {
				t.Errorf("the family bound by a rotation: %+v, %v; want bound to thumb-2", got, err)
			}
		})
	}
}

// A binary built without a MySQL driver (oauth2-api) refuses a mysql:// URL
// in one line that names the binary that has one, without the password.
func TestOpenMySQLWithoutDriver(t *testing.T) {
	_, err := store.Open(context.Background(), "mysql://root:hunter2@127.0.0.1:1/x", store.Options{})
	if err == nil || !strings.Contains(err.Error(), "oauth2-api-mysql") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open(mysql://...) without a driver = %v; want one line naming oauth2-api-mysql", err)
	}
}

// TestTransactionWaitEndsAtOpTimeout: a transaction whose statement waits
// for a row lock ends at OpTimeout as unavailable (a 503), even when its
// caller's context has no deadline (the janitor's, most requests'). Its
// statements ran under the caller's context, and database/sql's rollback at
// the transaction's deadline waited for them: on PostgreSQL the password
// change below waited for as long as the lock was held.
func TestTransactionWaitEndsAtOpTimeout(t *testing.T) {
	db, raw := onPostgres(t)
	u := newUser(t, db, "ann@example.com", "ann")
	hold, _ := holdRow(t, raw, store.Postgres, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, u.ID)
	done := make(chan error, 1)
	go func() {
		_, err := db.SetPassword(context.Background(), u.ID, u.PasswordHash, "$other", "", time.Hour, t0)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("a password change behind a held row lock: %v; want ErrUnavailable", err)
		}
	case <-time.After(12 * store.OpTimeout): // fail instead of hanging
		t.Errorf("a password change behind a held row lock still waits %v after its OpTimeout", 12*store.OpTimeout)
		hold.Rollback()
		<-done
	}
}

// Consent is remembered per user, client and resource (RFC 8707), ""
// standing for none (the ISSUER): migration 0016 keeps each row from
// before it as the default audience's, and a consent at one resource
// neither reads as nor replaces one at another. On MySQL, whose DDL
// commits by itself, 0016 runs again (stopped before its record) without
// harm.
func TestConsentsPerResource(t *testing.T) {
	const a, b = "https://api-a.example.com", "https://api-b.example.com"
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, url := openThrough(t, d, "0015_admins_lock")
			u := newUser(t, db, "ann@example.com", "ann")
			for _, c := range []string{"c1", "c2"} {
				if err := db.CreateOldClient(ctx, c, "", t0); err != nil {
					t.Fatal(err)
				}
			}
			raw := rawDB(t, d, url)
			if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO consents (user_id, client_id, scope, updated_at) VALUES (%d, 'c1', 'read', 0)`, u.ID)); err != nil {
				t.Fatal(err)
			}
			if applied, err := db.Migrate(ctx, t0); err != nil || len(applied) == 0 || applied[0] != "0016_consent_resource" {
				t.Fatalf("Migrate = %v, %v; want 0016 applied first", applied, err)
			}
			want := func(client, resource, scope string) {
				t.Helper()
				got, ok, err := db.ConsentedScope(ctx, u.ID, client, resource)
				if err != nil || ok != (scope != "") || got != scope {
					t.Fatalf("ConsentedScope(%s, %q) = %q, %v, %v; want %q", client, resource, got, ok, err, scope)
				}
			}
			want("c1", "", "read")
			want("c1", a, "")
			if err := db.SaveConsent(ctx, u.ID, "", clientOf("c1"), a, "read write", t0); err != nil {
				t.Fatal(err)
			}
			if err := db.SaveConsent(ctx, u.ID, "", clientOf("c1"), b, "write", t0); err != nil {
				t.Fatal(err)
			}
			if err := db.SaveConsent(ctx, u.ID, "", clientOf("c1"), b, "read write", t0); err != nil { // replaces B's, only
				t.Fatal(err)
			}
			want("c1", "", "read")
			want("c1", a, "read write")
			want("c1", b, "read write")
			want("c2", a, "")
			if d != store.MySQL {
				return
			}
			// 0016, 0017 (the sessions' prev_hash) and 0019 (the device
			// requests' address), each one ALTER behind a check, run again
			// as after a stop before their records.
			if _, err := raw.Exec(`DELETE FROM schema_migrations WHERE version IN ('0016_consent_resource', '0017_session_prev_hash', '0019_device_address')`); err != nil {
				t.Fatal(err)
			}
			if applied, err := db.Migrate(ctx, t0); err != nil || len(applied) != 3 {
				t.Fatalf("Migrate = %v, %v; want 0016, 0017 and 0019 run again", applied, err)
			}
			want("c1", "", "read")
			want("c1", b, "read write")
		})
	}
}

// On PostgreSQL lower() follows the database's collation: under a Turkish
// one lower('I') is the dotless 'ı'. Usernames are ASCII and lowered as Go
// lowers them whatever the collation, so KIM and kim are one name there
// too, and a login by the lowered name finds KIM (a regression test: the
// second account was created, and kim found only it).
func TestUsernameOneNameUnderATurkishCollation(t *testing.T) {
	storetest.URL(t, store.Postgres) // skips, or fails in CI, without the server
	base := os.Getenv("TEST_POSTGRES_URL")
	raw := storetest.Raw(t, store.Postgres, base)
	name := "t_tr_" + token.Hash(token.NewOpaque())[:12]
	if _, err := raw.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.utf8'`); err != nil {
		t.Fatalf("a database of a Turkish collation: %v", err)
	}
	t.Cleanup(func() { raw.ExecContext(context.Background(), `DROP DATABASE `+name+` WITH (FORCE)`) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db := storetest.OpenURL(t, u.String())
	kim := newUser(t, db, "kim@example.com", "KIM")
	if err := db.CreateUser(ctx, &store.User{Email: "kim2@example.com", Username: "kim", PasswordHash: "$argon2id$x", IsActive: true}, t0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second account named kim beside KIM: %v; want ErrConflict", err)
	}
	if got, err := db.UserByUsername(ctx, "kim"); err != nil || got.ID != kim.ID {
		t.Errorf("UserByUsername(kim) = %+v, %v; want KIM's account", got, err)
	}
}
