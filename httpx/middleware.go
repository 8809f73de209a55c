package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
)

// Info is what the access log line says about a request. Observe puts it in
// the request's context; handlers may fill in UserID and ClientID.
type Info struct {
	ID       string
	ClientIP netip.Addr
	UserID   string
	ClientID string
	Public   bool      // ClientID is a public client's: named, not authenticated, or an access token's that anyone may get
	Audit    []Audited // the audit events the request made
}

// Audited is an audit event a request made (auth's auditEvent adds it).
// Observe notes those a write appended (Ref's ok: the store sets an
// event's hash then, and clears it if the commit fails) in the request's
// access log line, so that the chain's hashes exist outside the database
// too (audit verify --head finds a cut tail with one), and counts them.
type Audited interface {
	Ref() (ref AuditRef, ok bool)
}

// AuditRef is an audit event a request wrote, as its access log line shows it.
type AuditRef struct {
	ID     int64  `json:"id"`
	Action string `json:"action"`
	Hash   string `json:"hash"`
}

type infoKey struct{}

// InfoFrom returns the request's Info (an empty one outside Observe).
func InfoFrom(r *http.Request) *Info { return InfoOf(r.Context()) }

// InfoOf returns the Info of the request ctx belongs to.
func InfoOf(ctx context.Context) *Info {
	if i, ok := ctx.Value(infoKey{}).(*Info); ok {
		return i
	}
	return &Info{}
}

// Metrics are the HTTP series of API.md.
type Metrics struct {
	Requests    *metrics.CounterVec   // oauth2_http_requests_total{method,endpoint,status}
	Duration    *metrics.HistogramVec // oauth2_http_request_duration_seconds{method,endpoint}
	RateLimited *metrics.Counter      // oauth2_rate_limited_total
	Audit       *metrics.CounterVec   // oauth2_audit_events_total{action}
}

// NewMetrics registers the HTTP series in reg; auditActions are the audit
// log's actions, each present at 0.
func NewMetrics(reg *metrics.Registry, auditActions ...string) *Metrics {
	return &Metrics{
		Requests:    reg.CounterVecN("oauth2_http_requests_total", "HTTP requests by method, route pattern and status.", []string{"method", "endpoint", "status"}),
		Duration:    reg.HistogramVec("oauth2_http_request_duration_seconds", "HTTP request latency by method and route pattern.", "method", "endpoint"),
		RateLimited: reg.Counter("oauth2_rate_limited_total", "Requests refused with 429 by a rate limit (per client IP or per client)."),
		Audit:       reg.CounterVec("oauth2_audit_events_total", "Audit events written by requests, by action.", "action", auditActions...),
	}
}

// recorder captures the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	info   Info
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxLogText is the most bytes of the path or the User-Agent an access log
// line holds (README, Logs): a request line and a header may each hold
// 32 KiB, which every request would write to the log twice over.
const maxLogText = 1024

// Observe is the outermost middleware. It gives the request an id (echoed in
// X-Request-ID), resolves its client IP, and when the handler returns writes
// one access log line and the request metrics. The endpoint label is the
// ServeMux pattern's path (the raw path never becomes a label). Middleware
// between Observe and the ServeMux must pass the request on unchanged, since
// the mux records the matched pattern in it.
func Observe(log *slog.Logger, m *Metrics, ips IPResolver, now func() time.Time, next http.Handler) http.Handler {
	// Request ids are a random per-process prefix and a counter: unique
	// without a random read per request.
	var b [6]byte
	rand.Read(b[:])
	prefix := hex.EncodeToString(b[:]) + "-"
	var n atomic.Uint64
	var warned atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := now()
		rec := &recorder{ResponseWriter: w}
		rec.info.ID = prefix + strconv.FormatUint(n.Add(1), 36)
		rec.info.ClientIP = ips.ClientIP(r)
		// A proxy on loopback, a private network or link-local (Cloud Run's
		// front end) that nobody told us to trust makes every client its one
		// address: one per-IP budget for all, and fail2ban bans the proxy.
		// Said once per process; the header's value is the client's to
		// write, so it is not logged.
		if a := rec.info.ClientIP; len(ips.Trusted) == 0 && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast()) &&
			(r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("X-Real-IP") != "") && warned.CompareAndSwap(false, true) {
			log.Warn("forwarding headers ignored: set TRUSTED_PROXIES to the proxy's address, or every client is the proxy", "client_ip", a.String())
		}
		w.Header().Set("X-Request-ID", rec.info.ID)
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, &rec.info))
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		d := now().Sub(start)
		route := routeOf(r.Pattern)
		method := methodLabel(r.Method)
		m.Requests.With(method, route, statusLabel(rec.status)).Inc()
		m.Duration.With(method, route).Observe(d.Seconds())
		attrs := []slog.Attr{
			slog.String("request_id", rec.info.ID),
			slog.String("method", Clip(r.Method, maxLogText)),
			slog.String("route", route),
			slog.String("path", Clip(r.URL.Path, maxLogText)),
			slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.Int64("bytes", rec.bytes),
			slog.String("client_ip", rec.info.ClientIP.String()),
			slog.String("user_agent", Clip(r.UserAgent(), maxLogText)),
		}
		if rec.info.UserID != "" {
			attrs = append(attrs, slog.String("user_id", rec.info.UserID))
		}
		var written []AuditRef
		for _, a := range rec.info.Audit {
			if ref, ok := a.Ref(); ok {
				m.Audit.With(ref.Action).Inc()
				written = append(written, ref)
			}
		}
		if len(written) > 0 {
			attrs = append(attrs, slog.Any("audit", written))
		}
		if rec.info.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", rec.info.ClientID))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// routeOf turns a ServeMux pattern ("GET /api/v1/users/{id}") into the
// endpoint label ("/api/v1/users/{id}").
func routeOf(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, p, ok := strings.Cut(pattern, " "); ok {
		pattern = p
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 { // drop a host
		pattern = pattern[i:]
	}
	return pattern
}

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// methodLabel keeps the method label to a fixed set: a client may send any token.
func methodLabel(m string) string {
	if slices.Contains(knownMethods, m) {
		return m
	}
	return "OTHER"
}

var statusLabels = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusLabel(code int) string {
	if code >= 0 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return "other"
}

// Recover turns a panic in a handler into a logged error and a 500 answer
// with no detail. http.ErrAbortHandler is re-raised, as net/http expects.
func Recover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.ErrorContext(r.Context(), "panic", "request_id", InfoFrom(r).ID, "err", v, "stack", string(debug.Stack()))
			if rec, ok := w.(*recorder); !ok || rec.status == 0 {
				WriteError(w, r, nil, E(KindInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// SecureHeaders sets the headers every response carries. The default
// Content-Security-Policy forbids everything; HTML pages set their own. The
// values are shared, read-only slices: setting them costs no allocation.
func SecureHeaders(release bool, next http.Handler) http.Handler {
	fixed := map[string][]string{
		"X-Content-Type-Options":     {"nosniff"},
		"X-Frame-Options":            {"DENY"},
		"Referrer-Policy":            {"no-referrer"},
		"Content-Security-Policy":    {"default-src 'none'; frame-ancestors 'none'"},
		"Cross-Origin-Opener-Policy": {"same-origin"},
	}
	if release {
		fixed["Strict-Transport-Security"] = []string{"max-age=63072000; includeSubDomains"}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range fixed {
			h[k] = v // keys are canonical already
		}
		next.ServeHTTP(w, r)
	})
}

// CORS allows cross-origin requests from exactly the listed origins. Bearer
// tokens travel in a header, so credentials (cookies) are never allowed.
// Preflight requests are answered here, before routing. A browser client
// sends DPoP proofs in the DPoP header and reads the server's nonce from
// DPoP-Nonce (RFC 9449 §8): both must be named, or the browser withholds them.
func CORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		ok := origin != "" && allowed[origin]
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "DPoP-Nonce, Retry-After, WWW-Authenticate, X-Request-ID")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !ok {
				WriteError(w, r, nil, E(KindForbidden, "origin not allowed"))
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE") // PUT: an RFC 7592 update
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LimitBody caps every request body at MaxBody bytes. It replaces r.Body in
// place (see Observe for why the request itself is not copied). It does not
// answer a declared length over the limit itself: ReadBody refuses that
// before reading a byte, and the handler answers 413 on its own surface
// (OAuth JSON with no-store, REST JSON or a page), as for a body cut while read.
func LimitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		next.ServeHTTP(w, r)
	})
}

// RateLimit answers 429 with Retry-After, written by write (the route's
// surface: REST, OAuth or a page), when the bucket in l of the request's
// key (ByIP or ByClient) is empty.
func RateLimit[K any](l Budget[K], key func(*Info) K, m *Metrics, now func() time.Time, write func(http.ResponseWriter, *http.Request, error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.Allow(key(InfoFrom(r)), now()); !ok {
			m.RateLimited.Inc()
			write(w, r, TooMany(wait))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Budget is a rate-limit table: ratelimit.Limiter by client IP,
// ratelimit.Named by client.
type Budget[K any] interface {
	Allow(key K, now time.Time) (ok bool, retryAfter time.Duration)
}

// ByIP keys a budget by the client IP (a ratelimit.Limiter).
func ByIP(i *Info) netip.Addr { return i.ClientIP }

// ByClient keys a budget by the client the caller check noted in the
// request's Info (a ratelimit.Named): the client it authenticated, or the
// one the access token was issued to. A public client, which anyone may
// name and whose tokens anyone may get, is keyed with the caller's address
// (an IPv6 /64) too: a stranger naming it, or one of its users, spends only
// that address's share, not its other users' budget.
func ByClient(i *Info) string {
	if i.Public {
		return i.ClientID + " " + ratelimit.KeyOf(i.ClientIP).String()
	}
	return i.ClientID
}

// ByPublicClient keys the budget a public client has over all addresses
// together (a ratelimit.Named behind ByClient's): its client_id. Any other
// caller, which has no such budget, is "".
func ByPublicClient(i *Info) string {
	if i.Public {
		return i.ClientID
	}
	return ""
}

// TooMany is the answer of a spent budget.
func TooMany(wait time.Duration) *Error {
	return &Error{Kind: KindRateLimited, Message: "too many requests; retry later", RetryAfter: wait}
}

// IPResolver finds a request's client address. Forwarding headers are
// believed only from peers inside the trusted prefixes (TRUSTED_PROXIES);
// otherwise the socket's address is the client, so a client cannot choose
// the address its rate limit and its log lines are keyed by.
type IPResolver struct {
	Trusted []netip.Prefix
}

func (p IPResolver) trusted(a netip.Addr) bool {
	return slices.ContainsFunc(p.Trusted, func(t netip.Prefix) bool { return t.Contains(a) })
}

// ClientIP returns the client address of r. From a trusted peer it walks
// X-Forwarded-For from the right, skipping trusted proxies, and returns the
// first address that is not one (or X-Real-IP when there is no
// X-Forwarded-For). A malformed entry stops the walk at the last good hop.
func (p IPResolver) ClientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if len(p.Trusted) == 0 || !p.trusted(addr) {
		return addr
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		if a, err := netip.ParseAddr(strings.Trim(r.Header.Get("X-Real-IP"), ows)); err == nil {
			return a.Unmap()
		}
		return addr
	}
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.Trim(hops[j], ows))
			if err != nil {
				return addr
			}
			addr = a.Unmap()
			if !p.trusted(addr) {
				return addr
			}
		}
	}
	return addr
}

// ows is HTTP's optional whitespace (RFC 9110 section 5.6.3: SP and HTAB),
// the only bytes trimmed around an address: strings.TrimSpace would also
// take a no-break space or a vertical tab, giving one address two spellings.
const ows = " \t"

// ParsePrefixes reads a comma-separated list of CIDRs or single addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		// Peers are compared unmapped (ClientIP), and no IPv4 address is in
		// an IPv6 prefix: an IPv4-mapped range would silently match nothing.
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%s: write an IPv4-mapped range as IPv4 (10.0.0.0/8)", f)
		}
		out = append(out, p.Masked())
	}
	// A link-local peer comes with its interface ([fe80::1%eth0]:port), and
	// the same address names another host on each link: an entry would match
	// no peer (Contains is false for a zoned address), or, compared without
	// the zone, trust every link's fe80::1. The proxy's other address serves.
	// A /0 believes every peer's forwarded address, so any client names its
	// own and escapes the per-address budgets and login throttle (RFC 9700
	// §4.13): the proxies' own ranges are what belong here.
	for _, p := range out {
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return nil, fmt.Errorf("%s: link-local addresses name a host per interface: trust the proxy's global or unique local address", p)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%s trusts every address, so any client could name its own: list the proxies' ranges", p)
		}
	}
	return out, nil
}
