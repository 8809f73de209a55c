// Command load is oauth2-api's load harness. It builds and starts the real
// binary (on SQLite, and on PostgreSQL when BENCH_POSTGRES_URL or
// TEST_POSTGRES_URL is set), bootstraps a client and a user with the CLI,
// and drives each scenario for a fixed time at a fixed concurrency: the
// token, introspection and profile paths with wrk (Lua scripts check every
// response's status and body), refresh rotation and password login with a Go
// driver (each of its workers owns its refresh token chain). A bare net/http
// server that parses the same form is measured in the same run as the floor.
// It prints requests/s, p50/p99 latency, errors, the ratio to the floor and
// the server's peak RSS per scenario.
//
//	go run ./bench/load [-d 10s] [-c 32] [-million]
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/argon2"

	"oauth2-api/auth"
)

var (
	duration = flag.Duration("d", 10*time.Second, "duration of each scenario")
	conns    = flag.Int("c", 32, "concurrent connections")
	threads  = flag.Int("t", 2, "wrk threads")
	million  = flag.Bool("million", false, "also issue one million tokens and report RSS after")
	only     = flag.String("only", "", "comma-separated scenario names to run (default all)")
	dbs      = flag.String("db", "", "sqlite, postgres, mysql, or a comma-separated list (default: sqlite, and postgres when a PostgreSQL URL is set)")
	profile  = flag.String("pprof", "", "write CPU profiles of each scenario to this directory (builds with -tags pprof)")
)

type result struct {
	db, name      string
	rps           float64
	p50, p99      time.Duration
	requests      int64
	errors        int64
	peakRSS       int64 // KiB
	note          string
	floorRelative bool
	cpu           time.Duration // the server's CPU time (user and system) per request
}

// measured is the process whose CPU time wrkFor and goLoad charge to their
// requests: the floor or the server under test. CPU per request is steadier
// than requests per second on a shared machine: another job's load slows
// the run but adds little to what each request costs.
var measured int

// cpuTime is the user and system time pid has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

func perRequest(cpu time.Duration, r result) time.Duration {
	if r.requests == 0 {
		return 0
	}
	return cpu / time.Duration(r.requests)
}

func main() {
	flag.Parse()
	if _, err := exec.LookPath("wrk"); err != nil {
		fail("wrk not found: apt-get install wrk")
	}
	root := repoRoot()
	tmp, err := os.MkdirTemp("", "oauth2-api-bench-")
	check(err)
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "oauth2-api")
	args := []string{"build", "-trimpath", "-o", bin}
	if *profile != "" {
		args = append(args, "-tags", "pprof")
		check(os.MkdirAll(*profile, 0o755))
	}
	run(root, "go", append(args, ".")...)
	floorBin := filepath.Join(tmp, "floor")
	run(root, "go", "build", "-o", floorBin, "./bench/floor")

	fmt.Printf("oauth2-api load harness: %s per scenario, %d connections, wrk -t%d, GOMAXPROCS %d, %s\n",
		*duration, *conns, *threads, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))

	capacity := argonCapacity()
	fmt.Printf("argon2id capacity (m=%d KiB, t=%d, p=%d) on %d cores, nothing else running: %.1f hashes/s\n",
		auth.DefaultArgon2.Memory, auth.DefaultArgon2.Time, auth.DefaultArgon2.Threads, runtime.NumCPU(), capacity)
	var results []result
	floor := runFloor(tmp, floorBin)
	results = append(results, floor)

	pg := os.Getenv("BENCH_POSTGRES_URL")
	if pg == "" {
		pg = os.Getenv("TEST_POSTGRES_URL")
	}
	my := os.Getenv("BENCH_MYSQL_URL")
	if my == "" {
		my = os.Getenv("TEST_MYSQL_URL")
	}
	targets := []string{"sqlite"}
	switch {
	case *dbs != "":
		targets = strings.Split(*dbs, ",")
	case pg != "":
		targets = append(targets, "postgres")
	}
	for _, db := range targets {
		url, server := filepath.Join(tmp, "bench-"+strconv.Itoa(len(results))+".db"), bin
		switch db {
		case "sqlite":
		case "postgres":
			if pg == "" {
				fail("-db postgres needs BENCH_POSTGRES_URL or TEST_POSTGRES_URL")
			}
			var drop func()
			url, drop = freshSchema(pg)
			defer drop()
		case "mysql":
			if my == "" {
				fail("-db mysql needs BENCH_MYSQL_URL or TEST_MYSQL_URL")
			}
			// oauth2-api-mysql, as make build-mysql builds it: the root
			// module, this harness's, has no MySQL driver.
			server = filepath.Join(tmp, "oauth2-api-mysql")
			run(filepath.Join(root, "mysql"), "go", "build", "-overlay=overlay.json", "-trimpath", "-o", server, "oauth2-api")
			var drop func()
			url, drop = freshDatabase(my)
			defer drop()
		default:
			fail("-db: unknown database " + db)
		}
		results = append(results, runServer(tmp, server, db, url, capacity)...)
	}
	printTable(results, floor.rps)
}

func wanted(name string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), name)
}

// --- the floor --------------------------------------------------------------

func runFloor(tmp, bin string) result {
	port := freePort()
	cmd := exec.Command(bin, "127.0.0.1:"+strconv.Itoa(port))
	check(cmd.Start())
	defer stop(cmd)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitFor(base+"/oauth2/token", "POST")
	script := wrkScript(tmp, "floor", "POST", "grant_type=client_credentials", map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic Zmxvb3I6Zmxvb3I=",
	}, 200, `"access_token"`)
	measured = cmd.Process.Pid
	r := wrk(base+"/oauth2/token", script)
	r.db, r.name = "-", "floor (bare net/http)"
	r.peakRSS = peakRSS(cmd.Process.Pid)
	return r
}

// --- the server -------------------------------------------------------------

type server struct {
	cmd     *exec.Cmd
	base    string
	env     []string
	bin     string
	logFile *os.File
	ccRate  float64 // the client_credentials scenario's req/s, once run
}

func runServer(tmp, bin, db, dbURL string, argon float64) []result {
	port := freePort()
	env := append(os.Environ(),
		"PORT="+strconv.Itoa(port), "DATABASE_URL="+dbURL, "APP_MODE=release",
		"JWT_SECRET=bench-secret-bench-secret-bench-secret-0123456789",
		"ISSUER=https://auth.bench.example",
		"RATE_LIMIT_REQUESTS=1000000000", "RATE_LIMIT_WINDOW=1",
		"LOGIN_RATE_LIMIT=1000000000/s", "LOGIN_RATE_BURST=1000000000",
		"LOGIN_MAX_FAILURES=1000000", "CLIENT_RATE_LIMIT=1000000000/s", "CLIENT_RATE_BURST=1000000000", "DB_MAX_IDLE_CONNS=64", "DB_MAX_OPEN_CONNS=64", "PPROF_ADDR=127.0.0.1:"+strconv.Itoa(freePort()),
	)
	s := &server{base: "http://127.0.0.1:" + strconv.Itoa(port), env: env, bin: bin}
	cli := func(stdin string, args ...string) []byte {
		c := exec.Command(bin, args...)
		c.Env, c.Stdin = env, strings.NewReader(stdin)
		out, err := c.CombinedOutput()
		if err != nil {
			fail(fmt.Sprintf("%v: %v: %s", args, err, out))
		}
		return out
	}
	cli("", "migrate")
	var cc struct{ ClientID, ClientSecret string }
	out := cli("", "client", "create", "--name", "bench", "--grant-type", "client_credentials", "--scope", "read")
	check(json.Unmarshal(out, &struct {
		ID     *string `json:"client_id"`
		Secret *string `json:"client_secret"`
	}{&cc.ClientID, &cc.ClientSecret}))
	cli("bench password 1\n", "user", "create", "--email", "bench@example.com", "--username", "bench")

	lf, err := os.Create(filepath.Join(tmp, db+"-server.log"))
	check(err)
	s.logFile = lf
	s.cmd = exec.Command(bin)
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = env, lf, lf
	start := time.Now()
	check(s.cmd.Start())
	defer stop(s.cmd)
	startup := waitFor(s.base+"/health", "GET").Sub(start)
	measured = s.cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	idle := rss(s.cmd.Process.Pid)

	var out2 []result
	add := func(r result) {
		r.db = db
		r.peakRSS = peakRSS(s.cmd.Process.Pid)
		r.floorRelative = true
		out2 = append(out2, r)
		fmt.Printf("  %-8s %-28s %9.0f req/s  p50 %-8s p99 %-8s errors %d  %s\n", db, r.name, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errors, r.note)
	}
	add(result{name: "startup to healthy /health", note: fmt.Sprintf("%s; idle RSS %.1f MiB", startup.Round(100*time.Microsecond), float64(idle)/1024)})

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(cc.ClientID)+":"+url.QueryEscape(cc.ClientSecret)))
	formHdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic}
	if wanted("client_credentials") {
		r := s.profiled(tmp, db+"-client_credentials", func() result {
			return wrk(s.base+"/oauth2/token", wrkScript(tmp, "cc", "POST", "grant_type=client_credentials", formHdr, 200, `"access_token":"ey`))
		})
		r.name = "client_credentials"
		s.ccRate = r.rps
		add(r)
	}
	if wanted("dpop") {
		r := s.profiled(tmp, db+"-dpop", s.dpopLoad(tmp, formHdr))
		r.name = "client_credentials + DPoP (ES256)"
		r.note = "a fresh proof per request: parse, signature, one replay-cache write"
		add(r)
	}
	// One access token for introspection, one REST session for the profile.
	at := s.clientToken(basic)
	if wanted("introspection") {
		r := s.profiled(tmp, db+"-introspection", func() result {
			return wrk(s.base+"/oauth2/introspect", wrkScript(tmp, "intro", "POST", "token="+at, formHdr, 200, `"active":true`))
		})
		r.name = "introspection (valid token)"
		add(r)
		// Revocation still honoured: revoke and check the same request now says inactive.
		s.post("/oauth2/revoke", "token="+at, formHdr)
		if body := s.post("/oauth2/introspect", "token="+at, formHdr); !strings.Contains(body, `"active":false`) {
			fail("revoked token still active in introspection: " + body)
		}
	}
	access, _ := s.login()
	if wanted("profile") {
		r := s.profiled(tmp, db+"-profile", func() result {
			return wrk(s.base+"/api/v1/profile", wrkScript(tmp, "profile", "GET", "", map[string]string{"Authorization": "Bearer " + access}, 200, `"username":"bench"`))
		})
		r.name = "GET /api/v1/profile"
		add(r)
	}
	if wanted("refresh") {
		r := s.profiled(tmp, db+"-refresh", func() result { return s.refreshLoad() })
		r.name = "refresh rotation"
		add(r)
		add(s.doubleSpend())
	}
	if wanted("login") {
		r := s.profiled(tmp, db+"-login", func() result { return s.loginLoad() })
		r.name = "password login"
		r.note = fmt.Sprintf("%.0f%% of the argon2id capacity (%.1f/s)", 100*r.rps/argon, argon)
		add(r)
	}
	if *million && wanted("million") {
		add(s.millionTokens(tmp, formHdr))
	}
	return out2
}

// dpopLoad issues client_credentials tokens bound to a DPoP key (RFC 9449),
// each request with a proof of its own (one key, a new jti): the server
// parses and verifies the proof and spends its jti in the shared replay
// cache, one database write per request. The proofs are signed before the
// run, so the driver's cost is wrk's alone; a proof is never sent twice
// (a replay would be refused and counted as an error). It signs, then
// returns the run.
func (s *server) dpopLoad(tmp string, hdr map[string]string) func() result {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	enc := base64.RawURLEncoding
	pub, err := priv.PublicKey.Bytes() // 0x04, x, y
	check(err)
	x, y := pub[1:33], pub[33:]
	header := enc.EncodeToString([]byte(fmt.Sprintf(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":%q,"y":%q}}`,
		enc.EncodeToString(x), enc.EncodeToString(y))))
	// Enough proofs for the run at 1.5 times the plain client_credentials
	// rate of this run (at least 5,000/s): DPoP only adds work. Signed on
	// every core, written one per line.
	sign := func(path string, n int) {
		lines := make([]string, n)
		var wg sync.WaitGroup
		workers := runtime.NumCPU()
		iat := time.Now().Unix()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					claims := fmt.Sprintf(`{"jti":"bench-%d-%d","htm":"POST","htu":"https://auth.bench.example/oauth2/token","iat":%d}`, time.Now().UnixNano(), i, iat)
					input := header + "." + enc.EncodeToString([]byte(claims))
					d := sha256.Sum256([]byte(input))
					r, sg, err := ecdsa.Sign(rand.Reader, priv, d[:])
					check(err)
					sig := make([]byte, 64)
					r.FillBytes(sig[:32])
					sg.FillBytes(sig[32:])
					lines[i] = input + "." + enc.EncodeToString(sig)
				}
			}()
		}
		wg.Wait()
		check(os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	}
	script := func(name, proofs string) string {
		p := wrkScript(tmp, name, "POST", "grant_type=client_credentials", hdr, 200, `"token_type":"DPoP"`)
		b, err := os.ReadFile(p)
		check(err)
		// Each wrk thread reads its share of the proofs (line i goes to
		// thread i mod threads) and sends them in order.
		dyn := fmt.Sprintf(`
local next_id = 0
local setup_plain = setup
function setup(thread) thread:set("id", next_id); next_id = next_id + 1; setup_plain(thread) end
local init_plain = init
function init(args)
  init_plain(args)
  proofs, n = {}, 0
  local i = 0
  for line in io.lines(%q) do
    if i %% %d == id then proofs[#proofs + 1] = line end
    i = i + 1
  end
end
function request()
  n = n + 1
  if n > #proofs then n = 1 end -- out of proofs: a replay, refused and counted
  wrk.headers["DPoP"] = proofs[n]
  return wrk.format()
end
`, proofs, *threads)
		check(os.WriteFile(p, append(b, dyn...), 0o644))
		return p
	}
	warm, main := filepath.Join(tmp, "dpop-warm.txt"), filepath.Join(tmp, "dpop-run.txt")
	rate := max(1.5*s.ccRate, 5000)
	sign(warm, int(rate))
	sign(main, int(rate*duration.Seconds()))
	return func() result {
		wrkFor(s.base+"/oauth2/token", script("dpop-warm", warm), time.Second)
		return wrkFor(s.base+"/oauth2/token", script("dpop", main), *duration)
	}
}

// profiled runs f while taking a CPU profile of the server when -pprof is set.
func (s *server) profiled(tmp, name string, f func() result) result {
	if *profile == "" {
		return f()
	}
	addr := ""
	for _, e := range s.env {
		if v, ok := strings.CutPrefix(e, "PPROF_ADDR="); ok {
			addr = v
		}
	}
	done := make(chan []byte, 1)
	secs := int((*duration - time.Second) / time.Second)
	go func() {
		time.Sleep(500 * time.Millisecond)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(secs, 1)))
		if err != nil {
			done <- nil
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- b
	}()
	r := f()
	if b := <-done; b != nil {
		os.WriteFile(filepath.Join(*profile, name+".pprof"), b, 0o644)
	}
	return r
}

func (s *server) post(path, body string, hdr map[string]string) string {
	req, _ := http.NewRequest("POST", s.base+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (s *server) clientToken(basic string) string {
	var t struct {
		AccessToken string `json:"access_token"`
	}
	check(json.Unmarshal([]byte(s.post("/oauth2/token", "grant_type=client_credentials",
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic})), &t))
	if t.AccessToken == "" {
		fail("no client_credentials token")
	}
	return t.AccessToken
}

func (s *server) login() (access, refresh string) {
	var t struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	body := s.post("/api/v1/auth/login", `{"login":"bench","password":"bench password 1"}`, map[string]string{"Content-Type": "application/json"})
	check(json.Unmarshal([]byte(body), &t))
	if t.RefreshToken == "" {
		fail("login failed: " + body)
	}
	return t.AccessToken, t.RefreshToken
}

// goLoad runs n workers for the duration; each calls step until it fails
// the run's time. It returns throughput, latencies and errors.
func goLoad(workers int, step func(c *http.Client, w int) error) result {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var reqs, errs atomic.Int64
	lat := make([][]time.Duration, workers)
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime(measured)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t := time.Now()
				err := step(client, w)
				lat[w] = append(lat[w], time.Since(t))
				reqs.Add(1)
				if err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := result{requests: reqs.Load(), errors: errs.Load(), rps: float64(reqs.Load()-errs.Load()) / elapsed.Seconds()}
	r.cpu = perRequest(cpuTime(measured)-cpu0, r)
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

func doJSON(c *http.Client, url, body, bearer string) (int, map[string]any, error) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
}

// refreshLoad: every worker owns one session and rotates its refresh token
// as fast as it can; a response must be 200 with a new, different token.
func (s *server) refreshLoad() result {
	tokens := make([]string, *conns)
	for i := range tokens {
		_, tokens[i] = s.login()
	}
	return goLoad(*conns, func(c *http.Client, w int) error {
		code, m, err := doJSON(c, s.base+"/api/v1/auth/refresh", `{"refresh_token":"`+tokens[w]+`"}`, "")
		if err != nil {
			return err
		}
		next, _ := m["refresh_token"].(string)
		if code != 200 || next == "" || next == tokens[w] || m["access_token"] == nil {
			return fmt.Errorf("refresh: %d %v", code, m)
		}
		tokens[w] = next
		return nil
	})
}

// doubleSpend: 32 clients present the same refresh token at once; exactly
// one may win (the others see reuse, which revokes the family).
func (s *server) doubleSpend() result {
	r := result{name: "double spend (32 × 1 token)"}
	rounds, bad := 20, 0
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns}}
	for range rounds {
		_, rt := s.login()
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range *conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, _, err := doJSON(client, s.base+"/api/v1/auth/refresh", `{"refresh_token":"`+rt+`"}`, ""); err == nil && code == 200 {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			bad++
		}
	}
	r.requests, r.errors = int64(rounds**conns), int64(bad)
	r.note = fmt.Sprintf("%d rounds, %d with other than exactly one winner", rounds, bad)
	return r
}

// loginLoad: workers log in with the right password; 200 with a token pair.
func (s *server) loginLoad() result {
	r := goLoad(*conns, func(c *http.Client, _ int) error {
		code, m, err := doJSON(c, s.base+"/api/v1/auth/login", `{"login":"bench","password":"bench password 1"}`, "")
		if err != nil {
			return err
		}
		if code != 200 || m["refresh_token"] == nil {
			return fmt.Errorf("login: %d", code)
		}
		return nil
	})
	return r
}

// argonCapacity is how many password hashes per second this machine can
// compute with the server's parameters, one per core, for three seconds.
func argonCapacity() float64 {
	p := auth.DefaultArgon2
	var n atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			salt := make([]byte, p.SaltLen)
			for time.Now().Before(deadline) {
				argon2.IDKey([]byte("bench password 1"), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// millionTokens issues at least one million client_credentials tokens and
// reports the RSS afterwards.
func (s *server) millionTokens(tmp string, hdr map[string]string) result {
	script := wrkScript(tmp, "million", "POST", "grant_type=client_credentials", hdr, 200, `"access_token":"ey`)
	var total int64
	before := rss(s.cmd.Process.Pid)
	for total < 1_000_000 {
		d := *duration
		r := wrkFor(s.base+"/oauth2/token", script, d)
		total += r.requests
		if r.errors > 0 {
			fail("errors while issuing a million tokens")
		}
	}
	after := rss(s.cmd.Process.Pid)
	return result{name: "RSS after 1M tokens", requests: total,
		note: fmt.Sprintf("%d tokens; RSS %.1f MiB before, %.1f MiB after", total, float64(before)/1024, float64(after)/1024)}
}

// --- wrk --------------------------------------------------------------------

// wrkScript writes a Lua script that sends one fixed request and counts as
// an error every response whose status is not want or whose body lacks the
// literal pattern.
func wrkScript(dir, name, method, body string, hdr map[string]string, want int, pattern string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %q\n", method)
	if body != "" {
		fmt.Fprintf(&b, "wrk.body = %q\n", body)
	}
	for k, v := range hdr {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", k, v)
	}
	fmt.Fprintf(&b, `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= %d or not string.find(body, %q, 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("CHECK_ERRORS %%d\n", total))
end
`, want, pattern)
	p := filepath.Join(dir, name+".lua")
	check(os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

// wrk measures one scenario after a one-second warm-up that is not counted
// (new connections, PostgreSQL backends and their caches, prepared
// statements: the cost of the first requests is not the steady state).
func wrk(url, script string) result {
	wrkFor(url, script, time.Second)
	return wrkFor(url, script, *duration)
}

var (
	reRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reTotal = regexp.MustCompile(`(\d+) requests in`)
	reP     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	reCheck = regexp.MustCompile(`CHECK_ERRORS (\d+)`)
	reSock  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrkFor(url, script string, d time.Duration) result {
	cpu0 := cpuTime(measured)
	out, err := exec.Command("wrk", "-t"+strconv.Itoa(*threads), "-c"+strconv.Itoa(*conns), "-d"+d.String(),
		"--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		fail(fmt.Sprintf("wrk: %v: %s", err, out))
	}
	s := string(out)
	var r result
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reTotal.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range reP.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := reCheck.FindStringSubmatch(s); m != nil {
		r.errors, _ = strconv.ParseInt(m[1], 10, 64)
	} else {
		fail("wrk script did not report its checks:\n" + s)
	}
	if m := reSock.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.errors += n
		}
	}
	r.cpu = perRequest(cpuTime(measured)-cpu0, r)
	// Non-2xx responses are already counted by the script's status check.
	if r.errors > 0 && r.requests > 0 {
		r.rps *= float64(r.requests-min(r.errors, r.requests)) / float64(r.requests) // errors are not throughput
	}
	return r
}

// --- reporting --------------------------------------------------------------

func printTable(rs []result, floor float64) {
	fmt.Println()
	fmt.Println("| db | scenario | req/s | p50 | p99 | errors | vs floor | server CPU/req | peak RSS | note |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rs {
		ratio := "-"
		if r.floorRelative && r.rps > 0 && floor > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*r.rps/floor)
		}
		rps, p50, p99, cpu := "-", "-", "-", "-"
		if r.cpu > 0 {
			cpu = r.cpu.Round(time.Microsecond).String()
		}
		if r.rps > 0 {
			rps = fmt.Sprintf("%.0f", r.rps)
			p50, p99 = r.p50.Round(10*time.Microsecond).String(), r.p99.Round(10*time.Microsecond).String()
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %d | %s | %s | %.1f MiB | %s |\n", r.db, r.name, rps, p50, p99, r.errors, ratio, cpu, float64(r.peakRSS)/1024, r.note)
	}
}

// --- plumbing ---------------------------------------------------------------

func repoRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	check(err)
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func run(dir, name string, args ...string) {
	c := exec.Command(name, args...)
	c.Dir, c.Stdout, c.Stderr = dir, os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		fail(fmt.Sprintf("%s %v: %v", name, args, err))
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls url until it answers (any status for POST, 200 for GET) and
// returns the time it first did.
func waitFor(url, method string) time.Time {
	deadline := time.Now().Add(20 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if method != "GET" || resp.StatusCode == 200 {
				return time.Now()
			}
		}
		time.Sleep(time.Millisecond)
	}
	fail("timeout waiting for " + url)
	return time.Time{}
}

func stop(c *exec.Cmd) {
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.Process.Kill()
	}
}

func procStatus(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func rss(pid int) int64     { return procStatus(pid, "VmRSS") }
func peakRSS(pid int) int64 { return procStatus(pid, "VmHWM") }

// freshSchema creates an empty schema and returns a URL using it, and a
// func that drops it.
func freshSchema(base string) (string, func()) {
	db, err := sql.Open("pgx", base)
	check(err)
	defer db.Close()
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	_, err = db.Exec("CREATE SCHEMA " + schema)
	check(err)
	drop := func() {
		if db, err := sql.Open("pgx", base); err == nil {
			db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	}
	u, err := url.Parse(base)
	check(err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop
}

// freshDatabase creates an empty database beside the one the MySQL URL
// names, with the mariadb (or mysql) client, and returns its URL.
func freshDatabase(base string) (string, func()) {
	u, err := url.Parse(base)
	check(err)
	client, err := exec.LookPath("mariadb")
	if err != nil {
		client, err = exec.LookPath("mysql")
	}
	check(err)
	name := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	admin := func(stmt string) error {
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		c := exec.Command(client, "--protocol=tcp", "-h", u.Hostname(), "-P", port, "-u", u.User.Username(), "-e", stmt)
		pass, _ := u.User.Password()
		c.Env = append(os.Environ(), "MYSQL_PWD="+pass)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", stmt, err, out)
		}
		return nil
	}
	check(admin("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"))
	u.Path = "/" + name
	return u.String(), func() { admin("DROP DATABASE " + name) }
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "load:", msg)
	os.Exit(1)
}
