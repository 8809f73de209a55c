package auth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/metrics"
	"oauth2-api/store"
	"oauth2-api/token"
)

// relyingParty is a back-channel logout endpoint: each logout token POSTed
// to it arrives on got. answer, if set, chooses the response.
type relyingParty struct {
	*httptest.Server
	got    chan string
	answer func(w http.ResponseWriter, r *http.Request, n int) bool // true: answered
	n      atomic.Int32
}

func newRelyingParty(t testing.TB) *relyingParty {
	rp := &relyingParty{got: make(chan string, 16)}
	rp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rp.n.Add(1))
		if rp.answer != nil && rp.answer(w, r, n) {
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rp.got <- r.PostForm.Get("logout_token")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rp.Close)
	return rp
}

// next returns the next logout token, or fails after a generous wait.
func (rp *relyingParty) next(t testing.TB) string {
	t.Helper()
	select {
	case raw := <-rp.got:
		return raw
	case <-time.After(10 * time.Second):
		t.Fatal("no logout token arrived")
		return ""
	}
}

// none drains bc (Close: every queued logout token delivered or given up,
// so a late one counts too) and fails if a logout token reached rp.
func (rp *relyingParty) none(t testing.TB, bc *Backchannel) {
	t.Helper()
	bc.Close(context.Background())
	select {
	case raw := <-rp.got:
		t.Fatalf("unexpected logout token %.40s…", raw)
	default:
	}
}

// withBackchannel delivers logout tokens signed with the ID token key (set
// by withSigningKey before it), as main does.
func withBackchannel(t testing.TB) func(*Deps) {
	return func(d *Deps) {
		d.Tokens.Logout = NewBackchannel(d.IDTokens, d.Tokens.Issuer, 10, d.Log, d.Metrics)
		t.Cleanup(func() { d.Tokens.Logout.Close(context.Background()) })
	}
}

// checkLogoutToken verifies raw as a logout token for the client and user
// (Back-Channel Logout §2.4, §2.6) and returns its claims.
func (e *env) checkLogoutToken(raw, clientID string, u *store.User) *token.Claims {
	e.t.Helper()
	c, err := e.deps.Tokens.Verifier.Parse(raw, token.Expect{Type: token.TypeLogout, Issuer: testIssuer, Audience: clientID}, e.clock.Now())
	if err != nil {
		e.t.Fatalf("logout token: %v", err)
	}
	hdr, payload, _ := strings.Cut(raw, ".")
	payload, _, _ = strings.Cut(payload, ".")
	if !strings.Contains(string(b64Decode(e.t, hdr)), `"typ":"logout+jwt"`) {
		e.t.Errorf("logout token header %s", b64Decode(e.t, hdr))
	}
	body := string(b64Decode(e.t, payload))
	if !strings.Contains(body, `"events":{"http://schemas.openid.net/event/backchannel-logout":{}}`) || strings.Contains(body, `"nonce"`) {
		e.t.Errorf("logout token claims %s: want the back-channel logout event and no nonce", body)
	}
	if c.Subject != store.FormatID(u.ID) || c.SessionID == "" || c.ID == "" || c.IssuedAt == 0 || c.Expiry <= c.IssuedAt {
		e.t.Errorf("logout token claims %+v", c)
	}
	return c
}

// oidcSignIn signs b in as login to the client (id, secret) with the openid
// scope and extra authorization parameters, exchanges the code, and returns
// the ID token's sid and the ID token.
func (e *env) oidcSignIn(b *browser, id, secret, login, password string, extra ...string) (sid, idt string) {
	e.t.Helper()
	p := newPKCE()
	code := e.secret(b.signIn(authorizeURL(id, p, append([]string{"scope", "openid"}, extra...)...), login, password))
	r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
	e.secret(r.Str("access_token"))
	e.secret(r.Str("refresh_token"))
	c, err := e.deps.Tokens.Verifier.Parse(r.Str("id_token"), token.Expect{Type: token.TypeID, Issuer: testIssuer, Audience: id}, e.clock.Now())
	if err != nil || c.SessionID == "" {
		e.t.Fatalf("id_token %+v, %v; want a sid", c, err)
	}
	return c.SessionID, r.Str("id_token")
}

// Back-Channel Logout 1.0: when a browser sign-in ends (RP-initiated
// logout, password change, reset, deactivation, deletion) each client it
// gave a code to that registered a back-channel logout URI receives a
// logout token naming the sign-in in sid, as its ID token did; a client the
// sign-in never reached hears nothing.
func TestBackchannelLogout(t *testing.T) {
	key := ecKey(t)
	sink, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		rp, bystander := newRelyingParty(t), newRelyingParty(t)
		u := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"},
			BackchannelLogoutURI: rp.URL + "/backchannel?tenant=1"})
		e.newClient(ClientSpec{Name: "other", RedirectURIs: []string{"https://other.example/cb"}, Scopes: []string{"openid"},
			BackchannelLogoutURI: bystander.URL})
		signIn := func(b *browser, password string) (sid, idt string) {
			return e.oidcSignIn(b, id, secret, "ann", password)
		}

		// RP-initiated logout.
		b := e.browser()
		sid, idt := signIn(b, "Ann-Password-1")
		b.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {idt}}.Encode(), nil)
		if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
			t.Fatalf("logout token sid %q; want the ID token's %q", c.SessionID, sid)
		}
		// Two sign-ins get two sids; a password change ends the other one.
		thief, owner := e.browser(), e.browser()
		thiefSID, _ := signIn(thief, "Ann-Password-1")
		ownerSID, _ := signIn(owner, "Ann-Password-1")
		if thiefSID == ownerSID || thiefSID == sid {
			t.Fatal("two sign-ins share a sid")
		}
		at, _ := e.login("ann", "Ann-Password-1")
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "Ann-Password-1", "new_password": e.secret("Ann-Password-2")},
			bearer(at)...).want(http.StatusNoContent)
		ended := map[string]bool{}
		for range 2 {
			ended[e.checkLogoutToken(rp.next(t), id, u).SessionID] = true
		}
		if !ended[thiefSID] || !ended[ownerSID] {
			t.Fatalf("password change announced %v; want both sign-ins", ended)
		}
		// A reset, a deactivation and a deletion each end the sign-in.
		_, admin := e.admin()
		sid, _ = signIn(b, "Ann-Password-2")
		tok := e.secret(token.NewOpaque())
		if err := e.db.ReplaceResetToken(t.Context(), token.Hash(tok), u.ID, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "Ann-Password-3"}).want(http.StatusNoContent)
		if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
			t.Fatalf("reset: logout token sid %q; want %q", c.SessionID, sid)
		}
		sid, _ = signIn(b, e.secret("Ann-Password-3"))
		e.request("PATCH", "/api/v1/users/"+store.FormatID(u.ID), map[string]any{"is_active": false}, bearer(admin)...).want(http.StatusOK)
		if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
			t.Fatalf("deactivation: logout token sid %q; want %q", c.SessionID, sid)
		}
		e.request("PATCH", "/api/v1/users/"+store.FormatID(u.ID), map[string]any{"is_active": true}, bearer(admin)...).want(http.StatusOK)
		sid, _ = signIn(b, "Ann-Password-3")
		e.request("DELETE", "/api/v1/users/"+store.FormatID(u.ID), nil, bearer(admin)...).want(http.StatusNoContent)
		if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
			t.Fatalf("deletion: logout token sid %q; want %q", c.SessionID, sid)
		}
		// The sign-ins never reached the other client.
		bystander.none(t, e.deps.Tokens.Logout)
		rp.none(t, e.deps.Tokens.Logout)
		if got := e.deps.Metrics.Logouts.With(logoutSent).Value(); got != 6 {
			t.Fatalf("oauth2_backchannel_logouts_total{outcome=sent} = %d; want 6", got)
		}
	}, withSigningKey(t, key, nil), withBackchannel(t), withReset(t, sink, clientTLS, SMTPStartTLS))
}

// RP-Initiated Logout from a relying party's back end, as zitadel/oidc's
// rp.EndSession sends it: a POST with id_token_hint and no cookie. The
// hint's sid names the sign-in to end: that browser is signed out and the
// RP told; another user's sign-in goes on; a hint whose sign-in has ended
// already ends nothing more.
func TestLogoutFromRelyingPartyBackEnd(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		rp := newRelyingParty(t)
		u := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"},
			PostLogoutRedirectURIs: []string{"https://app.example/bye"}, BackchannelLogoutURI: rp.URL})
		ann, bob := e.browser(), e.browser()
		sid, idt := e.oidcSignIn(ann, id, secret, "ann", "Ann-Password-1")
		e.oidcSignIn(bob, id, secret, "bob", "Bob-Password-1")

		backEnd := e.browser() // holds no cookie
		form := url.Values{"id_token_hint": {idt}, "client_id": {id}, "post_logout_redirect_uri": {"https://app.example/bye"}, "state": {"s1"}}
		if w := backEnd.do("POST", "/oauth2/logout", form); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://app.example/bye?state=s1" {
			t.Fatalf("logout from the back end: %d %q; want 303 to https://app.example/bye?state=s1", w.Code, w.Header().Get("Location"))
		}
		if c := e.checkLogoutToken(rp.next(t), id, u); c.SessionID != sid {
			t.Fatalf("logout token sid %q; want the hint's %q", c.SessionID, sid)
		}
		if ann.signedIn(id) {
			t.Fatal("the hint's sign-in goes on after a logout from the back end")
		}
		if !bob.signedIn(id) {
			t.Fatal("another user's sign-in ended")
		}
		if w := backEnd.do("POST", "/oauth2/logout", form); w.Code != http.StatusSeeOther {
			t.Fatalf("the same logout again: %d; want 303", w.Code)
		}
		rp.none(t, e.deps.Tokens.Logout)
	}, withSigningKey(t, key, nil), withBackchannel(t))
}

// A browser signed in as one user signs in as another (prompt=login, or a
// login form left open): the first user's sign-in ends as a logout ends it,
// its codes not yet exchanged void and its relying parties told. Before,
// only its cookie was replaced: the sign-in lived on until it expired, and
// its relying parties kept the first user signed in. The same user signing
// in again (prompt=login, max_age) signs nobody out: the new sign-in
// continues the old one under its sid, which the relying parties hold, the
// old cookie stops working, and the relying parties are told when the new
// one ends.
func TestSignInAsAnotherUserEndsTheFirst(t *testing.T) {
	key := ecKey(t)
	eachEnv(t, func(t *testing.T, e *env) {
		rp := newRelyingParty(t)
		ann := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		bob := e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}, BackchannelLogoutURI: rp.URL})
		alive := func(cookie string) bool {
			_, err := e.db.SessionByHash(t.Context(), token.Hash(cookie), e.clock.Now())
			return err == nil
		}
		b := e.browser()
		annSID, _ := e.oidcSignIn(b, id, secret, "ann", "Ann-Password-1")
		annCookie := b.cookies[cookieSession]
		p := newPKCE()
		pending := e.secret(b.signIn(authorizeURL(id, p, "scope", "openid"), "ann", "Ann-Password-1")) // not exchanged yet

		bobSID, _ := e.oidcSignIn(b, id, secret, "bob", "Bob-Password-1", "prompt", "login")
		if c := e.checkLogoutToken(rp.next(t), id, ann); c.SessionID != annSID || bobSID == annSID {
			t.Fatalf("Bob signed in where Ann was: logout token sid %q, Bob's sid %q; want Ann's %q told, Bob's another", c.SessionID, bobSID, annSID)
		}
		if alive(annCookie) {
			t.Fatal("Ann's sign-in goes on after Bob's in her browser")
		}
		e.token(id, secret, codeForm(pending, p)).wantOAuthError(http.StatusBadRequest, errInvalidGrant)

		bobCookie := b.cookies[cookieSession]
		e.clock.Add(time.Minute)
		sid, idt := e.oidcSignIn(b, id, secret, "bob", "Bob-Password-1", "prompt", "login")
		if sid != bobSID || alive(bobCookie) || !alive(b.cookies[cookieSession]) {
			t.Fatalf("Bob signing in again: sid %q; want %q kept, under a new cookie", sid, bobSID)
		}
		b.do("GET", "/oauth2/logout?"+url.Values{"id_token_hint": {idt}}.Encode(), nil)
		if c := e.checkLogoutToken(rp.next(t), id, bob); c.SessionID != bobSID {
			t.Fatalf("Bob's logout: logout token sid %q; want %q", c.SessionID, bobSID)
		}
		rp.none(t, e.deps.Tokens.Logout) // that one only: Bob signing in again told nobody
	}, withSigningKey(t, key, nil), withBackchannel(t))
}

// Delivery never blocks the user's request, never follows a redirect (the
// registered URI is the only one told), and tries a failing RP again a
// bounded number of times; a full queue drops and counts, and one RP's
// failures delay nobody else's logouts.
func TestBackchannelDelivery(t *testing.T) {
	defer func(b []time.Duration) { logoutBackoff = b }(logoutBackoff)
	logoutBackoff = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	key := ecKey(t)
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	newQueue := func(t *testing.T, n int) (*Backchannel, *Metrics) {
		m := NewMetrics(metrics.NewRegistry())
		bc := NewBackchannel(signer, testIssuer, n, slog.New(slog.DiscardHandler), m)
		t.Cleanup(func() { bc.Close(context.Background()) })
		return bc, m
	}
	signIn := func(uri string) store.SignIn {
		return store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "c1", URI: uri}
	}

	t.Run("retries", func(t *testing.T) {
		rp := newRelyingParty(t)
		var jtis []string // each try's, in the order they came
		rp.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			var c struct{ JTI string }
			raw := strings.Split(r.FormValue("logout_token"), ".")
			if len(raw) != 3 || json.Unmarshal(b64Decode(t, raw[1]), &c) != nil {
				t.Errorf("try %d: not a JWT", n)
			}
			jtis = append(jtis, c.JTI)
			if n < 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		bc, m := newQueue(t, 4)
		bc.Announce([]store.SignIn{signIn(rp.URL)})
		rp.next(t)
		bc.Close(context.Background())
		if sent, failed := m.Logouts.With(logoutSent).Value(), m.Logouts.With(logoutFailed).Value(); sent != 1 || failed != 0 {
			t.Fatalf("after two refusals and a 200: sent %d, failed %d; want 1, 0", sent, failed)
		}
		// Each try is a token signed as it starts: a retry may start long
		// after the first (its exp two minutes on), and a relying party that
		// took the first but whose answer was lost refuses its jti again.
		if len(jtis) != 3 || jtis[0] == jtis[1] || jtis[1] == jtis[2] || jtis[0] == jtis[2] {
			t.Fatalf("three tries sent the jtis %q; want three tokens", jtis)
		}
		// An RP that never answers 2xx is tried 1+len(logoutBackoff) times.
		rp.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		rp.n.Store(0)
		bc, m = newQueue(t, 4)
		bc.Announce([]store.SignIn{signIn(rp.URL)})
		bc.Close(context.Background())
		if n, failed := rp.n.Load(), m.Logouts.With(logoutFailed).Value(); n != 3 || failed != 1 {
			t.Fatalf("a failing RP: %d tries, failed %d; want 3, 1", n, failed)
		}
	})
	t.Run("no redirects", func(t *testing.T) {
		elsewhere := newRelyingParty(t)
		rp := newRelyingParty(t)
		rp.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
			return true
		}
		bc, m := newQueue(t, 4)
		bc.Announce([]store.SignIn{signIn(rp.URL)})
		elsewhere.none(t, bc)
		if failed := m.Logouts.With(logoutFailed).Value(); failed != 1 {
			t.Fatalf("a redirecting RP: failed %d; want 1", failed)
		}
	})
	t.Run("never blocks", func(t *testing.T) {
		release := make(chan struct{})
		arrived := make(chan struct{}, 16)
		rp := newRelyingParty(t)
		rp.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			arrived <- struct{}{}
			<-release
			return false
		}
		defer close(release)
		bc, m := newQueue(t, 4)
		in := func(c int) store.SignIn {
			return store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "c" + strconv.Itoa(c), URI: rp.URL}
		}
		// Four sign-ins fill a queue of four, each of a client with no
		// backlog to make room: c4's is dropped.
		bc.Announce([]store.SignIn{in(0)})
		<-arrived
		bc.Announce([]store.SignIn{in(1), in(2), in(3), in(4)})
		if dropped := m.Logouts.With(logoutDropped).Value(); dropped != 1 {
			t.Fatalf("dropped %d; want 1", dropped)
		}
	})
	// A relying party that never answers holds one sender at a time, and
	// its backlog gives way to the others': another client's logout goes
	// out meanwhile.
	t.Run("a dead relying party", func(t *testing.T) {
		release := make(chan struct{})
		var inFlight, most atomic.Int32
		arrived := make(chan struct{}, 64) // every try of its 7 (3 each) never blocks
		dead := newRelyingParty(t)
		dead.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			k := inFlight.Add(1)
			for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
			}
			arrived <- struct{}{}
			<-release
			inFlight.Add(-1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		live := newRelyingParty(t)
		defer close(release)
		bc, m := newQueue(t, 8)
		var ins []store.SignIn
		for range 12 {
			ins = append(ins, store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "dead", URI: dead.URL})
		}
		bc.Announce(ins)
		bc.Announce([]store.SignIn{{SID: token.NewID(), UserID: 7, ClientID: "live", URI: live.URL}})
		live.next(t)
		<-arrived
		// Its 12 fill the queue of 8 (4 dropped), then it makes room for
		// the live one.
		if most, dropped := most.Load(), m.Logouts.With(logoutDropped).Value(); most != 1 || dropped != 5 {
			t.Fatalf("the dead RP had %d tries in flight at once, %d of its logout tokens dropped; want 1, 5", most, dropped)
		}
	})
	// However many relying parties are down, their backlogs make room for
	// one that answers: with a quarter of the queue each, four of them
	// held it all, and every other client's logout tokens were dropped.
	t.Run("dead relying parties fill the queue", func(t *testing.T) {
		release := make(chan struct{})
		dead := newRelyingParty(t)
		dead.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			<-release
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		defer close(release)
		bc, m := newQueue(t, 100)
		for c := range 4 {
			var ins []store.SignIn
			for range 25 {
				ins = append(ins, store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "dead" + strconv.Itoa(c), URI: dead.URL})
			}
			bc.Announce(ins)
		}
		bc.Announce([]store.SignIn{{SID: token.NewID(), UserID: 8, ClientID: "live", URI: dead.URL}})
		bc.mu.Lock()
		queued := bc.lanes["live"] != nil
		bc.mu.Unlock()
		if dropped := m.Logouts.With(logoutDropped).Value(); !queued || dropped != 1 {
			t.Fatalf("the live client's logout token queued: %v, %d dropped; want true, 1 (a dead one's)", queued, dropped)
		}
	})
	// A failed try waits out its backoff off the senders.
	t.Run("backoff", func(t *testing.T) {
		defer func(b []time.Duration) { logoutBackoff = b }(logoutBackoff)
		logoutBackoff = []time.Duration{time.Hour}
		dead, live := newRelyingParty(t), newRelyingParty(t)
		dead.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		m := NewMetrics(metrics.NewRegistry())
		bc := NewBackchannel(signer, testIssuer, 100, slog.New(slog.DiscardHandler), m)
		var ins []store.SignIn
		for i := range 2 * logoutWorkers {
			ins = append(ins, store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "dead" + strconv.Itoa(i), URI: dead.URL})
		}
		bc.Announce(append(ins, store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "live", URI: live.URL}))
		live.next(t)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		bc.Close(ctx) // each dead one waits an hour: abandoned
		sent, failed, dropped := m.Logouts.With(logoutSent).Value(), m.Logouts.With(logoutFailed).Value(), m.Logouts.With(logoutDropped).Value()
		if sent != 1 || failed != 0 || dropped != 2*logoutWorkers {
			t.Fatalf("sent %d, failed %d, dropped %d; want 1, 0, %d", sent, failed, dropped, 2*logoutWorkers)
		}
	})
	t.Run("close abandons", func(t *testing.T) {
		rp := newRelyingParty(t)
		rp.answer = func(w http.ResponseWriter, r *http.Request, n int) bool {
			io.Copy(io.Discard, r.Body) // then the server sees the client hang up
			<-r.Context().Done()
			return true
		}
		m, logs := NewMetrics(metrics.NewRegistry()), &syncBuffer{}
		bc := NewBackchannel(signer, testIssuer, 8, slog.New(slog.NewJSONHandler(logs, nil)), m)
		// Six clients, four workers: at least two are still queued at Close.
		var ins []store.SignIn
		for i := range 6 {
			ins = append(ins, store.SignIn{SID: token.NewID(), UserID: 7, ClientID: "c" + strconv.Itoa(i), URI: rp.URL})
		}
		bc.Announce(ins)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		bc.Close(ctx)
		sent, failed, dropped := m.Logouts.With(logoutSent).Value(), m.Logouts.With(logoutFailed).Value(), m.Logouts.With(logoutDropped).Value()
		if sent != 0 || failed+dropped != 6 || dropped < 2 {
			t.Fatalf("after Close: sent %d, failed %d, dropped %d; want every one accounted for, two or more dropped", sent, failed, dropped)
		}
		// Each is logged too (README: what is left is logged), by its client.
		for _, si := range ins {
			if !regexp.MustCompile(`"level":"WARN","msg":"back-channel logout[^"]*","client_id":"` + si.ClientID + `"`).MatchString(logs.String()) {
				t.Errorf("no log line names %s, failed or dropped at Close:\n%s", si.ClientID, logs)
			}
		}
		bc.Announce([]store.SignIn{signIn(rp.URL)}) // after Close: ignored, no panic
	})
}
