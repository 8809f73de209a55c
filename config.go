package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/auth"
	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// config is the server's configuration, read from the environment as
// API.md lists it. Secrets are token.Secret, which never prints.
type config struct {
	ListenAddr          string // LISTEN_ADDR: an IP address, or empty for every interface
	Port                int
	DatabaseURL         string
	DB                  store.Options // DB_MAX_OPEN_CONNS, DB_MAX_IDLE_CONNS, DB_CONN_MAX_LIFETIME
	SigningKey          string
	SigningKeysPrevious []string
	JWTSecret           token.Secret
	JWTSecretPrevious   token.Secret
	Release             bool
	Issuer              string
	CORSOrigins         []string
	TrustedProxies      []netip.Prefix
	LogLevel            slog.Level
	LogFormat           string
	EnableRegistration  bool
	EnablePasswordReset bool
	AccessTTL           time.Duration
	RefreshTTL          time.Duration
	RefreshMaxAge       time.Duration
	RateLimitRequests   int
	RateLimitWindow     time.Duration
	LoginRate           rate.Limit
	LoginBurst          int
	ClientRate          rate.Limit
	ClientBurst         int
	LoginMaxFailures    int
	LoginLockout        time.Duration

	// SMTP is the mailer as SMTP_HOST, SMTP_PORT, SMTP_TLS (TLSMode:
	// auth.SMTPStartTLS, auth.SMTPImplicitTLS or auth.SMTPNoTLS),
	// SMTP_USERNAME, SMTP_PASSWORD and SMTP_FROM set it; no Host, no mail.
	SMTP auth.SMTPMailer

	PasswordResetTTL time.Duration
	PasswordResetURL string
	MaxConnections   int

	// Email verification.
	EmailVerificationTTL     time.Duration
	RequireEmailVerification bool

	RequirePAR bool     // REQUIRE_PAR: every authorization request must be pushed
	Resources  []string // RESOURCES: what tokens may be asked for (RFC 8707)

	AuditRetention time.Duration // AUDIT_RETENTION_DAYS
	DPoPNonce      bool          // DPOP_NONCE: proofs at the token and PAR endpoints must carry a server nonce

	DynamicRegistration string // ENABLE_DYNAMIC_REGISTRATION: auth.RegistrationOff, RegistrationToken or RegistrationOpen
}

// minSecret is the shortest JWT_SECRET release mode accepts (HS256 wants a
// key as long as its output, RFC 7518 §3.2).
const minSecret = 32

// weakSecret says why a JWT secret long enough for release mode is still
// no key, or "". It refuses little variety (fewer than 10 distinct bytes:
// "aaaa…", "password1password1…") and repetition (a period of at most half
// the length: "0123456789abcdef0123456789abcdef"). Not "fewer than 16
// distinct bytes": a quarter of the 64-character secrets that
// `openssl rand -hex 32` prints (the guide's recipe) hold only 15 of the 16
// hex digits. A random 64-character hex secret has fewer than 10 distinct
// bytes with a probability near 1e-12; a 32-character one (128 bits, the
// shortest release mode takes) near 1e-4. It also refuses the example values
// that operators copy: placeholderSecrets.
func weakSecret(s string) string {
	// Whatever case, quotes or spaces around it (an env file's \r, say).
	if bare := strings.Trim(s, " \t\r\n\"'"); slices.ContainsFunc(placeholderSecrets, func(p string) bool { return strings.EqualFold(p, bare) }) {
		return "is an example value published in the deployment guide or deploy/"
	}
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	if n < 10 {
		return fmt.Sprintf("has only %d distinct bytes", n)
	}
	for p := 1; p <= len(s)/2; p++ {
		if s[p:] == s[:len(s)-p] {
			return fmt.Sprintf("repeats itself every %d bytes", p)
		}
	}
	return ""
}

// placeholderSecrets are every JWT_SECRET value the deployment guide shows
// (its .env files, docker run, gcloud and local setup) and the one in
// deploy/kubernetes/secret.example.yaml: anyone who has read them could mint
// tokens with them, so release mode refuses them however random they look.
var placeholderSecrets = []string{
	"your-super-secure-64-character-jwt-secret-key-for-production-use",
	"your-super-secure-production-jwt-secret-key-here",
	"dev-secret-key-change-in-production",
	"dev-secret",
	"your-jwt-secret",
	"REPLACE-WITH-openssl-rand-hex-32",
}

// secretVars may each be given as NAME_FILE, a file holding the value, or
// under systemd as a credential NAME in $CREDENTIALS_DIRECTORY (API.md):
// so no secret has to sit in the environment, where docker inspect and
// compose config print it.
var secretVars = []string{"JWT_SECRET", "JWT_SECRET_PREVIOUS", "DATABASE_URL", "SMTP_PASSWORD"}

// secretFiles returns getenv with each of secretVars read from its file
// when one is given: the file's content with one trailing newline (LF or
// CRLF) trimmed. A secret given two ways, or a file that is missing, empty
// or larger than 64 KiB, is an error naming the variable, never the value.
func secretFiles(getenv func(string) string) (func(string) string, error) {
	read := map[string]string{}
	for _, name := range secretVars {
		path, from := getenv(name+"_FILE"), name+"_FILE"
		if cred := getenv("CREDENTIALS_DIRECTORY"); cred != "" {
			p := filepath.Join(cred, name)
			if _, err := os.Stat(p); err == nil {
				if path != "" {
					return nil, fmt.Errorf("%s: given both as %s and as a systemd credential; keep one", name, from)
				}
				path, from = p, name+" (systemd credential)"
			}
		}
		if path == "" {
			continue
		}
		if getenv(name) != "" {
			return nil, fmt.Errorf("%s: set both %s and %s; keep one", name, name, from)
		}
		// Never the path: it may be the secret itself, set under the _FILE name.
		b, err := readSmall(path, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read the file (%v); it takes the path of a file holding the value", from, err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return nil, fmt.Errorf("%s: the file is empty", from)
		}
		read[name] = v
	}
	return func(name string) string {
		return cmp.Or(read[name], getenv(name)) // a value read is never empty
	}, nil
}

// readSmall reads a file of at most limit bytes. Its errors never hold the
// path (pathless).
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathless(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	return b, pathless(err)
}

// pathless is err without the path an *fs.PathError repeats ("no such file
// or directory"): a secret set where its path belongs (a PEM key in
// SIGNING_KEY, a password in DATABASE_URL_FILE) would be printed.
func pathless(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// envReader reads variables and keeps the first error, so that each
// setting reads in one line and the error names the first bad variable.
type envReader struct {
	getenv func(string) string
	err    error
}

// fail records the error of variable name, unless one is recorded already.
func (e *envReader) fail(name, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

// str returns the variable, trimmed, or def when it is empty.
func (e *envReader) str(name, def string) string {
	return cmp.Or(strings.TrimSpace(e.getenv(name)), def)
}

// int reads a whole number in its one spelling (auth.Decimal: digits, no
// sign, no leading zero), so that PORT=08080 is not another 8080.
func (e *envReader) int(name, def string, lo, hi int) int {
	n, ok := auth.Decimal(e.str(name, def), int64(hi))
	if !ok || n < int64(lo) {
		e.fail(name, "want a whole number from %d to %d, without a sign or leading zero", lo, hi)
	}
	return int(n)
}

func (e *envReader) dur(name, def string, lo, hi time.Duration) time.Duration {
	d, err := time.ParseDuration(e.str(name, def))
	if err != nil || d < lo || d > hi {
		e.fail(name, "want a duration such as 15m, from %v to %v", lo, hi)
	}
	return d
}

// bool reads true or false, the forms API.md and the deployment guide
// write: strconv.ParseBool also takes 1, t, T, TRUE, True and their false
// twins.
func (e *envReader) bool(name, def string) bool {
	s := e.str(name, def)
	if s != "true" && s != "false" {
		e.fail(name, "want true or false")
	}
	return s == "true"
}

// rateUnits are the units of a rate, in seconds.
var rateUnits = map[string]float64{"s": 1, "m": 60, "h": 3600}

// rate reads a rate such as "N/s", "N/m" or "N/h", N in its one decimal
// spelling (auth.Decimal): a float parser took signs, exponents, hex and
// values that underflow to 0.
func (e *envReader) rate(name, def string) rate.Limit {
	s := e.str(name, def)
	n, unit, _ := strings.Cut(s, "/")
	v, ok := auth.Decimal(n, 1e9)
	// per is 0 for a missing or unknown unit.
	per := rateUnits[unit]
	if !ok || per == 0 || v < 1 {
		e.fail(name, "want N/s, N/m or N/h with N a whole number from 1 to 1000000000, got %q", httpx.Clip(s, 40))
		return 0
	}
	return rate.Limit(float64(v) / per)
}

// list returns the comma-separated items of the variable, trimmed.
func (e *envReader) list(name string) []string {
	var out []string
	for _, v := range strings.Split(e.str(name, ""), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// loadConfig reads and validates the configuration. It returns an error
// naming the first bad variable, and never echoes a secret's value.
func loadConfig(getenv func(string) string) (*config, error) {
	getenv, err := secretFiles(getenv)
	if err != nil {
		return nil, err
	}
	e := &envReader{getenv: getenv}
	c := &config{Port: e.int("PORT", "8080", 1, 65535), ListenAddr: e.str("LISTEN_ADDR", "")}
	if a, err := netip.ParseAddr(c.ListenAddr); c.ListenAddr != "" && (err != nil || a.Zone() != "") {
		e.fail("LISTEN_ADDR", "want an IP address such as 127.0.0.1 or ::1, got %q", httpx.Clip(c.ListenAddr, 40))
	}
	// GIN_MODE is an alias (the guide's files): set both, they must agree,
	// or APP_MODE=debug would quietly undo a GIN_MODE=release.
	mode := e.str("APP_MODE", e.str("GIN_MODE", "debug"))
	if gin := e.str("GIN_MODE", mode); gin != mode {
		e.fail("APP_MODE", "is %q but GIN_MODE is %q: set one, or both alike", httpx.Clip(mode, 40), httpx.Clip(gin, 40))
	}
	switch mode {
	case "debug":
	case "release":
		c.Release = true
	default:
		e.fail("APP_MODE", "want debug or release, got %q", httpx.Clip(mode, 40))
	}
	c.DatabaseURL = e.str("DATABASE_URL", "oauth.db")
	if _, _, err := store.ParseURL(c.DatabaseURL); err != nil {
		e.fail("DATABASE_URL", "%v", err)
	}
	c.SigningKey, c.SigningKeysPrevious = e.str("SIGNING_KEY", ""), e.list("SIGNING_KEYS_PREVIOUS")
	if c.SigningKey == "" && len(c.SigningKeysPrevious) > 0 {
		// Without a signing key the server signs with HMAC alone and would
		// neither publish nor accept these keys: said, not ignored.
		e.fail("SIGNING_KEYS_PREVIOUS", "is set without SIGNING_KEY, which it rotates from")
	}
	// Secrets are taken as the raw bytes of the string, untrimmed.
	c.JWTSecret, c.JWTSecretPrevious = token.Secret(getenv("JWT_SECRET")), token.Secret(getenv("JWT_SECRET_PREVIOUS"))
	for _, name := range []string{"JWT_SECRET", "JWT_SECRET_PREVIOUS"} {
		s := getenv(name)
		switch why := weakSecret(s); {
		case !c.Release || (s == "" && name != "JWT_SECRET"):
		case len(s) < minSecret:
			e.fail(name, "need at least %d bytes in release mode, got %d", minSecret, len(s))
		case why != "":
			e.fail(name, "%s: not a random key; release mode wants one (openssl rand -hex 32)", why)
		}
	}
	if c.JWTSecretPrevious != "" && c.JWTSecretPrevious == c.JWTSecret {
		e.fail("JWT_SECRET_PREVIOUS", "equals JWT_SECRET")
	}
	c.Issuer = e.str("ISSUER", strings.TrimSuffix("http://localhost:"+strconv.Itoa(c.Port), ":80")) // no default port (checkIssuer)
	if err := checkIssuer(c.Issuer, c.Release); err != nil {
		e.fail("ISSUER", "%v", err)
	}
	for _, o := range e.list("CORS_ORIGINS") {
		if !browserOrigin(o) {
			e.fail("CORS_ORIGINS", "want origins as browsers send them: lower case, no default port, no path, such as https://app.example.com or http://localhost:3000; got %q", httpx.Clip(o, 40))
		}
		c.CORSOrigins = append(c.CORSOrigins, o)
	}
	if c.TrustedProxies, err = httpx.ParsePrefixes(e.str("TRUSTED_PROXIES", "")); err != nil {
		e.fail("TRUSTED_PROXIES", "want comma-separated CIDRs: %v", err)
	}
	// One spelling a level, slog's own in lower case: UnmarshalText also
	// takes "INFO", "Info" and "warn-4".
	if lv := e.str("LOG_LEVEL", "info"); c.LogLevel.UnmarshalText([]byte(lv)) != nil || strings.ToLower(c.LogLevel.String()) != lv {
		e.fail("LOG_LEVEL", "want debug, info, warn or error, in lower case")
	}
	if c.LogFormat = e.str("LOG_FORMAT", "json"); c.LogFormat != "json" && c.LogFormat != "text" {
		e.fail("LOG_FORMAT", "want json or text")
	}
	c.EnableRegistration, c.EnablePasswordReset = e.bool("ENABLE_REGISTRATION", "true"), e.bool("ENABLE_PASSWORD_RESET", "false")
	// A Go duration wins over the older whole-unit variables.
	c.AccessTTL = time.Duration(e.int("TOKEN_EXPIRY_HOURS", "1", 1, 24)) * time.Hour // at most ACCESS_TOKEN_TTL's 24h
	if e.str("ACCESS_TOKEN_TTL", "") != "" {
		c.AccessTTL = e.dur("ACCESS_TOKEN_TTL", "", 30*time.Second, 24*time.Hour)
	}
	c.RefreshTTL = time.Duration(e.int("REFRESH_TOKEN_EXPIRY_DAYS", "30", 1, 3650)) * 24 * time.Hour
	if e.str("REFRESH_TOKEN_TTL", "") != "" {
		c.RefreshTTL = e.dur("REFRESH_TOKEN_TTL", "", time.Second, 3650*24*time.Hour)
	}
	c.RefreshMaxAge = time.Duration(e.int("REFRESH_TOKEN_MAX_DAYS", "90", 1, 3650)) * 24 * time.Hour
	c.RateLimitRequests = e.int("RATE_LIMIT_REQUESTS", "100", 1, 1<<30)
	c.RateLimitWindow = time.Duration(e.int("RATE_LIMIT_WINDOW", "3600", 1, 30*86400)) * time.Second
	c.LoginRate = e.rate("LOGIN_RATE_LIMIT", "5/m")
	c.LoginBurst = e.int("LOGIN_RATE_BURST", "10", 1, 1<<30)
	c.ClientRate = e.rate("CLIENT_RATE_LIMIT", "100/s")
	c.ClientBurst = e.int("CLIENT_RATE_BURST", "200", 1, 1<<30)
	c.LoginMaxFailures = e.int("LOGIN_MAX_FAILURES", "5", 1, 1<<20)
	c.LoginLockout = e.dur("LOGIN_LOCKOUT", "15m", time.Second, 7*24*time.Hour)
	c.SMTP = auth.SMTPMailer{Host: e.str("SMTP_HOST", ""), Port: e.int("SMTP_PORT", "587", 1, 65535),
		Username: e.str("SMTP_USERNAME", ""), Password: token.Secret(getenv("SMTP_PASSWORD")),
		From: e.str("SMTP_FROM", "")}
	switch c.SMTP.TLSMode = e.str("SMTP_TLS", auth.SMTPStartTLS); c.SMTP.TLSMode {
	case auth.SMTPStartTLS, auth.SMTPImplicitTLS:
		// Port 465 speaks TLS from the first byte: STARTTLS there would
		// wait for a greeting that never comes. Before SMTP_TLS existed the
		// port decided; now an operator must say which, once.
		if c.SMTP.Host != "" && c.SMTP.Port == 465 && e.str("SMTP_TLS", "") == "" {
			e.fail("SMTP_TLS", "unset with SMTP_PORT 465, the implicit TLS port: set it to implicit (or starttls)")
		}
	case auth.SMTPNoTLS:
		// On any network a man in the middle would read the reset links
		// (and the password): clear text only to a relay on this machine.
		if c.SMTP.Host != "" && !loopbackHost(c.SMTP.Host) {
			e.fail("SMTP_TLS", "none is allowed only with a loopback SMTP_HOST (localhost, 127.0.0.0/8, ::1)")
		}
		if c.SMTP.Username != "" {
			e.fail("SMTP_TLS", "none with SMTP_USERNAME set would send the password in clear")
		}
	default:
		e.fail("SMTP_TLS", "want starttls, implicit or none, got %q", httpx.Clip(c.SMTP.TLSMode, 40))
	}
	c.PasswordResetTTL = e.dur("PASSWORD_RESET_TTL", "1h", time.Minute, 24*time.Hour)
	c.PasswordResetURL = e.str("PASSWORD_RESET_URL", c.Issuer+"/password/reset")
	// The link carries a token that works like the password: https in release mode.
	if u, err := url.Parse(c.PasswordResetURL); err != nil || (u.Scheme != "https" && (c.Release || u.Scheme != "http")) || u.Host == "" || u.Fragment != "" {
		e.fail("PASSWORD_RESET_URL", "want an absolute https URL without a fragment (http only in debug mode)")
	}
	if c.EnablePasswordReset && c.SMTP.Host == "" {
		e.fail("SMTP_HOST", "required when ENABLE_PASSWORD_RESET is true")
	}
	// The guide's env file names SMTP_USERNAME, an address, and no SMTP_FROM.
	if a, err := mail.ParseAddress(c.SMTP.Username); c.SMTP.From == "" && err == nil && a.Name == "" && a.Address == c.SMTP.Username {
		c.SMTP.From = c.SMTP.Username
	}
	if c.SMTP.Host != "" && c.SMTP.From == "" { // mail goes out: reset links, and verification links at registration
		e.fail("SMTP_FROM", "required when SMTP_HOST is set")
	}
	// Settings that would load and fail every mail, seen only in the
	// metrics: the From is also the envelope's MAIL FROM, which takes a
	// bare address; the port is SMTP_PORT's alone; a password is sent only
	// with a user name.
	if a, err := mail.ParseAddress(c.SMTP.From); c.SMTP.From != "" && (err != nil || a.Name != "" || a.Address != c.SMTP.From) {
		e.fail("SMTP_FROM", "want a bare address such as oauth@example.com, without a display name")
	}
	if _, err := netip.ParseAddr(c.SMTP.Host); strings.Contains(c.SMTP.Host, ":") && err != nil {
		e.fail("SMTP_HOST", "want a host name or an IP address: the port is SMTP_PORT")
	}
	if c.SMTP.Password.Reveal() != "" && c.SMTP.Username == "" {
		e.fail("SMTP_PASSWORD", "set without SMTP_USERNAME, so it would never be sent")
	}
	c.EmailVerificationTTL = e.dur("EMAIL_VERIFICATION_TTL", "24h", time.Minute, 30*24*time.Hour)
	// Without mail, no address could ever be verified but by the CLI.
	c.RequirePAR, c.DPoPNonce = e.bool("REQUIRE_PAR", "false"), e.bool("DPOP_NONCE", "false")
	c.AuditRetention = time.Duration(e.int("AUDIT_RETENTION_DAYS", "365", 1, 36500)) * 24 * time.Hour
	for _, r := range e.list("RESOURCES") {
		// RFC 8707 §2: an absolute URI without a fragment; https here (http
		// only in debug mode), as what a resource server is reached at.
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "https" && (c.Release || u.Scheme != "http")) || u.Host == "" || u.Fragment != "" || strings.ContainsAny(r, " #") || len(r) > 512 {
			e.fail("RESOURCES", "want absolute https URIs without a fragment (http only in debug mode), got %q", httpx.Clip(r, 40))
		}
		if r == c.Issuer { // a token for none already has aud = ISSUER: listed, it was another consent for the same audience
			e.fail("RESOURCES", "%q is the ISSUER, which tokens naming no resource are for: leave it out", httpx.Clip(r, 40))
		}
		c.Resources = append(c.Resources, r)
	}
	if c.RequireEmailVerification = e.bool("REQUIRE_EMAIL_VERIFICATION", "false"); c.RequireEmailVerification && c.SMTP.Host == "" {
		e.fail("SMTP_HOST", "required when REQUIRE_EMAIL_VERIFICATION is true (the links are mailed)")
	}
	switch c.DynamicRegistration = e.str("ENABLE_DYNAMIC_REGISTRATION", auth.RegistrationOff); c.DynamicRegistration {
	case auth.RegistrationOff, auth.RegistrationToken, auth.RegistrationOpen:
	default:
		e.fail("ENABLE_DYNAMIC_REGISTRATION", "want false, token or open, got %q", httpx.Clip(c.DynamicRegistration, 40))
	}
	c.DB.MaxOpenConns = e.int("DB_MAX_OPEN_CONNS", "100", 1, 10000)
	c.DB.MaxIdleConns = e.int("DB_MAX_IDLE_CONNS", "10", 1, 10000) // store.Open reads 0 as unset: 10
	c.DB.ConnMaxLifetime = e.dur("DB_CONN_MAX_LIFETIME", "1h", 0, 30*24*time.Hour)
	c.MaxConnections = e.int("MAX_CONNECTIONS", "4096", 1, 1<<20)
	if e.err != nil {
		return nil, e.err
	}
	return c, nil
}

// checkIssuer: an absolute URL without query or fragment (RFC 8414 §2),
// https in release mode, and an origin in its one spelling: relying parties
// compare iss with the issuer they were given byte for byte (OIDC Discovery
// §4.3, RFC 9207), so a trailing slash, an upper-case letter or a default
// port would make them refuse every token. Refused, not rewritten: tokens
// already issued carry the spelling, and the operator must see it change.
func checkIssuer(s string, release bool) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || !u.IsAbs():
		return errors.New("want an absolute URL such as https://auth.example.com")
	case u.Scheme != "https" && (release || u.Scheme != "http"):
		return errors.New("must be https in release mode")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return errors.New("must have no query or fragment")
	case u.User != nil:
		return errors.New("must not hold user information")
	case (u.Path != "" && u.Path != "/") || u.RawPath != "":
		// The pages post to the root, the cookies cover the origin (__Host-),
		// and RFC 8414 metadata would be at /.well-known/…/path: a server
		// behind a path prefix would sign no one in, and share its cookies
		// with whatever else the origin serves.
		return errors.New("must have no path: give the server an origin of its own")
	case !browserOrigin(s):
		return fmt.Errorf("must be the origin in its one spelling, which relying parties compare iss with byte for byte: scheme and host in lower-case ASCII, no default port (:443, :80), no trailing slash; got %q", httpx.Clip(s, 80))
	}
	return nil
}

// browserOrigin reports whether o is an http(s) origin spelt as a browser
// sends it in Origin (RFC 6454 §6.2), which httpx.CORS compares byte for
// byte: scheme and host in lower case and ASCII (punycode), no default port,
// nothing after the host. Any other spelling would never match.
func browserOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || strings.ContainsFunc(o, func(r rune) bool { return r > 0x7f }) {
		return false
	}
	host := strings.ToLower(u.Hostname())
	// A browser reads a host whose last label is a number (127.1,
	// 0x7f.0.0.1, 2130706433, 010.0.0.1) as IPv4 and sends it in dotted
	// decimal (WHATWG URL, "ends in a number"), which netip alone parses.
	last := strings.TrimSuffix(host, ".")
	last = last[strings.LastIndexByte(last, '.')+1:]
	numeric := strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") && strings.Trim(last[2:], "0123456789abcdef") == ""
	switch ip, err := netip.ParseAddr(host); {
	case ip.Is4In6(): // browsers write [::ffff:7f00:1], netip [::ffff:127.0.0.1]
		return false
	case ip.Is6():
		host = "[" + ip.String() + "]" // RFC 5952, as browsers write it
	case err != nil && numeric:
		return false
	}
	if n, _ := strconv.Atoi(u.Port()); n != 0 && n != map[string]int{"http": 80, "https": 443}[u.Scheme] {
		host += ":" + strconv.Itoa(n)
	}
	return o == u.Scheme+"://"+host
}

// loopbackHost reports whether host is localhost or a loopback address
// (127.0.0.0/8, ::1), where mail in clear never leaves the machine.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
