package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"oauth2-api/auth"
	"oauth2-api/auth/smtptest"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const testJWTSecret = "main-test-secret-0123456789abcdef-xyz"

// testEnv returns a getenv for a fresh SQLite file in a temporary directory.
func testEnv(t testing.TB, extra ...string) map[string]string {
	t.Helper()
	m := map[string]string{
		"DATABASE_URL": filepath.Join(t.TempDir(), "oauth.db"),
		"JWT_SECRET":   testJWTSecret,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// runCmd runs the program with args and returns its output.
func runCmd(t testing.TB, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, envOf(env), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// freePort returns a TCP port on which nothing listens.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestRunVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		out, _, err := runCmd(t, nil, "", arg)
		if err != nil || out != "oauth2-api "+version+"\n" {
			t.Errorf("run(%s) = %q, %v; want the version", arg, out, err)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	env := testEnv(t)
	for _, args := range [][]string{
		{"frobnicate"},
		{"serve", "extra"},
		{"migrate", "sideways"},
		{"healthcheck", "junk"},
		{"audit", "verify", "--since", "2026-01-01T00:00:00Z"},
		{"audit", "list", "--head", "abc"},
		{"audit", "list", "--action", "login_failure"}, // login.failure: no events would read as none happened
		{"audit", "verify", "--head", "ABC"},           // not a hash: it was reported as a chain cut after it
		{"audit", "verify", "--head", strings.Repeat("AB", 32)},
		{"user"},
		{"user", "delete"},
		{"user", "create", "--bogus"},
		{"user", "create", "--email", "a@example.com", "--username", "ann", "hunter2hunter2"}, // a password in argv
	} {
		_, _, err := runCmd(t, env, "", args...)
		var u usageError
		if err == nil || !errors.As(err, &u) || exitCode(err) != 2 {
			t.Errorf("run(%q) = %v (exit %d); want a usage error, exit 2", args, err, exitCode(err))
		}
	}
	// Every bad invocation is one line on stderr (the error), exit 2: a
	// client with 41 KB of redirect URIs too (on MySQL it was the
	// database's error, exit 1), and nothing is written.
	big := []string{"client", "create", "--name", "big"}
	for i := range 40 {
		big = append(big, "--redirect-uri", fmt.Sprintf("https://preview-%d.app.example/cb/%s", i, strings.Repeat("p", 1000)))
	}
	for _, args := range [][]string{
		{"frobnicate"}, {"client"}, {"client", "create", "--no-such-flag"}, {"client", "frob"}, {"client", "list", "x"},
		{"client", "delete"}, {"keys"}, {"keys", "generate"}, {"user", "create", "--bogus"}, {"migrate", "x"}, big,
		{"audit", "list", "--bogus"}, {"audit", "list", "--limit", "0"}, {"audit", "list", "extra"}, // three lines of usage, once
	} {
		_, _, err := runCmd(t, env, "", args...)
		if exitCode(err) != 2 || err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("run(%.120q) = %.200q (exit %d); want one line, exit 2", strings.Join(args, " "), err, exitCode(err))
		}
	}
	if out, _, err := runCmd(t, env, "", "client", "list"); out != "" || err != nil {
		t.Errorf("client list after the refusals = %.200q, %v; want nothing", out, err)
	}
	// Asking for help is not an error: the usage on stdout, exit 0.
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"client", "--help"}, {"client", "create", "-h"},
		{"user", "create", "--help"}, {"keys", "generate", "-h"}, {"migrate", "--help"}} {
		out, _, err := runCmd(t, env, "", args...)
		if err != nil || !strings.HasPrefix(out, "usage:") {
			t.Errorf("run(%q) = %q, %v; want the usage and no error", args, out, err)
		}
	}
	// A bad configuration is bad input too.
	_, _, err := runCmd(t, map[string]string{"PORT": "abc"}, "", "migrate")
	if exitCode(err) != 2 || !strings.HasPrefix(err.Error(), "PORT: ") {
		t.Errorf("run(migrate) with PORT=abc = %v (exit %d); want exit 2 naming PORT", err, exitCode(err))
	}
	if exitCode(errors.New("database down")) != 1 {
		t.Error("exitCode(plain error) != 1")
	}
	// The unknown command is clipped, not echoed whole.
	_, _, err = runCmd(t, env, "", strings.Repeat("z", 500))
	if err == nil || strings.Contains(err.Error(), strings.Repeat("z", 100)) {
		t.Errorf("run(long unknown command) = %.200v; want a clipped error", err)
	}
}

// What user create prints is JSON whatever the address holds: Go's %q
// would write this tag character (accepted in a UTF-8 local part) as
// \U000e0001, which no JSON parser reads.
func TestRunUserCreatePrintsJSON(t *testing.T) {
	env := testEnv(t)
	out, _, err := runCmd(t, env, "Sunny-Day-Password-42\n", "user", "create", "--email", "b\U000e0001ob@example.com", "--username", "bob")
	if err != nil {
		t.Fatalf("user create (tag character) = %v", err)
	}
	var bob struct{ Email, Username string }
	if err := json.Unmarshal([]byte(out), &bob); err != nil || bob.Email != "b\U000e0001ob@example.com" || bob.Username != "bob" {
		t.Fatalf("user create printed %q (%v); want JSON with the address", out, err)
	}
}

func TestRunUserCreate(t *testing.T) {
	env := testEnv(t)
	const password = "Sunny-Day-Password-42"
	out, _, err := runCmd(t, env, password+"\n", "user", "create", "--email", "Ann@Example.com", "--username", "ann", "--role", "admin")
	if err != nil {
		t.Fatalf("user create = %v", err)
	}
	var got struct {
		ID       int64  `json:"id"`
		Email    string `json:"email"`
		Username string `json:"username"`
		Role     string `json:"role"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.ID == 0 || got.Email != "ann@example.com" || got.Username != "ann" || got.Role != "admin" {
		t.Fatalf("user create printed %q (%v)", out, err)
	}
	if strings.Contains(out, password) || strings.Contains(out, "argon2") {
		t.Fatalf("user create printed a secret: %q", out)
	}

	// The user is in the database, with a hash of the password from stdin.
	ctx := context.Background()
	db, err := store.Open(ctx, env["DATABASE_URL"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.UserByUsername(ctx, "ann")
	if err != nil || u.ID != got.ID || u.Role != store.RoleAdmin {
		t.Fatalf("UserByUsername(ann) = %+v, %v", u, err)
	}
	ok, _, err := auth.NewPasswords(auth.DefaultArgon2, 1, time.Minute).Verify(ctx, password, u.PasswordHash)
	if err != nil || !ok {
		t.Fatalf("the stored hash does not verify the password from stdin: %v, %v", ok, err)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"bad email", password, []string{"--email", "not-an-email", "--username", "bob"}},
		{"bad username", password, []string{"--email", "bob@example.com", "--username", "b"}},
		{"bad role", password, []string{"--email", "bob@example.com", "--username", "bob", "--role", "root"}},
		{"short password", "short\n", []string{"--email", "bob@example.com", "--username", "bob"}},
		// Latin-1, as a terminal not in UTF-8 sends it: no login could ever
		// send it (a JSON or form body must be UTF-8).
		{"password not UTF-8", "p\xe4sswort1\n", []string{"--email", "bob@example.com", "--username", "bob"}},
		{"no password", "", []string{"--email", "bob@example.com", "--username", "bob"}},
		{"duplicate", password, []string{"--email", "ANN@example.com", "--username", "ann2"}},
	} {
		_, _, err := runCmd(t, env, tc.stdin, append([]string{"user", "create"}, tc.args...)...)
		if exitCode(err) != 2 {
			t.Errorf("%s: user create = %v (exit %d); want exit 2", tc.name, err, exitCode(err))
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q is not one line", tc.name, err)
		}
	}
	// Nothing half-written: only ann exists.
	users, total, err := db.ListUsers(ctx, 100, 0)
	if err != nil || total != 1 || len(users) != 1 {
		t.Errorf("after the failed creates: %d users (%v); want 1", total, err)
	}
}

// user create --email-verified stores the address as verified (the
// operator vouches for it); without the flag it is not.
func TestRunUserCreateEmailVerified(t *testing.T) {
	env := testEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"ann", nil, false},
		{"vic", []string{"--email-verified"}, true},
	} {
		args := append([]string{"user", "create", "--email", tc.name + "@example.com", "--username", tc.name}, tc.args...)
		out, _, err := runCmd(t, env, "Sunny-Day-Password-42\n", args...)
		if err != nil {
			t.Fatalf("user create %v = %v", tc.args, err)
		}
		var got struct {
			EmailVerified *bool `json:"email_verified"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.EmailVerified == nil || *got.EmailVerified != tc.want {
			t.Fatalf("user create %v printed %q; want email_verified %v", tc.args, out, tc.want)
		}
		db, err := store.Open(context.Background(), env["DATABASE_URL"], store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		u, err := db.UserByUsername(context.Background(), tc.name)
		db.Close()
		if err != nil || u.EmailVerified != tc.want {
			t.Fatalf("user %s = %+v, %v; want email_verified %v", tc.name, u, err, tc.want)
		}
	}
	if _, _, err := runCmd(t, env, "", "user", "create", "--email-verified=maybe"); exitCode(err) != 2 {
		t.Fatalf("--email-verified=maybe = %v; want exit 2", err)
	}
}

// client create --resource-server [--resource URI] registers a client that
// may introspect the access tokens for its resource (one of RESOURCES);
// client list shows both. A resource without --resource-server, or one not
// in RESOURCES, is a usage error.
func TestRunClientResourceServer(t *testing.T) {
	env := testEnv(t)
	env["RESOURCES"] = "https://api-a.example.com,https://api-b.example.com"
	out, _, err := runCmd(t, env, "", "client", "create", "--name", "API", "--grant-type", "client_credentials", "--resource-server", "--resource", "https://api-b.example.com")
	var c auth.ClientJSON
	if err != nil || json.Unmarshal([]byte(out), &c) != nil || !c.ResourceServer || c.Resource != "https://api-b.example.com" {
		t.Fatalf("client create --resource-server --resource B = %q, %v", out, err)
	}
	runCmd(t, env, "", "client", "create", "--name", "plain", "--grant-type", "client_credentials")
	out, _, err = runCmd(t, env, "", "client", "list")
	if err != nil || !strings.Contains(out, `"name":"API"`) || strings.Count(out, `"resource_server":true`) != 1 || strings.Count(out, `"resource_server":false`) != 1 ||
		strings.Count(out, `"resource":"https://api-b.example.com"`) != 1 {
		t.Fatalf("client list = %q, %v; want one resource server, of B, and one not", out, err)
	}
	// One made before it could name its resource is set to it.
	out, _, err = runCmd(t, env, "", "client", "create", "--name", "old", "--grant-type", "client_credentials", "--resource-server")
	if err != nil || json.Unmarshal([]byte(out), &c) != nil {
		t.Fatal(out, err)
	}
	if _, _, err := runCmd(t, env, "", "client", "set-resource", c.ClientID, "https://api-a.example.com"); err != nil {
		t.Fatalf("client set-resource: %v", err)
	}
	if out, _, _ = runCmd(t, env, "", "client", "list"); !strings.Contains(out, `"resource":"https://api-a.example.com"`) {
		t.Fatalf("client list after set-resource = %q; want the resource of A", out)
	}
	for name, args := range map[string][]string{"not in RESOURCES": {c.ClientID, "https://api-c.example.com"}, "no resource server": {"nobody", "https://api-a.example.com"}, "no URI": {c.ClientID}} {
		if _, _, err := runCmd(t, env, "", append([]string{"client", "set-resource"}, args...)...); exitCode(err) != 2 {
			t.Errorf("client set-resource, %s: %v; want exit 2", name, err)
		}
	}
	for name, args := range map[string][]string{
		"a public resource server":             {"--public", "--redirect-uri", "https://a.example/cb", "--resource-server"},
		"a resource without --resource-server": {"--grant-type", "client_credentials", "--resource", "https://api-a.example.com"},
		"a resource not in RESOURCES":          {"--grant-type", "client_credentials", "--resource-server", "--resource", "https://api-c.example.com"},
	} {
		if _, _, err := runCmd(t, env, "", append([]string{"client", "create", "--name", "x"}, args...)...); exitCode(err) != 2 {
			t.Errorf("%s: %v; want exit 2", name, err)
		}
	}
}

// client list prints every client, oldest first, though the store answers
// a page at a time (100).
func TestRunClientListPages(t *testing.T) {
	env := testEnv(t)
	runCmd(t, env, "", "migrate")
	db, err := store.Open(context.Background(), env["DATABASE_URL"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 201 {
		c := &store.Client{ID: fmt.Sprintf("c%03d", i), Name: "x", GrantTypes: []string{"client_credentials"}}
		if err := db.CreateClient(context.Background(), 0, c, time.Unix(int64(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	out, _, err := runCmd(t, env, "", "client", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if err != nil || len(lines) != 201 || !strings.Contains(lines[0], `"c000"`) || !strings.Contains(lines[200], `"c200"`) {
		t.Fatalf("client list = %d lines, %v; want c000 to c200", len(lines), err)
	}
}

func TestRunMigrate(t *testing.T) {
	env := testEnv(t)
	out, _, err := runCmd(t, env, "", "migrate", "status")
	if err != nil {
		t.Fatalf("migrate status on an empty database = %v", err)
	}
	if strings.Contains(out, "applied") || !strings.Contains(out, "pending") {
		t.Fatalf("migrate status before migrate = %q; want every version pending", out)
	}
	out, _, err = runCmd(t, env, "", "migrate")
	if err != nil {
		t.Fatalf("migrate = %v", err)
	}
	var applied []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		v, ok := strings.CutPrefix(line, "applied ")
		if !ok {
			t.Fatalf("migrate printed %q", line)
		}
		applied = append(applied, v)
	}
	if len(applied) < 2 || applied[0] != "0001_users" {
		t.Fatalf("migrate applied %q; want 0001_users first", applied)
	}

	out, _, err = runCmd(t, env, "", "migrate", "status")
	if err != nil {
		t.Fatalf("migrate status = %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(applied) {
		t.Fatalf("migrate status lists %d versions; migrate applied %d:\n%s", len(lines), len(applied), out)
	}
	for i, line := range lines {
		v, state, _ := strings.Cut(line, "\t")
		if v != applied[i] || !strings.HasPrefix(state, "applied ") {
			t.Errorf("status line %q; want %s applied", line, applied[i])
		}
		if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(state, "applied ")); err != nil {
			t.Errorf("status line %q: time %v", line, err)
		}
	}

	out, _, err = runCmd(t, env, "", "migrate")
	if err != nil || strings.TrimSpace(out) != "nothing to apply" {
		t.Errorf("second migrate = %q, %v; want nothing to apply", out, err)
	}
}

// A binary older than the database's migrations (a rollback, or an old
// instance during a rolling upgrade) works on, but says so: `migrate
// status` lists what it does not know, and `migrate` and `serve` log one
// WARN naming it. It printed "nothing to apply" and started silently.
func TestRunMigrateNewerDatabase(t *testing.T) {
	env := testEnv(t)
	if _, _, err := runCmd(t, env, "", "migrate"); err != nil {
		t.Fatal(err)
	}
	raw := storetest.Raw(t, store.SQLite, env["DATABASE_URL"])
	if _, err := raw.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES ('9999_future', 1800000000)`); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, env, "", "migrate", "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if want := "9999_future\tapplied " + time.Unix(1800000000, 0).Format(time.RFC3339) + ", unknown to this build (a newer release migrated this database)"; err != nil || lines[len(lines)-1] != want {
		t.Errorf("migrate status = %v, last line %q; want %q", err, lines[len(lines)-1], want)
	}
	const warn = `"level":"WARN","msg":"database migrated by a newer release: migrations unknown to this build","versions":"9999_future"`
	if out, _, err := runCmd(t, env, "", "migrate"); err != nil || !strings.HasPrefix(out, "nothing to apply\n") || strings.Count(out, warn) != 1 {
		t.Errorf("migrate = %v:\n%s\nwant nothing to apply and one line with %s", err, out, warn)
	}
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if logs := serveOnce(t, cfg); strings.Count(logs, warn) != 1 {
		t.Errorf("serve logged:\n%s\nwant one line with %s", logs, warn)
	}
}

func TestRunHealthcheckNothingListening(t *testing.T) {
	env := testEnv(t, "PORT", strconv.Itoa(freePort(t)))
	_, _, err := runCmd(t, env, "", "healthcheck")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("healthcheck with nothing listening = %v (exit %d); want exit 1", err, exitCode(err))
	}
}

// A DATABASE_URL whose settings the driver refuses is bad input: exit 2 at
// once (API.md; the systemd unit does not restart on 2), not two minutes of
// retries as for a database that does not answer yet; and the password,
// in the user info or the query, is not printed.
func TestRunBadDatabaseSettings(t *testing.T) {
	if !slices.Contains(storetest.Dialects, store.Postgres) {
		t.Skip("built without PostgreSQL")
	}
	for _, u := range []string{"postgres://u:s3cret-pw@127.0.0.1:1/db?sslmode=bogus", "postgres://u@127.0.0.1:1/db?password=s3cret-pw&connect_timeout=x"} {
		for _, cmd := range []string{"migrate", "serve"} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the old code retried for two minutes
			var out, errb bytes.Buffer
			err := run(ctx, []string{cmd}, envOf(testEnv(t, "DATABASE_URL", u)), strings.NewReader(""), &out, &errb)
			cancel()
			if err == nil || exitCode(err) != 2 || !strings.HasPrefix(err.Error(), "DATABASE_URL: ") {
				t.Errorf("%s with DATABASE_URL %s = %v (exit %d); want DATABASE_URL: ..., exit 2", cmd, u, err, exitCode(err))
			} else if strings.Contains(err.Error()+out.String()+errb.String(), "s3cret-pw") {
				t.Errorf("%s with DATABASE_URL %s printed the password: %v\n%s%s", cmd, u, err, &out, &errb)
			}
		}
	}
}

// A SQLite file that cannot be made (its directory missing: a path outside
// the unit's StateDirectory, a typo) is configuration, exit 2, which the
// systemd unit does not restart; it exited 1, and was restarted every 5 s.
func TestRunSQLiteFileThatCannotBeMade(t *testing.T) {
	if !slices.Contains(storetest.Dialects, store.SQLite) {
		t.Skip("built without SQLite")
	}
	for _, cmd := range []string{"migrate", "serve"} {
		_, _, err := runCmd(t, testEnv(t, "DATABASE_URL", filepath.Join(t.TempDir(), "no-such-dir", "oauth.db"), "PORT", strconv.Itoa(freePort(t))), "", cmd)
		if exitCode(err) != 2 || !strings.HasPrefix(fmt.Sprint(err), "DATABASE_URL: ") {
			t.Errorf("%s with a SQLite file in no directory = %v (exit %d); want DATABASE_URL: ..., exit 2", cmd, err, exitCode(err))
		}
	}
}

// A build refuses a database it has no driver for in one line, exit 2
// (API.md): no restart brings the driver, and systemd does not restart on 2.
func TestRunRefusesADatabaseItWasBuiltWithout(t *testing.T) {
	var urls []string
	if mysqlDriver == nil {
		urls = append(urls, "mysql://root@127.0.0.1:1/x")
	}
	if !slices.Contains(storetest.Dialects, store.Postgres) {
		urls = append(urls, "postgres://u@127.0.0.1:1/db")
	}
	if len(urls) == 0 {
		t.Skip("this build has every driver")
	}
	for _, u := range urls {
		for _, cmd := range []string{"migrate", "serve"} {
			_, _, err := runCmd(t, testEnv(t, "DATABASE_URL", u), "", cmd)
			if exitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "built without") || strings.Contains(fmt.Sprint(err), "\n") {
				t.Errorf("%s with DATABASE_URL %s = %v (exit %d); want one line saying built without, exit 2", cmd, u, err, exitCode(err))
			}
		}
	}
}

// SIGTERM while the server still waits for its database at start is a stop
// as asked (README: exit 0), said in a "stopped" line, not exit 1.
func TestServeStoppedWhileWaitingForTheDatabase(t *testing.T) {
	if !slices.Contains(storetest.Dialects, store.Postgres) {
		t.Skip("built without PostgreSQL")
	}
	env := testEnv(t, "DATABASE_URL", fmt.Sprintf("postgres://u@127.0.0.1:%d/db", freePort(t)))
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), strings.NewReader(""), &logs, io.Discard) }()
	for !strings.Contains(logs.String(), "database not reachable yet; retrying") {
		select {
		case err := <-done:
			t.Fatalf("serve with nothing on the database port returned %v before waiting; logs:\n%s", err, &logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil || !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("serve stopped while waiting for the database = %v (exit %d); want nil (exit 0) and a stopped line; logs:\n%s", err, exitCode(err), &logs)
	}
}

// startServe runs serve on cfg, on any free port, until cancel (or the
// test's end), and returns once it listens.
func startServe(t *testing.T, cfg *config, logs io.Writer) (addr string, done <-chan error, cancel context.CancelFunc) {
	t.Helper()
	cfg.Port = 0 // PORT must be at least 1; the test wants any free port
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready, errc := make(chan string, 1), make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, logs, ready) }()
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("serve returned before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve never became ready")
	}
	return addr, errc, cancel
}

// serveOnce runs serve on cfg until it listens, stops it, and returns what
// it logged.
func serveOnce(t *testing.T, cfg *config) string {
	t.Helper()
	var logs lockedBuffer
	_, done, cancel := startServe(t, cfg, &logs)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve = %v", err)
	}
	return logs.String()
}

// TestHealthcheckLive: with the database cut off under a running server,
// `healthcheck` fails (/health answers 503) while `healthcheck --live`
// passes (/livez): a check whose failure restarts the process (ECS) must
// not restart every task for a database outage.
func TestHealthcheckLive(t *testing.T) {
	p, url := storetest.NewProxy(t, storetest.URL(t, store.Postgres))
	env := testEnv(t, "DATABASE_URL", url, "LISTEN_ADDR", "127.0.0.1")
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	addr, done, cancel := startServe(t, cfg, &logs)
	_, env["PORT"], _ = net.SplitHostPort(addr)
	for _, args := range [][]string{{"healthcheck"}, {"healthcheck", "--live"}} {
		if _, _, err := runCmd(t, env, "", args...); err != nil {
			t.Fatalf("%q with the database up = %v (exit %d); want exit 0", args, err, exitCode(err))
		}
	}
	p.Cut()
	// /health reuses a ping's result for a second: wait for its 503.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, _, err := runCmd(t, env, "", "healthcheck"); err != nil && exitCode(err) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("healthcheck still passes 15 s after the database was cut off")
		}
	}
	if _, _, err := runCmd(t, env, "", "healthcheck", "--live"); err != nil {
		t.Fatalf("healthcheck --live with the database cut off = %v (exit %d); want exit 0", err, exitCode(err))
	}
	p.Restore()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve = %v", err)
	}
}

// TestServe runs the server in-process: it answers, healthcheck agrees, and
// cancelling its context shuts it down gracefully, finishing a request that
// was in flight.
func TestServe(t *testing.T) {
	env := testEnv(t)
	const password = "Serve-Test-Password-9"
	if _, _, err := runCmd(t, env, password+"\n", "user", "create", "--email", "sam@example.com", "--username", "sam"); err != nil {
		t.Fatalf("user create = %v", err)
	}
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenAddr = "127.0.0.1"
	var logs lockedBuffer
	addr, done, cancel := startServe(t, cfg, &logs)
	host, portText, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("listening on %q (%v); want 127.0.0.1 (LISTEN_ADDR)", addr, err)
	}
	port, _ := strconv.Atoi(portText)
	base := "http://127.0.0.1:" + portText

	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if resp.StatusCode != 200 || health["status"] != "healthy" || health["database"] != "connected" || health["version"] != version {
		t.Fatalf("GET /health = %d %v", resp.StatusCode, health)
	}

	hc := *cfg
	hc.Port = port
	if err := healthcheck(context.Background(), &hc, nil, nil, nil); err != nil {
		t.Fatalf("healthcheck against the running server = %v", err)
	}

	// An in-flight login: send the headers with Expect: 100-continue, and
	// wait for the 100 that the server sends when the handler starts reading
	// the body. The request is then being served.
	conn, err := net.Dial("tcp", "127.0.0.1:"+portText)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	body := `{"login":"sam","password":"` + password + `"}`
	fmt.Fprintf(conn, "POST /api/v1/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("waiting for 100 Continue: %q, %v", status, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q, %v", blank, err)
	}

	cancel()
	// Shutdown closes the listener first: once new connections are refused,
	// the server is shutting down with our request still open.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+portText, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts connections after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("serve returned %v with a request in flight", err)
	default:
	}

	io.WriteString(conn, body)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight login got no response: %v", err)
	}
	var pair map[string]any
	json.NewDecoder(res.Body).Decode(&pair)
	res.Body.Close()
	if res.StatusCode != 200 || pair["access_token"] == nil || pair["token_type"] != "Bearer" {
		t.Fatalf("in-flight login = %d %v; want 200 with a token pair", res.StatusCode, pair)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve = %v; want nil after a graceful shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	logText := logs.String()
	for _, want := range []string{`"msg":"listening"`, `"msg":"stopped"`} {
		if !strings.Contains(logText, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for _, secret := range []string{password, testJWTSecret} {
		if strings.Contains(logText, secret) {
			t.Errorf("a secret appears in the logs")
		}
	}
	if tok, _ := pair["access_token"].(string); tok != "" && strings.Contains(logText, tok) {
		t.Error("the access token appears in the logs")
	}
	if tok, _ := pair["refresh_token"].(string); tok != "" && strings.Contains(logText, tok) {
		t.Error("the refresh token appears in the logs")
	}
}

// TestServeSendsQueuedMail: serve returns only after its background work
// has ended, the mail queue drained, so before the database closes. A reset
// link asked for just before the shutdown, held in flight by the SMTP
// server, is delivered before serve returns.
func TestServeSendsQueuedMail(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	release := sink.Hold()
	defer release()
	env := testEnv(t, "ENABLE_PASSWORD_RESET", "true", "SMTP_HOST", "127.0.0.1", "SMTP_PORT", strconv.Itoa(sink.Port()),
		"SMTP_TLS", "none", "SMTP_FROM", "auth@example.com")
	if _, _, err := runCmd(t, env, "Serve-Test-Password-9\n", "user", "create", "--email", "sam@example.com", "--username", "sam"); err != nil {
		t.Fatalf("user create = %v", err)
	}
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	addr, done, cancel := startServe(t, cfg, &logs)
	resp, err := http.Post("http://"+addr+"/api/v1/auth/password/forgot", "application/json", strings.NewReader(`{"email":"sam@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("forgot = %d; want 202", resp.StatusCode)
	}

	cancel()
	// The mail is in flight, held by the server: serve must wait for it. (A
	// serve that does not wait returns at once; one that does is never this
	// quick, since it waits until release.)
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) with mail still in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve = %v; want nil after a graceful shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if msgs := sink.Messages(); len(msgs) != 1 || msgs[0].To != "sam@example.com" || !strings.Contains(msgs[0].Data, "?token=") {
		t.Fatalf("when serve returned, the server had %+v; want the reset mail to sam", msgs)
	}
	logText := logs.String()
	for _, bad := range []string{"dropped", "mail not sent", "token="} {
		if strings.Contains(logText, bad) {
			t.Errorf("logs hold %q:\n%s", bad, logText)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(logText), `"msg":"stopped"}`) {
		t.Errorf("the last log line is not \"stopped\":\n%s", logText)
	}
}

// TestServeMailsVerification: with SMTP_HOST set and password reset off,
// the server still has a mail queue: registration mails a verification
// link to $ISSUER/email/verify, and the reset routes do not exist.
func TestServeMailsVerification(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	env := testEnv(t, "SMTP_HOST", "127.0.0.1", "SMTP_PORT", strconv.Itoa(sink.Port()), "SMTP_TLS", "none",
		"SMTP_FROM", "auth@example.com", "ISSUER", "https://auth.example.com")
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	addr, done, cancel := startServe(t, cfg, &logs)
	post := func(path, body string) int {
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("/api/v1/auth/register", `{"email":"sam@example.com","username":"sam","password":"Serve-Test-Password-9"}`); got != http.StatusCreated {
		t.Fatalf("register = %d; want 201", got)
	}
	if m := sink.Wait(t); m.To != "sam@example.com" || !strings.Contains(m.Data, "https://auth.example.com/email/verify?token=") {
		t.Fatalf("mail %+v; want a verification link to sam", m)
	}
	if got := post("/api/v1/auth/password/forgot", `{"email":"sam@example.com"}`); got != http.StatusNotFound {
		t.Fatalf("forgot with ENABLE_PASSWORD_RESET off = %d; want 404", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve = %v", err)
	}
}

// audit list prints the events as JSON lines; audit verify says the count,
// and after an edit made in the database exits 1 naming the event.
func TestRunAudit(t *testing.T) {
	env := testEnv(t)
	for _, name := range []string{"ann", "bob"} {
		if _, _, err := runCmd(t, env, "Pass-"+name+"-12345\n", "user", "create", "--email", name+"@example.com", "--username", name); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := runCmd(t, env, "", "audit", "list", "--action", "user.created")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.Contains(lines[0], `"action":"user.created"`) || !strings.Contains(lines[0], `"actor":"cli"`) {
		t.Fatalf("audit list = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, env, "", "audit", "verify"); err != nil || !strings.Contains(out, "2 events") {
		t.Fatalf("audit verify = %q, %v", out, err)
	}
	raw, err := sql.Open("sqlite", env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE audit_events SET outcome = 'failure' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCmd(t, env, "", "audit", "verify")
	if exitCode(err) != 1 || !strings.Contains(stderr+fmt.Sprint(err), "event 2") {
		t.Fatalf("audit verify after an edit: exit %d, %q, %v; want exit 1 naming event 2", exitCode(err), stderr, err)
	}
	if _, _, err := runCmd(t, env, "", "audit", "list", "--since", "yesterday"); exitCode(err) != 2 {
		t.Fatalf("a bad --since: %v; want a usage error", err)
	}
}
