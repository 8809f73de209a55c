package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"oauth2-api/auth/smtptest"
	"oauth2-api/store"
)

func (c caller) String() string {
	return [...]string{"anyone", "person", "client", "confidential client", "token holder", "user", "admin", "registrar", "registrant"}[c]
}

// TestRouteTableRefusesWrongCallers walks the route table and sends every
// route the callers it must refuse: nothing, a token of the wrong kind, a
// user who is not an admin, a public client where a secret is needed. The
// answer must come from the caller's check (the handler never runs): 401 or
// 403 with the surface's error shape. A route the table says anyone may
// call must not answer 401 to a request without credentials.
func TestRouteTableRefusesWrongCallers(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	e := newEnv(t, store.SQLite, withSigningKey(t, ecKey(t), nil), withReset(t, srv, clientTLS, SMTPStartTLS), withDynamicRegistration(RegistrationToken))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	userToken, _ := e.login("ann", "Ann-Password-1")
	svc, svcSecret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
	ccToken := e.secret(e.token(svc, svcSecret, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK).Str("access_token"))
	pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}})

	type attempt struct {
		name   string
		header []string
		form   url.Values
		want   int
	}
	seen := map[caller]bool{}
	for _, rt := range routes(e.deps) {
		seen[rt.caller] = true
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.ReplaceAll(path, "{id}", "1")
		var attempts []attempt
		switch rt.caller {
		case admin:
			attempts = append(attempts, attempt{"a user who is not an admin", bearer(userToken), nil, http.StatusForbidden})
			fallthrough
		case user:
			attempts = append(attempts,
				attempt{"no token", nil, nil, http.StatusUnauthorized},
				attempt{"a client's own token", bearer(ccToken), nil, http.StatusUnauthorized},
				attempt{"a forged token", bearer(tamper(userToken)), nil, http.StatusUnauthorized})
		case tokenHolder:
			attempts = append(attempts,
				attempt{"no token", nil, nil, http.StatusUnauthorized},
				attempt{"a forged token", bearer(tamper(ccToken)), nil, http.StatusUnauthorized})
		case confidentialClient:
			attempts = append(attempts, attempt{"a public client", nil, url.Values{"client_id": {pub}, "token": {"x"}}, http.StatusUnauthorized})
			fallthrough
		case anyClient:
			attempts = append(attempts,
				attempt{"no client", nil, url.Values{"token": {"x"}, "grant_type": {"client_credentials"}}, http.StatusUnauthorized},
				attempt{"a wrong secret", nil, url.Values{"client_id": {svc}, "client_secret": {"wrong"}, "token": {"x"}}, http.StatusUnauthorized})
		case registrar, registrant:
			attempts = append(attempts,
				attempt{"no token", nil, nil, http.StatusUnauthorized},
				attempt{"a wrong token", bearer("wrong"), nil, http.StatusUnauthorized},
				attempt{"an access token", bearer(ccToken), nil, http.StatusUnauthorized})
		default: // anyone, person: no credentials needed to be answered
			attempts = append(attempts, attempt{"no credentials", nil, nil, 0})
		}
		for _, a := range attempts {
			var body any
			h := a.header
			if a.form != nil {
				body = a.form.Encode()
				h = append(h, "Content-Type", "application/x-www-form-urlencoded")
			}
			r := e.request(method, path, body, h...)
			switch {
			case a.want == 0 && r.Code == http.StatusUnauthorized:
				t.Errorf("%s (%s) with %s: 401; the table says %s may call it", rt.pattern, rt.caller, a.name, rt.caller)
			case a.want != 0 && r.Code != a.want:
				t.Errorf("%s (%s) with %s: %d %s; want %d", rt.pattern, rt.caller, a.name, r.Code, r.Body.String(), a.want)
			case a.want == http.StatusUnauthorized && r.Header().Get("WWW-Authenticate") == "":
				t.Errorf("%s (%s) with %s: 401 without WWW-Authenticate", rt.pattern, rt.caller, a.name)
			}
		}
	}
	for c := anyone; c <= registrant; c++ {
		if !seen[c] {
			t.Errorf("no route has caller %s: the test no longer covers it", c)
		}
	}
}

// TestEveryRouteRefusesAMalformedQuery walks the route table: a query
// string url.ParseQuery refuses is a 400 on the route's surface, saying it
// is malformed, before any caller check or handler, on every route (url.Query
// would have dropped the bad pair: the device page's user_code, the reset
// and verification pages' token, the admin lists' filters read it so).
func TestEveryRouteRefusesAMalformedQuery(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	e := newEnv(t, store.SQLite, withSigningKey(t, ecKey(t), nil), withReset(t, srv, clientTLS, SMTPStartTLS), withDynamicRegistration(RegistrationToken))
	for _, rt := range routes(e.deps) {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.ReplaceAll(path, "{id}", "1")
		for _, q := range []string{"a=%zz", "a=1;b=2", "limit=5&limit=%zz"} {
			r := e.request(method, path+"?"+q, nil)
			if r.Code != http.StatusBadRequest || !strings.Contains(r.Body.String(), "malformed") {
				t.Errorf("%s?%s: %d %.80q; want 400 saying the query is malformed", rt.pattern, q, r.Code, r.Body.String())
			}
		}
	}
}

// A path has one spelling: the mux read "/%6detrics" as /metrics, past the
// exact-path block a load balancer in front keeps (deploy/README.md: ECS,
// Cloud Run). Each refusal is in the shape of its surface.
func TestPathsHaveOneSpelling(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.request("GET", "/metrics", nil).want(http.StatusOK)
	for _, p := range []string{"/%6detrics", "/%6Detrics", "/.well-known/jwks%2Ejson"} {
		wantAPIError(e.request("GET", p, nil), http.StatusNotFound, "not_found")
	}
	e.request("POST", "/oauth2/%74oken", nil).wantOAuthError(http.StatusNotFound, "invalid_request")
}
