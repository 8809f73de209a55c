package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"oauth2-api/store/storetest"
)

// TestLoginThrottleAcrossInstances runs two servers on one shared
// database: failed logins counted on either add up, so after
// LOGIN_MAX_FAILURES (3) failures spread over both, the account is throttled
// on both (429 with Retry-After), for an unknown account name too.
func TestLoginThrottleAcrossInstances(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			e := baseEnv(storetest.URL(t, dialect)).with("LOGIN_MAX_FAILURES", "3", "LOGIN_LOCKOUT", "15m")
			// Both start at once on the fresh schema: migrations must not collide.
			var a, b *server
			var errA, errB error
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a, errA = launch(t, "replica-a", e) }()
			go func() { defer wg.Done(); b, errB = launch(t, "replica-b", e) }()
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("start two replicas at once: %v; %v", errA, errB)
			}
			sec := &secrets{}
			const alicePass, bobPass = "Alice-pass-e2e", "Bob-pass-e2e"
			sec.add(jwtSecret, alicePass, bobPass)
			a.mustRegister(t, "alice@e2e.test", "alice", alicePass)
			a.mustRegister(t, "bob@e2e.test", "bob", bobPass)

			login := func(s *server, who, pass string, want int) reply {
				t.Helper()
				r := s.login(t, who, pass)
				if r.status != want {
					t.Errorf("%s: login %s = %v; want %d", s.name, who, r, want)
				}
				checkBody(t, "login "+who, r.body, sec.all())
				return r
			}
			throttled := func(s *server, who, pass string) {
				t.Helper()
				r := login(s, who, pass, http.StatusTooManyRequests)
				if r.status != http.StatusTooManyRequests {
					return
				}
				if code := errorCode(r); code != "too_many_attempts" {
					t.Errorf("%s: login %s: error %q; want too_many_attempts (the account throttle, not the per-IP one)", s.name, who, code)
				}
				ra, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || ra < 1 || ra > 15*60 {
					t.Errorf("%s: login %s: Retry-After %q; want 1 to 900 seconds", s.name, who, r.header.Get("Retry-After"))
				}
			}

			for _, who := range []string{"alice", "ghost-" + strconv.FormatInt(time.Now().UnixNano(), 36)} {
				login(a, who, "wrong-password-1", http.StatusUnauthorized)
				login(a, who, "wrong-password-2", http.StatusUnauthorized)
				login(b, who, "wrong-password-3", http.StatusUnauthorized)
				throttled(a, who, "wrong-password-4")
				throttled(b, who, "wrong-password-5")
				if who == "alice" {
					// Throttled means throttled: the right password too, on either
					// instance. By the account's email it is refused too, with a
					// wrong password's answer: a 429 there would tell that the
					// username and the email are one account.
					throttled(a, "alice", alicePass)
					throttled(b, "ALICE", alicePass)
					login(b, "alice@e2e.test", alicePass, http.StatusUnauthorized)
				}
			}
			// Another account is not affected.
			p := b.mustLogin(t, "bob", bobPass)
			sec.add(p.AccessToken, p.RefreshToken)
			checkLog(t, a, sec.all())
			checkLog(t, b, sec.all())
		})
	}
}

// TestLoginFlood fires 500 logins at once, right and wrong passwords mixed,
// at a server whose rate limits do not stand in the way. The argon2
// concurrency bound must keep memory small (each hash holds 19 MiB), and
// every request must get an answer: 200, 401, or 503 when no hashing slot
// freed up in time; a wrong password never gets 200.
//
// The server hashes at most max(2, GOMAXPROCS) passwords at once, so its
// peak memory grows with the machine's cores; GOMAXPROCS is pinned to 2 so
// that the 256 MiB bound means the same on every machine.
func TestLoginFlood(t *testing.T) {
	e := sqliteEnv(t).with("LOGIN_RATE_LIMIT", "100000/s", "LOGIN_RATE_BURST", "100000", "LOGIN_MAX_FAILURES", "1000000",
		"GOMAXPROCS", "2")
	s := startServer(t, "flood", e)
	sec := &secrets{}
	sec.add(jwtSecret)
	const users = 5
	pass := func(i int) string { return fmt.Sprintf("Flood-pass-%d-e2e", i) }
	for i := range users {
		s.mustRegister(t, fmt.Sprintf("flood%d@e2e.test", i), fmt.Sprintf("flood%d", i), pass(i))
		sec.add(pass(i))
	}

	pid := s.cmd.Process.Pid
	hwm0, rss0, err := procStatus(pid)
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	stopSampling := make(chan struct{})
	sampled := make(chan [2]int64)
	go func() {
		var peakRSS, hwm int64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if h, r, err := procStatus(pid); err == nil {
				hwm, peakRSS = max(hwm, h), max(peakRSS, r)
			}
			select {
			case <-stopSampling:
				sampled <- [2]int64{hwm, peakRSS}
				return
			case <-tick.C:
			}
		}
	}()

	const n = 500
	type result struct {
		right bool
		r     reply
		err   error
	}
	results := make([]result, n)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		u := i % users
		right := i%2 == 0
		pw := pass(u)
		if !right {
			pw = fmt.Sprintf("Wrong-pass-%d", i)
		}
		results[i].right = right
		req, err := s.postJSON("/api/v1/auth/login", fmt.Sprintf(`{"login":"flood%d","password":%q}`, u, pw))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i].r, results[i].err = trySend(c, req)
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	close(stopSampling)
	peak := <-sampled

	counts := map[int]int{}
	for i, res := range results {
		switch {
		case res.err != nil:
			t.Errorf("login %d: %v; want an answer", i, res.err)
			continue
		case res.r.status == http.StatusOK && !res.right:
			t.Errorf("login %d with a wrong password = %v", i, res.r)
		case res.r.status == http.StatusUnauthorized && res.right:
			t.Errorf("login %d with the right password = %v", i, res.r)
		case res.r.status == http.StatusServiceUnavailable && res.r.header.Get("Retry-After") == "":
			t.Errorf("login %d = 503 without Retry-After", i)
		case res.r.status != http.StatusOK && res.r.status != http.StatusUnauthorized && res.r.status != http.StatusServiceUnavailable:
			t.Errorf("login %d = %v; want 200, 401 or 503", i, res.r)
		}
		counts[res.r.status]++
		if res.r.status == http.StatusOK {
			var p tokenPair
			if err := json.Unmarshal(res.r.body, &p); err == nil {
				sec.add(p.AccessToken, p.RefreshToken)
			}
		}
		checkBody(t, fmt.Sprintf("login %d", i), res.r.body, nil)
	}
	const mib = 1 << 20
	t.Logf("%d parallel logins in %v: %d×200, %d×401, %d×503", n, took.Round(time.Millisecond),
		counts[http.StatusOK], counts[http.StatusUnauthorized], counts[http.StatusServiceUnavailable])
	t.Logf("server memory: VmRSS %.1f MiB before; peak RSS (VmHWM) %.1f MiB, highest sampled VmRSS %.1f MiB (before the flood VmHWM was %.1f MiB)",
		float64(rss0)/mib, float64(peak[0])/mib, float64(peak[1])/mib, float64(hwm0)/mib)
	if peak[0] >= 256*mib {
		t.Errorf("peak RSS %.1f MiB under 500 parallel logins; want under 256 MiB", float64(peak[0])/mib)
	}
	if counts[http.StatusOK] == 0 {
		t.Errorf("no login succeeded during the flood")
	}
	if r := s.get(t, "/health", ""); r.status != http.StatusOK {
		t.Errorf("GET /health after the flood = %v; want 200", r)
	}
	checkLog(t, s, sec.all())
}
