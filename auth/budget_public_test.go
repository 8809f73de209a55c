package auth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// A public client is "authenticated" by its client_id alone, and the token
// endpoint has only the per-client budget: anyone on the Internet who reads
// a SPA's client_id (it is in every authorize URL) could spend that client's
// whole budget with bogus requests, and every user of the SPA was then
// refused (429) on the code exchange and on refresh. A regression test: a
// public client's budget is now keyed by the client and the caller's
// address (httpx.ByClient), so the flood spends only its own address's.
func TestPublicClientBudgetPerAddress(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		spa, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		post := func(addr string, form url.Values) *httptest.ResponseRecorder {
			req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
			req.RemoteAddr = addr
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			return w
		}
		// The attacker, from 203.0.113.66, with nothing but the client_id.
		bogus := url.Values{"grant_type": {"authorization_code"}, "client_id": {spa}, "code": {"nope"}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {strings.Repeat("a", 43)}}
		limited := 0
		for range 300 {
			if post("203.0.113.66:4444", bogus).Code == http.StatusTooManyRequests {
				limited++
			}
		}
		if limited == 0 {
			t.Fatal("300 requests from one address naming a public client: none refused")
		}
		// Ann, from her own address, exchanges her real code.
		pk := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(spa, pk), "ann", "Ann-Password-1"))
		form := codeForm(code, pk)
		form.Set("client_id", spa)
		w := post("198.51.100.7:5555", form)
		if w.Code != http.StatusOK {
			t.Fatalf("a user's code exchange after an anonymous flood naming her SPA's client_id: %d %s; want 200 (a stranger must not spend the client's budget)", w.Code, w.Body.String())
		}
	}, withDefaultBudgets)
}

// withProxy trusts the test requests' peer (192.0.2.1) as a proxy, so that
// each request's X-Forwarded-For is its client address.
func withProxy(d *Deps) {
	d.IPs = httpx.IPResolver{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}}
}

// Strangers who name a public client write rows in its name: the DPoP proof
// of a token request is spent (dpop_proofs) before its grant is looked at,
// and a pushed request is stored. The client's budget was per address, so
// those rows had no bound over all addresses. A regression test: from 20
// addresses, each within its own share (a burst of 10), 200 bogus token
// requests with proofs; the client's budget over all addresses (ten
// shares: a burst of 100) refuses the other 100, stores no more proofs
// than it allowed, and then refuses the client's pushed requests too, from
// a fresh address; a confidential client is not held back by it.
func TestPublicClientBudgetOverAllAddresses(t *testing.T) {
	key := newDPoPKey(t)
	small := func(d *Deps) { // an address's share: a burst of 10; the client's over all addresses: ten shares
		d.PerClient = ratelimit.NewNamed(1, 10, 1000)
		d.PublicClients = ratelimit.NewNamed(PublicClientShares, 10*PublicClientShares, 1000)
	}
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dbURL := storetest.URL(t, dialect)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL), withProxy, small)
			spa, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
			web, webSecret := e.webClient()
			bogus := url.Values{"grant_type": {"authorization_code"}, "client_id": {spa}, "code": {"nope"}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {strings.Repeat("a", 43)}}
			post := func(addr string, form url.Values, h ...string) response {
				h = append(h, "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", addr,
					"DPoP", key.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now()))
				return e.request("POST", "/oauth2/token", form.Encode(), h...)
			}
			limited := 0
			for a := range 20 {
				for range 10 {
					switch r := post(fmt.Sprint("203.0.113.", a), bogus); r.Code {
					case http.StatusBadRequest:
					case http.StatusTooManyRequests:
						limited++
						if r.Str("error") != "rate_limited" || r.Header().Get("Retry-After") == "" {
							t.Fatalf("429 %s %v; want rate_limited and Retry-After", r.Body.String(), r.Header())
						}
					default:
						t.Fatalf("a bogus code from address %d: %d %s", a, r.Code, r.Body.String())
					}
				}
			}
			var proofs int
			if err := storetest.Raw(t, dialect, dbURL).QueryRow(`SELECT count(*) FROM dpop_proofs`).Scan(&proofs); err != nil {
				t.Fatal(err)
			}
			if limited != 100 || proofs != 100 {
				t.Fatalf("200 requests naming a public client from 20 addresses, 10 each: %d refused, %d proofs stored; want 100 and 100 (the client's burst over all addresses)", limited, proofs)
			}
			par := url.Values{"client_id": {spa}, "response_type": {"code"}, "redirect_uri": {"https://app.example/cb"}, "code_challenge": {newPKCE().challenge}, "code_challenge_method": {"S256"}}
			r := e.request("POST", "/oauth2/par", par.Encode(), "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", "198.51.100.9")
			r.wantOAuthError(http.StatusTooManyRequests, "rate_limited")
			confidential := url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {strings.Repeat("a", 43)}}
			post("203.0.113.1", confidential, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(web+":"+webSecret))).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		})
	}
}

// A device request of a public client, named by its client_id alone, was
// written for anyone within the per-address budget, so that from many
// addresses the client's pending requests (kept 70 minutes, and each one
// more code a guesser may hit) had no bound. A regression test: from a new
// address each time, a request every 100 ms, the 1,001st is refused (429
// rate_limited, Retry-After) while 1,000 are alive; another client is not
// held back, and the first asks again once its requests have expired.
func TestDeviceRequestsCappedPerClient(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tv, _ := e.deviceClient("tv", false, false, "read")
		cli, _ := e.deviceClient("cli", false, false, "read")
		ask := func(id string, n int) response {
			form := url.Values{"client_id": {id}}
			addr := fmt.Sprintf("2001:db8:%x::1", n) // a /64 of its own
			return e.request("POST", "/oauth2/device_authorization", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", addr)
		}
		for n := range 1000 {
			e.clock.Add(100 * time.Millisecond)
			ask(tv, n).want(http.StatusOK)
		}
		r := ask(tv, 1000).wantOAuthError(http.StatusTooManyRequests, "rate_limited")
		if r.Header().Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v", r.Header())
		}
		ask(cli, 1001).want(http.StatusOK)
		e.clock.Add(deviceTTL)
		ask(tv, 1002).want(http.StatusOK)
	}, withProxy)
}

// One address filled a public client's device cap alone (1,000 requests,
// some 8 s of its share of CLIENT_RATE_LIMIT), and every device of the
// client was then refused for 10 minutes; a confidential client, whose
// requests are its own, was held to the same 1,000; and a client deleted
// by another instance, still cached in this one, was answered 500 (its
// insert failed its foreign key). A regression test: from one address, a
// public client's request past deviceMaxLivePerAddress is 429
// rate_limited with Retry-After while another address still gets a code;
// a confidential client with 1,000 requests alive, all from one address,
// gets one more; deleted meanwhile, it is invalid_client.
func TestDeviceRequestsCappedPerAddress(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dbURL := storetest.URL(t, dialect)
			e := newEnvOn(t, storetest.OpenURL(t, dbURL), withProxy)
			raw := storetest.Raw(t, dialect, dbURL)
			tv, _ := e.deviceClient("tv", false, false, "read")
			cli, secret := e.deviceClient("cli", true, false, "read")
			ask := func(id, secret, addr string) response {
				h := []string{"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", addr}
				form := url.Values{"client_id": {id}}
				if secret != "" {
					h, form = append(h, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(id+":"+secret))), nil
				}
				return e.request("POST", "/oauth2/device_authorization", form.Encode(), h...)
			}
			for range deviceMaxLivePerAddress {
				ask(tv, "", "203.0.113.7").want(http.StatusOK)
			}
			r := ask(tv, "", "203.0.113.7").wantOAuthError(http.StatusTooManyRequests, "rate_limited")
			if r.Header().Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %v", r.Header())
			}
			ask(tv, "", "203.0.113.8").want(http.StatusOK)
			now := e.clock.Now().Unix()
			var rows []string
			for i := range deviceMaxLive {
				rows = append(rows, fmt.Sprintf("('h%d', 'u%d', '%s', %d, %d, 5)", i, i, cli, now, now+600))
			}
			if _, err := raw.Exec(`INSERT INTO device_codes (hash, user_code, client_id, created_at, expires_at, interval_s) VALUES ` + strings.Join(rows, ", ")); err != nil {
				t.Fatal(err)
			}
			for range deviceMaxLivePerAddress + 1 {
				ask(cli, secret, "203.0.113.7").want(http.StatusOK)
			}
			if _, err := raw.Exec(fmt.Sprintf(`DELETE FROM clients WHERE id = '%s'`, cli)); err != nil { // as another instance would
				t.Fatal(err)
			}
			ask(cli, secret, "203.0.113.7").wantOAuthError(http.StatusUnauthorized, "invalid_client")
		})
	}
}
