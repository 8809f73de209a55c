package store_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

func registered(id, regToken string) *store.Client {
	return &store.Client{ID: id, Name: id, GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://app.example/cb"},
		RegistrationHash: token.Hash(regToken), AuthMethod: "none"}
}

// An initial access token registers one client, once, before it expires;
// a registration that fails stores nothing and spends nothing; the cap
// holds; a registration access token finds its client, and an update
// happens only with the current one.
func TestDynamicRegistration(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db := storetest.OpenURL(t, url)
			raw := rawDB(t, d, url)
			initial := token.Hash("initial")
			if err := db.AddRegistrationToken(ctx, initial, t0.Add(time.Hour), t0); err != nil {
				t.Fatal(err)
			}
			if err := db.RegistrationTokenLive(ctx, initial, t0); err != nil {
				t.Fatalf("a fresh initial token: %v", err)
			}
			if err := db.RegistrationTokenLive(ctx, initial, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("an expired initial token: %v; want ErrNotFound", err)
			}
			if err := db.RegisterClient(ctx, registered("r0", "rat0"), initial, 0, t0); !errors.Is(err, store.ErrLimited) {
				t.Fatalf("registration over the cap: %v; want ErrLimited", err)
			}
			if err := db.RegistrationTokenLive(ctx, initial, t0); err != nil {
				t.Fatalf("the initial token after a refused registration: %v; want it unspent", err)
			}

			// Of concurrent registrations with one token, exactly one succeeds.
			var ok atomic.Int32
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					err := db.RegisterClient(ctx, registered("r"+string(rune('a'+i)), "rat"+string(rune('a'+i))), initial, 10, t0)
					switch {
					case err == nil:
						ok.Add(1)
					case !errors.Is(err, store.ErrNotFound):
						t.Errorf("concurrent registration: %v", err)
					}
				})
			}
			wg.Wait()
			if ok.Load() != 1 || count(t, raw, "clients") != 1 || count(t, raw, "registration_tokens") != 0 {
				t.Fatalf("%d of 8 registrations with one initial token succeeded, %d clients stored; want 1 and 1", ok.Load(), count(t, raw, "clients"))
			}

			// Open mode: no initial token; the cap counts only registered clients.
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "admin-made", Name: "x", GrantTypes: []string{"client_credentials"}}, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.RegisterClient(ctx, registered("open", "rat-open"), "", 2, t0); err != nil {
				t.Fatalf("open registration: %v", err)
			}
			if err := db.RegisterClient(ctx, registered("over", "rat-over"), "", 2, t0); !errors.Is(err, store.ErrLimited) {
				t.Fatalf("third registered client with a cap of 2: %v; want ErrLimited", err)
			}

			c, err := db.ClientByRegistrationHash(ctx, token.Hash("rat-open"))
			if err != nil || c.ID != "open" || !c.Registered() || c.AuthMethod != "none" {
				t.Fatalf("ClientByRegistrationHash = %+v, %v", c, err)
			}
			if admin, _ := db.ClientByID(ctx, "admin-made"); admin.Registered() {
				t.Fatal("a client made by an administrator reads as registered")
			}
			for _, h := range []string{token.Hash("wrong"), "", "\x00"} {
				if _, err := db.ClientByRegistrationHash(ctx, h); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("ClientByRegistrationHash(%q): %v; want ErrNotFound", h, err)
				}
			}

			c.Name, c.RedirectURIs, c.RegistrationHash = "renamed", []string{"https://app.example/new"}, token.Hash("rat-2")
			change := store.ClientChange(c.ID, t0)
			if err := db.UpdateRegisteredClient(ctx, c, token.Hash("rat-open"), change, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			c.RegistrationHash = token.Hash("rat-3")
			if err := db.UpdateRegisteredClient(ctx, c, token.Hash("rat-open"), change, t0.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("an update with the replaced token: %v; want ErrNotFound", err)
			}
			got, err := db.ClientByRegistrationHash(ctx, token.Hash("rat-2"))
			if err != nil || got.Name != "renamed" || len(got.RedirectURIs) != 1 || got.RedirectURIs[0] != "https://app.example/new" {
				t.Fatalf("after the update: %+v, %v", got, err)
			}
			if _, err := db.ClientByRegistrationHash(ctx, token.Hash("rat-open")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the replaced token still finds the client: %v", err)
			}
			if list, _ := revocations(db, time.Unix(0, 0), t0); len(list) != 1 || list[0] != change {
				t.Fatalf("revocations after an update and a refused one: %+v; want the update's alone", list)
			}
			// A delete with the replaced token, checked before the update
			// committed, deletes nothing; with the new one, the client.
			deletion := store.ClientDeletion(c.ID, time.Hour, t0)
			if err := db.DeleteClient(ctx, 0, c.ID, token.Hash("rat-open"), deletion, t0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a delete with the replaced token: %v; want ErrNotFound", err)
			}
			if err := db.DeleteClient(ctx, 0, c.ID, token.Hash("rat-2"), deletion, t0); err != nil {
				t.Fatalf("a delete with the client's token: %v", err)
			}

			db.AddRegistrationToken(ctx, token.Hash("old"), t0.Add(time.Minute), t0)
			if err := db.Purge(ctx, store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: time.Hour}, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, raw, "registration_tokens"); n != 0 {
				t.Fatalf("%d initial tokens after the purge at their expiry; want 0", n)
			}
		})
	}
}

// An update forgets the consents users gave the client: approved with a
// real site's callback, a client switched it to its own and got codes at
// once (prompt=none), the page having shown the user only the first host.
func TestRegistrationUpdateForgetsConsents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		u := newUser(t, db, "ann@example.com", "ann")
		session, _, _ := newSignIn(t, db, u.ID)
		c := registered("bait", "rat-bait")
		if err := db.RegisterClient(ctx, c, "", 10, t0); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveConsent(ctx, u.ID, session, &store.Client{ID: c.ID, UpdatedAt: t0, RegistrationHash: c.RegistrationHash}, "", "read", t0); err != nil {
			t.Fatal(err)
		}
		c.RedirectURIs, c.RegistrationHash = []string{"https://evil.example/cb"}, token.Hash("rat-switch")
		if err := db.UpdateRegisteredClient(ctx, c, token.Hash("rat-bait"), store.ClientChange(c.ID, t0), t0); err != nil {
			t.Fatal(err)
		}
		if scope, ok, err := db.ConsentedScope(ctx, u.ID, c.ID, ""); ok || err != nil {
			t.Errorf("after the client's update, its consent: %q, %v (%v); want none", scope, ok, err)
		}
	})
}

// clientOf is client id as the tests store it (updated at t0), as a
// request reads it.
func clientOf(id string) *store.Client { return &store.Client{ID: id, UpdatedAt: t0} }
