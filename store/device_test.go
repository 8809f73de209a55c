package store_test

import (
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// A device request: a user code is unique among the rows; it is decided
// once, while pending and unexpired; redeemed once, only when approved;
// polled only by its client. Purge removes it an hour after it expires.
func TestDeviceCodes(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			if err := db.CreateClient(ctx, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			mk := func(userCode string) *store.DeviceCode {
				dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: userCode, ClientID: "tv", Scope: "read", ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
				if err := db.CreateDeviceCode(ctx, dc, t0); err != nil {
					t.Fatal(err)
				}
				return dc
			}
			a, b := mk("mac-a"), mk("mac-b")
			if err := db.CreateDeviceCode(ctx, &store.DeviceCode{Hash: "other", UserCode: "mac-a", ClientID: "tv", ExpiresAt: t0.Add(time.Minute), Interval: 5}, t0); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("a second row with user code mac-a: %v; want ErrConflict", err)
			}
			if got, err := db.PendingDeviceCode(ctx, "mac-a", t0); err != nil || got.Hash != a.Hash || got.Status != store.DevicePending || got.Scope != "read" {
				t.Fatalf("PendingDeviceCode = %+v, %v", got, err)
			}
			if _, err := db.PendingDeviceCode(ctx, "mac-a", t0.Add(10*time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("PendingDeviceCode at expiry: %v; want ErrNotFound", err)
			}
			if _, err := db.PollDeviceCode(ctx, a.Hash, "another", time.Second, 5*time.Second, t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("PollDeviceCode by another client: %v; want ErrNotFound", err)
			}
			s := &store.Session{SID: "sid-1", UserID: u.ID, AuthTime: t0}
			if err := db.DecideDeviceCode(ctx, "mac-a", true, s, t0.Add(10*time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("approval at expiry: %v; want ErrNotFound", err)
			}
			if err := db.DecideDeviceCode(ctx, "mac-a", true, s, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.DecideDeviceCode(ctx, "mac-a", false, nil, t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("deciding twice: %v; want ErrNotFound", err)
			}
			if err := db.DecideDeviceCode(ctx, "mac-b", false, nil, t0); err != nil {
				t.Fatal(err)
			}
			got, err := db.PollDeviceCode(ctx, a.Hash, "tv", time.Second, 5*time.Second, t0)
			if err != nil || got.Status != store.DeviceApproved || got.UserID != u.ID || got.SID != "sid-1" || !got.AuthTime.Equal(t0) {
				t.Fatalf("PollDeviceCode = %+v, %v", got, err)
			}
			is := func() store.Issued {
				return store.Issued{Family: &store.Family{ID: token.NewID(), UserID: u.ID, ClientID: "tv", Scope: "read", AuthTime: t0}}
			}
			if err := db.RedeemDeviceCode(ctx, b.Hash, is(), t0); !errors.Is(err, store.ErrReused) {
				t.Fatalf("redeeming a denied request: %v; want ErrReused", err)
			}
			first := is()
			if err := db.RedeemDeviceCode(ctx, a.Hash, first, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.RedeemDeviceCode(ctx, a.Hash, is(), t0); !errors.Is(err, store.ErrReused) {
				t.Fatalf("redeeming twice: %v; want ErrReused", err)
			}
			if got, err := db.PollDeviceCode(ctx, a.Hash, "tv", time.Second, 5*time.Second, t0); err != nil || got.Status != store.DeviceRedeemed || got.FamilyID != first.Family.ID {
				t.Fatalf("after the redemption: %+v, %v; want redeemed, naming its family", got, err)
			}

			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 10 * time.Hour}
			if err := db.Purge(ctx, ret, t0.Add(69*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "device_codes"); n != 2 {
				t.Fatalf("%d device codes 59 minutes after their expiry; want 2", n)
			}
			if err := db.Purge(ctx, ret, t0.Add(70*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "device_codes"); n != 0 {
				t.Fatalf("%d device codes an hour after their expiry; want 0", n)
			}
		})
	}
}

// What a browser sign-in grants, an approval of a device request or a
// code, is written after the page read the sign-in. A password change ends
// the sign-in and voids what it granted in one transaction, but only what
// it sees: an approval or a code written meanwhile survived it (the change
// had deleted the sign-in's grants and was about to delete the sign-in
// itself) and was redeemed into a session the change did not end, so that
// whoever held the sign-in (a stolen cookie) kept a session after the
// owner changed the password. Here a lock on the sign-in's row holds the
// change between those two steps, deterministically; in production it is a
// round trip. A regression test: both were stored, where the grant now
// holds the user's row (signInLive), so it waits for the change and then
// finds the sign-in gone. After the change, both are refused outright.
func TestGrantRacingPasswordChange(t *testing.T) {
	db, raw := onPostgres(t)
	u := newUser(t, db, "ann@example.com", "ann")
	session, _, signIn := newSignIn(t, db, u.ID)
	if err := db.CreateClient(ctx, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
		t.Fatal(err)
	}
	dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: "mac", ClientID: "tv", ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
	if err := db.CreateDeviceCode(ctx, dc, t0); err != nil {
		t.Fatal(err)
	}
	s, err := db.SessionByHash(ctx, session, t0) // the page reads the sign-in
	if err != nil {
		t.Fatal(err)
	}
	code := &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x",
		AuthTime: t0, SID: s.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}

	hold, holder := holdRow(t, store.Postgres, raw, `SELECT 1 FROM sessions WHERE hash = $1 FOR SHARE`, session)
	changed := make(chan error, 1)
	go func() {
		_, err := db.SetPassword(ctx, u.ID, "$argon2id$new", "", time.Hour, t0)
		changed <- err
	}()
	var changer []int
	for i := 0; len(changer) == 0; i++ {
		if changer = blockedBy(t, raw, holder); i > 1000 {
			t.Fatal("the password change never reached the sign-in's row")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The change has voided the sign-in's grants and waits to delete it:
	// the approval and the code are written now.
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 2)
	go func() { results <- result{"approval", db.DecideDeviceCode(ctx, "mac", true, s, t0)} }()
	go func() { results <- result{"code", db.CreateCode(ctx, code, t0)} }()
	got := map[string]error{}
	for i := 0; len(got)+len(blockedBy(t, raw, changer[0])) < 2; i++ { // each done, or waiting for the change
		select {
		case r := <-results:
			got[r.what] = r.err
		default:
		}
		if i > 1000 {
			t.Fatal("the approval and the code neither finished nor waited for the password change")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-changed; err != nil {
		t.Fatal(err)
	}
	for len(got) < 2 {
		r := <-results
		got[r.what] = r.err
	}
	if err := got["approval"]; !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an approval written while the password change ended its sign-in: %v; want ErrNotFound", err)
	}
	if d, err := db.PollDeviceCode(ctx, dc.Hash, "tv", time.Second, 5*time.Second, t0); err != nil || d.Status != store.DevicePending {
		t.Errorf("the request after the password change: %+v, %v; want pending", d, err)
	}
	if err := got["code"]; !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a code written while the password change ended its sign-in: %v; want ErrNotFound", err)
	}
	if _, err := db.CodeByHash(ctx, code.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the code after the password change: %v; want ErrNotFound", err)
	}

	// Written after the change: refused as not found (before, a foreign
	// key error: a 500 for a sign-in that ended a moment ago).
	code.Hash = token.Hash(token.NewOpaque())
	if err := db.DecideDeviceCode(ctx, "mac", true, s, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an approval by a sign-in the password change ended: %v; want ErrNotFound", err)
	}
	if err := db.CreateCode(ctx, code, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a code of a sign-in the password change ended: %v; want ErrNotFound", err)
	}
}

// onPostgres returns a store and a raw pool on a fresh PostgreSQL
// database, for a test of PostgreSQL's locks; it skips in a build without
// PostgreSQL.
func onPostgres(t *testing.T) (*store.DB, *sql.DB) {
	t.Helper()
	if !slices.Contains(storetest.Dialects, store.Postgres) {
		t.Skip("built without PostgreSQL")
	}
	url := storetest.URL(t, store.Postgres)
	return storetest.OpenURL(t, url), rawDB(t, store.Postgres, url)
}

// holdRow begins a transaction on raw (PostgreSQL or MySQL) that takes the
// row lock of lock, a SELECT … FOR UPDATE or FOR SHARE, and returns it with
// its backend's pid (on MySQL, its connection's id): a test lines up other
// transactions behind it.
func holdRow(t *testing.T, dialect string, raw *sql.DB, lock string, args ...any) (*sql.Tx, int) {
	t.Helper()
	hold, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Rollback() })
	id := `SELECT pg_backend_pid()`
	if dialect == store.MySQL {
		id = `SELECT CONNECTION_ID()`
	}
	var pid int
	if err := hold.QueryRow(id).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(lock, args...); err != nil {
		t.Fatal(err)
	}
	return hold, pid
}

// blockedBy returns the PostgreSQL backends waiting for pid, directly or
// behind another that waits for it.
func blockedBy(t *testing.T, raw *sql.DB, pid int) []int {
	t.Helper()
	rows, err := raw.Query(`WITH RECURSIVE w(pid) AS (SELECT $1::int UNION
  SELECT a.pid FROM pg_stat_activity a, w WHERE w.pid = ANY(pg_blocking_pids(a.pid)))
SELECT pid FROM w WHERE pid <> $1`, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var p int
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// waitBlocked waits until n backends wait for pid, directly or behind
// another that waits for it (blockedBy); after 10 s it fails instead of
// hanging.
func waitBlocked(t *testing.T, raw *sql.DB, pid, n int) {
	t.Helper()
	for i := 0; ; i++ {
		got := len(blockedBy(t, raw, pid))
		if got >= n {
			return
		}
		if i > 1000 {
			t.Fatalf("%d backends wait for the lock; want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
