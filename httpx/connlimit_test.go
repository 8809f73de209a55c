package httpx

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"oauth2-api/metrics"
)

// limitedServer serves h behind cl on a loopback listener, as main.go does.
func limitedServer(t *testing.T, cl *ConnLimit, h http.Handler) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: cl.Guard(h), ConnContext: cl.ConnContext}
	cl.Server, cl.Log = srv, slog.New(slog.DiscardHandler)
	go srv.Serve(cl.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one request on c and reads its answer; the deadline is only
// there to fail instead of hanging. A held request's answer is read long
// after its get began (the test fills the reserve meanwhile), so it is a
// generous one: at 10 s, a loaded CI machine timed a held request out
// before the test released it, which read as an answer that kept its
// connection.
func get(c net.Conn, path string) (status int, closeAfter bool) {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, true
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, true
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Close
}

// Up to Max connections are served; the next Reserve are answered at the
// probes only (503 elsewhere) and closed; beyond those, a connection is
// closed at once. A closed connection gives its place back. From 7/8 of
// Max open, answers close their connection; keep-alives come back once a
// connection is accepted with fewer than 3/4 of Max open, not before.
func TestConnLimit(t *testing.T) {
	reg := metrics.NewRegistry()
	cl := &ConnLimit{Max: 8, Reserve: 2, Refused: reg.Counter("refused", "x"), Saturated: reg.Counter("saturated", "x")}
	entered, release := make(chan struct{}), make(chan struct{})
	addr := limitedServer(t, cl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" { // a request in progress holds its connection
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	dial := func() net.Conn { return dialT(t, addr) }

	// Max connections, each in the middle of a request, are served.
	held := make(chan bool, cl.Max) // each held request's answer: did it close?
	for i := 0; i < cl.Max; i++ {
		c := dial()
		go func() {
			s, closed := get(c, "/hold")
			held <- s == http.StatusOK && closed
		}()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d within the limit not served", i)
		}
	}
	// Beyond Max: the probes are answered, the rest is refused; both close.
	if s, closed := get(dial(), "/health"); s != http.StatusOK || !closed {
		t.Fatalf("/health beyond the limit: %d (closed %v); want 200 and close", s, closed)
	}
	if s, closed := get(dial(), "/api"); s != http.StatusServiceUnavailable || !closed {
		t.Fatalf("/api beyond the limit: %d (closed %v); want 503 and close", s, closed)
	}
	// Fill the reserve with silent connections: the next one is closed at once.
	var silent []net.Conn
	for i := 0; i < cl.Reserve; i++ {
		silent = append(silent, dial())
	}
	waitFor(t, func() bool { return cl.open.Load() == int64(cl.Max+cl.Reserve) })
	c := dial()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a connection beyond the reserve was kept: read %d, %v", n, err)
	}
	text := scrape(reg)
	// At least the 503 and the closed one; under load a probe's connection
	// may not have closed yet when the reserve fills, and that refusal counts too.
	if m := regexp.MustCompile(`(?m)^refused (\d+)$`).FindStringSubmatch(text); m == nil || len(m[1]) != 1 || m[1] < "2" {
		t.Errorf("refusals not counted (one 503, one closed): %s", text)
	}
	// Closed connections give their places back. With 5 requests still
	// held, a new connection is the 6th open, 3/4 of Max: still saturated,
	// its answer closes it.
	for _, c := range silent {
		c.Close()
	}
	for range 3 {
		release <- struct{}{}
		if !<-held {
			t.Fatal("an answer while 7/8 of Max were open did not close its connection")
		}
	}
	waitFor(t, func() bool { return cl.open.Load() == 5 })
	if s, closed := get(dial(), "/api"); s != http.StatusOK || !closed {
		t.Fatalf("the 6th connection of 8: %d (closed %v); want 200 and close", s, closed)
	}
	// With 4 held, the next is the 5th: keep-alives are on again.
	release <- struct{}{}
	<-held
	waitFor(t, func() bool { return cl.open.Load() == 4 })
	if s, closed := get(dial(), "/api"); s != http.StatusOK || closed {
		t.Fatalf("the 5th connection of 8: %d (closed %v); want 200, kept open", s, closed)
	}
	close(release)
	if got := cl.Saturated.Value(); got != 1 {
		t.Errorf("saturated counted %d times; want 1", got)
	}
}

// One client opens Max connections, sends one request on each and keeps
// them idle (re-sending one a minute would keep them past IdleTimeout).
// The limit must not then lock everyone else out: the idle connections are
// closed once 7/8 of Max are open, and a new client is served, on a
// connection kept alive again. The old code answered it 503.
func TestConnLimitIdleConnectionsDoNotLockOut(t *testing.T) {
	cl := &ConnLimit{Max: 8, Reserve: 2, Refused: metrics.NewRegistry().Counter("r", "x"), Saturated: metrics.NewRegistry().Counter("s", "x")}
	addr := limitedServer(t, cl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for i := 0; i < cl.Max; i++ {
		if s, _ := get(dialT(t, addr), "/api"); s != http.StatusOK {
			t.Fatalf("the attacker's connection %d: %d; want 200", i, s)
		}
	}
	if s, closed := get(dialT(t, addr), "/api"); s != http.StatusOK || closed {
		t.Fatalf("a new client beside %d idle connections: %d (closed %v); want 200, kept open", cl.Max, s, closed)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The limited listener's connections keep CloseWrite: net/http half-closes
// a connection before closing it after an answer it writes itself (431 for
// oversized headers), so that the client reads the answer instead of a
// reset; a wrapper that hid it made the e2e header tests fail at random.
func TestConnLimitKeepsCloseWrite(t *testing.T) {
	cl := &ConnLimit{Max: 10, Reserve: 1, Refused: metrics.NewRegistry().Counter("r", "x")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := cl.Listener(ln).Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", c)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}
