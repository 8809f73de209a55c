package storetest

import (
	"bytes"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a database server that a test can cut
// and restore, to see what the code above does while its database is away
// (the server process keeps running; only the network path breaks).
type Proxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
	drop    atomic.Pointer[[]byte]
	hold    atomic.Pointer[held]

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// NewProxy listens on a loopback port and relays every connection to the
// host of rawURL (a postgres:// or mysql:// URL) until the test ends. It
// returns the proxy and rawURL with its host replaced by the proxy's.
func NewProxy(t testing.TB, rawURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

// Cut closes every relayed connection and refuses new ones (they are
// accepted and closed at once, as a dead path or a restarting server does).
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Stall stops relaying on every connection, old and new, without closing
// any: a database that stops answering (a partition, a wedged server),
// which only a deadline ends.
func (p *Proxy) Stall() { p.stalled.Store(true) }

// DropAnswerTo makes the next request that holds sub (a statement's
// argument, say) lose its answer: the server receives it and does the work,
// and the connection closes before a byte of the answer comes back (a
// failover or a reset path mid-response).
func (p *Proxy) DropAnswerTo(sub string) { b := []byte(sub); p.drop.Store(&b) }

// HoldRequest makes the next request that holds sub (a COMMIT, say) wait d
// in the proxy, and what its connection sends after it, then go on to the
// server: a path that stalls one way for a while. The channel it returns
// is closed once the request has been passed on (or found the server gone).
func (p *Proxy) HoldRequest(sub string, d time.Duration) <-chan struct{} {
	h := &held{[]byte(sub), d, make(chan struct{})}
	p.hold.Store(h)
	return h.passed
}

type held struct {
	sub    []byte
	d      time.Duration
	passed chan struct{}
}

// Restore lets bytes and new connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
	p.stalled.Store(false)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.relay(c)
	}
}

func (p *Proxy) relay(c net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	var dropping atomic.Bool // this connection sent DropAnswerTo's request
	pipe := func(dst, src net.Conn, toServer bool) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for n > 0 && p.stalled.Load() { // hold the bytes while stalled
				time.Sleep(5 * time.Millisecond)
			}
			if d := p.drop.Load(); toServer && d != nil && bytes.Contains(buf[:n], *d) && p.drop.CompareAndSwap(d, nil) {
				dropping.Store(true)
			}
			h := p.hold.Load()
			if h != nil && toServer && bytes.Contains(buf[:n], h.sub) && p.hold.CompareAndSwap(h, nil) {
				time.Sleep(h.d)
			} else {
				h = nil
			}
			if !toServer && dropping.Load() {
				return
			}
			if n > 0 {
				_, werr := dst.Write(buf[:n])
				if h != nil {
					close(h.passed)
				}
				if werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(up, c, true)
	go pipe(c, up, false)
	<-done
	c.Close()
	up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}
