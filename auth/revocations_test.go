package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// A user or client revocation cuts at a millisecond: tokens minted up to it
// are revoked, tokens minted after it (even in the same second) are not; a
// token whose jti carries no time counts as minted at the end of its second.
func TestRevocationCutoff(t *testing.T) {
	cut := time.UnixMilli(1_800_000_000_500)
	rv := NewRevocations(nil)
	rv.Add(store.UserRevocation(42, time.Hour, cut))
	rv.Add(store.ClientRevocation("c1", time.Hour, cut))
	claims := func(sub, client string, minted time.Time, jti string) *token.Claims {
		if jti == "" {
			jti = token.NewTimedID(minted)
		}
		return &token.Claims{Subject: sub, ClientID: client, IssuedAt: minted.Unix(), ID: jti}
	}
	for _, tc := range []struct {
		name string
		c    *token.Claims
		want bool
	}{
		{"user, a second before", claims("42", "x", cut.Add(-time.Second), ""), true},
		{"user, same millisecond", claims("42", "x", cut, ""), true},
		{"user, a millisecond after", claims("42", "x", cut.Add(time.Millisecond), ""), false},
		{"client, 100 ms before", claims("7", "c1", cut.Add(-100*time.Millisecond), ""), true},
		{"client, 100 ms after", claims("7", "c1", cut.Add(100*time.Millisecond), ""), false},
		{"other user and client", claims("43", "c2", cut.Add(-time.Second), ""), false},
		{"foreign jti, same second", claims("42", "x", cut.Add(100*time.Millisecond), "not-a-timed-id"), true},
		{"foreign jti, next second", claims("42", "x", cut.Add(time.Second), "not-a-timed-id"), false},
		{"jti time disagrees with iat", &token.Claims{Subject: "42", IssuedAt: cut.Unix(), ID: token.NewTimedID(cut.Add(10 * time.Second))}, true},
	} {
		if got := rv.Revoked(tc.c); got != tc.want {
			t.Errorf("%s: Revoked = %v; want %v", tc.name, got, tc.want)
		}
	}
	// A jti revocation is exact.
	c := claims("9", "c9", cut, "")
	rv.Add(store.Revocation{Kind: store.RevokeJTI, Subject: c.ID, ExpiresAt: cut.Add(time.Hour).Unix()})
	if !rv.Revoked(c) || rv.Revoked(claims("9", "c9", cut, "")) {
		t.Error("jti revocation is not exact")
	}
	// Entries go once nothing they cover can be valid.
	rv.prune(cut.Add(2 * time.Hour).Unix())
	if rv.Len() != 0 {
		t.Errorf("%d entries left after pruning", rv.Len())
	}
}

// A deleted client's, or a rotated secret's, entry covers tokens minted
// after it, until the other instances' client caches hear of it (at most
// the cache's minute): it was dropped at its cut-off, while a token minted
// just before the cut-off was still accepted for the verifier's Leeway.
func TestDeletionKeptWhileItsTokensLive(t *testing.T) {
	ttl, at := time.Hour, time.Unix(1_800_000_000, 0)
	rv := NewRevocations(nil)
	rv.Add(store.ClientDeletion("c1", ttl, at))
	rv.Add(store.SecretRevocation("h1", ttl, at))
	minted := at.Add(59 * time.Second) // by an instance that had yet to hear
	for _, c := range []*token.Claims{
		{ClientID: "c1", IssuedAt: minted.Unix(), ID: token.NewTimedID(minted)},
		{ClientID: "c2", SecretTag: store.SecretTag("h1"), IssuedAt: minted.Unix(), ID: token.NewTimedID(minted)},
	} {
		last := minted.Add(ttl + token.Leeway) // the last second a verifier accepts it
		rv.prune(last.Unix())
		if !rv.Revoked(c) {
			t.Errorf("client %s, secret tag %q: accepted again %v after, its entry pruned", c.ClientID, c.SecretTag, last.Sub(at))
		}
	}
}

// Revocations reach another instance by its poll (Run), which reads the
// entries stamped since its previous poll, less PollOverlap. They were
// stamped with their request's time, and a password change reads its
// time before it waits for a hashing slot, rehashes and hashes the new
// password (up to 10 s each): its sid revocations committed stamped more
// than PollOverlap in the past, after the polls had moved past them, and
// other instances took the ended sessions' access tokens until they
// expired (a regression test). Here instance a's clock runs a minute
// behind b's poller, as a request's time a minute before its transaction
// would; a password change ends one session (store.revokeFamiliesTx), a
// logout another (store.insertRevocation). Two instances on one database.
func TestRevocationsReachPollsWhateverTheirRequestTime(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL := storetest.URL(t, d)
			a, b := newEnvOn(t, storetest.OpenURL(t, dbURL)), newEnvOn(t, storetest.OpenURL(t, dbURL))
			a.clock.Add(-time.Minute)
			a.createUser("lee@example.com", "lee", "Old-Password-1", store.RoleUser)
			changed, _ := a.login("lee", "Old-Password-1")
			loggedOut, _ := a.login("lee", "Old-Password-1")
			caller, _ := a.login("lee", "Old-Password-1")
			b.secrets = append(b.secrets, a.secret("New-Password-2"))

			// b polls as Run does, each poll starting when the test hands it its time.
			ctx, cancel := context.WithCancel(t.Context())
			starts := make(chan time.Time)
			var polling sync.WaitGroup
			polling.Go(func() {
				b.deps.Tokens.Revoked.Run(ctx, b.db, time.Millisecond, b.deps.Log, func() time.Time {
					select {
					case s := <-starts:
						return s
					case <-ctx.Done():
						return time.Now()
					}
				})
			})
			defer polling.Wait()
			defer cancel()
			starts <- time.Now() // where the first poll reads from

			a.request("POST", "/api/v1/auth/logout", nil, bearer(loggedOut)...).want(http.StatusNoContent)
			a.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Old-Password-1", "new_password": "New-Password-2"}, bearer(caller)...).want(http.StatusNoContent)
			starts <- time.Now() // a poll after both committed,
			starts <- time.Now() // done once the next one starts
			for name, tok := range map[string]string{"ended by the password change": changed, "logged out": loggedOut} {
				if r := b.request("GET", "/api/v1/profile", nil, bearer(tok)...); r.Code != http.StatusUnauthorized {
					t.Errorf("the other instance, after its poll, takes the access token of the session %s: %d", name, r.Code)
				}
			}
			b.request("GET", "/api/v1/profile", nil, bearer(caller)...).want(http.StatusOK)
		})
	}
}

// An instance that cannot read the revocation list does not answer from a
// stale one. b reaches the database through a proxy and polls once, then
// no more (the test hands Run no more times, as a cut-off instance's polls
// fail); a revokes an access token and logs a REST login out. Within Run's
// bound (two intervals and OpTimeout) b answers as before; past it, its
// introspection (with the database cut: the client is cached) and its
// bearer routes (with the database there) answer 503. Before, b said
// "active":true and 200 for as long as its polls failed (a regression
// test). Two instances on one database.
func TestStaleRevocationListAnswers503(t *testing.T) {
	for _, d := range storetest.Servers() {
		t.Run(d, func(t *testing.T) {
			raw := storetest.URL(t, d)
			proxy, viaProxy := storetest.NewProxy(t, raw)
			a, b := newEnvOn(t, storetest.OpenURL(t, raw)), newEnvOn(t, storetest.OpenURL(t, viaProxy))
			a.createUser("val@example.com", "val", "Val-Password-1", store.RoleUser)
			id, secret := a.webClient()
			at, _ := a.codeGrant(a.browser(), id, secret, "val", "Val-Password-1")
			rest, _ := a.login("val", "Val-Password-1")

			ctx, cancel := context.WithCancel(t.Context())
			polled, calls := make(chan struct{}), 0
			var polling sync.WaitGroup
			polling.Go(func() {
				b.deps.Tokens.Revoked.Run(ctx, b.db, time.Millisecond, b.deps.Log, func() time.Time {
					if calls++; calls == 3 { // where polls begin, the first poll, and the next, once it is done
						close(polled)
					}
					if calls >= 3 {
						<-ctx.Done()
					}
					return b.clock.Now()
				})
			})
			defer polling.Wait()
			defer cancel()
			<-polled

			a.formPost("/oauth2/revoke", id, secret, url.Values{"token": {at}}).want(http.StatusOK)
			a.request("POST", "/api/v1/auth/logout", nil, bearer(rest)...).want(http.StatusNoContent)
			b.clock.Add(store.OpTimeout) // within the bound: the revocations are not seen yet
			if in := b.introspect(id, secret, at); in["active"] != true {
				t.Fatalf("b, its list within its bound: introspection %v; want active:true", in)
			}
			b.request("GET", "/api/v1/profile", nil, bearer(rest)...).want(http.StatusOK)

			b.clock.Add(time.Second)
			profile := b.request("GET", "/api/v1/profile", nil, bearer(rest)...)
			proxy.Cut()
			in := b.formPost("/oauth2/introspect", id, secret, url.Values{"token": {at}})
			for name, r := range map[string]response{"profile": profile, "introspection": in} {
				if r.Code != http.StatusServiceUnavailable || r.Header().Get("Retry-After") == "" {
					t.Errorf("b, its list past its bound: %s %d %s; want 503 with Retry-After", name, r.Code, r.Body.String())
				}
			}
			b.secrets = append(b.secrets, a.secrets...)
		})
	}
}

// Load and each poll read the list in pages, each a statement of its own
// (store.RevocationsSince): one statement for every entry passed OpTimeout
// from about 4 million on PostgreSQL, and no instance could start, nor
// catch up once behind. Here a page is 2 entries, and all of them must be
// applied. Run's first poll reads from Load's now, less PollOverlap, not
// its own: a Load of many pages takes its time, and an entry it missed,
// committed behind a page it had read, the poll missed too (here Run starts
// a minute after Load's now, and half the entries are written after Load).
func TestRevocationsReadInPages(t *testing.T) {
	defer func(n int) { revocationPage = n }(revocationPage)
	revocationPage = 2
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db, rv, t0 := storetest.Open(t, d), NewRevocations(nil), time.Now()
			revoke := func() {
				for range 5 {
					if err := db.Revoke(t.Context(), store.Revocation{Kind: store.RevokeJTI, Subject: token.NewID(), ExpiresAt: t0.Add(time.Hour).Unix()}); err != nil {
						t.Fatal(err)
					}
				}
			}
			revoke()
			if err := rv.Load(t.Context(), db, t0); err != nil || rv.Len() != 5 {
				t.Fatalf("Load applied %d of 5 entries in pages of 2: %v", rv.Len(), err)
			}
			revoke()
			ctx, cancel := context.WithCancel(t.Context())
			starts := make(chan time.Time)
			var polling sync.WaitGroup
			polling.Go(func() {
				rv.Run(ctx, db, time.Millisecond, slog.New(slog.DiscardHandler), func() time.Time {
					select {
					case <-starts:
						return t0.Add(time.Minute)
					case <-ctx.Done():
						return time.Now()
					}
				})
			})
			for range 3 { // where polls begin, the first poll's start, and the next one's once the first is done
				starts <- time.Time{}
			}
			cancel()
			polling.Wait()
			if rv.Len() != 10 {
				t.Fatalf("after a poll, %d of 10 entries applied", rv.Len())
			}
		})
	}
}

// Run polls at once, not an interval after it starts: a Load of many pages
// left the list older than its bound, and every token check answered 503
// until the first tick (here Load took a day, and the interval is an
// hour).
func TestRunPollsAtOnce(t *testing.T) {
	db, rv, t0 := storetest.Open(t, storetest.Dialects[0]), NewRevocations(nil), time.Now()
	t1 := t0.Add(24 * time.Hour)
	if err := rv.Load(t.Context(), db, t0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var polling sync.WaitGroup
	polling.Go(func() {
		rv.Run(ctx, db, time.Hour, slog.New(slog.DiscardHandler), func() time.Time { return t1 })
	})
	defer polling.Wait()
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); rv.Age(t1) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the list is %v old after Run started; want a poll at once", rv.Age(t1))
		}
	}
	if err := rv.Fresh(t1); err != nil {
		t.Fatal(err)
	}
}

// Entries are stamped, and polls read from, by the database's clock, which
// every instance shares: a poll read from where its own clock said, less
// PollOverlap, and so never read an entry stamped by an instance whose
// clock ran further behind (here the poller's runs a minute ahead, as the
// writer's a minute behind would).
func TestPollsReadByTheDatabasesClock(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			poller, writer, rv := storetest.OpenURL(t, url), storetest.OpenURL(t, url), NewRevocations(nil)
			ahead := func() time.Time { return time.Now().Add(time.Minute) }
			if err := rv.Load(t.Context(), poller, ahead()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			var polling sync.WaitGroup
			polling.Go(func() { rv.Run(ctx, poller, time.Millisecond, slog.New(slog.DiscardHandler), ahead) })
			defer polling.Wait()
			defer cancel()
			if err := writer.Revoke(t.Context(), store.Revocation{Kind: store.RevokeJTI, Subject: token.NewID(), ExpiresAt: time.Now().Add(time.Hour).Unix()}); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); rv.Len() != 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a revocation another instance wrote after the polls began was never read")
				}
			}
		})
	}
}

// BenchmarkRevokedMemory adds one million jti revocations (as one access
// token lifetime of 280 revocations a second would) and reports the live
// heap and the growth of RSS per revoked token: the list is held on every
// instance (go test -run '^$' -bench RevokedMemory -benchtime 1x ./auth).
func BenchmarkRevokedMemory(b *testing.B) {
	const n = 1_000_000
	now := time.Now()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := rssBytes(b)
		rv := NewRevocations(nil)
		for range n { // each jti a string of its own, as read from the database
			rv.Add(store.Revocation{Kind: store.RevokeJTI, Subject: token.NewTimedID(now), ExpiresAt: now.Add(time.Hour).Unix()})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		rss := rssBytes(b) - rssBefore
		if rv.Len() != n {
			b.Fatalf("%d entries; want %d", rv.Len(), n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/token")
		b.ReportMetric(float64(rss)/n, "rss-B/token")
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB/million")
		runtime.KeepAlive(rv)
	}
}

// rssBytes reads this process's resident set size from /proc (Linux).
func rssBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	tb.Skip("no VmRSS")
	return 0
}

// Len returns the number of entries held (tests only).
func (rv *Revocations) Len() int {
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	return len(rv.jtis) + len(rv.sids) + len(rv.subjects)
}
