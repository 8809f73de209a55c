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
	"oauth2-api/token"
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

// Strangers who name a public client write rows in its name where
// nothing of theirs is checked first: pushed requests, device requests.
// The client's budget was per address, so those rows had no bound over all
// addresses; then the token endpoint had the bound over all addresses too
// (a token request's DPoP proof was spent before its grant was looked at),
// so that from ten addresses bogus token requests refused every code
// exchange and refresh of the client (429). A regression test: from 20
// addresses, each within its own share (a burst of 10), 200 bogus token
// requests with proofs (unknown codes and refresh tokens) are all refused
// on their grants, store no proof, and the client's user then exchanges
// her code and refreshes; 200 pushed requests from 20 other addresses
// store the budget over all addresses (ten shares: a burst of 100) and no
// more, and a fresh address is then refused; a confidential client is not
// held back.
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
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			spa, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
			web, webSecret := e.webClient()
			count := func(table string) (n int) {
				if err := storetest.Raw(t, dialect, dbURL).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			post := func(addr string, form url.Values, h ...string) response {
				h = append(h, "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", addr,
					"DPoP", key.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now()))
				return e.request("POST", "/oauth2/token", form.Encode(), h...)
			}
			bogus := []url.Values{
				{"grant_type": {"authorization_code"}, "client_id": {spa}, "code": {token.NewOpaque()}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {strings.Repeat("a", 43)}},
				{"grant_type": {"refresh_token"}, "client_id": {spa}, "refresh_token": {token.NewOpaque()}},
			}
			limited := 0
			for a := range 20 {
				for n := range 10 {
					if r := post(fmt.Sprint("203.0.113.", a), bogus[n%2]); r.Code == http.StatusTooManyRequests {
						limited++
					} else {
						r.wantOAuthError(http.StatusBadRequest, errInvalidGrant)
					}
				}
			}
			proofs := count("dpop_proofs")
			pk := newPKCE()
			code := e.secret(e.browser().signIn(authorizeURL(spa, pk), "ann", "Ann-Password-1"))
			form := codeForm(code, pk)
			form.Set("client_id", spa)
			r := post("198.51.100.7", form).want(http.StatusOK)
			e.secret(r.Str("access_token"))
			refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {spa}, "refresh_token": {e.secret(r.Str("refresh_token"))}}
			r = post("198.51.100.7", refresh).want(http.StatusOK)
			e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
			if limited != 0 || proofs != 0 {
				t.Fatalf("200 bogus token requests naming a public client from 20 addresses, 10 each: %d refused, %d DPoP proofs stored; want 0 and 0 (a proof is spent only with a grant that checks out)", limited, proofs)
			}

			par := url.Values{"client_id": {spa}, "response_type": {"code"}, "redirect_uri": {"https://app.example/cb"}, "code_challenge": {newPKCE().challenge}, "code_challenge_method": {"S256"}}
			push := func(addr string) response {
				return e.request("POST", "/oauth2/par", par.Encode(), "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", addr)
			}
			limited = 0
			for a := range 20 {
				for range 10 {
					if r := push(fmt.Sprint("198.18.0.", a)); r.Code == http.StatusTooManyRequests {
						limited++
					} else {
						r.want(http.StatusCreated)
					}
				}
			}
			if n := count("pushed_requests"); limited != 100 || n != 100 {
				t.Fatalf("200 pushed requests naming a public client from 20 addresses, 10 each: %d refused, %d stored; want 100 and 100 (the client's burst over all addresses)", limited, n)
			}
			if r := push("198.51.100.9").wantOAuthError(http.StatusTooManyRequests, "rate_limited"); r.Header().Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %v", r.Header())
			}
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
// gets one more; deleted meanwhile, it is invalid_client. A confidential
// client was not capped at all (60,000 pending at CLIENT_RATE_LIMIT's
// 100/s): with deviceMaxLiveConfidential alive it is 429 too.
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
			alive := func(from, to int) { // requests of cli, numbered from..to-1
				for ; from < to; from += deviceMaxLive {
					var rows []string
					for i := from; i < min(from+deviceMaxLive, to); i++ {
						rows = append(rows, fmt.Sprintf("('h%d', 'u%d', '%s', %d, %d, 5)", i, i, cli, now, now+600))
					}
					if _, err := raw.Exec(`INSERT INTO device_codes (hash, user_code, client_id, created_at, expires_at, interval_s) VALUES ` + strings.Join(rows, ", ")); err != nil {
						t.Fatal(err)
					}
				}
			}
			alive(0, deviceMaxLive)
			for range deviceMaxLivePerAddress + 1 {
				ask(cli, secret, "203.0.113.7").want(http.StatusOK)
			}
			alive(deviceMaxLive, deviceMaxLiveConfidential-deviceMaxLivePerAddress-1)
			ask(cli, secret, "203.0.113.9").wantOAuthError(http.StatusTooManyRequests, "rate_limited")
			if _, err := raw.Exec(fmt.Sprintf(`DELETE FROM clients WHERE id = '%s'`, cli)); err != nil { // as another instance would
				t.Fatal(err)
			}
			ask(cli, secret, "203.0.113.7").wantOAuthError(http.StatusUnauthorized, "invalid_client")
		})
	}
}

// Userinfo was budgeted per access token's client over all addresses, a
// public client's too, whose tokens anyone who signs in gets: one user of
// a SPA, from one address, had every other user of it refused (429). A
// regression test: a public client's tokens, and the REST login's, spend
// their address's share; a confidential client's, held by its back end,
// still spend one budget over all addresses.
func TestUserinfoBudgetPerAddress(t *testing.T) {
	small := func(d *Deps) { d.PerClient = ratelimit.NewNamed(1, 10, 1000) } // a burst of 10; the clock stands still
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		e.createUser("mal@example.com", "mal", "Mal-Password-1", store.RoleUser)
		spa, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
		web, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}})
		tokenOf := func(id, secret, login, password string) string {
			pk := newPKCE()
			code := e.secret(e.browser().signIn(authorizeURL(id, pk, "scope", "openid"), login, password))
			r := e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), "").want(http.StatusOK)
			e.secret(r.Str("refresh_token"))
			return e.secret(r.Str("access_token"))
		}
		userinfo := func(at, addr string) response {
			return e.request("GET", "/oauth2/userinfo", nil, append(bearer(at), "X-Forwarded-For", addr)...)
		}
		spend := func(at, addr string) { // the address's whole share, and one more refused
			for n := 0; userinfo(at, addr).Code != http.StatusTooManyRequests; n++ {
				if n == 10 {
					t.Fatalf("userinfo from %s: 11 answered within a burst of 10", addr)
				}
			}
		}
		// Every token first: the token endpoint spends a confidential client's budget too.
		restMal, _ := e.login("mal", "Mal-Password-1")
		restAnn, _ := e.login("ann", "Ann-Password-1")
		spaMal, spaAnn := tokenOf(spa, "", "mal", "Mal-Password-1"), tokenOf(spa, "", "ann", "Ann-Password-1")
		webMal, webAnn := tokenOf(web, secret, "mal", "Mal-Password-1"), tokenOf(web, secret, "ann", "Ann-Password-1")
		spend(e.secret(restMal), "203.0.113.66")
		spend(spaMal, "203.0.113.66")
		userinfo(e.secret(restAnn), "198.51.100.7").wantOAuthError(http.StatusForbidden, "insufficient_scope") // its own address's share
		userinfo(spaAnn, "198.51.100.7").want(http.StatusOK)

		spend(webMal, "203.0.113.66")
		userinfo(webAnn, "198.51.100.7").wantOAuthError(http.StatusTooManyRequests, "rate_limited")
	}, withSigningKey(t, ecKey(t), nil), withProxy, small)
}
