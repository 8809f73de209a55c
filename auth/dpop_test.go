package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// dpopKey is a client's DPoP key; proof makes proofs with it by hand
// (crypto primitives, not the server's signer).
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]string
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := token.NewPublicKey(&priv.PublicKey)
	j := k.JWK()
	return &dpopKey{priv: priv, jwk: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X, "y": j.Y}, jkt: k.ID}
}

// proof is a DPoP proof for method and path at the test issuer, at iat;
// accessToken and nonce are added when not empty.
func (k *dpopKey) proof(t testing.TB, method, path, accessToken, nonce string, iat time.Time) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk})
	claims := map[string]any{"jti": token.NewID(), "htm": method, "htu": testIssuer + path, "iat": iat.Unix()}
	if accessToken != "" {
		claims["ath"] = token.HashB64(accessToken)
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig)
}

// dpopPost posts form to path with client authentication (Basic with a
// secret; client_id in the body for a public client) and the DPoP proof.
func (e *env) dpopPost(path, id, secret string, form url.Values, proof string) response {
	e.t.Helper()
	h := []string{"Content-Type", "application/x-www-form-urlencoded"}
	if secret != "" {
		h = append(h, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	} else {
		form = cloneValues(form)
		form.Set("client_id", id)
	}
	if proof != "" {
		h = append(h, "DPoP", proof)
	}
	return e.request("POST", path, form.Encode(), h...)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// claimsOf reads an access token's claims (the server's own verifier).
func (e *env) claimsOf(at string) *token.Claims {
	e.t.Helper()
	c, err := e.deps.Tokens.Verify(at, e.clock.Now())
	if err != nil {
		e.t.Fatalf("access token: %v", err)
	}
	return c
}

// The token endpoint: a proof binds the access token (cnf.jkt, token_type
// DPoP); each proof is spent once; it must be for this URL and method; a
// --require-dpop client must send one.
func TestDPoPTokenEndpoint(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		k := newDPoPKey(t)
		now := e.clock.Now()
		id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}})
		cc := url.Values{"grant_type": {"client_credentials"}}
		p := k.proof(t, "POST", "/oauth2/token", "", "", now)
		r := e.dpopPost("/oauth2/token", id, secret, cc, p).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		if r.Str("token_type") != "DPoP" || e.claimsOf(at).Cnf == nil || e.claimsOf(at).Cnf.JKT != k.jkt {
			t.Fatalf("token_type %q, cnf %+v; want DPoP bound to %s", r.Str("token_type"), e.claimsOf(at).Cnf, k.jkt)
		}
		in := e.introspect(id, secret, at)
		if cnf, _ := in["cnf"].(map[string]any); in["token_type"] != "DPoP" || cnf["jkt"] != k.jkt {
			t.Fatalf("introspection %v; want token_type DPoP and cnf.jkt", in)
		}
		// Without a proof: a bearer token, unbound.
		plain := e.token(id, secret, cc).want(http.StatusOK)
		if e.secret(plain.Str("access_token")); plain.Str("token_type") != "Bearer" || e.claimsOf(plain.Str("access_token")).Cnf != nil {
			t.Fatalf("without a proof: %s", plain.Body.String())
		}
		for name, proof := range map[string]string{
			"replayed":           p,
			"another URL":        k.proof(t, "POST", "/oauth2/introspect", "", "", now),
			"another method":     k.proof(t, "GET", "/oauth2/token", "", "", now),
			"too old":            k.proof(t, "POST", "/oauth2/token", "", "", now.Add(-2*time.Minute)),
			"not a JWT":          "not-a-proof",
			"with a changed sig": tamper(k.proof(t, "POST", "/oauth2/token", "", "", now)),
		} {
			r := e.dpopPost("/oauth2/token", id, secret, cc, proof)
			if r.Code != http.StatusBadRequest || r.Str("error") != "invalid_dpop_proof" {
				t.Errorf("%s proof: %d %s; want 400 invalid_dpop_proof", name, r.Code, r.Body.String())
			}
		}
		// Two DPoP headers.
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(cc.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		req.Header.Add("DPoP", k.proof(t, "POST", "/oauth2/token", "", "", now))
		req.Header.Add("DPoP", k.proof(t, "POST", "/oauth2/token", "", "", now))
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		response{w, t}.wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")

		// --require-dpop: no proof, no token.
		bound, boundSecret := e.newClient(ClientSpec{Name: "bound", GrantTypes: []string{"client_credentials"}, RequireDPoP: true})
		e.token(bound, boundSecret, cc).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		r = e.dpopPost("/oauth2/token", bound, boundSecret, cc, k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
	})
}

// A public client's refresh tokens are bound to the key of the proof that
// got them: refreshed without it, or with another key, they are refused and
// not spent. A confidential client's are not bound. dpop_jkt binds a code.
func TestDPoPBindsRefreshAndCode(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		k, other := newDPoPKey(t), newDPoPKey(t)
		now := e.clock.Now()
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		b := e.browser()
		pk := newPKCE()
		code := e.secret(b.signIn(authorizeURL(pub, pk), "ann", "Ann-Password-1"))
		r := e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		rt := e.secret(r.Str("refresh_token"))
		e.secret(r.Str("access_token"))
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		e.dpopPost("/oauth2/token", pub, "", refresh, "").wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		e.dpopPost("/oauth2/token", pub, "", refresh, other.proof(t, "POST", "/oauth2/token", "", "", now)).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		// Not spent by the refusals: the key's holder refreshes.
		r = e.dpopPost("/oauth2/token", pub, "", refresh, k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if at := e.secret(r.Str("access_token")); e.claimsOf(at).Cnf == nil || e.claimsOf(at).Cnf.JKT != k.jkt {
			t.Fatal("the refreshed access token is not bound to the key")
		}

		// A confidential client: the refresh token is not bound.
		id, secret := e.webClient()
		code = e.secret(b.signIn(authorizeURL(id, pk), "ann", "Ann-Password-1"))
		r = e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		r = e.refreshGrant(id, secret, e.secret(r.Str("refresh_token"))).want(http.StatusOK)
		e.secret(r.Str("refresh_token"))
		if at := e.secret(r.Str("access_token")); r.Str("token_type") != "Bearer" || e.claimsOf(at).Cnf != nil {
			t.Fatalf("a confidential client's refresh without a proof: %s", r.Body.String())
		}

		// dpop_jkt: the code's exchange must prove that key.
		for name, proof := range map[string]string{"no proof": "", "another key": other.proof(t, "POST", "/oauth2/token", "", "", now)} {
			code = e.secret(b.signIn(authorizeURL(id, pk, "dpop_jkt", k.jkt), "ann", "Ann-Password-1"))
			if r := e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), proof); r.Code != http.StatusBadRequest || r.Str("error") != errInvalidGrant {
				t.Errorf("dpop_jkt, %s: %d %s; want invalid_grant", name, r.Code, r.Body.String())
			}
		}
		code = e.secret(b.signIn(authorizeURL(id, pk, "dpop_jkt", k.jkt), "ann", "Ann-Password-1"))
		r = e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		rt = e.secret(r.Str("refresh_token"))
		// Replayed without the key, the bound code ends nothing: it could
		// never have been exchanged without the key, so it shows no theft.
		// With the key it is a replay, and its session ends.
		for _, replay := range []struct {
			proof string
			ends  bool
		}{{"", false}, {other.proof(t, "POST", "/oauth2/token", "", "", now), false}, {k.proof(t, "POST", "/oauth2/token", "", "", now), true}} {
			e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), replay.proof).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
			if r = e.refreshGrant(id, secret, rt); (r.Code != http.StatusOK) != replay.ends {
				t.Fatalf("the bound code replayed (ends its session: %v), then a refresh: %d %s", replay.ends, r.Code, r.Body.String())
			} else if !replay.ends {
				e.secret(r.Str("access_token"))
				rt = e.secret(r.Str("refresh_token"))
			}
		}
		if q := callback(t, b.do("GET", authorizeURL(id, pk, "dpop_jkt", "short"), nil), http.StatusFound); q.Get("error") != "invalid_request" {
			t.Fatalf("a malformed dpop_jkt: %v", q)
		}
	})
}

// At a resource a bound token needs "DPoP" and a proof of its key with
// its hash (ath), for this method and URL, used once; as a Bearer token
// (a stolen one) it is refused with a DPoP challenge.
func TestDPoPResources(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		k, other := newDPoPKey(t), newDPoPKey(t)
		now := e.clock.Now()
		id, secret := e.newClient(ClientSpec{Name: "app", FirstParty: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "read"}})
		b := e.browser()
		pk := newPKCE()
		code := e.secret(b.signIn(authorizeURL(id, pk, "scope", "openid"), "ann", "Ann-Password-1"))
		r := e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", "", now)).want(http.StatusOK)
		at := e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))

		get := func(path, scheme, proof string) response {
			h := []string{"Authorization", scheme + " " + at}
			if proof != "" {
				h = append(h, "DPoP", proof)
			}
			return e.request("GET", path, nil, h...)
		}
		for _, path := range []string{"/oauth2/userinfo", "/api/v1/profile"} {
			p := k.proof(t, "GET", path, at, "", now)
			get(path, "DPoP", p).want(http.StatusOK)
			for name, tc := range map[string]struct{ scheme, proof string }{
				"as Bearer (stolen, no key)": {"Bearer", ""},
				"as Bearer with a proof":     {"Bearer", k.proof(t, "GET", path, at, "", now)},
				"no proof":                   {"DPoP", ""},
				"replayed proof":             {"DPoP", p},
				"another key":                {"DPoP", other.proof(t, "GET", path, at, "", now)},
				"another URL":                {"DPoP", k.proof(t, "GET", "/oauth2/token", at, "", now)},
				"another method":             {"DPoP", k.proof(t, "POST", path, at, "", now)},
				"no ath":                     {"DPoP", k.proof(t, "GET", path, "", "", now)},
				"ath of another token":       {"DPoP", k.proof(t, "GET", path, at+"x", "", now)},
				"expired proof":              {"DPoP", k.proof(t, "GET", path, at, "", now.Add(-5*time.Minute))},
			} {
				r := get(path, tc.scheme, tc.proof)
				if r.Code != http.StatusUnauthorized || !strings.HasPrefix(r.Header().Get("WWW-Authenticate"), "DPoP ") {
					t.Errorf("%s %s: %d, WWW-Authenticate %q; want 401 with a DPoP challenge", path, name, r.Code, r.Header().Get("WWW-Authenticate"))
				}
			}
		}
		// A path has one spelling (httpx.MuxErrors): an id holding %3F or
		// %2F, whose proof would name the path as sent, is a 404 before any
		// proof is read, whatever its htu.
		for path, wrong := range map[string]string{"/api/v1/clients/a%3Fb": "/api/v1/clients/a", "/api/v1/clients/a%2Fb": "/api/v1/clients/a/b"} {
			del := func(htu string) int {
				return e.request("DELETE", path, nil, "Authorization", "DPoP "+at, "DPoP", k.proof(t, "DELETE", htu, at, "", now)).Code
			}
			if got, gotWrong := del(path), del(wrong); got != http.StatusNotFound || gotWrong != http.StatusNotFound {
				t.Errorf("DELETE %s: %d with its own htu, %d with %s's; want 404 for both", path, got, gotWrong, wrong)
			}
		}
		// An unbound token is refused under the DPoP scheme.
		plain, plainSecret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
		pt := e.secret(e.token(plain, plainSecret, url.Values{"grant_type": {"client_credentials"}}).want(http.StatusOK).Str("access_token"))
		e.request("GET", "/oauth2/userinfo", nil, "Authorization", "DPoP "+pt, "DPoP", k.proof(t, "GET", "/oauth2/userinfo", pt, "", now)).want(http.StatusUnauthorized)
		// That refusal, and a bad token's, are challenged by DPoP's scheme
		// (RFC 9449 §7.1), as the request's.
		for name, tok := range map[string]string{"an unbound token": pt, "a bad token": "not-a-token"} {
			r := e.request("GET", "/api/v1/profile", nil, "Authorization", "DPoP "+tok, "DPoP", k.proof(t, "GET", "/api/v1/profile", tok, "", now)).want(http.StatusUnauthorized)
			if h := r.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "DPoP ") || !strings.Contains(h, `error="invalid_token"`) {
				t.Errorf("%s under the DPoP scheme: WWW-Authenticate %q; want a DPoP invalid_token challenge", name, h)
			}
		}
		// Discovery says what is accepted.
		m := e.request("GET", "/.well-known/oauth-authorization-server", nil).want(http.StatusOK).JSON()
		if algs, _ := json.Marshal(m["dpop_signing_alg_values_supported"]); string(algs) != `["ES256","RS256","EdDSA","Ed25519"]` {
			t.Fatalf("dpop_signing_alg_values_supported %s", algs)
		}
	}, withSigningKey(t, key, nil))
}

// A refusal of a token that verified (its scope, its client or its user)
// names the scheme the token came under: a DPoP-bound token's is DPoP's
// (RFC 9449 §7.1), an unbound one's Bearer's (RFC 6750 §3).
func TestChallengeNamesTheScheme(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		k := newDPoPKey(t)
		now := e.clock.Now()
		id, secret := e.newClient(ClientSpec{Name: "app", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "read"}})
		b := e.browser()
		tokens := map[string]string{} // by scheme: a token of scope read (no openid), of a third-party client
		for _, scheme := range []string{"DPoP", "Bearer"} {
			pk := newPKCE()
			code := e.secret(b.signIn(authorizeURL(id, pk, "scope", "read"), "ann", "Ann-Password-1"))
			proof := ""
			if scheme == "DPoP" {
				proof = k.proof(t, "POST", "/oauth2/token", "", "", now)
			}
			r := e.dpopPost("/oauth2/token", id, secret, codeForm(code, pk), proof).want(http.StatusOK)
			tokens[scheme] = e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
		}
		for scheme, at := range tokens {
			for path, want := range map[string]string{"/oauth2/userinfo": `error="insufficient_scope"`, "/api/v1/profile": `error="invalid_token"`} {
				h := []string{"Authorization", scheme + " " + at}
				if scheme == "DPoP" {
					h = append(h, "DPoP", k.proof(t, "GET", path, at, "", now))
				}
				r := e.request("GET", path, nil, h...)
				if c := r.Header().Get("WWW-Authenticate"); r.Code < 400 || !strings.HasPrefix(c, scheme+" ") || !strings.Contains(c, want) {
					t.Errorf("%s token at %s: %d, WWW-Authenticate %q; want a %s challenge with %s", scheme, path, r.Code, c, scheme, want)
				}
			}
		}
	})
}

// A proof accepted by one instance is refused by another on the same
// database: the replay cache is shared.
func TestDPoPReplayAcrossInstances(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db := storetest.Open(t, d)
			a, b := newEnvOn(t, db), newEnvOn(t, db)
			id, secret := a.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
			b.secret(secret)
			k := newDPoPKey(t)
			p := k.proof(t, "POST", "/oauth2/token", "", "", a.clock.Now())
			cc := url.Values{"grant_type": {"client_credentials"}}
			a.secret(a.dpopPost("/oauth2/token", id, secret, cc, p).want(http.StatusOK).Str("access_token"))
			b.dpopPost("/oauth2/token", id, secret, cc, p).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		})
	}
}

// A proof is accepted once on any instance also while their clocks
// disagree: the purge (on the instance ahead) kept the proof only to its
// expiry by its own clock, while an instance 30 s behind still took it
// (its iat 60 s old by that clock), a second time (a regression test).
func TestDPoPReplayAcrossSkewedInstances(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db := storetest.Open(t, d)
			ahead, behind := newEnvOn(t, db), newEnvOn(t, db)
			behind.clock.Add(-30 * time.Second)
			id, secret := ahead.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
			behind.secret(secret)
			k := newDPoPKey(t)
			cc := url.Values{"grant_type": {"client_credentials"}}
			p := k.proof(t, "POST", "/oauth2/token", "", "", behind.clock.Now())
			ahead.secret(ahead.dpopPost("/oauth2/token", id, secret, cc, p).want(http.StatusOK).Str("access_token"))
			behind.dpopPost("/oauth2/token", id, secret, cc, p).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
			ahead.clock.Add(40 * time.Second)
			behind.clock.Add(40 * time.Second)
			if err := db.Purge(t.Context(), store.Retention{LoginWindow: time.Minute, AccessTTL: time.Hour, MaxAge: 24 * time.Hour}, ahead.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if r := behind.dpopPost("/oauth2/token", id, secret, cc, p); r.Code == http.StatusOK {
				behind.secret(r.Str("access_token"))
				t.Fatal("the proof was accepted again by the instance behind, after the one ahead purged it")
			}
		})
	}
}

// At the token endpoint a proof is spent once its grant checks out, on any
// instance (a regression test: it was spent before the grant was looked
// at, so that strangers naming a public client wrote rows with bogus
// grants). A proof refused with a bad code or refresh token was not
// accepted: the client may send it again, once. A proof accepted once is
// refused on another instance, and spends nothing there: the code or
// refresh token it came with still works with a fresh proof, and a whole
// refresh replayed is refused as a replay without ending the session.
func TestDPoPProofSpentWithItsGrant(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			db := storetest.Open(t, d)
			a, b := newEnvOn(t, db), newEnvOn(t, db)
			a.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			spa, _ := a.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
			k := newDPoPKey(t)
			fresh := func() string { return k.proof(t, "POST", "/oauth2/token", "", "", a.clock.Now()) }
			exchange := func(e *env, pk pkce, code, proof string) response {
				return e.dpopPost("/oauth2/token", spa, "", codeForm(code, pk), proof)
			}
			refresh := func(e *env, rt, proof string) response {
				return e.dpopPost("/oauth2/token", spa, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proof)
			}
			tokens := func(r response) string {
				a.secret(r.Str("access_token"))
				b.secret(r.Str("access_token"))
				b.secret(r.Str("refresh_token"))
				return a.secret(r.Str("refresh_token"))
			}
			br := a.browser()
			pk := newPKCE()
			code := a.secret(br.signIn(authorizeURL(spa, pk), "ann", "Ann-Password-1"))
			b.secret(code)
			p := fresh()
			exchange(a, newPKCE(), code, p).wantOAuthError(http.StatusBadRequest, errInvalidGrant) // another verifier
			rt := tokens(exchange(a, pk, code, p).want(http.StatusOK))
			// The whole exchange again: refused as a replayed proof, and the
			// session it started goes on (rt refreshes below).
			exchange(b, pk, code, p).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")

			code = a.secret(br.signIn(authorizeURL(spa, pk), "ann", "Ann-Password-1"))
			b.secret(code)
			exchange(b, pk, code, p).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
			tokens(exchange(b, pk, code, fresh()).want(http.StatusOK)) // not spent by the replay

			q := fresh()
			refresh(a, token.NewOpaque(), q).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
			next := tokens(refresh(a, rt, q).want(http.StatusOK))
			refresh(b, rt, q).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")   // the whole request again
			refresh(b, next, q).wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof") // the proof with the new token
			last := tokens(refresh(b, next, fresh()).want(http.StatusOK))                   // the session goes on
			// A spent refresh token with a fresh proof of its key is a reuse:
			// it ends the session (RFC 9700 §4.14.2), on either instance.
			refresh(a, next, fresh()).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
			refresh(b, last, fresh()).wantOAuthError(http.StatusBadRequest, errInvalidGrant)
		})
	}
}

// DPOP_NONCE: a proof without the server's nonce is answered
// use_dpop_nonce with one in DPoP-Nonce, which the retry carries; a nonce
// from two steps back is stale.
func TestDPoPNonce(t *testing.T) {
	e := newEnv(t, "sqlite", func(d *Deps) { d.Tokens.NonceKey = []byte("nonce-key") })
	id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
	k := newDPoPKey(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	now := e.clock.Now()
	r := e.dpopPost("/oauth2/token", id, secret, cc, k.proof(t, "POST", "/oauth2/token", "", "", now)).wantOAuthError(http.StatusBadRequest, "use_dpop_nonce")
	nonce := r.Header().Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
	}
	e.dpopPost("/oauth2/token", id, secret, cc, k.proof(t, "POST", "/oauth2/token", "", "wrong", now)).wantOAuthError(http.StatusBadRequest, "use_dpop_nonce")
	r = e.dpopPost("/oauth2/token", id, secret, cc, k.proof(t, "POST", "/oauth2/token", "", nonce, now)).want(http.StatusOK)
	e.secret(r.Str("access_token"))
	e.clock.Add(2 * nonceStep)
	e.dpopPost("/oauth2/token", id, secret, cc, k.proof(t, "POST", "/oauth2/token", "", nonce, e.clock.Now())).wantOAuthError(http.StatusBadRequest, "use_dpop_nonce")
}

// RFC 9449 §5: "refresh tokens issued to public clients [in response to a
// request with a DPoP proof] MUST be bound". A session that began without a
// proof is bound at its first refresh that proves a key: the refresh token
// that answer carries refreshes only with that key, and the key keeps
// working (a regression test: the session stayed unbound, so a stolen
// refresh token refreshed without the key).
func TestPublicRefreshWithProofBindsSession(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		k := newDPoPKey(t)
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		pk := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(pub, pk), "ann", "Ann-Password-1"))
		r := e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), "").want(http.StatusOK) // no proof: unbound
		e.secret(r.Str("access_token"))
		refresh := func(rt, proof string) response {
			return e.dpopPost("/oauth2/token", pub, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proof)
		}
		r = refresh(e.secret(r.Str("refresh_token")), k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		if r.Str("token_type") != "DPoP" {
			t.Fatalf("token_type %q", r.Str("token_type"))
		}
		rt := e.secret(r.Str("refresh_token"))
		if r := refresh(rt, ""); r.Code != http.StatusBadRequest || r.Str("error") != "invalid_dpop_proof" {
			e.secret(r.Str("access_token"))
			e.secret(r.Str("refresh_token"))
			t.Fatalf("the refresh token of a DPoP refresh refreshed without the key: %d %s", r.Code, r.Body.String())
		}
		r = refresh(rt, k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).want(http.StatusOK) // the refusal spent nothing
		e.secret(r.Str("access_token"))
		rt = e.secret(r.Str("refresh_token"))
		// A refresh refused for its scope spends neither its token nor
		// its proof, which may be sent again (a regression test: the
		// proof was spent first, and the retry was invalid_dpop_proof).
		proof := k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())
		wider := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read write"}}
		e.dpopPost("/oauth2/token", pub, "", wider, proof).wantOAuthError(http.StatusBadRequest, "invalid_scope")
		r = refresh(rt, proof).want(http.StatusOK)
		e.secret(r.Str("access_token"))
		e.secret(r.Str("refresh_token"))
	})
}

// A spent refresh token of a public client ends its session whatever proof
// comes with it (RFC 9700 §4.14.2), unless it was issued while the session
// was bound to a key: such a token never refreshed without the key, so
// presented without it, it is refused invalid_dpop_proof and the session
// goes on. Regression tests: the key was checked first, so a thief who
// refreshed first with a proof of his own key bound the family to it, the
// owner's replay of the spent token was refused invalid_dpop_proof, nothing
// ended, and the thief refreshed on; then a spent token of a bound session,
// found by anyone without the key, ended the session. The clock stands
// still: a session bound at a refresh issues its first bound token in the
// second it spends its last unbound one.
func TestSpentDPoPRefreshToken(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		owner, thief := newDPoPKey(t), newDPoPKey(t)
		proof := func(k *dpopKey) string {
			if k == nil {
				return ""
			}
			return k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())
		}
		refresh := func(rt string, k *dpopKey) response {
			return e.dpopPost("/oauth2/token", pub, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proof(k))
		}
		tokens := func(r response) (at, rt string) {
			return e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		}
		for _, c := range []struct {
			name          string
			bound         *dpopKey // the key the code's exchange proves, or nil
			first, replay *dpopKey // the key of the two refreshes, and of the spent token's replay (nil: no proof)
			spent         int      // the token replayed: the code's (0) or the first refresh's (1)
			ends          bool
		}{
			{name: "thief binds an unbound session, owner replays without a proof", first: thief, ends: true},
			{name: "thief binds an unbound session, owner replays with its key", first: thief, replay: owner, ends: true},
			{name: "session bound at a refresh, its first bound token without the key", first: owner, spent: 1},
			{name: "session bound at a refresh, its first bound token with the key", first: owner, spent: 1, replay: owner, ends: true},
			{name: "bound session, a replay without its key", bound: owner, first: owner},
			{name: "bound session, a replay with another key", bound: owner, first: owner, replay: thief},
			{name: "bound session, a replay with its key", bound: owner, first: owner, replay: owner, ends: true},
		} {
			pk := newPKCE()
			code := e.secret(e.browser().signIn(authorizeURL(pub, pk), "ann", "Ann-Password-1"))
			_, rt0 := tokens(e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), proof(c.bound)).want(http.StatusOK))
			_, rt1 := tokens(refresh(rt0, c.first).want(http.StatusOK))
			at, live := tokens(refresh(rt1, c.first).want(http.StatusOK))
			want, liveCode, liveError := errInvalidGrant, http.StatusBadRequest, errInvalidGrant
			if !c.ends {
				want, liveCode, liveError = "invalid_dpop_proof", http.StatusOK, ""
				// Nor does revoking it end anything, with no proof of the key.
				e.clientPost("/oauth2/revoke", pub, "", url.Values{"token": {[]string{rt0, rt1}[c.spent]}}).want(http.StatusOK)
			}
			if r := refresh([]string{rt0, rt1}[c.spent], c.replay); r.Code != http.StatusBadRequest || r.Str("error") != want {
				t.Errorf("%s: the spent token again: %d %q; want 400 %s", c.name, r.Code, r.Str("error"), want)
			}
			r := refresh(live, c.first)
			if tokens(r); r.Code != liveCode || r.Str("error") != liveError {
				t.Errorf("%s: then the live token: %d %q; want %d %q", c.name, r.Code, r.Str("error"), liveCode, liveError)
			}
			if _, err := e.deps.Tokens.Verify(at, e.clock.Now()); (err != nil) != c.ends {
				t.Errorf("%s: then Verify(the last refresh's access token) = %v; want an error: %v", c.name, err, c.ends)
			}
		}
	})
}

// A live token bound to a DPoP key is revoked only with a proof of that
// key: whoever finds it without the key can neither refresh with it nor
// use it, and must not end the session either (on the old code a keyless
// revocation of the live refresh token ended the session, access tokens
// included). The owner, with its key, revokes as before.
func TestRevokingABoundTokenTakesItsKey(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		owner, finder := newDPoPKey(t), newDPoPKey(t)
		proof := func(k *dpopKey, path string) string {
			if k == nil {
				return ""
			}
			return k.proof(t, "POST", path, "", "", e.clock.Now())
		}
		pk := newPKCE()
		code := e.secret(e.browser().signIn(authorizeURL(pub, pk), "ann", "Ann-Password-1"))
		r := e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), proof(owner, "/oauth2/token")).want(http.StatusOK)
		at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
		for _, k := range []*dpopKey{nil, finder} {
			for _, tok := range []string{rt, at} {
				e.dpopPost("/oauth2/revoke", pub, "", url.Values{"token": {tok}}, proof(k, "/oauth2/revoke")).want(http.StatusOK)
			}
		}
		if _, err := e.deps.Tokens.Verify(at, e.clock.Now()); err != nil {
			t.Fatalf("revoked without its key, the bound access token: %v; want it still valid", err)
		}
		r = e.dpopPost("/oauth2/token", pub, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proof(owner, "/oauth2/token"))
		at, rt = e.secret(r.want(http.StatusOK).Str("access_token")), e.secret(r.Str("refresh_token"))
		// With its key: the session ends.
		e.dpopPost("/oauth2/revoke", pub, "", url.Values{"token": {rt}}, proof(owner, "/oauth2/revoke")).want(http.StatusOK)
		if _, err := e.deps.Tokens.Verify(at, e.clock.Now()); err == nil {
			t.Fatal("revoked with its key, the session's access token still verifies")
		}
		// A proof that does not check out is refused as at the token endpoint.
		e.dpopPost("/oauth2/revoke", pub, "", url.Values{"token": {rt}}, "not-a-proof").wantOAuthError(http.StatusBadRequest, "invalid_dpop_proof")
		// A confidential client's secret is proof enough (RFC 7009): it
		// revokes its own bound access token without the key.
		svc, sec := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
		cat := e.secret(e.dpopPost("/oauth2/token", svc, sec, url.Values{"grant_type": {"client_credentials"}}, proof(owner, "/oauth2/token")).want(http.StatusOK).Str("access_token"))
		e.dpopPost("/oauth2/revoke", svc, sec, url.Values{"token": {cat}}, "").want(http.StatusOK)
		if _, err := e.deps.Tokens.Verify(cat, e.clock.Now()); err == nil {
			t.Fatal("a confidential client revoked its bound access token, which still verifies")
		}
	})
}

// A single-page app on an origin of CORS_ORIGINS, the public client DPoP
// binds, sends its proof in the DPoP header, which is not CORS-safelisted:
// the preflight must allow it, and the answers must let the app read
// DPoP-Nonce, or it can never carry the nonce (a regression test: the
// preflight allowed only Authorization and Content-Type, so a browser sent
// no proof at all, and DPoP-Nonce was hidden from the script).
func TestDPoPFromBrowserOrigin(t *testing.T) {
	const origin = "https://app.example"
	e := newEnv(t, "sqlite", func(d *Deps) { d.CORSOrigins, d.Tokens.NonceKey = []string{origin}, []byte("nonce-key") })
	for _, path := range []string{"/oauth2/token", "/oauth2/userinfo"} {
		r := e.request("OPTIONS", path, nil, "Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,dpop")
		if allowed := strings.ToLower(r.Header().Get("Access-Control-Allow-Headers")); r.Code != http.StatusNoContent || !strings.Contains(allowed, "dpop") {
			t.Errorf("preflight of %s with a DPoP header: %d, Access-Control-Allow-Headers %q; want DPoP allowed", path, r.Code, allowed)
		}
	}
	pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{origin + "/cb"}, Scopes: []string{"read"}})
	k := newDPoPKey(t)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.NewOpaque()}, "client_id": {pub}}
	r := e.request("POST", "/oauth2/token", form.Encode(), "Content-Type", "application/x-www-form-urlencoded", "Origin", origin,
		"DPoP", k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).wantOAuthError(http.StatusBadRequest, "use_dpop_nonce")
	if exposed := strings.ToLower(r.Header().Get("Access-Control-Expose-Headers")); r.Header().Get("DPoP-Nonce") == "" || !strings.Contains(exposed, "dpop-nonce") {
		t.Errorf("use_dpop_nonce to %s: Access-Control-Expose-Headers %q; want DPoP-Nonce readable", origin, exposed)
	}
}

// A revocation with a proof spends it only when it revokes the client's
// token: a stranger naming a public client with a bogus token and a proof
// of his own key wrote a row of dpop_proofs each time (a regression test:
// the same proof sent again was refused as a replay).
func TestRevokeSpendsAProofOnlyWithItsToken(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
		p := newDPoPKey(t).proof(t, "POST", "/oauth2/revoke", "", "", e.clock.Now())
		bogus := url.Values{"token": {"not-a-token-of-anyone"}}
		for i := range 2 {
			if r := e.dpopPost("/oauth2/revoke", pub, "", bogus, p); r.Code != http.StatusOK {
				t.Fatalf("the stranger's revocation %d: %d %s; want 200, its proof not stored", i+1, r.Code, r.Body.String())
			}
		}
	})
}

// With DPOP_NONCE, the revocation endpoint asks for the nonce as the token
// endpoint does, and sends it with use_dpop_nonce (RFC 9449 §8), so that a
// public client whose session is bound to its key can retry and revoke (a
// regression test: it answered use_dpop_nonce with no DPoP-Nonce, and the
// client could not revoke with the stale nonce it held).
func TestRevokeSendsTheDPoPNonce(t *testing.T) {
	e := newEnv(t, store.SQLite, func(d *Deps) { d.Tokens.NonceKey = []byte("nonce-key") })
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	pub, _ := e.newClient(ClientSpec{Name: "spa", Public: true, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"read"}})
	k, pk := newDPoPKey(t), newPKCE()
	code := e.secret(e.browser().signIn(authorizeURL(pub, pk), "ann", "Ann-Password-1"))
	nonce := e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", "", e.clock.Now())).
		wantOAuthError(http.StatusBadRequest, "use_dpop_nonce").Header().Get("DPoP-Nonce")
	r := e.dpopPost("/oauth2/token", pub, "", codeForm(code, pk), k.proof(t, "POST", "/oauth2/token", "", nonce, e.clock.Now())).want(http.StatusOK)
	at, rt := e.secret(r.Str("access_token")), e.secret(r.Str("refresh_token"))
	e.clock.Add(11 * time.Minute) // the nonce it holds is stale
	r = e.dpopPost("/oauth2/revoke", pub, "", url.Values{"token": {rt}}, k.proof(t, "POST", "/oauth2/revoke", "", nonce, e.clock.Now())).
		wantOAuthError(http.StatusBadRequest, "use_dpop_nonce")
	fresh := r.Header().Get("DPoP-Nonce")
	if fresh == "" {
		t.Fatalf("use_dpop_nonce without DPoP-Nonce: %s", r.Body.String())
	}
	e.dpopPost("/oauth2/revoke", pub, "", url.Values{"token": {rt}}, k.proof(t, "POST", "/oauth2/revoke", "", fresh, e.clock.Now())).want(http.StatusOK)
	if _, err := e.deps.Tokens.Verify(at, e.clock.Now()); err == nil {
		t.Fatal("the session's access token still verifies after its revocation with the key")
	}
}
