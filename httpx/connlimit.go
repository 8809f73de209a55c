package httpx

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"oauth2-api/metrics"
)

// ConnLimit caps concurrent client connections (MAX_CONNECTIONS): each one
// holds a goroutine, buffers and a descriptor, and idle keep-alive
// connections are otherwise accepted without end. Up to Max connections
// are served as usual. Beyond it, a few more (Reserve) are accepted for
// the probes only: they are answered at /health and /livez, and 503 with
// Retry-After everywhere else, then closed, so an orchestrator still sees
// a saturated instance alive and the client a clear refusal. Beyond
// those, a connection is closed as soon as it is accepted.
//
// An idle keep-alive connection costs its client one request per
// IdleTimeout (75 s) to hold, so one address could otherwise hold all Max and
// lock everyone else out. When the open connections reach 7/8 of Max, the
// Server's keep-alives are turned off: its idle connections are closed at
// once and each answer carries Connection: close, so a place is held only
// while a request is read or served (ReadTimeout, WriteTimeout). They are
// turned on again when a connection is accepted with fewer than 3/4 of Max
// open; the gap keeps the state from flapping at one threshold. A client
// behind a proxy loses nothing but reuse: the proxy opens new connections.
type ConnLimit struct {
	Max, Reserve int
	Refused      *metrics.Counter // oauth2_connections_refused_total
	Saturated    *metrics.Counter // oauth2_connections_saturated_total
	Server       *http.Server     // the server whose keep-alives are turned off
	Log          *slog.Logger

	open atomic.Int64
	// saturated is read and written by Accept alone, which http.Server.Serve
	// calls from one goroutine. Only Accept changes the state (not Close):
	// SetKeepAlivesEnabled(false) closes idle connections, calling Close, and
	// no two changes can then race to apply in the wrong order.
	saturated bool
}

// Listener wraps ln so that its connections count against the limit.
func (cl *ConnLimit) Listener(ln net.Listener) net.Listener { return &limitListener{ln, cl} }

type limitListener struct {
	net.Listener
	cl *ConnLimit
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.cl.open.Add(1)
		switch {
		case !l.cl.saturated && n >= int64(l.cl.Max-l.cl.Max/8):
			l.cl.saturated = true
			l.cl.Saturated.Inc()
			l.cl.Log.Warn("client connections near MAX_CONNECTIONS: keep-alives off, idle connections closed", "open", n, "max_connections", l.cl.Max)
			l.cl.Server.SetKeepAlivesEnabled(false)
		case l.cl.saturated && n < int64(l.cl.Max-l.cl.Max/4):
			l.cl.saturated = false
			l.cl.Log.Warn("client connections below 3/4 of MAX_CONNECTIONS: keep-alives on again", "open", n, "max_connections", l.cl.Max)
			l.cl.Server.SetKeepAlivesEnabled(true)
		}
		if n <= int64(l.cl.Max+l.cl.Reserve) {
			return &limitedConn{Conn: c, cl: l.cl, probesOnly: n > int64(l.cl.Max)}, nil
		}
		l.cl.open.Add(-1)
		l.cl.Refused.Inc()
		c.Close()
	}
}

// limitedConn gives its place back when it closes.
type limitedConn struct {
	net.Conn
	cl         *ConnLimit
	probesOnly bool
	once       sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.cl.open.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite passes through to the TCP connection: net/http half-closes a
// connection before closing it after an error answer (431, 400), so that
// the client reads the answer instead of a reset; hiding it would break that.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type probesOnlyKey struct{}

// ConnContext is for http.Server.ConnContext: it marks the requests of a
// connection accepted beyond Max.
func (cl *ConnLimit) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok && lc.probesOnly {
		return context.WithValue(ctx, probesOnlyKey{}, true)
	}
	return ctx
}

// Guard answers the requests of a connection accepted beyond Max: the
// probes as usual, anything else 503; either way the connection then
// closes, giving its place back.
func (cl *ConnLimit) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(probesOnlyKey{}) == nil {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		if r.URL.Path == "/health" || r.URL.Path == "/livez" {
			h.ServeHTTP(w, r)
			return
		}
		cl.Refused.Inc()
		WriteError(w, r, nil, &Error{Kind: KindUnavailable, Message: "too many connections; retry later", RetryAfter: time.Second})
	})
}
