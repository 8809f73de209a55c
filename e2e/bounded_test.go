package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"
)

// TestConnectionCap: the real binary with MAX_CONNECTIONS=20 serves 20 idle
// keep-alive connections; beyond them /health is still answered while
// anything else is refused with 503, and once connections close new ones are
// served again.
func TestConnectionCap(t *testing.T) {
	s := startServer(t, "capped", sqliteEnv(t).with("MAX_CONNECTIONS", "20"))
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn, path string) int {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var held []net.Conn
	for i := 0; i < 20; i++ {
		c := dial()
		if st := get(c, "/livez"); st != http.StatusOK {
			t.Fatalf("connection %d of 20: %d; want 200", i, st)
		}
		held = append(held, c)
	}
	if st := get(dial(), "/api/v1/profile"); st != http.StatusServiceUnavailable {
		t.Fatalf("a 21st connection's request: %d; want 503", st)
	}
	if st := get(dial(), "/health"); st != http.StatusOK {
		t.Fatalf("/health on a 21st connection: %d; want 200", st)
	}
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(dial(), "/api/v1/profile") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("new connections still refused after the held ones closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// At least the one refused above (more if a retry came before the
	// server saw the held connections close).
	if r := s.get(t, "/metrics", ""); r.status != http.StatusOK || !regexp.MustCompile(`(?m)^oauth2_connections_refused_total [1-9]`).Match(r.body) {
		t.Errorf("oauth2_connections_refused_total not counted: %s", clip(string(r.body), 200))
	}
}
