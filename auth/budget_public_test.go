package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"oauth2-api/store"
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
