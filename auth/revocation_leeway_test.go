package auth

import (
	"context"
	"net/http"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// A revoked access token is refused while it verifies: until exp + Leeway
// (token.Claims.valid), and Revocations.prune keeps the entry that long. But
// the jti row stored expires_at = exp (Tokens.RevokeAccess), and both
// RevocationsSince (expires_at > now) and Purge (expires_at <= now) drop it
// at exp: an instance that starts (Load) in the last Leeway seconds of the
// token's life did not know it was revoked and served the bearer (a
// regression test: the row now lives until exp + Leeway).
func TestRevokedTokenKnownToNewInstanceWithinLeeway(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		at, _ := e.login("ann", "Ann-Password-1")
		c := e.claimsOf(at)
		if err := e.deps.Tokens.RevokeAccess(context.Background(), e.db, c); err != nil {
			t.Fatal(err)
		}
		e.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)
		e.clock.Add(time.Unix(c.Expiry, 0).Sub(e.clock.Now()) + 5*time.Second) // exp + 5 s: inside Leeway
		e.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)
		// A second instance starts now, loading the shared list.
		e2 := newEnvOn(t, e.db, func(d *Deps) {
			d.Now = e.clock.Now
			if err := d.Tokens.Revoked.Load(context.Background(), e.db, e.clock.Now()); err != nil {
				t.Fatal(err)
			}
		})
		e2.secrets = append(e2.secrets, e.secrets...)
		if r := e2.request("GET", "/api/v1/profile", nil, bearer(at)...); r.Code != http.StatusUnauthorized {
			t.Fatalf("a new instance, 5 s after exp (inside the 10 s leeway), serves the revoked token: %d %s", r.Code, r.Body.String())
		}
	})
}

// The same with clocks that disagree: an instance 30 s ahead purged the
// revocation at exp + Leeway by its clock, while by the clock of one
// behind the token was still valid; started then, that one served the
// revoked token (a regression test, as for DPoP proofs).
func TestRevocationPurgedByAnInstanceAhead(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db := storetest.Open(t, d)
			ahead := newEnvOn(t, db)
			ahead.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			at, _ := ahead.login("ann", "Ann-Password-1")
			c := ahead.claimsOf(at)
			if err := ahead.deps.Tokens.RevokeAccess(context.Background(), db, c); err != nil {
				t.Fatal(err)
			}
			ahead.clock.Add(time.Unix(c.Expiry, 0).Add(token.Leeway + 5*time.Second).Sub(ahead.clock.Now()))
			if err := db.Purge(t.Context(), store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 24 * time.Hour}, ahead.clock.Now()); err != nil {
				t.Fatal(err)
			}
			behindNow := ahead.clock.Now().Add(-30 * time.Second) // exp - 15 s by its clock
			behind := newEnvOn(t, db, func(d *Deps) {
				d.Now = func() time.Time { return behindNow }
				if err := d.Tokens.Revoked.Load(context.Background(), db, behindNow); err != nil {
					t.Fatal(err)
				}
			})
			behind.secrets = append(behind.secrets, ahead.secrets...)
			if r := behind.request("GET", "/api/v1/profile", nil, bearer(at)...); r.Code != http.StatusUnauthorized {
				t.Errorf("an instance 30 s behind, started after one ahead purged the revocation, serves the revoked token: %d", r.Code)
			}
		})
	}
}

// A revoking transaction commits within store.OpTimeout +
// store.TxIdleTimeout of the created_at it stamped, or not at all
// (store.TestLateCommitOfARevocationIsRefused): a poll that looked back less
// could move past a row before it commits, and no instance but the
// revoking one would ever read it.
func TestPollOverlapOutlastsARevocationsCommit(t *testing.T) {
	if commit := store.OpTimeout + store.TxIdleTimeout + time.Second; commit >= PollOverlap { // + created_at's truncation to the second
		t.Fatalf("a revocation commits up to %v after its stamp; PollOverlap %v must be longer", commit, PollOverlap)
	}
}
