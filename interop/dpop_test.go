package interop

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Sender-constrained tokens (DPoP, RFC 9449) and pushed authorization
// requests (PAR, RFC 9126) against the real binary, with the go-jose DPoP
// client of dpopclient_test.go: the code flow with PKCE, pushed with a
// proof so the code is bound, the exchange and refresh with the key,
// UserInfo and the REST API with proofs; then every way a stolen token or a
// bad proof must be refused, with the RFC's error.

const dpopRedirect = "http://127.0.0.1/dpop/cb"

// dpopServer starts a server with an ES256 SIGNING_KEY (OpenID Connect,
// tokens a resource server verifies with the JWKS) and its clients: app, a
// public first-party client that must push its requests (its refresh
// tokens are bound, and /api/v1 takes its tokens); svc, a confidential
// client_credentials client registered --require-dpop; rs, a resource
// server that may introspect.
func dpopServer(t *testing.T, env map[string]string) (s *server, app, svc, rs client) {
	t.Helper()
	key := generateKey(t, "ES256")
	full := map[string]string{"SIGNING_KEY": key.Path}
	for k, v := range env {
		full[k] = v
	}
	s = startServer(t, full)
	app = s.createClient(t, "--name", "DPoP SPA", "--redirect-uri", dpopRedirect, "--scope", "openid profile email",
		"--public", "--first-party", "--require-par")
	svc = s.createClient(t, "--name", "DPoP Service", "--grant-type", "client_credentials", "--scope", "read", "--require-dpop")
	rs = s.createClient(t, "--name", "Resource Server", "--grant-type", "client_credentials", "--scope", "introspect", "--resource-server")
	s.createUser(t, "ada@example.com", "ada", password)
	return s, app, svc, rs
}

// wantDPoPRefused checks a refused request: its status and error code, and at
// a resource (challenge) a DPoP challenge with that error (RFC 9449 §7.1).
func wantDPoPRefused(t testing.TB, what string, r dpopReply, status int, code string, challenge bool) {
	t.Helper()
	if r.Status != status || r.str("error") != code {
		t.Errorf("%s: status %d, error %q; want %d, %q (body %.120s)", what, r.Status, r.str("error"), status, code, r.Body)
	}
	if !challenge {
		return
	}
	h := r.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(h, "DPoP ") || !strings.Contains(h, `error="`+code+`"`) || !strings.Contains(h, `algs="`) || !strings.Contains(h, "ES256") {
		t.Errorf("%s: WWW-Authenticate %q; want a DPoP challenge with algs and error=%q (RFC 9449 §7.1)", what, h, code)
	}
}

// introspectJKT introspects tok as rs and returns whether it is active and
// its cnf.jkt.
func introspectJKT(t testing.TB, s *server, rs client, tok string) (bool, string) {
	t.Helper()
	var in struct {
		Active bool `json:"active"`
		Cnf    struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(s.postForm(t, rs, "/oauth2/introspect", url.Values{"token": {tok}}, http.StatusOK), &in); err != nil {
		t.Fatal(err)
	}
	return in.Active, in.Cnf.JKT
}

// cnfJKT verifies an access token with go-jose against the JWKS and returns
// its cnf.jkt (RFC 9449 §6.1) and sub.
func cnfJKT(t testing.TB, s *server, set jose.JSONWebKeySet, raw string) (jkt, sub string) {
	t.Helper()
	std, all := verifyAccessJWKS(t, s, set, raw, jose.ES256)
	cnf, _ := all["cnf"].(map[string]any)
	jkt, _ = cnf["jkt"].(string)
	return jkt, std.Subject
}

// TestDPoPPARCodeFlow is the whole sender-constrained flow for a public
// client with each key type (ES256, EdDSA, RS256): the request pushed with
// a proof, the browser carrying only client_id and request_uri, the code
// bound to the key (refused with another key or none), the exchange giving
// DPoP tokens bound to the key's thumbprint (cnf.jkt, computed by go-jose),
// UserInfo and /api/v1/profile with proofs, the refresh token bound too (a
// refresh without the key or with another fails and spends nothing), and
// PAR's own rules: only the pushed request used, single use,
// --require-par.
func TestDPoPPARCodeFlow(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		s, app, _, rs := dpopServer(t, map[string]string{"DATABASE_URL": databaseURL})
		var meta struct {
			Algs       []string `json:"dpop_signing_alg_values_supported"`
			PAR        string   `json:"pushed_authorization_request_endpoint"`
			RequirePAR *bool    `json:"require_pushed_authorization_requests"`
		}
		s.getJSON(t, "/.well-known/openid-configuration", &meta)
		for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
			if !slices.Contains(meta.Algs, alg) {
				t.Errorf("dpop_signing_alg_values_supported %q lacks %s", meta.Algs, alg)
			}
		}
		if slices.ContainsFunc(meta.Algs, func(a string) bool { return a == "none" || strings.HasPrefix(a, "HS") }) {
			t.Errorf("dpop_signing_alg_values_supported %q lists none or a MAC", meta.Algs)
		}
		if meta.PAR != s.URL+"/oauth2/par" || meta.RequirePAR == nil || *meta.RequirePAR {
			t.Errorf("metadata PAR endpoint %q, require_pushed_authorization_requests %v; want %s/oauth2/par and false", meta.PAR, meta.RequirePAR, s.URL)
		}
		set, _ := jwks(t, s)

		for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256} {
			t.Run(string(alg), func(t *testing.T) {
				c := newDPoPClient(t, s, app, newDPoPKey(t, alg))
				other := c.with(newDPoPKey(t, jose.ES256)) // the same client, another key: a thief's
				ua := newUserAgent(t, s)
				code, p := c.signIn(ua, "ada", dpopRedirect, "openid profile email")

				// The code is bound to the key of the push (RFC 9449 §10):
				// refused with another key's proof and with none, and not spent.
				wantDPoPRefused(t, "the code exchanged with another key", other.authz("/oauth2/token", dpopExchangeForm(code, dpopRedirect, p)), 400, "invalid_grant", false)
				wantDPoPRefused(t, "the code exchanged without a proof", c.with(nil).authz("/oauth2/token", dpopExchangeForm(code, dpopRedirect, p)), 400, "invalid_grant", false)
				tok := c.token(dpopExchangeForm(code, dpopRedirect, p))
				if tok.TokenType != "DPoP" || tok.RefreshToken == "" || tok.IDToken == "" {
					t.Fatalf("exchange: token_type %q, refresh token %v, ID token %v; want DPoP and both", tok.TokenType, tok.RefreshToken != "", tok.IDToken != "")
				}
				jkt, sub := cnfJKT(t, s, set, tok.AccessToken)
				if jkt != c.key.jkt {
					t.Errorf("access token cnf.jkt %q; want the RFC 7638 thumbprint of the proof key %q", jkt, c.key.jkt)
				}
				if active, got := introspectJKT(t, s, rs, tok.AccessToken); !active || got != c.key.jkt {
					t.Errorf("introspection: active %v, cnf.jkt %q; want active and %q", active, got, c.key.jkt)
				}
				idt, err := josejwt.ParseSigned(tok.IDToken, []jose.SignatureAlgorithm{jose.ES256})
				if err != nil {
					t.Fatalf("ID token: %v", err)
				}
				var idc struct {
					josejwt.Claims
					Nonce string `json:"nonce"`
				}
				if keys := set.Key(idt.Headers[0].KeyID); len(keys) != 1 || idt.Claims(keys[0].Key, &idc) != nil ||
					idc.Nonce != p.Nonce || idc.Subject != sub || !idc.Audience.Contains(app.ID) {
					t.Errorf("ID token %+v: want it to verify with the JWKS, with the pushed nonce, sub %s and aud %s", idc, sub, app.ID)
				}

				// Resources with proofs (RFC 9449 §7): UserInfo by GET and
				// POST, and the first-party REST API.
				for _, m := range []string{http.MethodGet, http.MethodPost} {
					if r := c.resource(m, "/oauth2/userinfo", tok.AccessToken); r.Status != 200 || r.str("sub") != sub || r.str("email") != "ada@example.com" {
						t.Errorf("%s /oauth2/userinfo with a proof: %d %s; want 200, sub %s", m, r.Status, r.Body, sub)
					}
				}
				if r := c.resource(http.MethodGet, "/api/v1/profile", tok.AccessToken); r.Status != 200 || r.str("username") != "ada" {
					t.Errorf("GET /api/v1/profile with a proof: %d %s; want 200 and ada's profile", r.Status, r.Body)
				}

				// The refresh token of a public client is bound (RFC 9449 §5):
				// without the key or with another it fails, and stays unspent.
				wantDPoPRefused(t, "refresh without a proof", c.with(nil).authz("/oauth2/token", dpopRefreshForm(tok.RefreshToken)), 400, "invalid_dpop_proof", false)
				wantDPoPRefused(t, "refresh with another key", other.authz("/oauth2/token", dpopRefreshForm(tok.RefreshToken)), 400, "invalid_dpop_proof", false)
				tok2 := c.token(dpopRefreshForm(tok.RefreshToken))
				if tok2.TokenType != "DPoP" || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
					t.Errorf("refresh: token_type %q, a new refresh token %v; want DPoP and rotation", tok2.TokenType, tok2.RefreshToken != tok.RefreshToken)
				}
				if jkt, _ := cnfJKT(t, s, set, tok2.AccessToken); jkt != c.key.jkt {
					t.Errorf("refreshed access token cnf.jkt %q; want %q", jkt, c.key.jkt)
				}
				if r := c.resource(http.MethodGet, "/oauth2/userinfo", tok2.AccessToken); r.Status != 200 || r.str("sub") != sub {
					t.Errorf("UserInfo with the refreshed token: %d %s; want 200", r.Status, r.Body)
				}
			})
		}

		c := newDPoPClient(t, s, app, newDPoPKey(t, jose.ES256))
		ua := newUserAgent(t, s)
		authorize := func(q url.Values) *http.Response {
			t.Helper()
			resp, _ := ua.do(http.MethodGet, s.URL+"/oauth2/authorize?"+q.Encode(), nil)
			return resp
		}
		// With request_uri, only the pushed request is used: parameters
		// the browser brings beside it are ignored (RFC 9101 §6.3, on which
		// RFC 9126 §4 builds; openid-client repeats scope, redirect_uri and
		// response_type).
		p := c.push(dpopRedirect, "openid")
		beside := c.authorizeURL(p) + "&" + url.Values{"scope": {"openid profile email"}, "redirect_uri": {"https://evil.example/cb"}, "response_type": {"code"}}.Encode()
		res := ua.authorize(beside, "ada", password, "allow")
		if code := res.Query.Get("code"); code == "" || res.Location.Host+res.Location.Path != "127.0.0.1/dpop/cb" {
			t.Errorf("authorize with request_uri and parameters beside it: %v; want a code at the pushed redirect URI", res.Location)
		} else if s.noLog(code); c.token(dpopExchangeForm(code, dpopRedirect, p)).Scope != "openid" {
			t.Errorf("the code of a pushed request with scope beside it: want the pushed scope, openid")
		}
		if resp := authorize(url.Values{"request_uri": {p.RequestURI}}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("authorize with request_uri and no client_id: status %d; want 400", resp.StatusCode)
		}
		// A request_uri is used once.
		p = c.push(dpopRedirect, "openid")
		if res := ua.authorize(c.authorizeURL(p), "ada", password, "allow"); res.Query.Get("code") == "" {
			t.Fatalf("a pushed request: %v; want a code", res.Location)
		} else {
			s.noLog(res.Query.Get("code"))
		}
		if resp := authorize(url.Values{"client_id": {app.ID}, "request_uri": {p.RequestURI}}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("the request_uri used again: status %d; want 400", resp.StatusCode)
		}
		// A --require-par client's request sent directly is refused back to it.
		resp := authorize(url.Values{"client_id": {app.ID}, "response_type": {"code"}, "redirect_uri": {dpopRedirect}, "scope": {"openid"},
			"state": {"s1"}, "code_challenge": {strings.Repeat("A", 43)}, "code_challenge_method": {"S256"}})
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
			t.Errorf("a --require-par client's request not pushed: %d to %q; want a redirect with error=invalid_request", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// dpopForgery makes a bad proof for a request from the client's key k.
type dpopForgery struct {
	name     string
	resource bool // only at a resource (it concerns ath)
	make     func(t testing.TB, k *dpopKey, method, target, access string) string
}

var dpopForgeries = []dpopForgery{
	{name: "a proof for another URL", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		u, _ := url.Parse(target)
		u.Path = map[string]string{"/oauth2/token": "/oauth2/par", "/oauth2/userinfo": "/api/v1/profile", "/api/v1/profile": "/oauth2/userinfo"}[u.Path]
		return k.proof(t, m, u.String(), access, "")
	}},
	{name: "a proof for another method", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		other := map[string]string{http.MethodGet: http.MethodPost, http.MethodPost: http.MethodGet}[m]
		return k.proof(t, other, target, access, "")
	}},
	{name: "a proof 5 minutes old", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		c := dpopClaimsFor(m, target, access, "")
		c.IAT -= 300
		return k.sign(t, c)
	}},
	{name: "a proof without ath", resource: true, make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		return k.proof(t, m, target, "", "")
	}},
	{name: "alg none, signed", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		h := k.header(t)
		h["alg"] = "none"
		return k.handMade(t, h, dpopClaimsFor(m, target, access, ""))
	}},
	{name: "alg none, no signature", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		h := k.header(t)
		h["alg"] = "none"
		return dpopB64JSON(t, h) + "." + dpopB64JSON(t, dpopClaimsFor(m, target, access, "")) + "."
	}},
	{name: "HS256 keyed with the public key", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		h := k.header(t)
		h["alg"] = "HS256"
		der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		input := dpopB64JSON(t, h) + "." + dpopB64JSON(t, dpopClaimsFor(m, target, access, ""))
		mac := hmac.New(sha256.New, der)
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}},
	{name: "a jwk holding the private key", make: func(t testing.TB, k *dpopKey, m, target, access string) string {
		priv, err := (jose.JSONWebKey{Key: k.priv}).MarshalJSON()
		if err != nil || !strings.Contains(string(priv), `"d":`) {
			t.Fatalf("private JWK %s: %v", priv, err)
		}
		h := k.header(t)
		h["jwk"] = json.RawMessage(priv)
		return k.handMade(t, h, dpopClaimsFor(m, target, access, ""))
	}},
}

// TestDPoPAttacks is every way a stolen DPoP-bound token or a bad proof
// must fail, at both resources (UserInfo, OAuth errors; /api/v1/profile,
// REST errors: 401 with a DPoP challenge) and at the token endpoint (400
// invalid_dpop_proof): the token without its key, as Bearer or as DPoP
// without a proof or with the thief's own proof; proofs for another URL or
// method, 5 minutes old, without ath, alg none, HS256 keyed with the public
// key, a private key in the jwk; a replayed proof on the same instance and,
// on PostgreSQL, on a second instance sharing the database. Each forgery
// differs in one thing from a proof made the same way that is accepted.
func TestDPoPAttacks(t *testing.T) {
	databases(t, func(t *testing.T, databaseURL string) {
		s, app, svc, rs := dpopServer(t, map[string]string{"DATABASE_URL": databaseURL})
		c := newDPoPClient(t, s, app, newDPoPKey(t, jose.ES256))
		code, p := c.signIn(newUserAgent(t, s), "ada", dpopRedirect, "openid profile")
		tok := c.token(dpopExchangeForm(code, dpopRedirect, p))
		stolen := tok.AccessToken
		thief := c.with(newDPoPKey(t, jose.ES256))

		for _, path := range []string{"/oauth2/userinfo", "/api/v1/profile"} {
			t.Run(strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "_"), func(t *testing.T) {
				get := http.MethodGet
				target := s.URL + path
				ok := func(what string, r dpopReply) {
					t.Helper()
					if r.Status != http.StatusOK {
						t.Errorf("%s: status %d; want 200 (body %s)", what, r.Status, r.Body)
					}
				}
				ok("the holder with its key", c.resource(get, path, stolen))

				// The stolen token without the key.
				r := c.send(get, path, nil, stolen, "") // Bearer
				wantDPoPRefused(t, "the bound token as Bearer", r, 401, "invalid_token", true)
				req := func(proof string) dpopReply { // the token under DPoP with proof (none if "")
					t.Helper()
					return c.sendDPoP(get, path, stolen, proof)
				}
				r = req("")
				wantDPoPRefused(t, "the bound token as DPoP without a proof", r, 401, "invalid_dpop_proof", true)
				if shape := map[string]string{"/oauth2/userinfo": "error_description", "/api/v1/profile": "message"}[path]; r.JSON[shape] == nil {
					t.Errorf("error body %s; want error and %s (API.md: Errors)", r.Body, shape)
				}
				wantDPoPRefused(t, "the bound token with the thief's own proof", thief.resource(get, path, stolen), 401, "invalid_dpop_proof", true)
				for _, f := range dpopForgeries {
					wantDPoPRefused(t, f.name, req(f.make(t, c.key, get, target, stolen)), 401, "invalid_dpop_proof", true)
				}
				// A replayed proof (RFC 9449 §11.1).
				proof := c.key.proof(t, get, target, stolen, "")
				ok("a fresh proof", req(proof))
				wantDPoPRefused(t, "the same proof again", req(proof), 401, "invalid_dpop_proof", true)
				// The hand-made proof of the forgeries, made right, is accepted:
				// each forgery is refused for its one fault.
				ok("a hand-made proof", req(c.key.handMade(t, c.key.header(t), dpopClaimsFor(get, target, stolen, ""))))
			})
		}

		t.Run("token_endpoint", func(t *testing.T) {
			cc := url.Values{"grant_type": {"client_credentials"}}
			d := newDPoPClient(t, s, svc, newDPoPKey(t, jose.ES256))
			target := s.URL + "/oauth2/token"
			post := func(proof string) dpopReply {
				t.Helper()
				return d.send(http.MethodPost, "/oauth2/token", dpopCloneForm(cc), "", proof)
			}
			wantDPoPRefused(t, "a --require-dpop client without a proof", post(""), 400, "invalid_dpop_proof", false)
			for _, f := range dpopForgeries {
				if !f.resource {
					wantDPoPRefused(t, f.name, post(f.make(t, d.key, http.MethodPost, target, "")), 400, "invalid_dpop_proof", false)
				}
			}
			proof := d.key.proof(t, http.MethodPost, target, "", "")
			if r := post(proof); r.Status != 200 || r.str("token_type") != "DPoP" {
				t.Errorf("client credentials with a proof: %d %s; want 200, token_type DPoP", r.Status, r.Body)
			} else {
				d.noLog(r.str("access_token"))
			}
			wantDPoPRefused(t, "the same proof again", post(proof), 400, "invalid_dpop_proof", false)
			if r := post(d.key.handMade(t, d.key.header(t), dpopClaimsFor(http.MethodPost, target, "", ""))); r.Status != 200 {
				t.Errorf("a hand-made proof: %d %s; want 200", r.Status, r.Body)
			} else {
				d.noLog(r.str("access_token"))
			}
		})

		// None of it cost the holder its token.
		if active, _ := introspectJKT(t, s, rs, stolen); !active {
			t.Errorf("the token is no longer active after the refused attempts")
		}

		if !strings.HasPrefix(databaseURL, "postgres") {
			return
		}
		// Two instances behind one ISSUER on one database: a proof spent on
		// one is refused by the other (the replay cache is shared).
		t.Run("second_instance", func(t *testing.T) {
			s2, base2 := startDPoPReplica(t, s)
			c2 := c.at(base2, s2)
			c2.noLog(stolen)
			target := s.URL + "/oauth2/userinfo"
			if r := c2.resource(http.MethodGet, "/oauth2/userinfo", stolen); r.Status != 200 {
				t.Fatalf("the second instance with a fresh proof: %d %s; want 200", r.Status, r.Body)
			}
			proof := c.key.proof(t, http.MethodGet, target, stolen, "")
			if r := c.sendDPoP(http.MethodGet, "/oauth2/userinfo", stolen, proof); r.Status != 200 {
				t.Fatalf("the first instance with a fresh proof: %d %s; want 200", r.Status, r.Body)
			}
			wantDPoPRefused(t, "a UserInfo proof spent on the first instance, replayed on the second", c2.sendDPoP(http.MethodGet, "/oauth2/userinfo", stolen, proof), 401, "invalid_dpop_proof", true)
			proof = c.key.proof(t, http.MethodGet, target, stolen, "")
			if r := c2.sendDPoP(http.MethodGet, "/oauth2/userinfo", stolen, proof); r.Status != 200 {
				t.Fatalf("the second instance with a fresh proof: %d %s; want 200", r.Status, r.Body)
			}
			wantDPoPRefused(t, "a UserInfo proof spent on the second instance, replayed on the first", c.sendDPoP(http.MethodGet, "/oauth2/userinfo", stolen, proof), 401, "invalid_dpop_proof", true)

			d := newDPoPClient(t, s, svc, newDPoPKey(t, jose.ES256))
			d2 := d.at(base2, s2)
			cc := url.Values{"grant_type": {"client_credentials"}}
			proof = d.key.proof(t, http.MethodPost, s.URL+"/oauth2/token", "", "")
			if r := d.send(http.MethodPost, "/oauth2/token", dpopCloneForm(cc), "", proof); r.Status != 200 {
				t.Fatalf("client credentials with a proof: %d %s", r.Status, r.Body)
			} else {
				d2.noLog(r.str("access_token"))
			}
			wantDPoPRefused(t, "a token request proof replayed on the second instance", d2.send(http.MethodPost, "/oauth2/token", dpopCloneForm(cc), "", proof), 400, "invalid_dpop_proof", false)
			if r := d2.authz("/oauth2/token", cc); r.Status != 200 || r.str("token_type") != "DPoP" {
				t.Errorf("the second instance with a fresh proof: %d %s; want 200", r.Status, r.Body)
			} else {
				d2.noLog(r.str("access_token"))
			}
		})
	})
}

// sendDPoP sends access under the DPoP scheme with proof ("" for no DPoP
// header at all, which send would turn into Bearer).
func (d *dpopClient) sendDPoP(method, path, access, proof string) dpopReply {
	d.t.Helper()
	if proof != "" {
		return d.send(method, path, nil, access, proof)
	}
	req, err := http.NewRequest(method, d.base+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "DPoP "+access)
	return d.roundTrip(req)
}

// startDPoPReplica starts another process of s's binary with s's
// configuration and database, behind the same ISSUER as instances behind a
// load balancer are, but listening on a port of its own: the returned base
// URL reaches it directly. It is stopped, and its logs checked, like s.
func startDPoPReplica(t *testing.T, s *server) (*server, string) {
	t.Helper()
	env := make(map[string]string, len(s.env))
	for k, v := range s.env {
		env[k] = v
	}
	port := strconv.Itoa(freePort(t))
	env["PORT"] = port
	base := "http://127.0.0.1:" + port
	s2 := launch(t, env) // its health check reaches ISSUER, that is s: wait for this one at its own port
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case <-s2.exited:
			t.Fatalf("the second instance exited during startup (%v):\n%s", s2.cmd.ProcessState, s2.logs.String())
		default:
		}
		resp, err := hc.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s2, base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second instance did not answer GET /health within 20s (%v):\n%s", err, s2.logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestDPoPNonce is DPOP_NONCE=true (RFC 9449 §8): a token request whose
// proof has no nonce, or a made-up one, gets 400 use_dpop_nonce with a
// DPoP-Nonce header, and the retry with that nonce succeeds; the whole
// pushed code flow works through the client's retry.
func TestDPoPNonce(t *testing.T) {
	s, app, svc, _ := dpopServer(t, map[string]string{"DPOP_NONCE": "true"})
	d := newDPoPClient(t, s, svc, newDPoPKey(t, jose.ES256))
	target := s.URL + "/oauth2/token"
	cc := url.Values{"grant_type": {"client_credentials"}}
	post := func(nonce string) dpopReply {
		t.Helper()
		return d.send(http.MethodPost, "/oauth2/token", dpopCloneForm(cc), "", d.key.proof(t, http.MethodPost, target, "", nonce))
	}
	for _, n := range []string{"", "made-up-nonce"} {
		r := post(n)
		wantDPoPRefused(t, "a proof with nonce "+strconv.Quote(n), r, 400, "use_dpop_nonce", false)
		if r.Header.Get("DPoP-Nonce") == "" {
			t.Fatalf("use_dpop_nonce without a DPoP-Nonce header (RFC 9449 §8.1)")
		}
	}
	nonce := d.nonce
	r := post(nonce)
	if r.Status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("the retry with the server's nonce: %d %s; want 200, token_type DPoP", r.Status, r.Body)
	}
	d.noLog(r.str("access_token"))
	if got := r.Header.Get("DPoP-Nonce"); got == "" {
		t.Errorf("a successful token response without DPoP-Nonce")
	}

	// The pushed code flow: the push meets use_dpop_nonce once, and the
	// client retries with the nonce it got; after that it has the nonce.
	c := newDPoPClient(t, s, app, newDPoPKey(t, jose.ES256))
	code, p := c.signIn(newUserAgent(t, s), "ada", dpopRedirect, "openid")
	if c.Nonced != 1 {
		t.Errorf("the push was retried %d times after use_dpop_nonce; want 1", c.Nonced)
	}
	tok := c.token(dpopExchangeForm(code, dpopRedirect, p))
	tok = c.token(dpopRefreshForm(tok.RefreshToken))
	if tok.TokenType != "DPoP" || c.Nonced != 1 {
		t.Errorf("exchange and refresh: token_type %q, retries %d; want DPoP and no more retries", tok.TokenType, c.Nonced)
	}
	// Resources take no server nonce here.
	if r := c.resource(http.MethodGet, "/oauth2/userinfo", tok.AccessToken); r.Status != 200 {
		t.Errorf("UserInfo with a proof: %d %s; want 200", r.Status, r.Body)
	}
}
