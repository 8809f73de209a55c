package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/store/storetest"
)

// How the test holds the servers to API.md, "Several instances": a change
// made through one instance holds at once there and within 5 s on every
// other. propagationBound is that contract, not a speed target.
const (
	propagationBound = 5 * time.Second
	pollEvery        = 100 * time.Millisecond
	// stayFor is how long a change, once seen, is watched to make sure it
	// does not come undone (longer than one revocation poll or so).
	stayFor  = 3 * time.Second
	stayStep = 250 * time.Millisecond
)

// verdict is what one probe of one instance found.
type verdict int

const (
	notYet verdict = iota // the change has not reached this instance (yet)
	holds                 // the change's effect holds here
	broken                // a wrong answer that no delay excuses (a 5xx, a malformed body, a spent or revoked refresh token accepted)
)

// probe asks one instance whether one effect holds.
type probe struct {
	what string
	s    *server
	run  func(t testing.TB) (verdict, string)
}

func (p probe) String() string { return p.s.name + ": " + p.what }

// instances is two servers on one PostgreSQL schema, the credentials the
// test uses on them, and what it saw of changes propagating between them.
type instances struct {
	a, b  *server
	sec   *secrets
	admin string // the admin's access token, from A
	rs    client // a resource server: introspects the tokens under test

	mu     sync.Mutex
	seen   []observation   // how long each effect took to reach the other instance
	final  []labelled      // every effect, checked once more at the end
	failed map[string]bool // effects already reported as failing: not reported again
}

type observation struct {
	change, probe string
	d             time.Duration
}

type labelled struct {
	change string
	p      probe
}

// fail reports that an effect of a change does not hold, once: later checks
// of the same effect stay quiet.
func (in *instances) fail(t testing.TB, change string, p probe, format string, args ...any) {
	t.Helper()
	key := change + "\x00" + p.String()
	in.mu.Lock()
	seen := in.failed[key]
	if in.failed == nil {
		in.failed = map[string]bool{}
	}
	in.failed[key] = true
	in.mu.Unlock()
	if !seen {
		t.Errorf("%s: %s: %s", change, p, fmt.Sprintf(format, args...))
	}
}

func (in *instances) observe(change string, p probe, d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.seen = append(in.seen, observation{change, p.String(), d})
}

// atOnce checks, one request each, that probes hold on the instance that
// made the change: "at once" is the very next request.
func (in *instances) atOnce(t *testing.T, change string, probes ...probe) {
	t.Helper()
	for _, p := range probes {
		if v, got := p.run(t); v != holds {
			in.fail(t, change, p, "not at once; got %s", got)
		}
	}
}

// reaches polls each probe every pollEvery until it holds, and fails any that
// does not hold within propagationBound of since (when the change was made).
// It records how long each took.
func (in *instances) reaches(t *testing.T, change string, since time.Time, probes ...probe) {
	t.Helper()
	deadline := since.Add(propagationBound)
	pending := probes
	for len(pending) > 0 {
		var next []probe
		for _, p := range pending {
			v, got := p.run(t)
			d := time.Since(since) // when the answer was in: the strict reading
			switch {
			case v == broken:
				in.fail(t, change, p, "%s", got)
			case v == holds && d <= propagationBound:
				in.observe(change, p, d)
			case v == holds:
				in.fail(t, change, p, "held only after %v; want within %v", d.Round(time.Millisecond), propagationBound)
			case d > propagationBound:
				in.fail(t, change, p, "still not after %v (want within %v); last answer %s", d.Round(time.Millisecond), propagationBound, got)
			default:
				next = append(next, p)
			}
		}
		pending = next
		if len(pending) > 0 {
			// The last attempt goes out right at the deadline.
			time.Sleep(max(min(pollEvery, time.Until(deadline)), time.Millisecond))
		}
	}
}

// stays checks that every probe keeps holding for stayFor, and keeps them for
// the final check at the end of the test.
func (in *instances) stays(t *testing.T, change string, probes ...probe) {
	t.Helper()
	end := time.Now().Add(stayFor)
	for {
		for _, p := range probes {
			if v, got := p.run(t); v != holds {
				in.fail(t, change, p, "does not stay: %s", got)
			}
		}
		if time.Now().After(end) {
			break
		}
		time.Sleep(stayStep)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, p := range probes {
		in.final = append(in.final, labelled{change, p})
	}
}

// --- requests ---

func (in *instances) ccToken(t testing.TB, s *server, id, secret string) reply {
	t.Helper()
	return s.form(t, "/oauth2/token", "grant_type=client_credentials", "Authorization", basic(id, secret))
}

// mustCCToken gets a client_credentials access token from s.
func (in *instances) mustCCToken(t testing.TB, s *server, c client) string {
	t.Helper()
	r := in.ccToken(t, s, c.ID, c.Secret)
	if r.status != http.StatusOK {
		t.Fatalf("%s: client_credentials for %s = %v; want 200", s.name, c.Name, r)
	}
	tok := decodePair(t, r).AccessToken
	in.sec.add(tok)
	return tok
}

// introspect asks s about tok, authenticated as the resource server; it
// returns "active", "inactive", or a description of a wrong answer.
func (in *instances) introspect(t testing.TB, s *server, tok string) (string, reply) {
	t.Helper()
	r := s.form(t, "/oauth2/introspect", "token="+url.QueryEscape(tok), "Authorization", basic(in.rs.ID, in.rs.Secret))
	var v struct {
		Active *bool `json:"active"`
	}
	switch {
	case r.status != http.StatusOK:
		return "", r
	case json.Unmarshal(r.body, &v) != nil || v.Active == nil:
		return "", r
	case *v.Active:
		return "active", r
	}
	return "inactive", r
}

func (in *instances) refresh(t testing.TB, s *server, rt string) reply {
	t.Helper()
	return s.json(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refresh_token": rt})
}

// --- probes ---

// profileRefused: tok gets 401 invalid_token at GET /api/v1/profile.
func profileRefused(s *server, tok, whose string) probe {
	return probe{what: whose + " access token refused at GET /api/v1/profile", s: s, run: func(t testing.TB) (verdict, string) {
		r := s.get(t, "/api/v1/profile", tok)
		switch {
		case r.status == http.StatusUnauthorized && errorCode(r) == "invalid_token":
			return holds, r.String()
		case r.status == http.StatusOK:
			return notYet, r.String()
		}
		return broken, "want 401 invalid_token or (not yet) 200; got " + r.String()
	}}
}

// profileWorks: tok gets 200 at GET /api/v1/profile.
func profileWorks(s *server, tok, whose string) probe {
	return probe{what: whose + " access token works at GET /api/v1/profile", s: s, run: func(t testing.TB) (verdict, string) {
		r := s.get(t, "/api/v1/profile", tok)
		if r.status == http.StatusOK {
			return holds, r.String()
		}
		return notYet, r.String()
	}}
}

// inactive: introspection at s says {"active":false} for tok.
func (in *instances) inactive(s *server, tok, whose string) probe {
	return probe{what: whose + " access token inactive at introspection", s: s, run: func(t testing.TB) (verdict, string) {
		got, r := in.introspect(t, s, tok)
		switch got {
		case "inactive":
			return holds, r.String()
		case "active":
			return notYet, r.String()
		}
		return broken, "want 200 {active:bool}; got " + r.String()
	}}
}

// active: introspection at s says {"active":true} for tok.
func (in *instances) active(s *server, tok, whose string) probe {
	return probe{what: whose + " access token active at introspection", s: s, run: func(t testing.TB) (verdict, string) {
		got, r := in.introspect(t, s, tok)
		switch got {
		case "active":
			return holds, r.String()
		case "inactive":
			return notYet, r.String()
		}
		return broken, "want 200 {active:bool}; got " + r.String()
	}}
}

// refreshFails: POST /api/v1/auth/refresh with rt gets 401 invalid_token.
// Refresh tokens live in the database, and a 200 would itself rotate the
// token under test, so a 200 is never "not yet": it is broken.
func (in *instances) refreshFails(s *server, rt, whose string) probe {
	return probe{what: whose + " refresh token refused", s: s, run: func(t testing.TB) (verdict, string) {
		r := in.refresh(t, s, rt)
		if r.status == http.StatusOK {
			if p, err := decodeQuiet(r); err == nil {
				in.sec.add(p.AccessToken, p.RefreshToken)
			}
			return broken, "accepted (200): a spent or revoked refresh token was rotated"
		}
		if r.status == http.StatusUnauthorized && errorCode(r) == "invalid_token" {
			return holds, r.String()
		}
		return broken, "want 401 invalid_token; got " + r.String()
	}}
}

// loginFails: the user's login with the right password gets 401.
func loginFails(s *server, login, pass string) probe {
	return probe{what: "login as " + login + " refused", s: s, run: func(t testing.TB) (verdict, string) {
		r := s.login(t, login, pass)
		switch r.status {
		case http.StatusUnauthorized:
			return holds, r.String()
		case http.StatusOK:
			return notYet, "200 (a token pair)"
		}
		return broken, "want 401 or (not yet) 200; got " + r.String()
	}}
}

// clientRefused: client authentication with id and secret at path (the token
// or introspection endpoint) gets 401 invalid_client.
func (in *instances) clientRefused(s *server, path, id, secret, which string) probe {
	return probe{what: which + " refused (invalid_client) at " + path, s: s, run: func(t testing.TB) (verdict, string) {
		body := "grant_type=client_credentials"
		if path == "/oauth2/introspect" {
			body = "token=" + url.QueryEscape(in.admin)
		}
		r := s.form(t, path, body, "Authorization", basic(id, secret))
		switch {
		case r.status == http.StatusUnauthorized && errorCode(r) == "invalid_client":
			return holds, r.String()
		case r.status == http.StatusOK:
			return notYet, "200"
		}
		return broken, "want 401 invalid_client or (not yet) 200; got " + r.String()
	}}
}

// clientWorks: id and secret get a client_credentials token from s, and s's
// introspection says that token is active.
func (in *instances) clientWorks(s *server, id, secret, which string) probe {
	return probe{what: which + " gets a token, active at introspection", s: s, run: func(t testing.TB) (verdict, string) {
		r := in.ccToken(t, s, id, secret)
		switch {
		case r.status == http.StatusUnauthorized && errorCode(r) == "invalid_client":
			return notYet, r.String()
		case r.status != http.StatusOK:
			return broken, "want 200 or (not yet) 401 invalid_client; got " + r.String()
		}
		p, err := decodeQuiet(r)
		if err != nil {
			return broken, "token response: " + r.String()
		}
		in.sec.add(p.AccessToken)
		got, ir := in.introspect(t, s, p.AccessToken)
		switch got {
		case "active":
			return holds, ir.String()
		case "inactive":
			return notYet, fmt.Sprintf("token issued (iat %d) but inactive at introspection: %s", iat(p.AccessToken), ir)
		}
		return broken, "introspection: " + ir.String()
	}}
}

// newSecretAtOnce checks that a rotated secret works at once on s, the
// instance that rotated it (the change was made before done): the token
// endpoint answers 200 and the token it mints is active at introspection.
//
// A client revocation (which rotation records) cuts off at whole seconds,
// every access token with iat <= not_before; the instance that rotated the
// secret must issue its next tokens past that cutoff, so a token minted with
// the new secret in the rotation's own second is active too.
func (in *instances) newSecretAtOnce(t *testing.T, change string, s *server, id, secret string, done time.Time) {
	t.Helper()
	for {
		r := in.ccToken(t, s, id, secret)
		if r.status != http.StatusOK {
			t.Errorf("%s: %s: the new secret is refused: %v; want 200 at once", change, s.name, r)
			return
		}
		p := decodePair(t, r)
		in.sec.add(p.AccessToken)
		got, ir := in.introspect(t, s, p.AccessToken)
		switch {
		case got == "active":
			return
		default:
			t.Errorf("%s: %s: a token minted with the new secret after the rotation (iat %d, rotation done by %d) is not active: %v",
				change, s.name, iat(p.AccessToken), done.Unix(), ir)
			return
		}
	}
}

// decodeQuiet is decodePair without failing the test.
func decodeQuiet(r reply) (tokenPair, error) {
	var p tokenPair
	if err := json.Unmarshal(r.body, &p); err != nil {
		return p, err
	}
	if p.AccessToken == "" {
		return p, fmt.Errorf("no access_token")
	}
	return p, nil
}

// iat reads a JWT's iat claim without verifying it (for messages).
func iat(jwt string) int64 {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return 0
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var c struct {
		Iat int64 `json:"iat"`
	}
	json.Unmarshal(b, &c)
	return c.Iat
}

// userID returns the id of the user tok belongs to, from s's profile.
func userID(t testing.TB, s *server, tok string) string {
	t.Helper()
	r := s.get(t, "/api/v1/profile", tok)
	var u struct {
		ID int64 `json:"id"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &u) != nil || u.ID == 0 {
		t.Fatalf("%s: GET /api/v1/profile = %v; want 200 with an id", s.name, r)
	}
	return strconv.FormatInt(u.ID, 10)
}

// TestChangesReachOtherInstances runs two servers, A and B, on one fresh
// database (PostgreSQL, MySQL) and makes each change API.md lists under "Several
// instances" through A (or through the CLI, with the same DATABASE_URL): a
// REST logout, an OAuth revocation, refresh token rotation and reuse, user
// deactivation and deletion, client deletion and client secret rotation.
// The effect must hold on A at once (the very next request) and on B within
// 5 s; B is polled every 100 ms, and each effect is then watched for 3 s more
// and checked once more at the end. Before each change B has used the
// credentials concerned, so that whatever B caches is warm. Nothing may leak
// the other way: an unrelated user's tokens and an unrelated client keep
// working on both instances, and so do the tokens a change did not name.
func TestChangesReachOtherInstances(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			// Instances behind one name share an ISSUER: each one's tokens carry it
			// as iss and aud, so without it (the default is http://localhost:$PORT)
			// neither would accept the other's tokens.
			e := baseEnv(storetest.URL(t, dialect)).with("ISSUER", "http://auth.e2e.test")
			var a, b *server
			var errA, errB error
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a, errA = launch(t, "A", e) }()
			go func() { defer wg.Done(); b, errB = launch(t, "B", e) }()
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("start A and B: %v; %v", errA, errB)
			}
			began := time.Now()
			in := &instances{a: a, b: b, sec: &secrets{}}
			in.sec.add(jwtSecret)

			// Users and clients, made with the CLI on the shared database.
			pass := func(user string) string { return "Pass-" + user + "-inst-e2e" }
			users := []string{"admin", "lou", "rex", "dee", "del", "carol", "pat"}
			for _, u := range users {
				createUser(t, e, u+"@e2e.test", u, pass(u), u == "admin")
				in.sec.add(pass(u))
			}
			cc := func(name string, more ...string) client {
				c := createClient(t, e, append([]string{"--name", name, "--grant-type", "client_credentials", "--scope", "read"}, more...)...)
				in.sec.add(c.Secret)
				return c
			}
			in.rs = cc("resource-server", "--resource-server")
			web := createClient(t, e, "--name", "web", "--redirect-uri", e2eRedirect)
			in.sec.add(web.Secret)
			svc, gone, goneCLI, rot, rotCLI, steady := cc("svc"), cc("gone"), cc("gone-cli"), cc("rot"), cc("rot-cli"), cc("steady")

			adminPair := a.mustLogin(t, "admin", pass("admin"))
			in.admin = adminPair.AccessToken
			in.sec.add(adminPair.AccessToken, adminPair.RefreshToken)

			// The unrelated: a user logged in on both, and a client with a token
			// from each, all from before any change.
			carolA, carolB := a.mustLogin(t, "carol", pass("carol")), b.mustLogin(t, "carol", pass("carol"))
			in.sec.add(carolA.AccessToken, carolA.RefreshToken, carolB.AccessToken, carolB.RefreshToken)
			steadyA, steadyB := in.mustCCToken(t, a, steady), in.mustCCToken(t, b, steady)

			// The changes run side by side, each on its own users and clients. They
			// spend their time waiting, not computing, so they run all at once
			// whatever -parallel says (t.Run may be called from several goroutines).
			t.Run("changes", func(t *testing.T) {
				var wg sync.WaitGroup
				defer wg.Wait()
				run := func(name string, f func(t *testing.T)) {
					wg.Add(1)
					go func() { defer wg.Done(); t.Run(name, f) }()
				}
				run("logout", func(t *testing.T) {
					p := a.mustLogin(t, "lou", pass("lou"))
					in.sec.add(p.AccessToken, p.RefreshToken)
					// The session's token pair is rotated first: logout with the new
					// access token must end the earlier one too (it carries the
					// session in sid).
					r := in.refresh(t, a, p.RefreshToken)
					if r.status != http.StatusOK {
						t.Fatalf("A: refresh = %v; want 200", r)
					}
					earlier, p := p, decodePair(t, r)
					in.sec.add(p.AccessToken, p.RefreshToken)
					in.atOnce(t, "before logout", profileWorks(b, p.AccessToken, "lou's"), in.active(b, p.AccessToken, "lou's"),
						profileWorks(b, earlier.AccessToken, "lou's earlier"))
					r = a.json(t, http.MethodPost, "/api/v1/auth/logout", p.AccessToken, map[string]string{"refresh_token": p.RefreshToken})
					if r.status != http.StatusNoContent {
						t.Fatalf("A: logout = %v; want 204", r)
					}
					since, change := time.Now(), "REST logout on A"
					onA := []probe{profileRefused(a, p.AccessToken, "lou's"), in.inactive(a, p.AccessToken, "lou's"), in.refreshFails(a, p.RefreshToken, "lou's"),
						profileRefused(a, earlier.AccessToken, "lou's earlier (same session)")}
					onB := []probe{profileRefused(b, p.AccessToken, "lou's"), in.inactive(b, p.AccessToken, "lou's"), in.refreshFails(b, p.RefreshToken, "lou's"),
						profileRefused(b, earlier.AccessToken, "lou's earlier (same session)")}
					in.atOnce(t, change, onA...)
					in.reaches(t, change, since, onB...)
					in.stays(t, change, append(onA, onB...)...)
				})

				run("revocation", func(t *testing.T) {
					tok := in.mustCCToken(t, b, svc) // B has authenticated svc: its cache is warm
					other := in.mustCCToken(t, a, svc)
					in.atOnce(t, "before revocation", in.active(b, tok, "svc's"), in.active(b, other, "svc's other"))
					r := a.form(t, "/oauth2/revoke", "token="+url.QueryEscape(tok)+"&token_type_hint=access_token", "Authorization", basic(svc.ID, svc.Secret))
					if r.status != http.StatusOK {
						t.Fatalf("A: revoke = %v; want 200", r)
					}
					since, change := time.Now(), "OAuth revocation on A"
					in.atOnce(t, change, in.inactive(a, tok, "the revoked"))
					in.reaches(t, change, since, in.inactive(b, tok, "the revoked"))
					in.stays(t, change, in.inactive(a, tok, "the revoked"), in.inactive(b, tok, "the revoked"),
						// revoking one token by jti touches no other
						in.active(a, other, "svc's other"), in.active(b, other, "svc's other"),
						in.clientWorks(a, svc.ID, svc.Secret, "svc"), in.clientWorks(b, svc.ID, svc.Secret, "svc"))
				})

				run("refresh_rotation", func(t *testing.T) {
					// Family X: rotated on A, the spent token presented on A (at once),
					// which revokes the family: the new token then fails on B.
					x0 := a.mustLogin(t, "rex", pass("rex"))
					r := in.refresh(t, a, x0.RefreshToken)
					if r.status != http.StatusOK {
						t.Fatalf("A: refresh = %v; want 200", r)
					}
					x1 := decodePair(t, r)
					in.sec.add(x0.AccessToken, x0.RefreshToken, x1.AccessToken, x1.RefreshToken)
					change := "refresh rotation on A, reuse on A"
					in.atOnce(t, change, in.refreshFails(a, x0.RefreshToken, "the spent"), profileRefused(a, x1.AccessToken, "the thief's (session ended)"))
					in.reaches(t, change, time.Now(), in.refreshFails(b, x1.RefreshToken, "the new (family revoked on A)"),
						profileRefused(b, x1.AccessToken, "the thief's (session ended on A)"))
					in.stays(t, change, in.refreshFails(a, x0.RefreshToken, "the spent"), in.refreshFails(b, x0.RefreshToken, "the spent"),
						in.refreshFails(a, x1.RefreshToken, "the new"), in.refreshFails(b, x1.RefreshToken, "the new"))

					// Family Y: rotated on A, the spent token presented on B, which
					// revokes the family there: the new token then fails on A.
					y0 := a.mustLogin(t, "rex", pass("rex"))
					r = in.refresh(t, a, y0.RefreshToken)
					if r.status != http.StatusOK {
						t.Fatalf("A: refresh = %v; want 200", r)
					}
					y1 := decodePair(t, r)
					in.sec.add(y0.AccessToken, y0.RefreshToken, y1.AccessToken, y1.RefreshToken)
					change = "refresh rotation on A, reuse on B"
					in.reaches(t, change, time.Now(), in.refreshFails(b, y0.RefreshToken, "the spent"))
					in.reaches(t, change+" (family revoked on B)", time.Now(), in.refreshFails(a, y1.RefreshToken, "the new"))
					in.stays(t, change, in.refreshFails(a, y0.RefreshToken, "the spent"), in.refreshFails(b, y0.RefreshToken, "the spent"),
						in.refreshFails(a, y1.RefreshToken, "the new"), in.refreshFails(b, y1.RefreshToken, "the new"))
				})

				run("password_change", func(t *testing.T) {
					// Someone with pat's password holds a browser sign-in on B, a
					// code it issued, and a REST session; pat changes the password
					// on A from another session, which goes on.
					thief, code := browserSignIn(t, b, web, "pat", pass("pat"))
					_, verifier := authorizeQuery(web, "pat")
					other, caller := b.mustLogin(t, "pat", pass("pat")), a.mustLogin(t, "pat", pass("pat"))
					in.sec.add(code, other.AccessToken, other.RefreshToken, caller.AccessToken, caller.RefreshToken, "New-"+pass("pat"))
					in.atOnce(t, "before password change", profileWorks(b, other.AccessToken, "pat's other"))
					r := a.json(t, http.MethodPost, "/api/v1/profile/password", caller.AccessToken,
						map[string]string{"current_password": pass("pat"), "new_password": "New-" + pass("pat")})
					if r.status != http.StatusNoContent {
						t.Fatalf("A: password change = %v; want 204", r)
					}
					since, change := time.Now(), "password change on A"
					ended := func(s *server) []probe {
						return []probe{profileRefused(s, other.AccessToken, "pat's other session's"), in.inactive(s, other.AccessToken, "pat's other session's"),
							browserSignedOut(s, thief, web, "pat's")}
					}
					in.atOnce(t, change, ended(a)...)
					in.reaches(t, change, since, ended(b)...)
					in.atOnce(t, change, codeRefused(b, web, code, verifier, "pat's"), in.refreshFails(b, other.RefreshToken, "pat's other session's"))
					in.stays(t, change, append(append(ended(a), ended(b)...),
						profileWorks(a, caller.AccessToken, "pat's own (the caller's)"), profileWorks(b, caller.AccessToken, "pat's own (the caller's)"))...)
				})

				for _, how := range []string{"deactivation", "deletion"} {
					name := map[string]string{"deactivation": "dee", "deletion": "del"}[how]
					run("user_"+how, func(t *testing.T) {
						pa, pb := a.mustLogin(t, name, pass(name)), b.mustLogin(t, name, pass(name))
						in.sec.add(pa.AccessToken, pa.RefreshToken, pb.AccessToken, pb.RefreshToken)
						id := userID(t, b, pa.AccessToken)
						in.atOnce(t, "before user "+how, profileWorks(b, pb.AccessToken, name+"'s"), in.active(b, pa.AccessToken, name+"'s"))
						var r reply
						if how == "deactivation" {
							r = a.json(t, http.MethodPatch, "/api/v1/users/"+id, in.admin, map[string]bool{"is_active": false})
							if r.status != http.StatusOK || !strings.Contains(string(r.body), `"is_active":false`) {
								t.Fatalf("A: PATCH /api/v1/users/%s {is_active:false} = %v; want 200 with is_active false", id, r)
							}
						} else {
							r = a.json(t, http.MethodDelete, "/api/v1/users/"+id, in.admin, "")
							if r.status != http.StatusNoContent {
								t.Fatalf("A: DELETE /api/v1/users/%s = %v; want 204", id, r)
							}
						}
						since, change := time.Now(), "user "+how+" on A"
						probes := func(s *server) []probe {
							return []probe{
								profileRefused(s, pa.AccessToken, name+"'s A-issued"), profileRefused(s, pb.AccessToken, name+"'s B-issued"),
								in.inactive(s, pa.AccessToken, name+"'s A-issued"), in.inactive(s, pb.AccessToken, name+"'s B-issued"),
								loginFails(s, name, pass(name)), loginFails(s, name+"@e2e.test", pass(name)),
								in.refreshFails(s, pa.RefreshToken, name+"'s A-issued"), in.refreshFails(s, pb.RefreshToken, name+"'s B-issued"),
							}
						}
						in.atOnce(t, change, probes(a)...)
						in.reaches(t, change, since, probes(b)...)
						in.stays(t, change, append(probes(a), probes(b)...)...)
					})
				}

				for _, how := range []string{"REST", "CLI"} {
					c := map[string]client{"REST": gone, "CLI": goneCLI}[how]
					run("client_deletion_"+how, func(t *testing.T) {
						tb := in.mustCCToken(t, b, c) // B has authenticated the client: its cache is warm
						ta := in.mustCCToken(t, a, c)
						in.atOnce(t, "before client deletion", in.active(b, tb, c.Name+"'s B-issued"), in.active(b, ta, c.Name+"'s A-issued"))
						var change string
						if how == "REST" {
							change = "client deletion on A (DELETE /api/v1/clients/{id})"
							if r := a.json(t, http.MethodDelete, "/api/v1/clients/"+url.PathEscape(c.ID), in.admin, ""); r.status != http.StatusNoContent {
								t.Fatalf("A: DELETE /api/v1/clients/%s = %v; want 204", c.ID, r)
							}
						} else {
							change = "client deletion by the CLI (client delete ID)"
							runCLI(t, e, "", "client", "delete", c.ID)
						}
						since := time.Now()
						probes := func(s *server) []probe {
							return []probe{
								in.clientRefused(s, "/oauth2/token", c.ID, c.Secret, c.Name),
								in.clientRefused(s, "/oauth2/introspect", c.ID, c.Secret, c.Name),
								in.inactive(s, tb, c.Name+"'s B-issued"), in.inactive(s, ta, c.Name+"'s A-issued"),
							}
						}
						if how == "REST" {
							in.atOnce(t, change, probes(a)...)
							in.reaches(t, change, since, probes(b)...)
						} else {
							// The CLI is no instance: both must hear of it within 5 s.
							in.reaches(t, change, since, append(probes(a), probes(b)...)...)
						}
						in.stays(t, change, append(probes(a), probes(b)...)...)
					})
				}

				for _, how := range []string{"REST", "CLI"} {
					c := map[string]client{"REST": rot, "CLI": rotCLI}[how]
					run("client_secret_rotation_"+how, func(t *testing.T) {
						tb := in.mustCCToken(t, b, c) // B has authenticated the client: its cache is warm
						ta := in.mustCCToken(t, a, c)
						in.atOnce(t, "before secret rotation", in.active(b, tb, c.Name+"'s B-issued"), in.active(b, ta, c.Name+"'s A-issued"))
						var change string
						var out []byte
						if how == "REST" {
							change = "client secret rotation on A (POST /api/v1/clients/{id}/secret)"
							r := a.json(t, http.MethodPost, "/api/v1/clients/"+url.PathEscape(c.ID)+"/secret", in.admin, "")
							if r.status != http.StatusOK {
								t.Fatalf("A: POST /api/v1/clients/%s/secret = %v; want 200", c.ID, r)
							}
							out = r.body
						} else {
							change = "client secret rotation by the CLI (client rotate-secret ID)"
							out = runCLI(t, e, "", "client", "rotate-secret", c.ID)
						}
						since := time.Now()
						var rotated client
						if err := json.Unmarshal(out, &rotated); err != nil || rotated.ID != c.ID || rotated.Secret == "" || rotated.Secret == c.Secret {
							t.Fatalf("rotation printed %q: %v; want {client_id, client_secret} with a new secret", out, err)
						}
						in.sec.add(rotated.Secret)
						probes := func(s *server) []probe {
							return []probe{
								in.clientRefused(s, "/oauth2/token", c.ID, c.Secret, c.Name+"'s old secret"),
								in.clientRefused(s, "/oauth2/introspect", c.ID, c.Secret, c.Name+"'s old secret"),
								in.inactive(s, tb, c.Name+"'s B-issued"), in.inactive(s, ta, c.Name+"'s A-issued"),
								in.clientWorks(s, c.ID, rotated.Secret, c.Name+"'s new secret"),
							}
						}
						if how == "REST" {
							onA := probes(a)
							in.atOnce(t, change, onA[:len(onA)-1]...)
							in.newSecretAtOnce(t, change, a, c.ID, rotated.Secret, since)
							in.reaches(t, change, since, probes(b)...)
						} else {
							in.reaches(t, change, since, append(probes(a), probes(b)...)...)
						}
						in.stays(t, change, append(probes(a), probes(b)...)...)
					})
				}
			})

			// Every effect once more, now that each change is seconds old.
			for _, l := range in.final {
				if v, got := l.p.run(t); v != holds {
					in.fail(t, l.change, l.p, "no longer holds at the end: %s", got)
				}
			}
			// Nothing leaked to what no change named.
			unrelated := []probe{}
			for _, s := range []*server{a, b} {
				unrelated = append(unrelated,
					profileWorks(s, carolA.AccessToken, "carol's A-issued"), profileWorks(s, carolB.AccessToken, "carol's B-issued"),
					in.active(s, carolA.AccessToken, "carol's A-issued"), in.active(s, carolB.AccessToken, "carol's B-issued"),
					profileWorks(s, in.admin, "the admin's"),
					in.active(s, steadyA, "steady's A-issued"), in.active(s, steadyB, "steady's B-issued"),
					in.clientWorks(s, steady.ID, steady.Secret, "steady"),
				)
			}
			for _, p := range unrelated {
				if v, got := p.run(t); v != holds {
					t.Errorf("unrelated: %s: %s", p, got)
				}
			}
			// carol's refresh tokens still rotate, on either instance.
			for _, step := range []struct {
				s  *server
				rt *string
			}{{b, &carolA.RefreshToken}, {a, &carolB.RefreshToken}, {a, &carolA.RefreshToken}, {b, &carolB.RefreshToken}} {
				r := in.refresh(t, step.s, *step.rt)
				if r.status != http.StatusOK {
					t.Errorf("unrelated: %s: carol's refresh = %v; want 200", step.s.name, r)
					continue
				}
				p := decodePair(t, r)
				in.sec.add(p.AccessToken, p.RefreshToken)
				*step.rt = p.RefreshToken
			}
			for _, s := range []*server{a, b} {
				if r := s.login(t, "carol", pass("carol")); r.status != http.StatusOK {
					t.Errorf("unrelated: %s: carol's login = %v; want 200", s.name, r)
				} else if p, err := decodeQuiet(r); err == nil {
					in.sec.add(p.AccessToken, p.RefreshToken)
				}
			}

			in.report(t)
			t.Logf("runtime after both servers were up: %v", time.Since(began).Round(time.Millisecond))
			checkLog(t, a, in.sec.all())
			checkLog(t, b, in.sec.all())
		})
	}
}

// report logs how long effects took to reach the other instance: the maximum
// and the median overall, and the maximum of each change.
func (in *instances) report(t *testing.T) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.seen) == 0 {
		return
	}
	ds := make([]time.Duration, len(in.seen))
	worst := in.seen[0]
	perChange := map[string]time.Duration{}
	for i, o := range in.seen {
		ds[i] = o.d
		if o.d > worst.d {
			worst = o
		}
		perChange[o.change] = max(perChange[o.change], o.d)
	}
	slices.Sort(ds)
	t.Logf("propagation to the other instance (%d effects, polled every %v, bound %v): max %v (%s: %s), median %v, min %v",
		len(ds), pollEvery, propagationBound, worst.d.Round(time.Millisecond), worst.change, worst.probe,
		ds[len(ds)/2].Round(time.Millisecond), ds[0].Round(time.Millisecond))
	changes := make([]string, 0, len(perChange))
	for c := range perChange {
		changes = append(changes, c)
	}
	slices.Sort(changes)
	for _, c := range changes {
		t.Logf("  %-70s max %v", c, perChange[c].Round(time.Millisecond))
	}
}

// TestRefreshDoubleSpendAcrossInstances presents one refresh token many
// times at once, to two instances on one database: exactly one
// presentation gets new tokens and every other one is refused (401
// invalid_token, never a 5xx). A second presentation is reuse, so the
// session then ends: the winner's new refresh token is refused too (RFC
// 9700 §4.14.2). Several rounds, each on a fresh session.
func TestRefreshDoubleSpendAcrossInstances(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			e := baseEnv(storetest.URL(t, dialect)).with("ISSUER", "http://auth.e2e.test")
			a := startServer(t, "A", e)
			b := startServer(t, "B", e)
			sec := &secrets{}
			sec.add(jwtSecret)
			const pass = "Dana-pass-e2e-1"
			a.mustRegister(t, "dana@e2e.test", "dana", pass)
			refresh := func(s *server, rt string) reply {
				return s.json(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refresh_token": rt})
			}
			for round := range 4 {
				p := a.mustLogin(t, "dana", pass)
				sec.add(p.AccessToken, p.RefreshToken)
				const n = 16
				replies := make([]reply, n)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range n {
					s := a
					if i%2 == 1 {
						s = b
					}
					wg.Add(1)
					go func() { defer wg.Done(); <-start; replies[i] = refresh(s, p.RefreshToken) }()
				}
				close(start)
				wg.Wait()
				var won []tokenPair
				for _, r := range replies {
					if r.status == http.StatusOK {
						won = append(won, decodePair(t, r))
						continue
					}
					if r.status != http.StatusUnauthorized || errorCode(r) != "invalid_token" {
						t.Errorf("round %d: a concurrent refresh = %v; want 200 once, else 401 invalid_token", round, r)
					}
					checkBody(t, "a refused refresh", r.body, sec.all())
				}
				for _, w := range won {
					sec.add(w.AccessToken, w.RefreshToken)
				}
				if len(won) != 1 {
					t.Fatalf("round %d: %d of %d concurrent refreshes of one token got new tokens; want exactly 1", round, len(won), n)
				}
				for _, s := range []*server{a, b} {
					if r := refresh(s, won[0].RefreshToken); r.status != http.StatusUnauthorized {
						t.Errorf("round %d: %s: the winner's new refresh token after the reuse = %v; want 401 (session ended)", round, s.name, r)
					}
				}
			}
			checkLog(t, a, sec.all())
			checkLog(t, b, sec.all())
		})
	}
}
