package store_test

import (
	"errors"
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
