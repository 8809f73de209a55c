package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// A Get that read a client just before its secret was rotated, or it was
// deleted, stored what it read after the change's Forget had run: the old
// secret, or the deleted client, kept working on that instance for the
// cache's minute. Here the change comes between Get's read and its store
// (the test wraps Clients.load), made on this instance (which forgets the
// client at once) or on another one, which this instance hears of by its
// revocation poll (Revocations.Load, which applies what it reads as Run
// does, by Add). The next Get must see the change. Two instances on one
// database: a SQLite file, and PostgreSQL.
func TestClientCacheKeepsNoReadAChangeOvertook(t *testing.T) {
	type instance struct {
		db   *store.DB
		cs   *Clients
		revs *Revocations
	}
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx, now, dbURL := t.Context(), time.Now(), storetest.URL(t, d)
			var here, there instance
			for _, in := range []*instance{&here, &there} {
				in.db = storetest.OpenURL(t, dbURL)
				in.cs = NewClients(in.db, time.Minute, 100, 1<<20)
				in.revs = NewRevocations(in.cs.Forget)
			}
			for _, tc := range []struct {
				name   string
				by     *instance
				delete bool
			}{
				{"rotation here", &here, false}, {"deletion here", &here, true},
				{"rotation elsewhere", &there, false}, {"deletion elsewhere", &there, true},
			} {
				c, secret, err := CreateClient(ctx, here.db, 0, ClientSpec{Name: "svc", GrantTypes: []string{grantClientCredentials}}, false, now)
				if err != nil {
					t.Fatal(err)
				}
				load := here.cs.load
				here.cs.load = func(ctx context.Context, id string) (*store.Client, error) {
					read, readErr := load(ctx, id)
					here.cs.load = load
					by, err := tc.by, error(nil)
					if tc.delete {
						err = DeleteClient(ctx, by.db, 0, by.cs, by.revs, id, time.Hour, now)
					} else {
						_, err = RotateClientSecret(ctx, by.db, 0, by.cs, by.revs, id, time.Hour, now)
					}
					if err == nil && by != &here {
						err = here.revs.Load(ctx, here.db, now) // this instance's poll
					}
					if err != nil {
						t.Fatal(err)
					}
					return read, readErr
				}
				if old, err := here.cs.Get(ctx, c.ID, now); err != nil || !secretMatches(old, secret) {
					t.Fatalf("%s: the Get it overtook = %v; want the client as read, with its old secret", tc.name, err)
				}
				got, err := here.cs.Get(ctx, c.ID, now)
				switch {
				case tc.delete && !errors.Is(err, store.ErrNotFound):
					t.Fatalf("%s: the next Get = %v; want ErrNotFound, not the client read before", tc.name, err)
				case !tc.delete && err != nil:
					t.Fatalf("%s: the next Get = %v", tc.name, err)
				case !tc.delete && secretMatches(got, secret):
					t.Fatalf("%s: the next Get's client takes the old secret; want the rotated client", tc.name)
				}
			}
		})
	}
}
