package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to read the server's file after a crash
)

// skipOrFail skips the test, or fails it when CI is set: CI never skips.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: not skipping)", msg)
	}
	t.Skip(msg)
}

// pgCluster is a private PostgreSQL server in a temporary directory, which a
// test may stop and start. PostgreSQL refuses to run as root, so as root it
// runs as the user "postgres".
type pgCluster struct {
	bin  string // directory holding initdb and pg_ctl
	dir  string // owned by the cluster's user: data, socket, logs
	port int
	cred *syscall.Credential // nil: run as ourselves
}

// newPGCluster initialises and starts a cluster; it is stopped and removed
// when the test ends.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	postgresURL(t) // PostgreSQL tests follow one skip policy
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if p, err := exec.LookPath("initdb"); err == nil {
		initdbs = append(initdbs, p)
	}
	if len(initdbs) == 0 {
		skipOrFail(t, "no initdb found (looked in /usr/lib/postgresql/*/bin and PATH): cannot run a private PostgreSQL")
	}
	slices.SortFunc(initdbs, func(a, b string) int { // highest version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	c := &pgCluster{bin: filepath.Dir(initdbs[0]), port: freePort(t)}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(t, "running as root and there is no user postgres to run PostgreSQL as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to root, and the cluster's
	// user must reach this directory.
	dir, err := os.MkdirTemp("", "oauth2-api-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() {
		c.pgctl("stop", "-m", "immediate") // may fail: already stopped
		os.RemoveAll(dir)
	})
	if c.cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown %s to postgres: %v", dir, err)
		}
	}
	if out, err := c.command("initdb", "-D", c.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start(t)
	return c
}

func (c *pgCluster) data() string { return filepath.Join(c.dir, "data") }

// url is the cluster's DATABASE_URL.
func (c *pgCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// command runs one of the cluster's programs as the cluster's user. Its
// output goes to a file, not a pipe: pg_ctl leaves a daemon behind, which
// must not hold a pipe of ours open.
func (c *pgCluster) command(name string, args ...string) (string, error) {
	out, err := os.CreateTemp("", "oauth2-api-e2e-pgout-")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + c.dir}
	cmd.Stdout, cmd.Stderr = out, out
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return string(b), err
}

func (c *pgCluster) pgctl(args ...string) (string, error) {
	return c.command("pg_ctl", append([]string{"-D", c.data(), "-w", "-t", "60"}, args...)...)
}

func (c *pgCluster) start(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.port, c.dir)
	if out, err := c.pgctl("-l", filepath.Join(c.dir, "server.log"), "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// stop stops the cluster; "immediate" is a crash as far as PostgreSQL is
// concerned (it recovers from its WAL at the next start).
func (c *pgCluster) stop(t testing.TB, mode string) {
	t.Helper()
	if out, err := c.pgctl("-m", mode, "stop"); err != nil {
		t.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// within runs f and fails the test if it takes longer than limit: a hang
// detector, not a speed test.
func within(t testing.TB, what string, limit time.Duration, f func() reply) reply {
	t.Helper()
	start := time.Now()
	r := f()
	if d := time.Since(start); d > limit {
		t.Errorf("%s took %v; want an answer within %v", what, d.Round(time.Millisecond), limit)
	}
	return r
}

// TestPostgresOutage stops PostgreSQL under a running server: /health and
// every endpoint that needs the database answer 503 within a bounded time;
// when PostgreSQL is back the server recovers by itself, with everything
// committed before the outage.
func TestPostgresOutage(t *testing.T) {
	pg := newPGCluster(t)
	s := startServer(t, "outage", baseEnv(pg.url()))
	sec := &secrets{}
	sec.add(jwtSecret)

	type account struct{ name, pass string }
	var accounts []account
	for i := range 3 {
		a := account{fmt.Sprintf("outage%d", i), fmt.Sprintf("Outage-pass-%d-e2e", i)}
		s.mustRegister(t, a.name+"@e2e.test", a.name, a.pass)
		accounts = append(accounts, a)
		sec.add(a.pass)
	}
	before := s.mustLogin(t, accounts[0].name, accounts[0].pass)
	sec.add(before.AccessToken, before.RefreshToken)
	if r := s.get(t, "/api/v1/profile", before.AccessToken); r.status != http.StatusOK {
		t.Fatalf("profile before the outage = %v; want 200", r)
	}

	pg.stop(t, "immediate")

	const limit = 10 * time.Second
	unavailable := func(what string, r reply) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s with PostgreSQL down = %v; want 503", what, r)
		}
		checkBody(t, what, r.body, sec.all())
	}
	for range 2 { // a second round: the pool's broken connections are gone by then
		r := within(t, "GET /health", limit, func() reply { return s.get(t, "/health", "") })
		unavailable("GET /health", r)
		var h map[string]string
		if json.Unmarshal(r.body, &h); h["status"] != "unhealthy" || h["database"] != "disconnected" {
			t.Errorf("GET /health with PostgreSQL down = %v; want unhealthy, disconnected", r)
		}
		r = within(t, "login", limit, func() reply { return s.login(t, accounts[1].name, accounts[1].pass) })
		unavailable("login", r)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("login with PostgreSQL down: no Retry-After")
		}
		unavailable("register", within(t, "register", limit, func() reply {
			return s.register(t, "during@e2e.test", "during", "During-pass-e2e")
		}))
		unavailable("profile", within(t, "profile", limit, func() reply { return s.get(t, "/api/v1/profile", before.AccessToken) }))
		unavailable("refresh", within(t, "refresh", limit, func() reply {
			return s.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": before.RefreshToken})
		}))
	}
	if !s.running() {
		t.Fatalf("the server exited while PostgreSQL was down")
	}

	pg.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := trySend(plainClient, s.newRequest(t, "GET", "/health", "", nil))
		if err == nil && r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /health 20s after PostgreSQL came back = %v, %v; want 200", r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Everything committed before the outage is there, and writes work.
	for _, a := range accounts {
		p := s.mustLogin(t, a.name, a.pass)
		sec.add(p.AccessToken, p.RefreshToken)
	}
	if r := s.get(t, "/api/v1/profile", before.AccessToken); r.status != http.StatusOK {
		t.Errorf("profile with a token from before the outage = %v; want 200", r)
	}
	r := s.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": before.RefreshToken})
	if r.status != http.StatusOK {
		t.Errorf("refresh with a token from before the outage = %v; want 200", r)
	} else {
		p := decodePair(t, r)
		sec.add(p.AccessToken, p.RefreshToken)
	}
	s.mustRegister(t, "after@e2e.test", "after", "After-pass-e2e")
	sec.add("After-pass-e2e", "During-pass-e2e")
	checkLog(t, s, sec.all())
}

// burstFamily is one refresh token family rotated during the burst.
type burstFamily struct {
	chain []string // acknowledged tokens, oldest first: the last is the newest
	lost  bool     // the last request's answer never came: it may or may not have happened
	bad   string   // an answer that should never happen
}

// burstUser is one registration sent during the burst.
type burstUser struct {
	name, pass string
	acked      bool // 201 received
	lost       bool // no answer (or 503): it may or may not exist
}

// TestKillDuringBurst SIGKILLs the server on SQLite in the middle of
// concurrent registrations and refresh token rotations, restarts it on the
// same file, and checks that every acknowledged write survived and that no
// refresh token family is half rotated.
func TestKillDuringBurst(t *testing.T) {
	e := sqliteEnv(t)
	s := startServer(t, "burst", e)
	sec := &secrets{}
	sec.add(jwtSecret)

	const nFamilies, nRegistrars = 8, 6
	fams := make([]*burstFamily, nFamilies)
	for i := range fams {
		name, pass := fmt.Sprintf("rot%d", i), fmt.Sprintf("Rotation-pass-%d-e2e", i)
		s.mustRegister(t, name+"@e2e.test", name, pass)
		p := s.mustLogin(t, name, pass)
		fams[i] = &burstFamily{chain: []string{p.RefreshToken}}
		sec.add(pass, p.AccessToken, p.RefreshToken)
	}

	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var users []*burstUser
	var regsAcked, rotsAcked atomic.Int64
	for g := range nRegistrars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := &burstUser{name: fmt.Sprintf("burst-%d-%d", g, i), pass: fmt.Sprintf("Burst-pass-%d-%d-e2e", g, i)}
				mu.Lock()
				users = append(users, u)
				mu.Unlock()
				body := fmt.Sprintf(`{"email":%q,"username":%q,"password":%q}`, u.name+"@e2e.test", u.name, u.pass)
				req, err := s.postJSON("/api/v1/auth/register", body)
				if err != nil {
					t.Errorf("register request: %v", err)
					return
				}
				r, err := trySend(c, req)
				switch {
				case err != nil:
					u.lost = true
					return // the server is gone
				case r.status == http.StatusCreated:
					u.acked = true
					regsAcked.Add(1)
				case r.status == http.StatusServiceUnavailable:
					u.lost = true
				default:
					t.Errorf("register %s during the burst = %v", u.name, r)
					return
				}
			}
		}()
	}
	for _, f := range fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"refresh_token":%q}`, f.chain[len(f.chain)-1])
				req, err := s.postJSON("/api/v1/auth/refresh", body)
				if err != nil {
					f.bad = err.Error()
					return
				}
				r, err := trySend(c, req)
				switch {
				case err != nil, r.status == http.StatusServiceUnavailable:
					f.lost = true
					return
				case r.status == http.StatusOK:
					var p tokenPair
					if err := json.Unmarshal(r.body, &p); err != nil || p.RefreshToken == "" {
						f.bad = fmt.Sprintf("refresh answered %v", r)
						return
					}
					f.chain = append(f.chain, p.RefreshToken)
					sec.add(p.AccessToken, p.RefreshToken)
					rotsAcked.Add(1)
				default:
					f.bad = fmt.Sprintf("refresh answered %v", r)
					return
				}
			}
		}()
	}

	// Kill once the burst is well under way.
	deadline := time.Now().Add(10 * time.Second)
	for (regsAcked.Load() < 20 || rotsAcked.Load() < 200) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-s.done
	close(stop)
	wg.Wait()

	var regsLost, famsLost int
	for _, u := range users {
		if u.lost {
			regsLost++
		}
	}
	for i, f := range fams {
		if f.bad != "" {
			t.Errorf("family %d: %s", i, f.bad)
		}
		if f.lost {
			famsLost++
		}
	}
	t.Logf("burst: %d registrations acknowledged, %d without an answer; %d rotations acknowledged, %d families with a rotation in flight at SIGKILL",
		regsAcked.Load(), regsLost, rotsAcked.Load(), famsLost)
	if regsAcked.Load() == 0 || rotsAcked.Load() == 0 {
		t.Fatalf("the burst acknowledged nothing: the test proves nothing")
	}

	// The file, read directly: every acknowledged registration is a row, and
	// every family has exactly one unspent token.
	unspent := checkFamiliesInFile(t, e["DATABASE_URL"], fams, users)

	s2 := startServer(t, "burst-restarted", e)
	// Every acknowledged registration can log in; the others may or may not.
	sem := make(chan struct{}, 4)
	var lwg sync.WaitGroup
	for _, u := range users {
		if !u.acked && !u.lost {
			continue
		}
		lwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer lwg.Done()
			defer func() { <-sem }()
			sec.add(u.pass)
			req, err := s2.postJSON("/api/v1/auth/login", fmt.Sprintf(`{"login":%q,"password":%q}`, u.name, u.pass))
			if err != nil {
				t.Errorf("login request: %v", err)
				return
			}
			r, err := trySend(plainClient, req)
			switch {
			case err != nil:
				t.Errorf("login %s after restart: %v", u.name, err)
			case u.acked && r.status != http.StatusOK:
				t.Errorf("login %s (registration acknowledged) after restart = %v; want 200", u.name, r)
			case u.lost && r.status != http.StatusOK && r.status != http.StatusUnauthorized:
				t.Errorf("login %s (registration unanswered) after restart = %v; want 200 or 401", u.name, r)
			case r.status == http.StatusOK:
				var p tokenPair
				json.Unmarshal(r.body, &p)
				sec.add(p.AccessToken, p.RefreshToken)
			}
		}()
	}
	lwg.Wait()

	// Through the API: the newest token works exactly once when it is the
	// family's unspent one; presenting it again is reuse, which revokes the
	// family, so the token it was just swapped for stops working too.
	for i, f := range fams {
		newest := f.chain[len(f.chain)-1]
		refresh := func(tok string) reply {
			return s2.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": tok})
		}
		if !unspent[i] {
			// Its rotation committed but the answer was lost; the token
			// that answer held is the one unspent, and nobody has it.
			if r := refresh(newest); r.status != http.StatusUnauthorized {
				t.Errorf("family %d: the spent newest token = %v; want 401", i, r)
			}
			continue
		}
		r := refresh(newest)
		if r.status != http.StatusOK {
			t.Errorf("family %d: the newest acknowledged token after restart = %v; want 200", i, r)
			continue
		}
		next := decodePair(t, r)
		sec.add(next.AccessToken, next.RefreshToken)
		if r := refresh(newest); r.status != http.StatusUnauthorized {
			t.Errorf("family %d: the newest token a second time = %v; want 401", i, r)
		}
		if r := refresh(next.RefreshToken); r.status != http.StatusUnauthorized {
			t.Errorf("family %d: the token issued before the reuse = %v; want 401 (family revoked)", i, r)
		}
	}
	checkLog(t, s2, sec.all())
	checkLog(t, s, sec.all())
}

// checkFamiliesInFile opens the SQLite file of a dead server and checks the
// refresh token families and users against what the clients were told. It
// reports, per family, whether its newest acknowledged token is unspent.
func checkFamiliesInFile(t *testing.T, path string, fams []*burstFamily, users []*burstUser) (unspent []bool) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()

	// No family anywhere holds two unspent tokens.
	rows, err := db.Query(`SELECT family_id, count(*) FROM refresh_tokens WHERE used_at IS NULL GROUP BY family_id HAVING count(*) > 1`)
	if err != nil {
		t.Fatalf("query the file: %v", err)
	}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		t.Errorf("family %s has %d unspent refresh tokens; want at most 1", id, n)
	}
	rows.Close()

	unspent = make([]bool, len(fams))
	for i, f := range fams {
		var family string
		if err := db.QueryRow(`SELECT family_id FROM refresh_tokens WHERE hash = ?`, refreshHash(f.chain[0])).Scan(&family); err != nil {
			t.Errorf("family %d: its first token is not in the file: %v", i, err)
			continue
		}
		var revoked sql.NullInt64
		db.QueryRow(`SELECT revoked_at FROM token_families WHERE id = ?`, family).Scan(&revoked)
		if revoked.Valid {
			t.Errorf("family %d is revoked; nothing revoked it", i)
		}
		used := map[string]bool{}
		rows, err := db.Query(`SELECT hash, used_at IS NOT NULL FROM refresh_tokens WHERE family_id = ?`, family)
		if err != nil {
			t.Fatalf("query the file: %v", err)
		}
		for rows.Next() {
			var h string
			var u bool
			rows.Scan(&h, &u)
			used[h] = u
		}
		rows.Close()
		nUnspent := 0
		for _, u := range used {
			if !u {
				nUnspent++
			}
		}
		for j, tok := range f.chain {
			u, ok := used[refreshHash(tok)]
			switch {
			case !ok:
				t.Errorf("family %d: acknowledged token %d of %d is not in the file", i, j+1, len(f.chain))
			case j < len(f.chain)-1 && !u:
				t.Errorf("family %d: token %d of %d was rotated (acknowledged) but is unspent in the file", i, j+1, len(f.chain))
			}
		}
		newestUsed := used[refreshHash(f.chain[len(f.chain)-1])]
		unspent[i] = !newestUsed
		switch {
		case nUnspent != 1:
			t.Errorf("family %d has %d unspent tokens; want exactly 1", i, nUnspent)
		case newestUsed && !f.lost:
			t.Errorf("family %d: the newest acknowledged token is spent, yet no rotation of it was in flight", i)
		}
	}

	for _, u := range users {
		if !u.acked {
			continue
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM users WHERE username = ? AND deleted_at IS NULL`, u.name).Scan(&n); err != nil || n != 1 {
			t.Errorf("acknowledged registration %s: %d rows in the file (%v); want 1", u.name, n, err)
		}
	}
	return unspent
}

// TestGracefulShutdown sends SIGTERM while slow requests (argon2 logins and
// registrations) are in flight: each gets its whole answer, and the process
// exits 0 after logging "stopped".
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, "shutdown", sqliteEnv(t))
	const pass = "Graceful-pass-e2e"
	s.mustRegister(t, "grace@e2e.test", "grace", pass)

	// begun is how many requests the server has begun, from the count that
	// ends every request id (httpx.Observe).
	begun := func() int64 {
		id := s.get(t, "/livez", "").header.Get("X-Request-ID")
		count, err := strconv.ParseInt(id[strings.LastIndexByte(id, '-')+1:], 36, 64)
		if err != nil {
			t.Fatalf("request id %q: %v", id, err)
		}
		return count
	}
	base := begun()
	const n = 60
	type result struct {
		kind string // "login ok", "login bad", "register"
		r    reply
		err  error
		at   time.Time
	}
	results := make([]result, n)
	written := make(chan struct{}, n)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	for i := range n {
		var body, path string
		switch i % 3 {
		case 0:
			results[i].kind, path, body = "login ok", "/api/v1/auth/login", fmt.Sprintf(`{"login":"grace","password":%q}`, pass)
		case 1:
			results[i].kind, path, body = "login bad", "/api/v1/auth/login", `{"login":"grace","password":"wrong-password"}`
		default:
			results[i].kind, path = "register", "/api/v1/auth/register"
			body = fmt.Sprintf(`{"email":"grace%d@e2e.test","username":"grace%d","password":"Graceful-pass-%d"}`, i, i, i)
		}
		req := s.newRequest(t, "POST", path, "application/json", strings.NewReader(body))
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { written <- struct{}{} },
		}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].r, results[i].err = trySend(c, req)
			results[i].at = time.Now()
		}()
	}
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-written:
		case <-timeout:
			t.Fatalf("requests not all written after 30s")
		}
	}
	// Every request is on the wire; wait until the server has begun
	// handling each one (net/http drops a request it reads after Shutdown
	// began, as a connection still in the listen queue is refused: neither
	// is what is tested here, and a fixed pause was too short on a loaded
	// machine). Each probe's request id counts the requests begun
	// (httpx.Observe), the probes' own included.
	for probes, deadline := int64(1), time.Now().Add(30*time.Second); begun()-base-probes < n; probes++ {
		if time.Now().After(deadline) {
			t.Fatalf("the server has not begun all %d requests after 30s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sigterm := time.Now()
	s.signal(t, syscall.SIGTERM)
	wg.Wait()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the server has not exited 30s after SIGTERM")
	}

	after := 0
	for i, res := range results {
		if res.err != nil {
			t.Errorf("request %d (%s) sent before SIGTERM: %v; want a complete answer", i, res.kind, res.err)
			continue
		}
		if res.at.After(sigterm) {
			after++
		}
		want := map[string]int{"login ok": http.StatusOK, "login bad": http.StatusUnauthorized, "register": http.StatusCreated}[res.kind]
		if res.r.status != want || !json.Valid(res.r.body) {
			t.Errorf("request %d (%s) = %v; want %d with a whole JSON body", i, res.kind, res.r, want)
		}
	}
	t.Logf("graceful shutdown: %d requests in flight, %d answered after SIGTERM", n, after)
	if after == 0 {
		t.Errorf("every answer came before SIGTERM: nothing was in flight, the test proves nothing")
	}
	if code := s.exit.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0\n%s", code, tail(s.logs.String(), 20))
	}
	if !strings.Contains(s.logs.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line after SIGTERM:\n%s", tail(s.logs.String(), 20))
	}
	if _, err := net.DialTimeout("tcp", s.addr, 2*time.Second); err == nil {
		t.Errorf("the port still accepts connections after the server exited")
	}
}
