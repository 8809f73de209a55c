package store_test

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// A cap that counts, then inserts (the registered clients, each account's
// reset and verification links per hour, each client's device requests
// alive) holds against concurrent writers
// on two instances. On PostgreSQL and MySQL, a READ COMMITTED transaction's
// count does not see the inserts of those still running: of a burst, most
// registrations counted under the cap and were stored, and links got past
// theirs whenever one voided a link committed after its count. A
// regression test: of n writes at once, exactly max are stored, the others
// refused as over the cap. (SQLite has one writer: the test is for the
// servers.)
func TestCapsHoldAcrossInstances(t *testing.T) {
	const n, rounds = 20, 10
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			dbs := [2]*store.DB{storetest.OpenURL(t, url), storetest.OpenURL(t, url)}
			raw := rawDB(t, d, url)
			// Each instance with a connection ready for each of its writes:
			// connecting takes longer than a write, and would spread the
			// burst out.
			for _, db := range dbs {
				conns := make([]*sql.Conn, n/2)
				for i := range conns {
					c, err := db.Writer().Conn(ctx)
					if err != nil {
						t.Fatal(err)
					}
					conns[i] = c
				}
				for _, c := range conns {
					c.Close()
				}
			}
			// race runs write n times at once, half on each instance, and
			// checks what they answered and stored (counted over raw).
			race := func(t *testing.T, stored string, max int, write func(db *store.DB, i int) error) {
				t.Helper()
				errs := make([]error, n)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						<-start
						errs[i] = write(dbs[i%2], i)
					})
				}
				close(start)
				wg.Wait()
				var got int
				if err := raw.QueryRow(`SELECT count(*) FROM ` + stored).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got > max {
					t.Fatalf("%d stored by %d concurrent writes with a cap of %d (%s)", got, n, max, stored)
				}
				for i, err := range errs {
					if err != nil && !errors.Is(err, store.ErrLimited) {
						t.Errorf("write %d: %v; want nil or ErrLimited", i, err)
					}
				}
				if got < max {
					t.Errorf("%d stored (%s); want %d", got, stored, max)
				}
			}
			// Each race is run several times, one more client allowed each
			// time, one more account each time: a burst that happens to
			// come in order overruns nothing.
			t.Run("registered clients", func(t *testing.T) {
				for r := 1; r <= rounds; r++ {
					race(t, `clients WHERE registration_hash IS NOT NULL`, r, func(db *store.DB, i int) error {
						id := fmt.Sprint("r", r, "-", i)
						return db.RegisterClient(ctx, registered(id, id), "", r, t0)
					})
				}
			})
			t.Run("device requests", func(t *testing.T) {
				for r := 1; r <= rounds; r++ {
					id := fmt.Sprint("tv", r)
					if err := dbs[0].CreateClient(ctx, 0, &store.Client{ID: id, Name: id, GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}, t0); err != nil {
						t.Fatal(err)
					}
					race(t, fmt.Sprintf("device_codes WHERE client_id = '%s'", id), r, func(db *store.DB, i int) error {
						dc := &store.DeviceCode{Hash: token.Hash(token.NewOpaque()), UserCode: token.NewOpaque(), ClientID: id, ExpiresAt: t0.Add(10 * time.Minute), Interval: 5}
						return db.CreateDeviceCode(ctx, dc, r, r, t0)
					})
				}
			})
			var users []*store.User
			for a := range rounds {
				users = append(users, newUser(t, dbs[0], fmt.Sprint("u", a, "@example.com"), fmt.Sprint("u", a)))
			}
			t.Run("reset links", func(t *testing.T) {
				for _, u := range users {
					race(t, fmt.Sprint("reset_tokens WHERE user_id = ", u.ID), 1, func(db *store.DB, i int) error {
						return db.ReplaceResetToken(ctx, token.Hash(token.NewOpaque()), u.ID, 1, t0.Add(time.Hour), t0)
					})
				}
			})
			t.Run("verification links", func(t *testing.T) {
				for _, u := range users {
					race(t, fmt.Sprint("email_verification_tokens WHERE user_id = ", u.ID), 1, func(db *store.DB, i int) error {
						return db.ReplaceVerificationToken(ctx, token.Hash(token.NewOpaque()), u.ID, u.Email, 1, t0.Add(time.Hour), t0)
					})
				}
			})
		})
	}
}

// Two admins who demote, deactivate or delete each other at once, on two
// instances, both succeeded: the only check was that an admin does not
// change themself, and no active admin was left (but for the CLI, nobody
// could administer the server). A regression test: of the two writes, in
// every combination, raced again and again, one succeeds and the other is
// ErrNotAdmin (its admin is no longer one), and an active admin remains.
// (SQLite has one writer: the test is for the servers.)
func TestAdminsRemovingEachOtherLeaveOne(t *testing.T) {
	demoted, inactive := store.RoleUser, false
	removals := []func(db *store.DB, by, id int64) error{
		func(db *store.DB, by, id int64) error {
			_, _, err := db.UpdateUserAdmin(ctx, by, id, &demoted, nil, time.Hour, t0)
			return err
		},
		func(db *store.DB, by, id int64) error {
			_, _, err := db.UpdateUserAdmin(ctx, by, id, nil, &inactive, time.Hour, t0)
			return err
		},
		func(db *store.DB, by, id int64) error {
			_, err := db.DeleteUser(ctx, by, id, time.Hour, t0)
			return err
		},
	}
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			dbs := [2]*store.DB{storetest.OpenURL(t, url), storetest.OpenURL(t, url)}
			raw := rawDB(t, d, url)
			for round := range 36 {
				a := newUser(t, dbs[0], fmt.Sprint("a", round, "@example.com"), fmt.Sprint("a", round))
				b := newUser(t, dbs[0], fmt.Sprint("b", round, "@example.com"), fmt.Sprint("b", round))
				// a and b are the only admins.
				if _, err := raw.Exec(fmt.Sprintf(`UPDATE users SET role = CASE WHEN id IN (%d, %d) THEN 'admin' ELSE 'user' END`, a.ID, b.ID)); err != nil {
					t.Fatal(err)
				}
				var errs [2]error
				start := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					<-start
					errs[0] = removals[round%3](dbs[0], a.ID, b.ID)
				})
				wg.Go(func() {
					<-start
					errs[1] = removals[round/3%3](dbs[1], b.ID, a.ID)
				})
				close(start)
				wg.Wait()
				if n := count(t, raw, `users WHERE role = 'admin' AND is_active AND deleted_at IS NULL`); n == 0 {
					t.Fatalf("round %d: no active admin left after two admins removed each other (%v, %v)", round, errs[0], errs[1])
				}
				if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(cmp.Or(errs[0], errs[1]), store.ErrNotAdmin) {
					t.Fatalf("round %d: %v, %v; want one nil and one ErrNotAdmin", round, errs[0], errs[1])
				}
			}
		})
	}
}

// A client's creation, deletion or new secret, asked for by an admin whom
// another admin demoted meanwhile, committed anyway: only changes to users
// were checked (asAdmin). Here a's write waits for a lock the test holds
// (the client's row; for a creation, its id, inserted by the test) while
// b demotes a, then the test lets go. The write must go first, the
// demotion waiting for it (the admins' row), or be ErrNotAdmin; before,
// the demotion committed and then the write did too. Once a is demoted,
// each write is ErrNotAdmin and changes nothing; the operator's (by 0)
// still go through.
func TestAdminClientWritesNeedAnAdmin(t *testing.T) {
	demoted := store.RoleUser
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			for i, w := range []struct {
				name, lock string
				write      func(by int64, id string) error
			}{
				{"creation", `INSERT INTO clients (id, name, grant_types, created_at, updated_at) VALUES ($1, 'x', '', 0, 0)`, func(by int64, id string) error {
					return db.CreateClient(ctx, by, &store.Client{ID: id, Name: id, SecretHash: "old"}, t0)
				}},
				{"deletion", `SELECT id FROM clients WHERE id = $1 FOR UPDATE`, func(by int64, id string) error {
					return db.DeleteClient(ctx, by, id, "", store.ClientDeletion(id, time.Hour, t0), t0)
				}},
				{"rotation", `SELECT id FROM clients WHERE id = $1 FOR UPDATE`, func(by int64, id string) error {
					_, err := db.SetClientSecret(ctx, by, id, "new", time.Hour, t0)
					return err
				}},
			} {
				a := newUser(t, db, fmt.Sprint("a", i, "@example.com"), fmt.Sprint("a", i))
				b := newUser(t, db, fmt.Sprint("b", i, "@example.com"), fmt.Sprint("b", i))
				if _, err := raw.Exec(fmt.Sprintf(`UPDATE users SET role = 'admin' WHERE id IN (%d, %d)`, a.ID, b.ID)); err != nil {
					t.Fatal(err)
				}
				id, later := fmt.Sprint("c", i), fmt.Sprint("d", i)
				for _, c := range []string{id, later} {
					if w.name == "creation" {
						break // the ids are the ones to create
					}
					if err := db.CreateClient(ctx, 0, &store.Client{ID: c, Name: c, SecretHash: "old"}, t0); err != nil {
						t.Fatal(err)
					}
				}
				hold, holder := holdRow(t, raw, d, w.lock, id)
				wrote := make(chan error, 1)
				go func() { wrote <- w.write(a.ID, id) }()
				waitBlocked(t, raw, d, holder, 1)
				demotion := doneOrWaiting(t, func() error {
					_, _, err := db.UpdateUserAdmin(ctx, b.ID, a.ID, &demoted, nil, time.Hour, t0)
					return err
				}, func() bool { return len(blockedBy(t, raw, d, holder)) > 1 })
				demotedFirst := len(demotion) > 0
				if err := hold.Rollback(); err != nil {
					t.Fatal(err)
				}
				if err := <-wrote; demotedFirst && !errors.Is(err, store.ErrNotAdmin) {
					t.Errorf("%s by an admin demoted while it waited = %v; want ErrNotAdmin", w.name, err)
				} else if !demotedFirst && err != nil {
					t.Errorf("%s, the demotion waiting for it = %v", w.name, err)
				}
				if err := <-demotion; err != nil {
					t.Fatal(err)
				}
				kept := fmt.Sprintf(`clients WHERE id = '%s' AND secret_hash = 'old'`, later)
				before := count(t, raw, kept)
				if err := w.write(a.ID, later); !errors.Is(err, store.ErrNotAdmin) || count(t, raw, kept) != before {
					t.Errorf("%s by a demoted admin = %v; want ErrNotAdmin, nothing changed", w.name, err)
				}
			}
		})
	}
}

// A user's live refresh-token families had no cap: whoever held the
// password could start them from many addresses, and at 10^5 of them a
// password change or reset, a deactivation or a deletion, which revokes
// every one in one transaction, timed out on every try, so the owner could
// not lock the intruder out. A regression test: with MaxLiveFamilies live
// (and one revoked, older, which does not count), each new one ends the
// oldest live one, and returns its sid revocation, which is stored too
// for the other instances; a code exchange does so as a login does; with
// more live (from before the cap), as many end as bring it under.
func TestFamiliesCappedPerUser(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			other := newUser(t, db, "bob@example.com", "bob") // whose families do not count for ann
			// Family f00000i was created i seconds after an hour before t0;
			// f000000 was revoked then.
			born := t0.Add(-time.Hour).Unix()
			insertRows(t, raw, "token_families", "id, user_id, client_id, auth_time, created_at, revoked_at", store.MaxLiveFamilies+1, func(i int) string {
				i--
				revoked := "NULL"
				if i == 0 {
					revoked = fmt.Sprint(born)
				}
				return fmt.Sprintf("'f%06d', %d, 'c1', %d, %d, %s", i, u.ID, born, born+int64(i), revoked)
			})
			insertRows(t, raw, "token_families", "id, user_id, client_id, auth_time, created_at", store.MaxLiveFamilies, func(i int) string {
				return fmt.Sprintf("'g%06d', %d, 'c1', %d, %d", i, other.ID, born, born)
			})
			live := func(userID int64) int {
				return count(t, raw, fmt.Sprintf(`token_families WHERE user_id = %d AND revoked_at IS NULL`, userID))
			}
			_, code, signIn := newSignIn(t, db, u.ID)
			for i, start := range []func(f store.Family) (store.Ended, error){
				func(f store.Family) (store.Ended, error) {
					return db.CreateFamily(ctx, f, token.Hash(f.ID), t0.Add(time.Hour), time.Hour, t0)
				},
				func(f store.Family) (store.Ended, error) {
					f.ClientID = signIn.ClientID
					return db.ExchangeCode(ctx, code, store.Issued{Family: &f}, time.Hour, t0)
				},
			} {
				oldest := fmt.Sprintf("f%06d", i+1)
				e, err := start(store.Family{ID: fmt.Sprint("new", i), UserID: u.ID, ClientID: "c1", AuthTime: t0})
				if err != nil {
					t.Fatal(err)
				}
				want := []store.Revocation{store.SessionRevocation(oldest, time.Hour, t0)}
				if !slices.Equal(e.Revocations, want) {
					t.Errorf("new family %d, with %d live: ended %+v; want %+v (the oldest live)", i, store.MaxLiveFamilies, e.Revocations, want)
				}
				if n := live(u.ID); n != store.MaxLiveFamilies {
					t.Errorf("new family %d: %d live; want %d", i, n, store.MaxLiveFamilies)
				}
				if n := count(t, raw, fmt.Sprintf(`token_families WHERE id = '%s' AND revoked_at IS NULL`, oldest)); n != 0 {
					t.Errorf("new family %d: %s, the oldest live, still live", i, oldest)
				}
				stored, err := revocations(db, time.Unix(0, 0), t0)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(stored, want[0]) {
					t.Errorf("new family %d: stored revocations %+v; want %+v among them", i, stored, want[0])
				}
			}
			// Two more live, older, as from before the cap: the next one ends
			// them and the oldest of the rest.
			insertRows(t, raw, "token_families", "id, user_id, client_id, auth_time, created_at", 2, func(i int) string {
				return fmt.Sprintf("'h%06d', %d, 'c1', %d, %d", i, u.ID, born, born-int64(i))
			})
			e, err := db.CreateFamily(ctx, store.Family{ID: "new2", UserID: u.ID, ClientID: "c1", AuthTime: t0}, "", t0, time.Hour, t0)
			if err != nil {
				t.Fatal(err)
			}
			if n := live(u.ID); len(e.Revocations) != 3 || n != store.MaxLiveFamilies {
				t.Errorf("with %d live: ended %+v, %d live; want 3 ended (h000002, h000001, f000003), %d live", store.MaxLiveFamilies+2, e.Revocations, n, store.MaxLiveFamilies)
			}
			if n := live(other.ID); n != store.MaxLiveFamilies {
				t.Errorf("another user's live families: %d; want all %d", n, store.MaxLiveFamilies)
			}
			// A client at the cap ends its own oldest first, not the user's
			// sessions at other clients (the oldest are c1's).
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "c2", Name: "c2", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				e, err := db.CreateFamily(ctx, store.Family{ID: fmt.Sprint("c2-", i), UserID: u.ID, ClientID: "c2", AuthTime: t0}, "", t0, time.Hour, t0.Add(time.Duration(i)*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprint("c2-", i-1); i > 0 && (len(e.Revocations) != 1 || e.Revocations[0].Subject != want) {
					t.Errorf("c2's family %d at the cap: ended %+v; want only c2's oldest, %s", i, e.Revocations, want)
				}
			}
		})
	}
}

// A user's live browser sign-ins had no cap: whoever held the password
// could sign in from many addresses, and at 5*10^5 of them a password
// change or reset, a deactivation or a deletion, which ends every one in
// one transaction, timed out on every try, so the owner could not lock the
// intruder out. A regression test: with MaxSignIns live (and one expired,
// older, which does not count), a new one ends exactly the oldest live one
// as its logout would for it (its unused code voided, its client to be
// told returned) but not the session its code started; a continuation at
// the cap adds none and ends none, itself included; with more live (from
// before the cap), as many end as bring it under.
func TestSignInsCappedPerUser(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, raw := onServer(t, d)
			u := newUser(t, db, "ann@example.com", "ann")
			other := newUser(t, db, "bob@example.com", "bob") // whose sign-ins do not count for ann
			_, code, oldest := newSignIn(t, db, u.ID)         // signed in at t0
			family := store.Family{ID: "f", UserID: u.ID, ClientID: oldest.ClientID, AuthTime: t0, SID: oldest.SID}
			if _, err := db.CreateFamily(ctx, family, "", t0, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			// Sign-in s00000i began i seconds after t0; "gone", before, has expired.
			row := func(user int64, sid string, at int64) string {
				return fmt.Sprintf("'%s-%d', %d, %d, %d, '%s'", sid, user, user, at, t0.Add(time.Hour).Unix(), sid)
			}
			cols := "hash, user_id, auth_time, expires_at, sid"
			insertRows(t, raw, "sessions", cols, store.MaxSignIns-1, func(i int) string { return row(u.ID, fmt.Sprintf("s%06d", i), t0.Unix()+int64(i)) })
			insertRows(t, raw, "sessions", cols, store.MaxSignIns, func(i int) string { return row(other.ID, fmt.Sprint("o", i), t0.Unix()) })
			insertRows(t, raw, "sessions", cols, 1, func(int) string {
				return fmt.Sprintf("'gone', %d, %d, %d, 'gone'", u.ID, t0.Add(-2*time.Hour).Unix(), t0.Unix())
			})
			now := t0.Add(time.Minute)
			signIn := func(s store.Session) []store.SignIn {
				t.Helper()
				s.UserID, s.AuthTime, s.ExpiresAt = u.ID, now, now.Add(time.Hour)
				e, err := db.CreateSession(ctx, token.Hash(token.NewOpaque()), s)
				if err != nil {
					t.Fatal(err)
				}
				return e.SignIns
			}
			live := func(userID int64) int {
				return count(t, raw, fmt.Sprintf(`sessions WHERE user_id = %d AND expires_at > %d`, userID, now.Unix()))
			}
			// The newest has two rows (two logins sent at once): one sign-in.
			twin := fmt.Sprintf("'s000998-twin', %d, %d, %d, 's000998'", u.ID, t0.Unix()+998, t0.Add(time.Hour).Unix())
			insertRows(t, raw, "sessions", cols, 1, func(int) string { return twin })
			if ended := signIn(store.Session{SID: "new"}); !slices.Equal(ended, []store.SignIn{oldest}) {
				t.Errorf("a new sign-in with %d live: ended %+v; want the oldest live, %+v", store.MaxSignIns, ended, oldest)
			}
			if _, err := raw.Exec(`DELETE FROM sessions WHERE hash = 's000998-twin'`); err != nil {
				t.Fatal(err)
			}
			if n := live(u.ID); n != store.MaxSignIns {
				t.Errorf("%d live; want %d", n, store.MaxSignIns)
			}
			if n := count(t, raw, fmt.Sprintf(`sessions WHERE sid = '%s'`, oldest.SID)); n != 0 {
				t.Errorf("the oldest sign-in, %s, still there", oldest.SID)
			}
			if _, err := db.CodeByHash(ctx, code); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the oldest sign-in's unused code: %v; want ErrNotFound", err)
			}
			if n := count(t, raw, `token_families WHERE id = 'f' AND revoked_at IS NULL`); n != 1 {
				t.Error("the session the oldest sign-in started was ended; want it kept, as after the sign-in's expiry")
			}
			if n := count(t, raw, `sessions WHERE sid = 'gone'`); n != 1 {
				t.Error("the expired sign-in was ended; want it left to the purge")
			}
			// The oldest, s000001, signing in again: it goes on, nothing ends.
			if ended := signIn(store.Session{SID: "s000001", Continues: fmt.Sprint("s000001-", u.ID)}); len(ended) != 0 || live(u.ID) != store.MaxSignIns ||
				count(t, raw, `sessions WHERE sid = 's000001'`) != 1 {
				t.Errorf("a sign-in continued at the cap: ended %+v, %d live, %d rows of its sid; want none ended, %d live, 1 row",
					ended, live(u.ID), count(t, raw, `sessions WHERE sid = 's000001'`), store.MaxSignIns)
			}
			// Two more live, as from before the cap: the next one ends three.
			insertRows(t, raw, "sessions", cols, 2, func(i int) string { return row(u.ID, fmt.Sprint("h", i), t0.Unix()) })
			signIn(store.Session{SID: "new2"})
			if n := live(u.ID); n != store.MaxSignIns || count(t, raw, `sessions WHERE sid IN ('h1', 'h2', 's000002')`) != 0 {
				t.Errorf("with %d live, a new sign-in: %d live; want %d, h1, h2 and s000002 ended", store.MaxSignIns+2, n, store.MaxSignIns)
			}
			if n := live(other.ID); n != store.MaxSignIns {
				t.Errorf("another user's live sign-ins: %d; want all %d", n, store.MaxSignIns)
			}
		})
	}
}
