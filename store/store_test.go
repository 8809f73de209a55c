package store_test

import (
	"context"
	"errors"
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
		{in: "mysql://db/x", bad: true},
		{in: "file:o.db?_pragma=foreign_keys(0)", bad: true},
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
					db, err := store.Open(ctx, url, store.Options{})
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
			db, err := store.Open(ctx, url, store.Options{})
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

func newUser(t testing.TB, db *store.DB, email, username string) *store.User {
	t.Helper()
	u := &store.User{Email: email, Username: username, PasswordHash: "$argon2id$x", IsActive: true}
	if err := db.CreateUser(ctx, u, t0); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u
}

func TestUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
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
		for _, login := range []string{"ann@example.com", "ANN@example.com", "ann", "Ann"} {
			u, err := db.UserByLogin(ctx, login)
			if err != nil || u.ID != a.ID {
				t.Errorf("UserByLogin(%q) = %v, %v", login, u, err)
			}
		}
		if _, err := db.UserByLogin(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByLogin(nobody) = %v; want ErrNotFound", err)
		}
		first := "Ann"
		u, err := db.UpdateProfile(ctx, a.ID, &first, nil, t0.Add(time.Minute))
		if err != nil || u.FirstName != "Ann" || u.LastName != "" || !u.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("UpdateProfile = %+v, %v", u, err)
		}
		admin := store.RoleAdmin
		u, err = db.UpdateUserAdmin(ctx, a.ID, &admin, nil, time.Hour, t0)
		if err != nil || u.Role != store.RoleAdmin || !u.IsActive {
			t.Fatalf("UpdateUserAdmin = %+v, %v", u, err)
		}
		bad := "root"
		if _, err := db.UpdateUserAdmin(ctx, a.ID, &bad, nil, time.Hour, t0); err == nil {
			t.Fatal("UpdateUserAdmin accepted role root")
		}
		newUser(t, db, "bob@example.com", "bob")
		list, total, err := db.ListUsers(ctx, 1, 1)
		if err != nil || total != 2 || len(list) != 1 || list[0].Username != "bob" {
			t.Fatalf("ListUsers(1,1) = %v, %d, %v", list, total, err)
		}
		if err := db.DeleteUser(ctx, a.ID, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UserByID(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted user found: %v", err)
		}
		if err := db.DeleteUser(ctx, a.ID, time.Hour, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete = %v; want ErrNotFound", err)
		}
		// The address and name are free again.
		newUser(t, db, "ann@example.com", "ann")
		revs, err := db.RevocationsSince(ctx, t0, t0)
		if err != nil || len(revs) != 1 || revs[0].Kind != store.RevokeUser || revs[0].Subject != store.FormatID(a.ID) {
			t.Fatalf("revocations after delete = %+v, %v", revs, err)
		}
	})
}

func TestLoginFailures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const max, window = 3, 15 * time.Minute
		acct := token.Hash("ann")
		for i := 1; i <= max; i++ {
			until, _, err := db.LoginLockedUntil(ctx, acct, max, window, t0)
			if err != nil || !until.IsZero() {
				t.Fatalf("before failure %d: locked until %v, %v", i, until, err)
			}
			n, end, err := db.RecordLoginFailure(ctx, acct, window, t0.Add(time.Duration(i)*time.Second))
			if err != nil || n != i || !end.Equal(t0.Add(time.Second+window)) {
				t.Fatalf("failure %d: %d, %v, %v", i, n, end, err)
			}
		}
		until, rec, err := db.LoginLockedUntil(ctx, acct, max, window, t0.Add(time.Minute))
		if err != nil || !rec || !until.Equal(t0.Add(time.Second+window)) {
			t.Fatalf("locked until %v, %v, %v", until, rec, err)
		}
		if until, _, _ := db.LoginLockedUntil(ctx, acct, max, window, t0.Add(time.Second+window)); !until.IsZero() {
			t.Fatalf("still locked after the window: %v", until)
		}
		// A failure after the window starts a new one.
		n, _, _ := db.RecordLoginFailure(ctx, acct, window, t0.Add(2*window))
		if n != 1 {
			t.Fatalf("failure after window counted %d; want 1", n)
		}
		if err := db.ClearLoginFailures(ctx, acct); err != nil {
			t.Fatal(err)
		}
		if until, rec, _ := db.LoginLockedUntil(ctx, acct, 1, window, t0.Add(2*window)); !until.IsZero() || rec {
			t.Fatal("locked, or a failure still on record, after clear")
		}
	})
}

func newFamily(t testing.TB, db *store.DB, userID int64) (store.Family, string) {
	t.Helper()
	f := store.Family{ID: token.NewOpaque(), UserID: userID, ClientID: "c1", Scope: "a b", AuthTime: t0}
	rt := token.NewOpaque()
	if err := db.CreateFamily(ctx, f, token.Hash(rt), t0.Add(time.Hour), t0); err != nil {
		t.Fatal(err)
	}
	return f, rt
}

func TestRefreshRotation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		f, rt := newFamily(t, db, u.ID)
		got, err := db.RefreshTokenByHash(ctx, token.Hash(rt), t0)
		if err != nil || got.Family.ID != f.ID || got.Used || got.Family.Revoked || got.Scope != "a b" || got.Family.UserID != u.ID || !got.UserActive {
			t.Fatalf("RefreshTokenByHash = %+v, %v", got, err)
		}
		// Narrowing: the new token gets the scope asked for.
		rt2 := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(rt2), "c1", "a", t0.Add(time.Hour), t0); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		if n, err := db.RefreshTokenByHash(ctx, token.Hash(rt2), t0); err != nil || n.Scope != "a" || n.Family.Scope != "a b" {
			t.Fatalf("narrowed token %+v, %v", n, err)
		}
		if old, _ := db.RefreshTokenByHash(ctx, token.Hash(rt), t0); old == nil || !old.Used {
			t.Fatalf("old token not spent: %+v", old)
		}
		// A spent token changes nothing.
		rt3 := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(rt3), "c1", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("replay = %v; want ErrNotFound", err)
		}
		if _, err := db.RefreshTokenByHash(ctx, token.Hash(rt3), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatal("a refused rotation stored its new token")
		}
		// Nothing rotates in a revoked family.
		if err := db.RevokeFamily(ctx, f.ID, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(rt2), token.Hash(rt3), "c1", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("rotation in a revoked family = %v; want ErrNotFound", err)
		}
		if got, _ := db.RefreshTokenByHash(ctx, token.Hash(rt2), t0); got == nil || !got.Family.Revoked || got.Used {
			t.Fatalf("after revocation: %+v", got)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash("unknown"), token.Hash(rt3), "c1", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown token = %v; want ErrNotFound", err)
		}
		// Expired tokens are neither found nor rotated.
		_, old := newFamily(t, db, u.ID)
		if _, err := db.RefreshTokenByHash(ctx, token.Hash(old), t0.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired token = %v; want ErrNotFound", err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(old), token.Hash(rt3), "c1", "", t0.Add(3*time.Hour), t0.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired token rotated: %v", err)
		}
	})
}

func TestPasswordChangeRevokesOtherFamilies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		keep, keepRT := newFamily(t, db, u.ID)
		_, otherRT := newFamily(t, db, u.ID)
		if err := db.SetPassword(ctx, u.ID, "$new", keep.ID, t0); err != nil {
			t.Fatal(err)
		}
		k, _ := db.RefreshTokenByHash(ctx, token.Hash(keepRT), t0)
		o, _ := db.RefreshTokenByHash(ctx, token.Hash(otherRT), t0)
		if k.Family.Revoked || !o.Family.Revoked {
			t.Fatalf("after password change: kept revoked=%v, other revoked=%v", k.Family.Revoked, o.Family.Revoked)
		}
		got, _ := db.UserByID(ctx, u.ID)
		if got.PasswordHash != "$new" {
			t.Fatal("password not changed")
		}
	})
}

func TestRevocationsSince(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := store.Revocation{Kind: store.RevokeJTI, Subject: "j1", ExpiresAt: t0.Add(time.Hour).Unix()}
		if err := db.Revoke(ctx, r, t0); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.RevocationsSince(ctx, t0.Add(-time.Second), t0); len(list) != 1 || list[0] != r {
			t.Fatalf("RevocationsSince = %+v", list)
		}
		if list, _ := db.RevocationsSince(ctx, t0.Add(time.Second), t0); len(list) != 0 {
			t.Fatalf("entries from before since: %+v", list)
		}
		if list, _ := db.RevocationsSince(ctx, t0, t0.Add(time.Hour)); len(list) != 0 {
			t.Fatalf("expired entries: %+v", list)
		}
		if err := db.Purge(ctx, time.Hour, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := db.Revoke(ctx, store.Revocation{Kind: "bogus", Subject: "x", ExpiresAt: 1}, t0); err == nil {
			t.Fatal("accepted an unknown revocation kind")
		}
	})
}

// The conditions of a rotation, and concurrent rotations of one token.
func TestRotateRefreshConditions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		f, rt := newFamily(t, db, u.ID)
		next := token.NewOpaque()
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "other-client", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("another client: %v; want ErrNotFound", err)
		}
		got, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(next), "c1", "", t0.Add(time.Hour), t0)
		if err != nil || got.Family.ID != f.ID || got.Family.UserID != u.ID || got.Scope != "a b" || !got.Family.AuthTime.Equal(t0) {
			t.Fatalf("RotateRefresh = %+v, %v", got, err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(rt), token.Hash(token.NewOpaque()), "c1", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("spent token: %v; want ErrNotFound", err)
		}
		n, err := db.RefreshTokenByHash(ctx, token.Hash(next), t0)
		if err != nil || n.Used || n.Scope != "a b" || n.Family.ID != f.ID {
			t.Fatalf("new token %+v, %v", n, err)
		}
		off := false
		if _, err := db.UpdateUserAdmin(ctx, u.ID, nil, &off, time.Hour, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RotateRefresh(ctx, token.Hash(next), token.Hash(token.NewOpaque()), "c1", "", t0.Add(time.Hour), t0); !errors.Is(err, store.ErrNotFound) {
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
					_, err := db.RotateRefresh(ctx, token.Hash(tok), token.Hash(token.NewOpaque()), "c1", "", t0.Add(time.Hour), t0)
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
