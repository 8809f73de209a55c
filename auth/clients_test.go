package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
				c, secret, err := CreateClient(ctx, here.db, 0, ClientSpec{Name: "svc", GrantTypes: []string{grantClientCredentials}}, false, nil, now)
				if err != nil {
					t.Fatal(err)
				}
				load := here.cs.load
				here.cs.load = func(ctx context.Context, id string) (*store.Client, error) {
					read, readErr := load(ctx, id)
					here.cs.load = load
					by, err := tc.by, error(nil)
					if tc.delete {
						err = DeleteClient(ctx, by.db, 0, by.cs, by.revs, id, "", time.Hour, now)
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

// GET /api/v1/clients answers a page, as GET /api/v1/users does: with open
// registration strangers may make 10,000 clients, which one answer read
// whole (about 160 MB, or a 503 when that took longer than OpTimeout).
func TestClientListPages(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()
		var ids []string
		for i := range 22 {
			id, _ := e.newClient(ClientSpec{Name: fmt.Sprint("svc", i), GrantTypes: []string{"client_credentials"}})
			ids = append(ids, id)
			e.clock.Add(time.Second) // listed by creation
		}
		list := func(query string) ([]string, any) {
			t.Helper()
			var body struct {
				Clients []ClientJSON
				Total   any
			}
			if err := json.Unmarshal(e.request("GET", "/api/v1/clients"+query, nil, bearer(admin)...).want(http.StatusOK).Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range body.Clients {
				got = append(got, c.ClientID)
			}
			return got, body.Total
		}
		if got, total := list(""); !slices.Equal(got, ids[:20]) || total != float64(22) {
			t.Errorf("GET /api/v1/clients = %v, total %v; want the first 20 of %v, total 22", got, total, ids)
		}
		if got, total := list("?limit=3&offset=19"); !slices.Equal(got, ids[19:]) || total != float64(22) {
			t.Errorf("limit=3&offset=19: %v, total %v; want %v", got, total, ids[19:])
		}
		for _, q := range []string{"?limit=0", "?limit=101", "?offset=-1", "?limit=+5", "?limit=5&limit=6"} {
			wantAPIError(e.request("GET", "/api/v1/clients"+q, nil, bearer(admin)...), http.StatusBadRequest, "invalid_request")
		}
	})
}
