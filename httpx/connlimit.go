package httpx

import (
	"context"
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
type ConnLimit struct {
	Max, Reserve int
	Refused      *metrics.Counter // oauth2_connections_refused_total

	open atomic.Int64
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
