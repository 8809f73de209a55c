package interop

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// budgetReply is one answer of the back channel, reduced to what the
// budget test checks.
type budgetReply struct {
	status      int
	contentType string
	cacheCtl    string
	retryAfter  string
	body        map[string]any
	err         error
}

// fire sends n requests made by mk from workers goroutines at once, each
// waiting for a permit from pace (nil: no waiting), and returns the
// answers in no particular order.
func fire(c *http.Client, n, workers int, pace <-chan struct{}, mk func(i int) *http.Request) []budgetReply {
	jobs := make(chan int)
	out := make([]budgetReply, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if pace != nil {
					<-pace
				}
				out[i] = send(c, mk(i))
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

func send(c *http.Client, req *http.Request) budgetReply {
	resp, err := c.Do(req)
	if err != nil {
		return budgetReply{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r := budgetReply{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		cacheCtl: resp.Header.Get("Cache-Control"), retryAfter: resp.Header.Get("Retry-After"), err: err}
	if err == nil {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			r.err = fmt.Errorf("status %d, body %q is not a JSON object", resp.StatusCode, raw)
		}
	}
	return r
}

// pacer hands out n permits: burst of them at once, then one every
// interval; it stops when done closes.
func pacer(n, burst int, every time.Duration, done <-chan struct{}) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range n {
			if i >= burst {
				select {
				case <-tick.C:
				case <-done:
					return
				}
			}
			select {
			case ch <- struct{}{}:
			case <-done:
				return
			}
		}
	}()
	return ch
}

// TestBudgets checks the default budgets (no rate-limit variable set) from
// one address, on SQLite and PostgreSQL, as a resource server sees them: it
// introspects for all its users, so 2,000 introspections by one
// confidential client get no 429 (the per-IP budget of the REST API, 100
// an hour, does not apply to the OAuth back channel; the per-client
// budget, CLIENT_RATE_LIMIT 100/s with a burst of 200, does, so the
// requests go from 16 workers at a little under 100 a second after a
// first burst, and the test takes about 20 s). Guessing a client secret is
// budgeted like a password: of 200 requests with a wrong secret (to the
// introspection and token endpoints, from 16 workers at once), all but
// about the burst of LOGIN_RATE_LIMIT (5/m, burst 10) get 429 with an RFC
// 6749 error body and Retry-After, and the client that authenticates is
// not held back by them.
func TestBudgets(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, databaseURL string) {
		t.Parallel()
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL, // the contract's defaults, not startServer's
			"LOGIN_RATE_LIMIT": "", "LOGIN_RATE_BURST": "", "RATE_LIMIT_REQUESTS": "", "RATE_LIMIT_WINDOW": ""})
		gw := s.createClient(t, "--name", "Interop Gateway", "--grant-type", "client_credentials", "--scope", "read")
		tok := clientCredentialsToken(t, oauthContext(t), s, gw) // spends one request of the client's budget
		c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
		t.Cleanup(c.CloseIdleConnections)
		post := func(path, secret string, form url.Values) *http.Request {
			req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(gw.ID), url.QueryEscape(secret))
			return req
		}

		// 2,000 introspections: 180 at once, then one every 10.5 ms
		// (95/s), within the server's 200 + 100/s (less the token above).
		done := make(chan struct{})
		defer close(done)
		start := time.Now()
		replies := fire(c, 2000, 16, pacer(2000, 180, 10500*time.Microsecond, done), func(int) *http.Request {
			return post("/oauth2/introspect", gw.Secret, url.Values{"token": {tok}})
		})
		counts := map[int]int{}
		for i, r := range replies {
			counts[r.status]++
			if r.err != nil || r.status != http.StatusOK || r.body["active"] != true || r.body["client_id"] != gw.ID {
				t.Errorf("introspection %d: status %d, body %v, err %v; want 200, active, client_id %s", i, r.status, r.body, r.err, gw.ID)
				break
			}
		}
		t.Logf("2000 introspections in %v: statuses %v", time.Since(start).Round(time.Millisecond), counts)
		if counts[http.StatusOK] != 2000 || counts[http.StatusTooManyRequests] != 0 {
			t.Fatalf("2000 introspections by one client from one address: statuses %v; want 2000 × 200 and no 429", counts)
		}

		// 200 wrong secrets, half at introspection, half at the token endpoint.
		wrong := randomHex(32)
		s.noLog(wrong)
		replies = fire(c, 200, 16, nil, func(i int) *http.Request {
			if i%2 == 0 {
				return post("/oauth2/introspect", wrong, url.Values{"token": {tok}})
			}
			return post("/oauth2/token", wrong, url.Values{"grant_type": {"client_credentials"}})
		})
		counts = map[int]int{}
		for i, r := range replies {
			counts[r.status]++
			if r.err != nil {
				t.Fatalf("wrong secret %d: %v", i, r.err)
			}
			desc, _ := r.body["error_description"].(string)
			switch r.status {
			case http.StatusUnauthorized:
				if r.body["error"] != "invalid_client" {
					t.Errorf("wrong secret %d: 401 %v; want error invalid_client", i, r.body)
				}
			case http.StatusTooManyRequests:
				if r.body["error"] != "rate_limited" || desc == "" || r.retryAfter == "" ||
					!strings.HasPrefix(r.contentType, "application/json") || !strings.Contains(r.cacheCtl, "no-store") {
					t.Errorf("wrong secret %d: 429 with body %v, Retry-After %q, Content-Type %q, Cache-Control %q; want an RFC 6749 JSON error (error, error_description), Retry-After and no-store",
						i, r.body, r.retryAfter, r.contentType, r.cacheCtl)
				}
			default:
				t.Errorf("wrong secret %d: status %d %v; want 401 or 429", i, r.status, r.body)
			}
		}
		t.Logf("200 wrong secrets: statuses %v", counts)
		if counts[http.StatusTooManyRequests] < 185 || counts[http.StatusUnauthorized] < 1 {
			t.Errorf("200 wrong client secrets from one address: statuses %v; want a few 401 (the burst of 10) and 429 for the rest", counts)
		}

		// The client that authenticates is not held back by the guesses.
		if r := send(c, post("/oauth2/introspect", gw.Secret, url.Values{"token": {tok}})); r.status != http.StatusOK || r.body["active"] != true {
			t.Errorf("introspection with the right secret after the guesses: %d %v; want 200, active", r.status, r.body)
		}
	})
}
