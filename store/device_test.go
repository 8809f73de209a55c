package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
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
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			mk := func(userCode string) *store.DeviceCode {
				dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: userCode, ClientID: "tv", Scope: "read", ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
				if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
					t.Fatal(err)
				}
				return dc
			}
			a, b := mk("mac-a"), mk("mac-b")
			if err := db.CreateDeviceCode(ctx, &store.DeviceCode{Hash: "other", UserCode: "mac-a", ClientID: "tv", ExpiresAt: t0.Add(time.Minute), Interval: 5}, 0, 0, t0); !errors.Is(err, store.ErrConflict) {
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
			if _, err := db.RedeemDeviceCode(ctx, b.Hash, is(), time.Hour, t0); !errors.Is(err, store.ErrReused) {
				t.Fatalf("redeeming a denied request: %v; want ErrReused", err)
			}
			first := is()
			if _, err := db.RedeemDeviceCode(ctx, a.Hash, first, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			if _, err := db.RedeemDeviceCode(ctx, a.Hash, is(), time.Hour, t0); !errors.Is(err, store.ErrReused) {
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

// Each early poll grows a request's interval (slow_down). Unbounded, it
// grew past 2,147,483 s, whose milliseconds overflow PostgreSQL's integer
// in PollDeviceCode: every later poll failed there (SQLSTATE 22003, a 500).
// A regression test: from the largest interval that still fits, early
// polls are slow_down and the interval stays; from one just short of the
// request's lifetime (600 s), it grows once more, then no further.
func TestDevicePollIntervalBounded(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ from, want int }{{2_147_483, 2_147_483}, {599, 604}} {
				dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: fmt.Sprint(c.from), ClientID: "tv", ExpiresAt: t0.Add(600 * time.Second), Interval: 5}
				if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
					t.Fatal(err)
				}
				if _, err := raw.Exec(fmt.Sprintf(`UPDATE device_codes SET interval_s = %d WHERE hash = '%s'`, c.from, dc.Hash)); err != nil {
					t.Fatal(err)
				}
				for i, want := range []int{c.from, c.want, c.want} { // the first poll is free, the others early
					got, err := db.PollDeviceCode(ctx, dc.Hash, "tv", time.Second, 5*time.Second, t0)
					if err != nil || got.PollEarly != (i > 0) || got.Interval != want {
						t.Errorf("from %d s, poll %d = %+v, %v; want early %v, interval %d s", c.from, i, got, err, i > 0, want)
					}
				}
			}
		})
	}
}

// A client's device requests were stored however many were alive: a public
// client is named by its client_id alone, so anyone, from any number of
// addresses, could fill the table in its name and raise a guesser's odds.
// Then one address could fill the cap, and every device of the client was
// refused; and a client deleted since the caller read it was counted as
// having none, and its insert failed (a 500). A regression test: with max
// requests alive, one more is ErrLimited, and so is one more from an
// address that has perAddress of them; another address, or another client,
// still asks; an expired one no longer counts, whatever its row; with max
// 0 nothing is counted; a client not there is ErrNotFound.
func TestDeviceCodesCapPerClient(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		for _, id := range []string{"tv", "cli"} {
			if err := db.CreateClient(ctx, 0, &store.Client{ID: id, Name: id, GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
				t.Fatal(err)
			}
		}
		for i, a := range []struct {
			client, address string
			now             time.Time
			max             int
			want            error
		}{
			{"tv", "192.0.2.1", t0, 3, nil},
			{"tv", "192.0.2.1", t0.Add(time.Minute), 3, nil},
			{"tv", "192.0.2.1", t0.Add(time.Minute), 3, store.ErrLimited}, // the address's 2
			{"tv", "2001:db8::/64", t0.Add(time.Minute), 3, nil},
			{"tv", "192.0.2.2", t0.Add(time.Minute), 3, store.ErrLimited}, // the client's 3
			{"cli", "192.0.2.1", t0.Add(time.Minute), 3, nil},
			{"cli", "192.0.2.1", t0.Add(time.Minute), 0, nil},
			{"cli", "192.0.2.1", t0.Add(time.Minute), 0, nil}, // no cap: three from one address
			{"tv", "192.0.2.2", t0.Add(10*time.Minute - time.Second), 3, store.ErrLimited},
			{"tv", "192.0.2.1", t0.Add(10 * time.Minute), 3, nil}, // the first has expired
			{"gone", "192.0.2.1", t0, 3, store.ErrNotFound},
			{"gone", "192.0.2.1", t0, 0, store.ErrNotFound},
		} {
			dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: token.NewOpaque(), ClientID: a.client, ExpiresAt: a.now.Add(10 * time.Minute), Interval: 5, Address: a.address}
			if err := db.CreateDeviceCode(ctx, dc, a.max, 2, a.now); !errors.Is(err, a.want) {
				t.Fatalf("request %d of %s from %s at t0+%v: %v; want %v", i, a.client, a.address, a.now.Sub(t0), err, a.want)
			}
		}
		// An address's share counts its pending requests only: one decided
		// (approved, denied, redeemed) frees its place, so a sign-in done
		// leaves room for the next device behind that address. The
		// client's cap counts every live row: it bounds the table.
		ask := func(userCode string, max int) error {
			dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: userCode, ClientID: "tv", ExpiresAt: t0.Add(30 * time.Minute), Interval: 5, Address: "198.51.100.7"}
			return db.CreateDeviceCode(ctx, dc, max, 2, t0.Add(20*time.Minute))
		}
		for _, code := range []string{"desk-1", "desk-2"} {
			if err := ask(code, 100); err != nil {
				t.Fatal(err)
			}
		}
		if err := ask("desk-3", 100); !errors.Is(err, store.ErrLimited) {
			t.Fatalf("a third pending request from one address: %v; want limit reached", err)
		}
		if err := db.DecideDeviceCode(ctx, "desk-1", false, nil, t0.Add(20*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := ask("desk-3", 100); err != nil {
			t.Fatalf("after one of its two requests was decided, the address asked again: %v; want stored", err)
		}
		if err := ask("desk-4", 3); !errors.Is(err, store.ErrLimited) {
			t.Fatalf("a fourth live request of a client capped at 3 (one decided): %v; want limit reached", err)
		}
	})
}

// A consent is saved after its form read the sign-in; a password change
// forgets the user's consents and ends the sign-ins. A consent saved as the
// change commits does not outlive it: saved first, the change deletes it;
// saved after, it finds the sign-in gone (ErrNotFound). A lock on the
// intruder's earlier consent holds the change at its deletion of consents,
// and the save behind it. A regression test: the save was a write of its
// own, which after the change had deleted the consents stored one the
// owner's browser then met with prompt=none. On SQLite, one writer: the
// change, then the save.
func TestConsentRacingPasswordChange(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			for _, saveFirst := range []bool{false, true} {
				session, _, signIn := newSignIn(t, db, u.ID) // the intruder's
				if err := db.SaveConsent(ctx, u.ID, session, clientOf(signIn.ClientID), "", "read", t0); err != nil {
					t.Fatal(err)
				}
				c := clientOf(signIn.ClientID)
				save := func() error { return db.SaveConsent(ctx, u.ID, session, c, "", "read write", t0) }
				cur, _ := db.UserByID(ctx, u.ID) // the hash the owner's change verified
				change := func() error {
					_, err := db.SetPassword(ctx, u.ID, cur.PasswordHash, cur.PasswordHash+"-owner", "", time.Hour, t0)
					return err
				}
				var changed, saved error
				const lock = `SELECT 1 FROM consents WHERE user_id = $1 AND client_id = $2 FOR UPDATE`
				switch {
				case d == store.SQLite && saveFirst:
					continue
				case d == store.SQLite:
					changed, saved = change(), save()
				case saveFirst:
					saved, changed = lineUp(t, raw, d, save, change, lock, u.ID, signIn.ClientID)
				default:
					changed, saved = lineUp(t, raw, d, change, save, lock, u.ID, signIn.ClientID)
				}
				if changed != nil || (!saveFirst && !errors.Is(saved, store.ErrNotFound)) || (saveFirst && saved != nil) {
					t.Errorf("save first %v: change %v, save %v", saveFirst, changed, saved)
				}
				if scope, ok, err := db.ConsentedScope(ctx, u.ID, signIn.ClientID, ""); ok || err != nil {
					t.Errorf("save first %v: the intruder's consent %q survived the password change (%v)", saveFirst, scope, err)
				}
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
	if err := db.CreateClient(ctx, 0, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
		t.Fatal(err)
	}
	dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: "mac", ClientID: "tv", ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
	if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
		t.Fatal(err)
	}
	s, err := db.SessionByHash(ctx, session, t0) // the page reads the sign-in
	if err != nil {
		t.Fatal(err)
	}
	code := &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x",
		AuthTime: t0, SID: s.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}

	hold, holder := holdRow(t, raw, store.Postgres, `SELECT 1 FROM sessions WHERE hash = $1 FOR SHARE`, session)
	changed := make(chan error, 1)
	go func() {
		_, err := db.SetPassword(ctx, u.ID, u.PasswordHash, "$argon2id$new", "", time.Hour, t0)
		changed <- err
	}()
	var changer []int
	for i := 0; len(changer) == 0; i++ {
		if changer = blockedBy(t, raw, store.Postgres, holder); i > 1000 {
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
	for i := 0; len(got)+len(blockedBy(t, raw, store.Postgres, changer[0])) < 2; i++ { // each done, or waiting for the change
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

// A device request approved in a sign-in's last minutes outlives the
// sign-in's row, which the purge takes at its expiry. A password change or
// reset voided a user's approvals only through the rows of the user's
// sign-ins, so that one was redeemed after the change into a new session.
// A regression test: after the purge, the change or reset, the request is
// not redeemed; another user's approval still is.
func TestPasswordChangeVoidsApprovalOfPurgedSignIn(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			u, bob := newUser(t, db, "ann@example.com", "ann"), newUser(t, db, "bob@example.com", "bob")
			late := t0.Add(59 * time.Minute) // the sign-in (newSignIn) expires at t0+1h
			approved := func(userCode string, s *store.Session, client string) string {
				dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: userCode, ClientID: client, ExpiresAt: late.Add(10 * time.Minute), Interval: 5}
				if err := db.CreateDeviceCode(ctx, dc, 0, 0, late); err != nil {
					t.Fatal(err)
				}
				if err := db.DecideDeviceCode(ctx, userCode, true, s, late); err != nil {
					t.Fatal(err)
				}
				return dc.Hash
			}
			for _, reset := range []bool{false, true} {
				session, _, signIn := newSignIn(t, db, u.ID)
				ann := approved(fmt.Sprint("ann-", reset), &store.Session{SID: signIn.SID, Hash: session, UserID: u.ID, AuthTime: t0}, signIn.ClientID)
				bobs := approved(fmt.Sprint("bob-", reset), &store.Session{SID: "sid-bob", UserID: bob.ID, AuthTime: t0}, signIn.ClientID)
				now := t0.Add(61 * time.Minute)
				if err := db.Purge(ctx, store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 10 * time.Hour}, now); err != nil {
					t.Fatal(err)
				}
				if n := count(t, raw, "sessions"); n != 0 {
					t.Fatalf("%d sign-ins after the purge; want 0", n)
				}
				if reset {
					link := token.Hash(token.NewOpaque())
					if err := db.ReplaceResetToken(ctx, link, u.ID, 3, now.Add(time.Hour), now); err != nil {
						t.Fatal(err)
					}
					if _, _, err := db.ResetPassword(ctx, link, "$argon2id$reset", time.Hour, now); err != nil {
						t.Fatal(err)
					}
				} else if _, err := db.SetPassword(ctx, u.ID, u.PasswordHash, "$argon2id$new", "", time.Hour, now); err != nil {
					t.Fatal(err)
				}
				is := func(userID int64) store.Issued {
					return store.Issued{Family: &store.Family{ID: token.NewID(), UserID: userID, ClientID: signIn.ClientID, AuthTime: t0}}
				}
				if _, err := db.RedeemDeviceCode(ctx, ann, is(u.ID), time.Hour, now); !errors.Is(err, store.ErrReused) {
					t.Errorf("reset %v: redeeming the approval after the change: %v; want ErrReused", reset, err)
				}
				if _, err := db.RedeemDeviceCode(ctx, bobs, is(bob.ID), time.Hour, now); err != nil {
					t.Errorf("reset %v: redeeming another user's approval: %v", reset, err)
				}
			}
		})
	}
}

// RP-initiated logout (by the sign-in's cookie, or by its sid) beside a
// code or a device approval of that sign-in, stored through another
// instance's store, lined up on the audit chain's head in either order.
// The grant holds the user's row (signInLive); the logout did not take it,
// so a grant first had its code unseen by the logout's voiding of the
// sign-in's grants, and the logout's delete of the sign-in then waited for
// it (the foreign key of its client record): the code outlived the logout,
// to be exchanged into a session of a sign-in that had ended, and its
// client was never told. A grant second failed on that foreign key (an
// internal error). Now the logout holds the user's row first, as a password
// change does: a grant first is voided by it and its client told; a grant
// second waits, then finds the sign-in gone.
func TestGrantBesideLogout(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, other, raw := twoOnServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			rp := store.Client{ID: "rp", Name: "RP", GrantTypes: []string{"authorization_code", "urn:ietf:params:oauth:grant-type:device_code"}, BackchannelLogoutURI: "https://rp.example/bc"}
			if err := db.CreateClient(ctx, 0, &rp, t0); err != nil {
				t.Fatal(err)
			}
			audited := func(action string) context.Context {
				return store.WithEvent(ctx, &store.Event{Action: action, Actor: store.FormatID(u.ID), Outcome: "success"})
			}
			for i, c := range []struct{ grantFirst, bySID, device bool }{{true, false, false}, {false, true, false}, {true, true, true}, {false, false, true}} {
				session, _, signIn := newSignIn(t, db, u.ID)
				s := &store.Session{SID: signIn.SID, Hash: session, UserID: u.ID, AuthTime: t0}
				code := &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: rp.ID, UserID: u.ID, CodeChallenge: "x",
					AuthTime: t0, SID: s.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}
				dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: fmt.Sprint("mac-", i), ClientID: rp.ID, ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
				if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
					t.Fatal(err)
				}
				grant := func() error { return other.CreateCode(audited("code"), code, t0) }
				if c.device {
					grant = func() error { return other.DecideDeviceCode(audited("device"), dc.UserCode, true, s, t0) }
				}
				var ended store.Ended
				logout := func() (err error) {
					if c.bySID {
						ended, err = db.DeleteSessionBySID(audited("session.ended"), s.SID, rp.ID, time.Hour, t0)
					} else {
						ended, err = db.DeleteSession(audited("session.ended"), session, time.Hour, t0)
					}
					return err
				}
				first, second := grant, logout
				if !c.grantFirst {
					first, second = logout, grant
				}
				grantErr, logoutErr := lineUp(t, raw, d, first, second, `SELECT 1 FROM audit_head WHERE one = 1 FOR UPDATE`)
				if !c.grantFirst {
					grantErr, logoutErr = logoutErr, grantErr
				}
				if logoutErr != nil {
					t.Fatalf("%+v: the logout: %v", c, logoutErr)
				}
				told := slices.Contains(ended.SignIns, store.SignIn{SID: s.SID, UserID: u.ID, ClientID: rp.ID, URI: rp.BackchannelLogoutURI})
				switch {
				case c.grantFirst && (grantErr != nil || !told):
					t.Errorf("%+v: the grant before the logout: %v; the logout told %+v; want it stored, then its client told", c, grantErr, ended.SignIns)
				case !c.grantFirst && !errors.Is(grantErr, store.ErrNotFound):
					t.Errorf("%+v: the grant after the logout: %v; want ErrNotFound", c, grantErr)
				}
				if _, err := db.CodeByHash(ctx, code.Hash); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%+v: the code after the logout: %v; want ErrNotFound", c, err)
				}
				is := store.Issued{Family: &store.Family{ID: token.NewID(), UserID: u.ID, ClientID: rp.ID, AuthTime: t0}}
				if _, err := db.RedeemDeviceCode(ctx, dc.Hash, is, time.Hour, t0); !errors.Is(err, store.ErrReused) && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%+v: redeeming the device request after the logout: %v; want it refused", c, err)
				}
			}
		})
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
	return onServer(t, store.Postgres)
}

// onServer returns a store and a raw pool on a fresh database of dialect.
func onServer(t *testing.T, dialect string) (*store.DB, *sql.DB) {
	t.Helper()
	url := storetest.URL(t, dialect)
	return storetest.OpenURL(t, url), rawDB(t, dialect, url)
}

// twoOnServer is onServer with a second store on the same database: two
// instances.
func twoOnServer(t *testing.T, dialect string) (db, other *store.DB, raw *sql.DB) {
	t.Helper()
	url := storetest.URL(t, dialect)
	return storetest.OpenURL(t, url), storetest.OpenURL(t, url), rawDB(t, dialect, url)
}

// holdRow begins a transaction on raw (PostgreSQL or MySQL, by dialect)
// that runs lock (its placeholders $1, $2, … in order): a SELECT … FOR
// UPDATE or FOR SHARE, or an INSERT of a key another transaction will
// insert. It returns the transaction with its connection's id: a test
// lines up other transactions behind it.
func holdRow(t *testing.T, raw *sql.DB, dialect, lock string, args ...any) (*sql.Tx, int) {
	t.Helper()
	hold, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Rollback() })
	id := `SELECT pg_backend_pid()`
	if dialect == store.MySQL {
		id, lock = `SELECT CONNECTION_ID()`, regexp.MustCompile(`\$\d+`).ReplaceAllString(lock, "?")
		// The holder stands for another client (a long report), which
		// our sessions' idle bound (store.TxIdleTimeout) does not end.
		// MySQL 8 has no such bound, and refuses the statement.
		hold.Exec(`SET SESSION idle_transaction_timeout = 0`)
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

// blockedBy returns the connections waiting for a row lock of pid's,
// directly or behind another that waits for it.
func blockedBy(t *testing.T, raw *sql.DB, dialect string, pid int) []int {
	t.Helper()
	q, args := `WITH RECURSIVE w(pid) AS (SELECT $1::int UNION
  SELECT a.pid FROM pg_stat_activity a, w WHERE w.pid = ANY(pg_blocking_pids(a.pid)))
SELECT pid FROM w WHERE pid <> $1`, []any{pid}
	if dialect == store.MySQL {
		q, args = `WITH RECURSIVE w(pid) AS (SELECT CAST(? AS UNSIGNED) UNION
  SELECT l.waiting_pid FROM sys.innodb_lock_waits l, w WHERE l.blocking_pid = w.pid)
SELECT pid FROM w WHERE pid <> ?`, []any{pid, pid}
	}
	rows, err := raw.Query(q, args...)
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

// A logout sent with a sign-in's cookie while the same user signs in again
// in another tab (CreateSession with Continues: the same sid, a new cookie)
// ends the sign-in and tells its client, whichever comes first: a logout
// that read the old row before it was replaced ends it by its sid, one
// that comes after finds the old cookie as the new row's prev_hash. Before,
// it ended nothing: the sid lived on, its relying party never told.
func TestLogoutBesideSignInAgain(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, other, raw := twoOnServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			for _, interleaved := range []bool{false, true} {
				old, _, signIn := newSignIn(t, db, u.ID)
				fresh := token.Hash(token.NewOpaque())
				again := func() error {
					_, err := other.CreateSession(ctx, fresh, store.Session{SID: signIn.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour), Continues: old})
					return err
				}
				var ended store.Ended
				logout := func() (err error) {
					ended, err = db.DeleteSession(ctx, old, time.Hour, t0)
					return err
				}
				var againErr, logoutErr error
				if interleaved {
					// The sign-in takes the user's row first; the logout
					// reads the old row, then waits for the user's row.
					againErr, logoutErr = lineUp(t, raw, d, again, logout, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, u.ID)
				} else {
					againErr, logoutErr = again(), logout()
				}
				if againErr != nil || logoutErr != nil {
					t.Fatalf("interleaved %v: signing in again: %v; the logout: %v", interleaved, againErr, logoutErr)
				}
				if _, err := db.SessionByHash(ctx, fresh, t0); !errors.Is(err, store.ErrNotFound) || !slices.Contains(ended.SignIns, signIn) {
					t.Errorf("interleaved %v: the logout with the old cookie told %+v and left the sign-in (%v); want it ended and %+v told", interleaved, ended.SignIns, err, signIn)
				}
			}
		})
	}
}

// Two logins sent at once with one cookie (a double click on "Sign in",
// two tabs with prompt=login) both continue its sign-in, under its sid. The
// second found the first had taken the old row (ErrConflict), and the login
// started a new sign-in, whose cookie the browser kept: its logout ended
// that one, and left the sign-in its relying party held live for hours,
// the party untold. A logout with any of the three cookies now ends it.
func TestSignInAgainTwiceAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		for logoutWith := range 3 { // the old cookie, the first login's, the second's
			old, _, signIn := newSignIn(t, db, u.ID)
			cookies := []string{old}
			for range 2 {
				fresh := token.Hash(token.NewOpaque())
				if _, err := db.CreateSession(ctx, fresh, store.Session{SID: signIn.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour), Continues: old}); err != nil {
					t.Fatalf("login %d with the old cookie: %v; want the sign-in continued", len(cookies), err)
				}
				cookies = append(cookies, fresh)
			}
			for _, c := range cookies[1:] { // each login then gives the client a code
				if err := db.CreateCode(ctx, &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x", AuthTime: t0,
					SID: signIn.SID, SessionHash: c, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
					t.Fatal(err)
				}
			}
			ended, err := db.DeleteSession(ctx, cookies[logoutWith], time.Hour, t0)
			if want := []store.SignIn{signIn}; err != nil || !slices.Equal(ended.SignIns, want) {
				t.Errorf("a logout with cookie %d told %+v (%v); want %+v, once", logoutWith, ended.SignIns, err, want)
			}
			for i, c := range cookies[1:] {
				if _, err := db.SessionByHash(ctx, c, t0); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("after a logout with cookie %d, login %d's cookie: %v; want ErrNotFound", logoutWith, i+1, err)
				}
			}
		}
	})
}

// A login late enough that the row it continued was continued meanwhile
// (L1: P to a; L3, sent with a: a to c; L2, read P before L1 committed,
// commits last) deletes no row: c was of a login that started after it,
// and the browser may keep c, whose logout then ended nothing.
func TestSignInAgainLate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		p, _, signIn := newSignIn(t, db, u.ID)
		again := func(continues string) string {
			fresh := token.Hash(token.NewOpaque())
			if _, err := db.CreateSession(ctx, fresh, store.Session{SID: signIn.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour), Continues: continues}); err != nil {
				t.Fatal(err)
			}
			return fresh
		}
		c := again(again(p))
		again(p)
		ended, err := db.DeleteSession(ctx, c, time.Hour, t0)
		if want := []store.SignIn{signIn}; err != nil || !slices.Equal(ended.SignIns, want) {
			t.Errorf("a logout with the cookie of the login that started last told %+v (%v); want %+v", ended.SignIns, err, want)
		}
	})
}

// A logout by sid reads the sign-in's longest-living row: rows of logins
// sent at once before their expiries were made one can leave an expired
// row of a live sign-in, not yet purged, which is no sign of its end (the
// "gone" path ends only the relying party's part).
func TestLogoutBySIDReadsTheLiveRow(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			signIn := store.SignIn{SID: "sid-twin", UserID: u.ID, ClientID: "c-twin", URI: "https://rp.example/bc/twin"}
			if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO sessions (hash, user_id, auth_time, expires_at, sid) VALUES ('expired-twin', %d, %d, %d, 'sid-twin')`,
				u.ID, t0.Unix(), t0.Add(10*time.Minute).Unix())); err != nil {
				t.Fatal(err)
			}
			live := token.Hash(token.NewOpaque())
			if _, err := db.CreateSession(ctx, live, store.Session{SID: signIn.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if err := db.CreateOldClient(ctx, signIn.ClientID, signIn.URI, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.CreateCode(ctx, &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: signIn.ClientID, UserID: u.ID, CodeChallenge: "x", AuthTime: t0,
				SID: signIn.SID, SessionHash: live, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
				t.Fatal(err)
			}
			now := t0.Add(30 * time.Minute)
			ended, err := db.DeleteSessionBySID(ctx, signIn.SID, signIn.ClientID, time.Hour, now)
			if want := []store.SignIn{signIn}; err != nil || !slices.Equal(ended.SignIns, want) {
				t.Errorf("a logout by sid told %+v (%v); want %+v", ended.SignIns, err, want)
			}
			if _, err := db.SessionByHash(ctx, live, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after the logout by sid, its live row: %v; want ErrNotFound", err)
			}
		})
	}
}

// After two logins at once, both rows of the sign-in give a code to one
// client, and the browser keeps the cookie of the one that committed last,
// which holds every client but arrived first: its row would expire first.
// The rows expire together, so no purge takes the clients while the
// sign-in lives; a logout, by the cookie or by the sid, tells each client
// once. Two more logins at once, with the kept cookie, leave the sid two
// rows, not four.
func TestSignInAgainAfterTwiceAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		for _, bySID := range []bool{false, true} {
			old, _, signIn := newSignIn(t, db, u.ID)
			again := func(continues string, exp time.Time) string {
				fresh := token.Hash(token.NewOpaque())
				if _, err := db.CreateSession(ctx, fresh, store.Session{SID: signIn.SID, UserID: u.ID, AuthTime: t0, ExpiresAt: exp, Continues: continues}); err != nil {
					t.Fatalf("signing in again: %v", err)
				}
				return fresh
			}
			first, kept := again(old, t0.Add(2*time.Hour)), again(old, t0.Add(time.Hour))
			other := store.SignIn{SID: signIn.SID, UserID: u.ID, ClientID: signIn.ClientID + "-2", URI: signIn.URI + "-2"}
			if err := db.CreateOldClient(ctx, other.ClientID, other.URI, t0); err != nil {
				t.Fatal(err)
			}
			for _, session := range []string{first, kept} {
				if err := db.CreateCode(ctx, &store.Code{Hash: token.Hash(token.NewOpaque()), ClientID: other.ClientID, UserID: u.ID, CodeChallenge: "x", AuthTime: t0,
					SID: signIn.SID, SessionHash: session, ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
					t.Fatal(err)
				}
			}
			now := t0.Add(90 * time.Minute) // past kept's own expiry
			if err := db.Purge(ctx, store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 10 * time.Hour}, now); err != nil {
				t.Fatal(err)
			}
			latest := []string{again(kept, t0.Add(3*time.Hour)), again(kept, t0.Add(3*time.Hour))}
			for _, gone := range []string{first, kept} {
				if _, err := db.SessionByHash(ctx, gone, now); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("by sid %v: the first two logins' row after two more: %v; want ErrNotFound", bySID, err)
				}
			}
			var ended store.Ended
			var err error
			if bySID {
				ended, err = db.DeleteSessionBySID(ctx, signIn.SID, signIn.ClientID, time.Hour, now)
			} else {
				ended, err = db.DeleteSession(ctx, latest[0], time.Hour, now)
			}
			if want := []store.SignIn{signIn, other}; err != nil || !slices.Equal(ended.SignIns, want) {
				t.Errorf("by sid %v: the logout told %+v (%v); want %+v, each once", bySID, ended.SignIns, err, want)
			}
			for _, c := range latest {
				if _, err := db.SessionByHash(ctx, c, now); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("by sid %v: after the logout, a cookie: %v; want ErrNotFound", bySID, err)
				}
			}
		}
	})
}

// A right user code's attempt is refunded in the window it was counted in.
// Refunds landing after the window restarted took back the new window's
// wrong guesses: 39 checked in a window of 20.
func TestRefundAttemptInItsWindow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const key = "device-address:192.0.2.1"
		right, _, err := db.CountLoginAttempt(ctx, key, 0, time.Minute, t0)
		if err != nil {
			t.Fatal(err)
		}
		later := t0.Add(2 * time.Minute) // a wrong guess restarts the window
		if _, _, err := db.CountLoginAttempt(ctx, key, 0, time.Minute, later); err != nil {
			t.Fatal(err)
		}
		if err := db.RefundAttempt(ctx, key, right.Start); err != nil {
			t.Fatal(err)
		}
		if n, _, err := db.CountLoginAttempt(ctx, key, 0, time.Minute, later); err != nil || n.Attempts != 2 {
			t.Errorf("after the last window's refund, the new window's second attempt counts %d (%v); want 2", n.Attempts, err)
		}
		if err := db.RefundAttempt(ctx, key, later); err != nil {
			t.Fatal(err)
		}
		if n, _, err := db.CountLoginAttempt(ctx, key, 0, time.Minute, later); err != nil || n.Attempts != 2 {
			t.Errorf("after its own window's refund, the third attempt counts %d (%v); want 2", n.Attempts, err)
		}
	})
}

// lineUp runs first, then second, behind a transaction on raw that holds
// lock (holdRow): first waits for it, second for it or for first. It then
// ends that transaction and returns what first and second returned.
func lineUp(t *testing.T, raw *sql.DB, dialect string, first, second func() error, lock string, args ...any) (error, error) {
	t.Helper()
	hold, holder := holdRow(t, raw, dialect, lock, args...)
	firstDone, secondDone := make(chan error, 1), make(chan error, 1)
	go func() { firstDone <- first() }()
	waitBlocked(t, raw, dialect, holder, 1)
	go func() { secondDone <- second() }()
	waitBlocked(t, raw, dialect, holder, 2)
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	return <-firstDone, <-secondDone
}

// waitBlocked waits until n connections wait for pid (blockedBy); after
// 30 s it fails the test instead of hanging. On MySQL it polls every
// 200 ms: InnoDB refreshes the lock tables it shows only when they have
// not been read for 100 ms, so a tighter loop reads one stale copy.
func waitBlocked(t *testing.T, raw *sql.DB, dialect string, pid, n int) {
	t.Helper()
	every := 10 * time.Millisecond
	if dialect == store.MySQL {
		every = 200 * time.Millisecond
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(every) {
		got := len(blockedBy(t, raw, dialect, pid))
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections wait for the lock; want %d", got, n)
		}
	}
}

// A device session without refresh tokens goes once its access token has
// expired and its redeemed request has stayed its hour, with an access
// token shorter than the request's ten minutes too: the purge read such
// sessions only in the hour before the access tokens' expiry, and the
// request (which the session waits for) stays an hour past its own expiry,
// up to ten minutes later; such a session lingered to its max age.
func TestPurgeRefreshlessDeviceFamilyShortAccessTTL(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "tv", Name: "TV", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: "mac-a", ClientID: "tv", Scope: "read", ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
			if err := db.CreateDeviceCode(ctx, dc, 0, 0, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.DecideDeviceCode(ctx, "mac-a", true, &store.Session{SID: "sid-1", UserID: u.ID, AuthTime: t0}, t0); err != nil {
				t.Fatal(err)
			}
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: 5 * time.Minute, MaxAge: 90 * 24 * time.Hour}
			is := store.Issued{Family: &store.Family{ID: token.NewID(), UserID: u.ID, ClientID: "tv", Scope: "read", AuthTime: t0}}
			if _, err := db.RedeemDeviceCode(ctx, dc.Hash, is, ret.AccessTTL, t0); err != nil {
				t.Fatal(err)
			}
			// The purge runs every minute; every few here is as good.
			for m := 0; m <= 180; m += 5 {
				if err := db.Purge(ctx, ret, t0.Add(time.Duration(m)*time.Minute)); err != nil {
					t.Fatal(err)
				}
				if m == 65 && count(t, raw, "token_families") != 1 {
					t.Fatal("the session went before its redeemed request's hour was over")
				}
			}
			if f, dcs := count(t, raw, "token_families"), count(t, raw, "device_codes"); f != 0 || dcs != 0 {
				t.Fatalf("three hours on: %d sessions, %d device requests; want none", f, dcs)
			}
		})
	}
}
