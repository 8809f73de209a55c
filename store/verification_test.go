package store_test

import (
	"errors"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// verified reports the user's email_verified as stored.
func verified(t testing.TB, db *store.DB, id int64) bool {
	t.Helper()
	u, err := db.UserByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return u.EmailVerified
}

// newLink stores a verification token for the user's address at now, and
// returns its hash.
func newLink(t testing.TB, db *store.DB, u *store.User, email string, expires, now time.Time) string {
	t.Helper()
	h := token.Hash(token.NewOpaque())
	if err := db.ReplaceVerificationToken(ctx, h, u.ID, email, 3, expires, now); err != nil {
		t.Fatalf("ReplaceVerificationToken: %v", err)
	}
	return h
}

// A verification token works once, before it expires, only while it is the
// user's newest, and only for the address it was made for; at most 3 are
// made per account per hour.
func TestVerificationTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ann := newUser(t, db, "ann@example.com", "ann")
		if verified(t, db, ann.ID) {
			t.Fatal("a new user is verified")
		}
		vouched := &store.User{Email: "vic@example.com", Username: "vic", PasswordHash: "h", IsActive: true, EmailVerified: true}
		if err := db.CreateUser(ctx, vouched, t0); err != nil || !verified(t, db, vouched.ID) {
			t.Fatalf("CreateUser(EmailVerified) = %v; want it stored verified", err)
		}

		// Single use.
		h := newLink(t, db, ann, ann.Email, t0.Add(24*time.Hour), t0)
		if id, err := db.VerifyEmail(ctx, h, t0.Add(time.Minute)); err != nil || id != ann.ID {
			t.Fatalf("VerifyEmail = %d, %v; want %d", id, err, ann.ID)
		}
		if u, _ := db.UserByID(ctx, ann.ID); !u.EmailVerified || !u.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("after VerifyEmail: %+v; want verified, updated now", u)
		}
		if _, err := db.VerifyEmail(ctx, h, t0.Add(2*time.Minute)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a token used twice: %v; want ErrNotFound", err)
		}
		if _, err := db.VerifyEmail(ctx, token.Hash("never made"), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("an unknown token: %v; want ErrNotFound", err)
		}

		// Expiry: not at expires_at, nor after.
		bob := newUser(t, db, "bob@example.com", "bob")
		h = newLink(t, db, bob, bob.Email, t0.Add(time.Hour), t0)
		if _, err := db.VerifyEmail(ctx, h, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) || verified(t, db, bob.ID) {
			t.Fatalf("an expired token: %v; want ErrNotFound and bob unverified", err)
		}

		// One live token per user: a new one voids the old; at most 3 an hour.
		old := newLink(t, db, bob, bob.Email, t0.Add(2*time.Hour), t0.Add(time.Minute))
		newest := newLink(t, db, bob, bob.Email, t0.Add(2*time.Hour), t0.Add(2*time.Minute))
		if err := db.ReplaceVerificationToken(ctx, token.Hash(token.NewOpaque()), bob.ID, bob.Email, 3, t0.Add(2*time.Hour), t0.Add(3*time.Minute)); !errors.Is(err, store.ErrLimited) {
			t.Fatalf("a fourth token within the hour: %v; want ErrLimited", err)
		}
		if _, err := db.VerifyEmail(ctx, old, t0.Add(4*time.Minute)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a replaced token still works: %v", err)
		}
		if _, err := db.VerifyEmail(ctx, newest, t0.Add(4*time.Minute)); err != nil || !verified(t, db, bob.ID) {
			t.Fatalf("the newest token: %v; want bob verified", err)
		}

		// A token made for another address (the email changed since) verifies
		// nothing; nor does one of a deleted user.
		cat := newUser(t, db, "cat@example.com", "cat")
		h = newLink(t, db, cat, "cat.old@example.com", t0.Add(time.Hour), t0)
		if _, err := db.VerifyEmail(ctx, h, t0.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) || verified(t, db, cat.ID) {
			t.Fatalf("a token for another address: %v; want ErrNotFound and cat unverified", err)
		}
		h = newLink(t, db, cat, cat.Email, t0.Add(time.Hour), t0.Add(time.Minute))
		if _, err := db.DeleteUser(ctx, newAdmin(t, db), cat.ID, time.Hour, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.VerifyEmail(ctx, h, t0.Add(2*time.Minute)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a deleted user's token: %v; want ErrNotFound", err)
		}
	})
}

// Purge removes spent and expired verification tokens once the hour the
// per-account limit counts has passed, and nothing live.
func TestPurgeVerificationTokens(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			ret := store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: maxAge}
			mk := func(name string) *store.User { return newUser(t, db, name+"@example.com", name) }
			ann, bob, cat, dan := mk("ann"), mk("bob"), mk("cat"), mk("dan")
			spent := newLink(t, db, ann, ann.Email, t0.Add(24*time.Hour), t0)
			if _, err := db.VerifyEmail(ctx, spent, t0); err != nil {
				t.Fatal(err)
			}
			newLink(t, db, bob, bob.Email, t0.Add(30*time.Minute), t0) // expires unused
			live := newLink(t, db, cat, cat.Email, t0.Add(24*time.Hour), t0)
			newLink(t, db, dan, dan.Email, t0.Add(24*time.Hour), t0) // voided by the next
			newLink(t, db, dan, dan.Email, t0.Add(24*time.Hour), t0)
			tokens := func() int { return count(t, raw, "email_verification_tokens") }

			if err := db.Purge(ctx, ret, t0.Add(59*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := tokens(); n != 5 {
				t.Fatalf("after a purge at t0+59m: %d tokens; want 5 (the hourly limit counts them)", n)
			}
			if err := db.Purge(ctx, ret, t0.Add(61*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := tokens(); n != 2 {
				t.Fatalf("after a purge at t0+61m: %d tokens; want 2 (cat's and dan's live ones)", n)
			}
			if _, err := db.VerifyEmail(ctx, live, t0.Add(62*time.Minute)); err != nil {
				t.Fatalf("a live token after the purge: %v", err)
			}
			if err := db.Purge(ctx, ret, t0.Add(25*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n := tokens(); n != 0 {
				t.Fatalf("after every lifetime: %d tokens; want none", n)
			}
		})
	}
}

// A new verification link holds the user's row, then voids the user's
// links (replaceLink); were a verification to spend its link, then write
// the user's row, the two side by side would each hold what the other
// waits for: PostgreSQL would end one as a deadlock's victim (503). Here
// a lock on the link's row lines them up deterministically: the
// verification waits at it first, the new link second. Both must succeed,
// the verification first.
func TestVerifyBesideANewLinkNoDeadlock(t *testing.T) {
	db, raw := onPostgres(t)
	u := newUser(t, db, "ann@example.com", "ann")
	link := newLink(t, db, u, u.Email, t0.Add(time.Hour), t0)
	hold, holder := holdRow(t, raw, store.Postgres, `SELECT 1 FROM email_verification_tokens WHERE hash = $1 FOR UPDATE`, link)
	verifyDone, linkDone := make(chan error, 1), make(chan error, 1)
	go func() { _, err := db.VerifyEmail(ctx, link, t0); verifyDone <- err }()
	waitBlocked(t, raw, store.Postgres, holder, 1)
	go func() {
		linkDone <- db.ReplaceVerificationToken(ctx, token.Hash(token.NewOpaque()), u.ID, u.Email, 3, t0.Add(time.Hour), t0)
	}()
	waitBlocked(t, raw, store.Postgres, holder, 2)
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-verifyDone; err != nil {
		t.Errorf("a verification beside a new link: %v", err)
	}
	if err := <-linkDone; err != nil {
		t.Errorf("a new link beside a verification: %v", err)
	}
	if !verified(t, db, u.ID) {
		t.Error("the verification did not verify the address")
	}
}
