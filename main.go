// Command oauth2-api is a small OAuth 2.0 authorization server with a
// first-party REST API. See README.md and API.md for its outside. This
// package reads the configuration (config.go), loads the keys, wires the
// parts together and runs the commands.
//
// # Security
//
// Configuration is checked before anything starts, and a bad value stops
// the process with one line naming the variable, never echoing a secret
// (secrets are token.Secret, which prints REDACTED). Release mode refuses
// a short or patterned JWT_SECRET, a non-https ISSUER and a group- or
// world-readable SIGNING_KEY. Passwords for the CLI come on stdin, never
// in argv. Keys are derived per purpose from JWT_SECRET (derive), so the
// CSRF key is not the token key.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/auth"
	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/store"
	"oauth2-api/token"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "oauth2-api:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is a bad flag or bad input: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

const usage = `usage: oauth2-api [command]

commands:
  serve                      run the server (the default)
  migrate [status]           apply pending migrations, or list them
  healthcheck [--live]       GET /health (--live: /livez) on LISTEN_ADDR (default 127.0.0.1):$PORT; exit 0 if 200
  user create --email E --username U [--role admin] [--email-verified]   (password on stdin)
  client create|list|delete|rotate-secret             manage OAuth clients
  client registration-token [--ttl 24h]               an initial access token for dynamic registration
  keys generate [--alg RS256|ES256|EdDSA] --out FILE  write a signing key
  audit list|verify          print the audit log, or check its hash chain
  version                    print the version`

// errUsage is what a command returns for arguments it does not take: run
// answers it with the command's usage, exit status 2.
var errUsage = usageError{errors.New("bad arguments")}

// commands: what -h or --help prints for each, and what runs it. Every
// command reads the same configuration.
var commands = map[string]struct {
	usage string
	run   func(ctx context.Context, cfg *config, args []string, stdin io.Reader, stdout io.Writer) error
}{
	"serve":       {"usage: oauth2-api [serve]", serveCmd},
	"migrate":     {"usage: oauth2-api migrate [status]", migrateCmd},
	"healthcheck": {"usage: oauth2-api healthcheck [--live]   (--live: GET /livez, which answers whatever the database does)", healthcheck},
	"user":        {"usage: oauth2-api user create --email E --username U [--role admin] [--first-name F] [--last-name L] [--email-verified] (the password is read from stdin; --email-verified: you vouch for the address)", userCmd},
	"client": {`usage:
  oauth2-api client create --name N [--redirect-uri U]... [--post-logout-redirect-uri U]... [--grant-type G]... [--scope S]... [--public] [--first-party] [--resource-server [--resource URI]] [--require-dpop] [--require-par] [--backchannel-logout-uri U]
  oauth2-api client list
  oauth2-api client delete ID
  oauth2-api client rotate-secret ID
  oauth2-api client set-resource ID URI   (a resource server's resource, one of RESOURCES; "" for the ISSUER)
  oauth2-api client registration-token [--ttl 24h]   (one registration, with ENABLE_DYNAMIC_REGISTRATION=token)`, clientCmd},
	"keys": {"usage: oauth2-api keys generate [--alg RS256|ES256|EdDSA] --out FILE", keysCmd},
	"audit": {`usage:
  oauth2-api audit list [--since RFC3339] [--user ID] [--action A] [--limit N]
  oauth2-api audit verify [--head HASH]   (HASH: an event's hash copied from a log line; exit 1 if the chain is broken)`, auditCmd},
}

// run is the program.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	name := "serve"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "oauth2-api", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("unknown command %q (oauth2-api help lists them)", httpx.Clip(name, 40))
	}
	// -h or --help anywhere: the command's usage on stdout, exit 0
	// (API.md: bad flags are one line on stderr; asking is not bad).
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fmt.Fprintln(stdout, cmd.usage)
		return nil
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return usageError{err}
	}
	if err := cmd.run(ctx, cfg, args, stdin, stdout); err != errUsage {
		return err
	}
	return usagef("%s", cmd.usage)
}

func serveCmd(ctx context.Context, cfg *config, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return errUsage
	}
	return serve(ctx, cfg, stdout, nil)
}

// auditCmd lists the audit log (one JSON object per line, oldest first) or
// verifies its chain: exit 0 and the count when intact, exit 1 naming the
// first event that does not fit.
func auditCmd(ctx context.Context, cfg *config, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "verify") {
		return usagef("audit: want list or verify (oauth2-api audit --help)")
	}
	// Each subcommand takes its own flags only.
	listFlags, verifyFlags := flags("audit list"), flags("audit verify")
	since, user, action := listFlags.String("since", "", ""), listFlags.String("user", "", ""), listFlags.String("action", "", "")
	limit, head := listFlags.Int("limit", 1000, ""), verifyFlags.String("head", "", "")
	fs := listFlags
	if args[0] == "verify" {
		fs = verifyFlags
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || *limit < 1 { // one line (API.md), not the command's usage
		return usagef("usage: oauth2-api audit list [--since T] [--user ID] [--action A] [--limit N, N >= 1] | audit verify [--head HASH]")
	}
	if *action != "" && !slices.Contains(auth.AuditActions, *action) {
		return usagef("audit list: --action: %q is none of the audit's actions (API.md)", *action)
	}
	if *head != "" && (len(*head) != 64 || strings.Trim(*head, "0123456789abcdef") != "") {
		return usagef("audit verify: --head: want an event's hash, 64 lowercase hex digits")
	}
	f := store.AuditFilter{User: *user, Action: *action, Limit: *limit}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return usagef("audit list: --since: want an RFC 3339 time such as 2026-01-31T00:00:00Z")
		}
		f.Since = t
	}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if args[0] == "verify" {
		n, err := db.VerifyAudit(ctx, *head)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "audit log intact: %d events\n", n)
		return nil
	}
	list, err := db.ListAudit(ctx, f) // at most --limit events: one query
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for i := range list {
		if err := enc.Encode(&list[i]); err != nil {
			return err
		}
	}
	return nil
}

// newLogger returns the server's logger: JSON (or text) lines on w, through
// a buffer flushed every 100 ms and at once after warnings. Call the
// returned func before exiting to flush the rest.
func newLogger(cfg *config, w io.Writer) (*slog.Logger, func()) {
	lw := httpx.NewLogWriter(w, 64<<10, 100*time.Millisecond)
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(lw, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(lw, opts)
	}
	return slog.New(httpx.FlushingHandler(h, lw)), func() { lw.Close() }
}

func openStore(ctx context.Context, cfg *config) (*store.DB, error) {
	opts := cfg.DB
	opts.MySQL = mysqlDriver // nil but in oauth2-api-mysql (nomysql.go)
	db, err := store.Open(ctx, cfg.DatabaseURL, opts)
	if errors.Is(err, store.ErrBadURL) { // bad input: exit 2 at once, which systemd does not restart
		return nil, usagef("DATABASE_URL: %w", err)
	}
	return db, err
}

// openStoreRetrying opens the database, waiting for it (with backoff, up to
// two minutes) when it does not answer yet: a server started with its
// database (compose, Kubernetes, a reboot) should not crash-loop.
func openStoreRetrying(ctx context.Context, cfg *config, log *slog.Logger) (*store.DB, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		db, err := openStore(ctx, cfg)
		if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().Add(wait).After(deadline) {
			return db, err
		}
		log.Warn("database not reachable yet; retrying", "in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// connReserve is how many connections beyond MAX_CONNECTIONS are taken for
// the probes (/health, /livez) and answered 503 elsewhere (httpx.ConnLimit).
const connReserve = 16

// Shutdown bounds: requests in flight get drainRequests, then queued mail
// and logout tokens get mailDrain; together they stay inside the 30 s that systemd and
// compose give before a kill (deploy/README.md).
const (
	drainRequests = 20 * time.Second
	mailDrain     = 5 * time.Second
)

// serve runs the server until ctx ends, then shuts down gracefully: requests
// in flight finish, background work ends and queued mail and logout tokens
// are sent (within mailDrain), and only then does the database close and serve return. If
// ready is not nil it receives the listener's address once the server accepts.
func serve(ctx context.Context, cfg *config, stdout io.Writer, ready chan<- string) error {
	started := time.Now()
	log, flush := newLogger(cfg, stdout)
	defer flush()
	// A key file that cannot be used is a configuration error (exit 2, which
	// the systemd unit does not restart), found before the database is
	// touched: it exited 1 after the migrations, and was restarted forever.
	for i, p := range append([]string{cfg.SigningKey}, cfg.SigningKeysPrevious...) {
		if _, err := loadKey([]string{"SIGNING_KEY", "SIGNING_KEYS_PREVIOUS"}[min(i, 1)], p, cfg.Release); p != "" && err != nil {
			return err
		}
	}
	db, err := openStoreRetrying(ctx, cfg, log)
	if err != nil && ctx.Err() != nil {
		// SIGTERM while waiting for the database: a stop as asked, exit 0.
		log.Info("stopped", "before", "the database answered")
		return nil
	}
	if err != nil {
		return err
	}
	defer db.Close()
	if applied, err := db.Migrate(ctx, time.Now()); err != nil {
		return err
	} else if len(applied) > 0 {
		log.Info("migrations applied", "versions", strings.Join(applied, ","))
	}
	warnNewer(ctx, db, log)
	clients := auth.NewClients(db, time.Minute, 10_000, 64<<20)
	ks, err := buildKeys(cfg, db, log, auth.NewRevocations(clients.Forget))
	if err != nil {
		return err
	}
	ts := ks.tokens
	if err := ts.Revoked.Load(ctx, db, time.Now()); err != nil {
		return err
	}
	// The keys in use, on record (API.md "Audit log"): by kid, a name
	// derived from each key that reveals nothing of it. verifying names the
	// HMAC keys too, so that a forgotten JWT_SECRET_PREVIOUS shows.
	kids := func(keys []*token.Key) string {
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		return strings.Join(ids, " ")
	}
	keys := &store.Event{Action: auth.ActKeysInUse, Actor: "system", Outcome: "success", Detail: map[string]string{
		"signing": ts.Signer.Key().ID, "published": kids(ks.public), "verifying": kids(ks.verify), "version": version}}
	if err := db.Audit(ctx, keys); err != nil {
		return err
	}
	log.Info("audit event", "audit", []httpx.AuditRef{{ID: keys.ID, Action: keys.Action, Hash: keys.Hash}})
	browser, err := auth.NewBrowser(cfg.Release, ks.cookieKey, 12*time.Hour, log)
	if err != nil {
		return err
	}

	reg := metrics.NewRegistry()
	reg.AddGoRuntime()
	httpm := httpx.NewMetrics(reg, auth.AuditActions...)
	authm := auth.NewMetrics(reg)
	reg.GaugeFunc("oauth2_revocations_age_seconds", "Seconds since the revocation list was last read from the database; past 9 s, token checks answer 503.",
		func() float64 { return ts.Revoked.Age(time.Now()).Seconds() })
	apiRate := rate.Limit(float64(cfg.RateLimitRequests) / cfg.RateLimitWindow.Seconds())
	apiLimit, pageLimit := ratelimit.New(apiRate, cfg.RateLimitRequests, 100_000), ratelimit.New(apiRate, cfg.RateLimitRequests, 100_000)
	credLimit := ratelimit.New(cfg.LoginRate, cfg.LoginBurst, 100_000)
	clientLimit := ratelimit.NewNamed(cfg.ClientRate, cfg.ClientBurst, 100_000)
	publicLimit := ratelimit.NewNamed(cfg.ClientRate*auth.PublicClientShares, cfg.ClientBurst*auth.PublicClientShares, 100_000)
	regLimit := ratelimit.New(auth.RegistrationRate, auth.RegistrationBurst, 100_000) // POST /oauth2/register
	pw := auth.NewPasswords(auth.DefaultArgon2, max(2, runtime.GOMAXPROCS(0)), 10*time.Second)

	// Background work: the revocation poller, the janitor, the mail and
	// back-channel logout queues. stopBackground ends it all and waits for it, so that nothing
	// touches the database once it is closed: on the way out it runs after
	// the HTTP server has stopped (no more mail is queued) and, deferred on
	// every other return, before the deferred db.Close (defers run last in,
	// first out).
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mail *auth.MailQueue
	stopBackground := sync.OnceFunc(func() {
		stopBG()
		wg.Wait()
		// A link or logout token queued just before the shutdown still goes
		// out, in a bounded time; what is left is logged and counted as
		// dropped.
		ctx, cancel := context.WithTimeout(context.Background(), mailDrain)
		defer cancel()
		var queues sync.WaitGroup
		queues.Go(func() { ts.Logout.Close(ctx) })
		if mail != nil {
			mail.Close(ctx)
		}
		queues.Wait()
	})
	defer stopBackground()
	if ks.idTokens != nil {
		ts.Logout = auth.NewBackchannel(ks.idTokens, cfg.Issuer, 1000, log, authm)
	}
	if cfg.SMTP.Host != "" { // reset and verification links
		mail = auth.NewMailQueue(&cfg.SMTP, 100, log, authm)
	}
	var reset *auth.Reset
	if cfg.EnablePasswordReset { // loadConfig requires SMTP_HOST for it
		reset = &auth.Reset{TTL: cfg.PasswordResetTTL, URL: cfg.PasswordResetURL}
	}
	h := auth.NewHandler(auth.Deps{
		Log: log, DB: db, Tokens: ts, Passwords: pw,
		Throttle: auth.Throttle{Max: cfg.LoginMaxFailures, Window: cfg.LoginLockout, Key: token.MAC(ks.cookieKey, "login throttle")},
		Metrics:  authm, HTTP: httpm, Registry: reg, API: apiLimit, Pages: pageLimit, Creds: credLimit, PerClient: clientLimit, PublicClients: publicLimit,
		Now: time.Now, Version: version, Started: started,
		Clients: clients, Browser: browser, IDTokens: ks.idTokens, PublicKeys: ks.public,
		EnableRegistration: cfg.EnableRegistration, RequirePAR: cfg.RequirePAR, Mail: mail, Reset: reset,
		DynamicRegistration: cfg.DynamicRegistration, Registration: regLimit,
		EmailVerificationTTL: cfg.EmailVerificationTTL, RequireEmailVerification: cfg.RequireEmailVerification,
		Release: cfg.Release, CORSOrigins: cfg.CORSOrigins,
		IPs: httpx.IPResolver{Trusted: cfg.TrustedProxies},
	})

	// IdleTimeout outlasts the proxies' idle timeouts for their connections
	// to us (nginx's upstream keepalive_timeout, ingress-nginx's, the
	// ALB's: 60 s), so that they close an idle connection, not we: closed
	// by us just as a proxy reuses it, it would answer that request 502.
	srv := &http.Server{
		Addr:              net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.Port)),
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second, // slowloris: headers must arrive in time
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       75 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		// A port this process may not bind (below 1024 without the
		// capability, or barred by the unit's SocketBindDeny=): exit 2,
		// which systemd does not restart (it restarted every 5 s). An
		// address in use or not yet on the host may come free or up.
		return usagef("PORT/LISTEN_ADDR: %v", err)
	}
	if err != nil {
		return err
	}
	// MAX_CONNECTIONS, lowered to fit the descriptor limit with room for the
	// database pool, the log and the SQLite files.
	maxConns := cfg.MaxConnections
	if fds := fdLimit(); fds > 0 && maxConns > fds-cfg.DB.MaxOpenConns-connReserve-64 {
		maxConns = max(1, fds-cfg.DB.MaxOpenConns-connReserve-64)
		log.Warn("MAX_CONNECTIONS lowered to fit the open file limit", "max_connections", maxConns, "file_limit", fds)
	}
	limit := &httpx.ConnLimit{Max: maxConns, Reserve: connReserve, Server: srv, Log: log,
		Refused:   reg.Counter("oauth2_connections_refused_total", "Client connections refused beyond MAX_CONNECTIONS."),
		Saturated: reg.Counter("oauth2_connections_saturated_total", "Times open client connections reached 7/8 of MAX_CONNECTIONS, turning keep-alives off.")}
	srv.Handler, srv.ConnContext = limit.Guard(srv.Handler), limit.ConnContext
	ln = limit.Listener(ln)

	wg.Go(func() { ts.Revoked.Run(bg, db, 2*time.Second, log, time.Now) })
	wg.Go(func() {
		janitor(bg, db, []sweeper{apiLimit, pageLimit, credLimit, clientLimit, publicLimit, regLimit}, store.Retention{LoginWindow: cfg.LoginLockout, AccessTTL: cfg.AccessTTL, MaxAge: cfg.RefreshMaxAge, Audit: cfg.AuditRetention}, log)
	})

	startProfiler(log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "version", version,
		"database", db.Dialect(), "release", cfg.Release, "startup_ms", time.Since(started).Milliseconds())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), drainRequests)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	stopBackground()
	log.Info("stopped")
	return nil
}

// sweeper is a rate-limit table: Sweep drops its idle buckets.
type sweeper interface{ Sweep(time.Time) int }

// janitor purges expired rows and idle rate-limit buckets.
func janitor(ctx context.Context, db *store.DB, limits []sweeper, ret store.Retention, log *slog.Logger) {
	// Every minute, or twice per access token lifetime when that is shorter,
	// so that rows do not outlive short lifetimes by much.
	t := time.NewTicker(min(time.Minute, ret.AccessTTL/2))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, l := range limits {
			l.Sweep(now)
		}
		if err := db.Purge(ctx, ret, now); err != nil && ctx.Err() == nil {
			log.Warn("purge failed", "err", err)
		}
	}
}

// keySet is the loaded key material.
type keySet struct {
	tokens    *auth.Tokens
	idTokens  *token.Signer // nil without SIGNING_KEY
	public    []*token.Key  // for the JWKS
	verify    []*token.Key  // every key that verifies: the HMAC keys, then public
	cookieKey []byte        // CSRF tokens of the login and consent forms
}

// buildKeys loads the keys: the HMAC secret (and its predecessor), and the
// asymmetric signing key with its predecessors when SIGNING_KEY is set.
// Access tokens are signed with SIGNING_KEY when there is one, else HS256;
// every configured key verifies.
func buildKeys(cfg *config, db *store.DB, log *slog.Logger, revs *auth.Revocations) (*keySet, error) {
	secret := []byte(cfg.JWTSecret.Reveal())
	if len(secret) == 0 {
		var err error
		if secret, err = debugSecret(db, cfg.DatabaseURL, log); err != nil {
			return nil, err
		}
	} else if len(secret) < minSecret {
		log.Warn("JWT_SECRET is shorter than 32 bytes; release mode would refuse it")
	}
	hmacKey := token.NewHMACKey(secret)
	verify := []*token.Key{hmacKey}
	if cfg.JWTSecretPrevious != "" {
		verify = append(verify, token.NewHMACKey([]byte(cfg.JWTSecretPrevious.Reveal())))
	}
	ks := &keySet{cookieKey: token.MAC(secret, "oauth2-api cookies")}
	signWith := hmacKey
	if cfg.SigningKey != "" {
		// SIGNING_KEY signs; its predecessors only verify.
		k, err := loadKey("SIGNING_KEY", cfg.SigningKey, cfg.Release)
		if err != nil {
			return nil, err
		}
		signWith = k
		if k.Alg != token.RS256 {
			// OIDC Discovery §3: id_token_signing_alg_values_supported MUST
			// include RS256, and the metadata names the key's alg alone.
			log.Warn("ID tokens are signed with " + k.Alg + " (SIGNING_KEY), but RS256 is the one algorithm OpenID Connect relying parties must support: use an RSA key for OpenID Connect")
		}
		ks.public = append(ks.public, k)
		for _, p := range cfg.SigningKeysPrevious {
			old, err := loadKey("SIGNING_KEYS_PREVIOUS", p, cfg.Release)
			if err != nil {
				return nil, err
			}
			ks.public = append(ks.public, old)
		}
		verify = append(verify, ks.public...)
	}
	ks.verify = verify
	signer, err := token.NewSigner(signWith)
	if err != nil {
		return nil, err
	}
	if cfg.SigningKey != "" {
		ks.idTokens = signer // ID tokens too are signed with SIGNING_KEY
	}
	verifier, err := token.NewVerifier(verify...)
	if err != nil {
		return nil, fmt.Errorf("SIGNING_KEYS_PREVIOUS: %w", err)
	}
	ks.tokens = &auth.Tokens{
		Issuer: cfg.Issuer, AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL, MaxAge: cfg.RefreshMaxAge,
		Signer: signer, Verifier: verifier, Revoked: revs, Resources: cfg.Resources,
	}
	if cfg.DPoPNonce {
		ks.tokens.NonceKey = token.MAC(secret, "oauth2-api dpop nonces")
	}
	return ks, nil
}

// loadKey reads a PEM private key file of at most 64 KiB. In release mode
// the file must not be readable by group or others.
func loadKey(name, path string, release bool) (*token.Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		// Never the path: it may be the PEM text itself, set in its place.
		return nil, usagef("%s: not a readable file (%v); it takes the path of a PEM file", name, pathless(err))
	}
	if release && fi.Mode().Perm()&0o077 != 0 {
		return nil, usagef("%s: %s has mode %04o; want 0600 or narrower in release mode", name, path, fi.Mode().Perm())
	}
	data, err := readSmall(path, 64<<10) // a PEM key is a few KiB: no file is read whole
	if err != nil {
		return nil, usagef("%s: %s: %v", name, path, err)
	}
	k, err := token.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, usagef("%s: %s: %v", name, path, err)
	}
	return k, nil
}

// debugSecret returns the HMAC key of debug mode when JWT_SECRET is unset:
// generated once and kept next to the SQLite file with mode 0600, so tokens
// survive a restart. For PostgreSQL it lives only in memory.
func debugSecret(db *store.DB, dbURL string, log *slog.Logger) ([]byte, error) {
	var random [32]byte
	rand.Read(random[:])
	key := hex.AppendEncode(nil, random[:]) // 256 random bits as text, as the key file holds them
	if db.Dialect() != store.SQLite {
		log.Warn("JWT_SECRET unset: using a random key for this process only (debug mode)")
		return key, nil
	}
	_, path, _ := store.ParseURL(dbURL)
	file := filepath.Join(filepath.Dir(path), ".oauth2-api-jwt-secret")
	// Only a file of its owner's alone, as writeNew leaves it: a link (to
	// /etc/os-release, say) or a copy others can read gave anyone the key
	// that signs access tokens, an admin's included.
	if fi, err := os.Lstat(file); err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0) {
		return nil, fmt.Errorf("debug key file %s is not a file only its owner may read (%v); delete it or set JWT_SECRET", file, fi.Mode())
	}
	if b, err := readSmall(file, 4096); err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= minSecret {
			log.Warn("JWT_SECRET unset: using the debug key stored next to the database", "file", file)
			return []byte(s), nil
		}
		return nil, fmt.Errorf("debug key file %s is too short; delete it or set JWT_SECRET", file)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read debug key: %w", err)
	}
	if err := writeNew(file, append(key, '\n')); err != nil {
		return nil, fmt.Errorf("write debug key: %w", err)
	}
	log.Warn("JWT_SECRET unset: generated a debug key and stored it next to the database (set JWT_SECRET in production)", "file", file)
	return key, nil
}

// writeNew writes data to a new file only its owner may read: it never
// replaces a file (os.ErrExist), and leaves nothing behind when a write
// fails half way.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func migrateCmd(ctx context.Context, cfg *config, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) > 1 || (len(args) == 1 && args[0] != "status") {
		return errUsage
	}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if len(args) == 1 {
		list, err := db.Migrations(ctx)
		if err != nil {
			return err
		}
		for _, m := range list {
			state := "pending"
			if m.Applied {
				state = "applied " + m.AppliedAt.Format(time.RFC3339)
			}
			if m.Unknown {
				state += ", unknown to this build (a newer release migrated this database)"
			}
			fmt.Fprintf(stdout, "%s\t%s\n", m.Version, state)
		}
		return nil
	}
	applied, err := db.Migrate(ctx, time.Now())
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "nothing to apply")
	}
	for _, v := range applied {
		fmt.Fprintln(stdout, "applied", v)
	}
	log, flush := newLogger(cfg, stdout)
	defer flush()
	warnNewer(ctx, db, log)
	return nil
}

// warnNewer logs, in one WARN line, the migrations applied that this build
// does not know: it is older than the release that migrated the database
// (a rollback, or an old instance during a rolling upgrade). It keeps
// working, as each release's migrations keep the one before working (README
// "Upgrades and rollbacks"), but an operator should know.
// A failure to read them is logged too: the migrations are applied, and a
// warning is no reason not to start.
func warnNewer(ctx context.Context, db *store.DB, log *slog.Logger) {
	list, err := db.Migrations(ctx)
	if err != nil {
		log.Warn("could not list the database's migrations", "err", err)
	}
	var newer []string
	for _, m := range list {
		if m.Unknown {
			newer = append(newer, m.Version)
		}
	}
	if len(newer) > 0 {
		log.Warn("database migrated by a newer release: migrations unknown to this build", "versions", strings.Join(newer, ","))
	}
}

// healthcheck GETs /health on this machine, at LISTEN_ADDR when it names
// one address: the distroless HEALTHCHECK has no shell or wget. With --live
// it GETs /livez: for checks whose failure restarts the process (ECS, the
// image's HEALTHCHECK under Swarm), which a database outage must not do.
func healthcheck(ctx context.Context, cfg *config, args []string, _ io.Reader, _ io.Writer) error {
	fs := flags("healthcheck")
	live := fs.Bool("live", false, "GET /livez")
	if fs.Parse(args) != nil || fs.NArg() > 0 {
		return errUsage
	}
	path := "/health"
	if *live {
		path = "/livez"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	host := "127.0.0.1"
	if a, err := netip.ParseAddr(cfg.ListenAddr); err == nil && !a.IsUnspecified() {
		host = a.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, strconv.Itoa(cfg.Port))+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	return nil
}

func userCmd(ctx context.Context, cfg *config, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errUsage
	}
	fs := flags("user create")
	email := fs.String("email", "", "email address")
	username := fs.String("username", "", "username")
	role := fs.String("role", store.RoleUser, "user or admin")
	first := fs.String("first-name", "", "first name")
	last := fs.String("last-name", "", "last name")
	verified := fs.Bool("email-verified", false, "the operator vouches for the address")
	if err := fs.Parse(args[1:]); err != nil {
		return usagef("user create: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("user create: unexpected argument %q (the password is read from stdin)", httpx.Clip(fs.Arg(0), 40))
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return usagef("user create: read password from stdin: %v", err)
	}
	password := strings.TrimRight(line, "\r\n")
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx, time.Now()); err != nil {
		return err
	}
	pw := auth.NewPasswords(auth.DefaultArgon2, 1, time.Minute)
	u, err := auth.Register(ctx, db, pw, *email, *username, password, *first, *last, *role, *verified, time.Now())
	if he, ok := errors.AsType[*httpx.Error](err); ok {
		return usagef("user create: %s", he.Message)
	}
	if err != nil {
		return err
	}
	// encoding/json, not %q: Go's quoting is not JSON's for every character
	// an address may hold. HTML escaping off, so an address prints as typed.
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		ID            int64  `json:"id"`
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		Username      string `json:"username"`
		Role          string `json:"role"`
	}{u.ID, u.Email, u.EmailVerified, u.Username, u.Role})
}

// flags returns a command's flag set, silent: a bad flag is the one line
// on stderr that main prints.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func clientCmd(ctx context.Context, cfg *config, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("client: want create, list, delete, rotate-secret, set-resource or registration-token (oauth2-api client --help)")
	}
	sub, args := args[0], args[1:]
	var spec auth.ClientSpec
	var ttl time.Duration
	switch sub {
	case "create":
		fs := flags("client create")
		fs.StringVar(&spec.Name, "name", "", "")
		fs.Var((*stringList)(&spec.RedirectURIs), "redirect-uri", "")
		fs.Var((*stringList)(&spec.PostLogoutRedirectURIs), "post-logout-redirect-uri", "")
		fs.Var((*stringList)(&spec.GrantTypes), "grant-type", "")
		fs.Var((*stringList)(&spec.Scopes), "scope", "")
		fs.BoolVar(&spec.Public, "public", false, "")
		fs.BoolVar(&spec.FirstParty, "first-party", false, "")
		fs.BoolVar(&spec.ResourceServer, "resource-server", false, "")
		fs.StringVar(&spec.Resource, "resource", "", "")
		fs.StringVar(&spec.BackchannelLogoutURI, "backchannel-logout-uri", "", "")
		fs.BoolVar(&spec.RequireDPoP, "require-dpop", false, "")
		fs.BoolVar(&spec.RequirePAR, "require-par", false, "")
		if err := fs.Parse(args); err != nil {
			return usagef("client create: %v (oauth2-api client --help)", err)
		}
		if fs.NArg() > 0 {
			return usagef("client create: unexpected argument %q", httpx.Clip(fs.Arg(0), 40))
		}
	case "list":
		if len(args) > 0 {
			return usagef("client list takes no arguments")
		}
	case "delete", "rotate-secret":
		if len(args) != 1 {
			return usagef("usage: oauth2-api client %s ID", sub)
		}
	case "set-resource":
		if len(args) != 2 {
			return usagef("usage: oauth2-api client set-resource ID URI")
		}
	case "registration-token":
		fs := flags("client registration-token")
		fs.DurationVar(&ttl, "ttl", auth.RegistrationTokenTTL, "")
		if err := fs.Parse(args); err != nil || fs.NArg() > 0 || ttl < time.Minute || ttl > 30*24*time.Hour {
			return usagef("usage: oauth2-api client registration-token [--ttl D], D from 1m to 720h")
		}
	default:
		return usagef("client: unknown command %q (oauth2-api client --help)", httpx.Clip(sub, 40))
	}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx, time.Now()); err != nil {
		return err
	}
	now := time.Now()
	enc := json.NewEncoder(stdout)
	// The writes below pass 0 as the admin who asks: the operator, with the
	// database's own credentials, is no user whose role could change.
	switch sub {
	case "create":
		c, secret, err := auth.CreateClient(ctx, db, 0, spec, cfg.Release, cfg.Resources, now)
		if invalid, ok := errors.AsType[*httpx.Error](err); ok {
			return usagef("client create: %s", invalid.Message)
		}
		if err != nil {
			return err
		}
		return enc.Encode(auth.ClientView(c, secret))
	case "list":
		// Every client, a page at a time, so that neither memory nor one
		// query grows with them (strangers may register 10,000). Not a
		// snapshot: a client deleted meanwhile shifts the pages after it.
		const pageSize = 100
		for offset := 0; ; offset += pageSize {
			list, _, err := db.ListClients(ctx, pageSize, offset)
			if err != nil {
				return err
			}
			for i := range list {
				if err := enc.Encode(auth.ClientView(&list[i], "")); err != nil {
					return err
				}
			}
			if len(list) < pageSize {
				return nil
			}
		}
	case "delete":
		err := auth.DeleteClient(ctx, db, 0, nil, nil, args[0], "", cfg.AccessTTL, now)
		if errors.Is(err, store.ErrNotFound) {
			return usagef("client delete: no client %q", httpx.Clip(args[0], 40))
		}
		if err == nil {
			fmt.Fprintln(stdout, "deleted", args[0])
		}
		return err
	case "set-resource":
		err := auth.SetClientResource(ctx, db, args[0], args[1], cfg.Resources, now)
		if invalid, ok := errors.AsType[*httpx.Error](err); ok {
			return usagef("client set-resource: %s", invalid.Message)
		} else if errors.Is(err, store.ErrNotFound) {
			return usagef("client set-resource: no resource server %q", httpx.Clip(args[0], 40))
		} else if err == nil {
			fmt.Fprintln(stdout, "set", args[0])
		}
		return err
	case "registration-token":
		tok, exp, err := auth.NewRegistrationToken(ctx, db, ttl, now)
		if err != nil {
			return err
		}
		return enc.Encode(map[string]string{"initial_access_token": tok, "expires_at": exp.UTC().Format(time.RFC3339)})
	default: // rotate-secret
		secret, err := auth.RotateClientSecret(ctx, db, 0, nil, nil, args[0], cfg.AccessTTL, now)
		if errors.Is(err, store.ErrNotFound) {
			return usagef("client rotate-secret: no confidential client %q", httpx.Clip(args[0], 40))
		}
		if err != nil {
			return err
		}
		return enc.Encode(map[string]string{"client_id": args[0], "client_secret": secret})
	}
}

// keysCmd writes a new PKCS#8 private key for SIGNING_KEY.
func keysCmd(_ context.Context, _ *config, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return errUsage
	}
	fs := flags("keys generate")
	alg := fs.String("alg", token.RS256, "")
	out := fs.String("out", "", "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || *out == "" {
		return errUsage
	}
	var priv crypto.Signer
	var err error
	switch *alg {
	case token.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	case token.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return usagef("keys generate: --alg must be RS256, ES256 or EdDSA")
	}
	if err != nil {
		return err
	}
	pemBytes, err := token.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return err
	}
	k, err := token.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return err
	}
	err = writeNew(*out, pemBytes)
	if errors.Is(err, os.ErrExist) {
		return usagef("keys generate: %s exists; refusing to overwrite it", *out)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s key %s to %s\n", k.Alg, k.ID, *out)
	return nil
}
