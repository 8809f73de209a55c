package ratelimit

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// roomy is a maxKeys large enough that the few keys of a test never fill a
// shard, so nothing is evicted behind the test's back.
const roomy = maxShards * 100

// testNow is the fixed start of every test clock; tests advance it explicitly
// and never sleep.
var testNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// addr4 returns the IPv4 address whose 32 bits are n, so that distinct n give
// distinct keys.
func addr4(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// mustAllow calls l.Allow n times at now and fails unless every call is
// allowed.
func mustAllow(t testing.TB, l *Limiter, addr netip.Addr, now time.Time, n int) {
	t.Helper()
	for i := range n {
		if ok, retry := l.Allow(addr, now); !ok {
			t.Fatalf("Allow(%v) call %d of %d = false, %v; want true", addr, i+1, n, retry)
		}
	}
}

// mustRefuse fails unless l.Allow refuses addr at now, and returns the retry
// delay, which must be positive.
func mustRefuse(t testing.TB, l *Limiter, addr netip.Addr, now time.Time) time.Duration {
	t.Helper()
	ok, retry := l.Allow(addr, now)
	if ok {
		t.Fatalf("Allow(%v) = true; want false", addr)
	}
	if retry <= 0 {
		t.Fatalf("Allow(%v) refused with retryAfter %v; want > 0", addr, retry)
	}
	return retry
}

func TestBurstThenRefuse(t *testing.T) {
	l := New(2, 3, roomy) // 2 per second: one token every 500ms
	a := netip.MustParseAddr("192.0.2.1")

	mustAllow(t, l, a, testNow, 3)
	if got, want := mustRefuse(t, l, a, testNow), 500*time.Millisecond; got != want {
		t.Fatalf("retryAfter = %v; want %v", got, want)
	}
	// A refused call must not consume a token, or a client retrying too
	// early would push its own retry time further out each time.
	for range 10 {
		if got, want := mustRefuse(t, l, a, testNow), 500*time.Millisecond; got != want {
			t.Fatalf("retryAfter after repeated refusals = %v; want %v", got, want)
		}
	}
	if got, want := mustRefuse(t, l, a, testNow.Add(499*time.Millisecond)), time.Millisecond; got != want {
		t.Fatalf("retryAfter 1ms before refill = %v; want %v", got, want)
	}
}

func TestRefill(t *testing.T) {
	l := New(1, 3, roomy)
	a := netip.MustParseAddr("192.0.2.1")

	mustAllow(t, l, a, testNow, 3)
	mustRefuse(t, l, a, testNow)

	// One second gives back exactly one token.
	now := testNow.Add(time.Second)
	mustAllow(t, l, a, now, 1)
	mustRefuse(t, l, a, now)

	// A long pause refills the bucket up to the burst, never beyond.
	now = now.Add(time.Hour)
	mustAllow(t, l, a, now, 3)
	mustRefuse(t, l, a, now)
}

func TestKeysIndependent(t *testing.T) {
	l := New(1, 2, roomy)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")

	mustAllow(t, l, a, testNow, 2)
	mustRefuse(t, l, a, testNow)
	mustAllow(t, l, b, testNow, 2)
	mustRefuse(t, l, b, testNow)
	if got := l.Len(); got != 2 {
		t.Fatalf("Len() = %d; want 2", got)
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		in   netip.Addr
		want netip.Addr
	}{
		{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1")},
		{netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("192.0.2.1")},
		{netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), netip.MustParseAddr("2001:db8:1:2::")},
		{netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff"), netip.MustParseAddr("2001:db8:1:2::")},
		{netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::")},
		{netip.MustParseAddr("::1"), netip.MustParseAddr("::")},
		// ::192.0.2.1 is an IPv4-compatible (deprecated) IPv6 address, not
		// an IPv4-mapped one: it is treated as IPv6.
		{netip.MustParseAddr("::192.0.2.1"), netip.MustParseAddr("::")},
		{netip.Addr{}, netip.Addr{}},
	}
	for _, tt := range tests {
		if got := KeyOf(tt.in); got != tt.want {
			t.Errorf("KeyOf(%v) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestIPv6GroupedBy64(t *testing.T) {
	l := New(1, 2, roomy)
	a := netip.MustParseAddr("2001:db8::1")

	mustAllow(t, l, a, testNow, 2)
	mustRefuse(t, l, a, testNow)
	// Same /64, different interface identifier: same bucket.
	mustRefuse(t, l, netip.MustParseAddr("2001:db8::dead:beef"), testNow)
	mustRefuse(t, l, netip.MustParseAddr("2001:db8::ffff:ffff:ffff:ffff"), testNow)
	// The neighbouring /64 is another subscriber.
	mustAllow(t, l, netip.MustParseAddr("2001:db8:0:1::1"), testNow, 2)
	if got := l.Len(); got != 2 {
		t.Fatalf("Len() = %d; want 2", got)
	}
}

func TestIPv4MappedUnmapped(t *testing.T) {
	l := New(1, 2, roomy)

	mustAllow(t, l, netip.MustParseAddr("192.0.2.1"), testNow, 1)
	mustAllow(t, l, netip.MustParseAddr("::ffff:192.0.2.1"), testNow, 1)
	mustRefuse(t, l, netip.MustParseAddr("192.0.2.1"), testNow)
	mustRefuse(t, l, netip.MustParseAddr("::ffff:192.0.2.1"), testNow)
	if got := l.Len(); got != 1 {
		t.Fatalf("Len() = %d; want 1", got)
	}
}

func TestInvalidAddrHasOwnKey(t *testing.T) {
	l := New(1, 1, roomy)

	mustAllow(t, l, netip.Addr{}, testNow, 1)
	mustRefuse(t, l, netip.Addr{}, testNow)
	// Neither unspecified address shares the invalid address's bucket.
	mustAllow(t, l, netip.MustParseAddr("0.0.0.0"), testNow, 1)
	mustAllow(t, l, netip.MustParseAddr("::"), testNow, 1)
	if got := l.Len(); got != 3 {
		t.Fatalf("Len() = %d; want 3", got)
	}
}

func TestNewPanics(t *testing.T) {
	tests := []struct {
		name    string
		r       rate.Limit
		burst   int
		maxKeys int
	}{
		{"zero rate", 0, 1, 1},
		{"negative rate", -1, 1, 1},
		{"infinite rate", rate.Inf, 1, 1},
		{"zero burst", 1, 0, 1},
		{"zero maxKeys", 1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("New(%v, %d, %d) did not panic", tt.r, tt.burst, tt.maxKeys)
				}
			}()
			New(tt.r, tt.burst, tt.maxKeys)
		})
	}
}

func TestCapacitiesAddUpToMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 2, 63, 64, 65, 100, 1000, 100_000} {
		l := New(1, 1, maxKeys)
		total, most := 0, 0
		for i := range l.shards {
			c := l.shards[i].capacity
			if c < 1 {
				t.Errorf("New(_, _, %d): shard %d has capacity %d; want >= 1", maxKeys, i, c)
			}
			total += c
			most = max(most, c)
		}
		ceil := (maxKeys + len(l.shards) - 1) / len(l.shards)
		if total != maxKeys || most > ceil {
			t.Errorf("New(_, _, %d): capacities add up to %d, largest %d; want %d, at most %d",
				maxKeys, total, most, maxKeys, ceil)
		}
	}
}

func TestLenBoundedSmall(t *testing.T) {
	for _, maxKeys := range []int{1, 2, 63, 64, 65, 100} {
		l := New(1, 1, maxKeys)
		for i := range uint32(10_000) {
			l.Allow(addr4(i), testNow)
			if got := l.Len(); got > maxKeys {
				t.Fatalf("maxKeys %d: Len() = %d after %d addresses", maxKeys, got, i+1)
			}
		}
		// No bucket is idle at testNow, so every shard stays full.
		if got := l.Len(); got != maxKeys {
			t.Errorf("maxKeys %d: Len() = %d after 10000 addresses; want %d", maxKeys, got, maxKeys)
		}
	}
}

func TestLenBoundedMillion(t *testing.T) {
	const maxKeys = 10_000
	l := New(1, 2, maxKeys)
	now := testNow
	for i := range uint32(1_000_000) {
		// Time moves on, so some shards find idle entries to sweep and
		// others must evict active ones.
		if i%1000 == 0 {
			now = now.Add(100 * time.Millisecond)
		}
		l.Allow(addr4(i), now)
		if i%1000 == 999 {
			if got := l.Len(); got > maxKeys {
				t.Fatalf("Len() = %d after %d addresses; want <= %d", got, i+1, maxKeys)
			}
		}
	}
	for i := range l.shards {
		s := &l.shards[i]
		if len(s.buckets) > s.capacity {
			t.Errorf("shard %d holds %d keys; capacity %d", i, len(s.buckets), s.capacity)
		}
	}
	if got := l.Len(); got > maxKeys || got < maxKeys/2 {
		t.Fatalf("Len() = %d after 1000000 addresses; want between %d and %d", got, maxKeys/2, maxKeys)
	}
}

// addrsInShard returns n distinct IPv4 addresses, none equal to skip, that
// l keeps in shard s.
func addrsInShard(t testing.TB, l *Limiter, s *shard[netip.Addr], skip netip.Addr, start uint32, n int) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for i := start; len(out) < n; i++ {
		a := addr4(i)
		if a != skip && l.shardFor(KeyOf(a)) == s {
			out = append(out, a)
		}
	}
	return out
}

func TestRefusedStaysRefusedWhenIdleEntriesExist(t *testing.T) {
	const maxKeys = 64 * 8 // 8 keys per shard
	l := New(1, 3, maxKeys)
	victim := netip.MustParseAddr("198.51.100.7")
	s := l.shardFor(KeyOf(victim))

	// At testNow the victim and enough others to fill its shard make one
	// request each. One second later every bucket is full again.
	mustAllow(t, l, victim, testNow, 1)
	for _, a := range addrsInShard(t, l, s, victim, 1, s.capacity-1) {
		mustAllow(t, l, a, testNow, 1)
	}
	if got := len(s.buckets); got != s.capacity {
		t.Fatalf("shard holds %d keys; want it full at %d", got, s.capacity)
	}

	// The victim spends its burst and is refused; the others stay idle.
	now := testNow.Add(time.Second)
	mustAllow(t, l, victim, now, 3)
	want := mustRefuse(t, l, victim, now)

	// New addresses arrive in the full shard. The idle entries must go
	// first, all at once in one sweep; the victim's state must survive.
	for i, a := range addrsInShard(t, l, s, victim, 1<<24, s.capacity-1) {
		mustAllow(t, l, a, now, 1)
		if got, want := len(s.buckets), 2+i; got != want {
			t.Fatalf("shard holds %d keys after %d new addresses; want %d (the victim and the new ones)", got, i+1, want)
		}
		if got := mustRefuse(t, l, victim, now); got != want {
			t.Fatalf("victim retryAfter = %v after new address %v; want %v", got, a, want)
		}
	}
}

func TestRefusedStaysRefusedUnderFlood(t *testing.T) {
	// Here no entry is ever idle, so every new address forces an eviction
	// of an active entry. The victim, having the fewest tokens, must never
	// be the one chosen.
	const maxKeys = 1000
	l := New(1, 3, maxKeys)
	victim := netip.MustParseAddr("198.51.100.7")

	mustAllow(t, l, victim, testNow, 3)
	want := mustRefuse(t, l, victim, testNow)
	for i := range uint32(100_000) {
		mustAllow(t, l, addr4(i), testNow, 1)
		if i%100 == 0 {
			if got := mustRefuse(t, l, victim, testNow); got != want {
				t.Fatalf("victim retryAfter = %v after %d new addresses; want %v", got, i+1, want)
			}
		}
	}
	if got := l.Len(); got != maxKeys {
		t.Fatalf("Len() = %d; want %d", got, maxKeys)
	}
}

func TestSweep(t *testing.T) {
	l := New(1, 2, roomy)
	for i := range uint32(10) {
		mustAllow(t, l, addr4(i), testNow, 1)
	}
	if got := l.Sweep(testNow); got != 0 {
		t.Fatalf("Sweep(testNow) = %d; want 0, no bucket is full yet", got)
	}

	now := testNow.Add(time.Second)
	victim := netip.MustParseAddr("198.51.100.7")
	mustAllow(t, l, victim, now, 2)
	if got := l.Sweep(now); got != 10 {
		t.Fatalf("Sweep(now) = %d; want 10", got)
	}
	if got := l.Len(); got != 1 {
		t.Fatalf("Len() after Sweep = %d; want 1", got)
	}
	mustRefuse(t, l, victim, now)

	if got := l.Sweep(now.Add(2 * time.Second)); got != 1 {
		t.Fatalf("Sweep(now+2s) = %d; want 1", got)
	}
	if got := l.Len(); got != 0 {
		t.Fatalf("Len() after last Sweep = %d; want 0", got)
	}
}

// TestSweepReturnsMemory floods a limiter with addresses, lets every bucket
// go idle and checks that Sweep gives the heap back. Go maps never shrink
// when keys are deleted, so without a rebuild the shards' maps would keep
// the flood's size for the life of the process.
func TestSweepReturnsMemory(t *testing.T) {
	const keys = 500_000
	heap := func() int64 {
		// The second GC frees what the first one's finalizers released.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}

	l := New(1, 1, 2*keys) // roomy: the flood evicts nothing
	empty := heap()
	for i := range uint32(keys) {
		l.Allow(addr4(i), testNow)
	}
	if got := l.Len(); got != keys {
		t.Fatalf("Len() = %d after %d addresses; want %d", got, keys, keys)
	}
	full := heap()

	// One second on, every bucket has refilled: all of them are idle but
	// the victim's, which must keep its state through the shrinking.
	now := testNow.Add(time.Second)
	victim := netip.MustParseAddr("198.51.100.7")
	mustAllow(t, l, victim, now, 1)
	if got := l.Sweep(now); got != keys {
		t.Fatalf("Sweep = %d; want %d", got, keys)
	}
	mustRefuse(t, l, victim, now)
	swept := heap()
	runtime.KeepAlive(l)

	t.Logf("heap: empty %d, after %d addresses %d, after Sweep %d", empty, keys, full, swept)
	if growth, kept := full-empty, swept-empty; kept > growth/10 {
		t.Fatalf("after Sweep the heap holds %d of the flood's %d bytes; want at most a tenth", kept, growth)
	}
}

func TestAllowNoAllocs(t *testing.T) {
	l := New(1, 1, roomy)
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.2", "2001:db8::1", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s)
		l.Allow(a, testNow) // creates the key and spends its only token
		allocs := testing.AllocsPerRun(1000, func() {
			l.Allow(a, testNow)
		})
		if allocs != 0 {
			t.Errorf("Allow(%v) on an existing key: %v allocations; want 0", a, allocs)
		}
	}

	// The allowed path, too: time moves one second per call.
	a := netip.MustParseAddr("198.51.100.7")
	now := testNow
	l.Allow(a, now)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		if ok, _ := l.Allow(a, now); !ok {
			t.Fatal("Allow refused after a one-second refill")
		}
	})
	if allocs != 0 {
		t.Errorf("allowed Allow(%v) on an existing key: %v allocations; want 0", a, allocs)
	}
}

func TestConcurrentExactBurst(t *testing.T) {
	const burst = 100
	l := New(1, burst, roomy)
	a := netip.MustParseAddr("192.0.2.1")

	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if ok, _ := l.Allow(a, testNow); ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != burst {
		t.Fatalf("%d concurrent calls at one instant allowed %d; want exactly the burst %d", 16*50, got, burst)
	}
}

func TestConcurrentChurn(t *testing.T) {
	const maxKeys = 500
	l := New(10, 5, maxKeys)
	var wg sync.WaitGroup
	for g := range uint32(8) {
		wg.Go(func() {
			now := testNow
			for i := range uint32(5000) {
				now = now.Add(time.Millisecond)
				l.Allow(addr4(g<<24|i%2000), now)
				if i%500 == 0 {
					l.Sweep(now)
					if got := l.Len(); got > maxKeys {
						t.Errorf("Len() = %d; want <= %d", got, maxKeys)
					}
				}
			}
		})
	}
	wg.Wait()
	if got := l.Len(); got > maxKeys {
		t.Fatalf("Len() = %d; want <= %d", got, maxKeys)
	}
}

func BenchmarkAllow(b *testing.B) {
	// Each goroutine's clock moves 1µs per call against a rate of one
	// million per second, so almost every call is allowed.
	b.Run("key_per_goroutine", func(b *testing.B) {
		l := New(1e6, 10, 100_000)
		var next atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			a := addr4(next.Add(1))
			now := testNow
			for pb.Next() {
				now = now.Add(time.Microsecond)
				l.Allow(a, now)
			}
		})
	})
	b.Run("same_key", func(b *testing.B) {
		l := New(1e6, 10, 100_000)
		a := netip.MustParseAddr("192.0.2.1")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			now := testNow
			for pb.Next() {
				now = now.Add(time.Microsecond)
				l.Allow(a, now)
			}
		})
	})
}

func BenchmarkAllowDistinct(b *testing.B) {
	const maxKeys = 10_000
	l := New(1, 2, maxKeys)
	var i uint32
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(addr4(i), testNow)
		i++
	}
	if got := l.Len(); got > maxKeys {
		b.Fatalf("Len() = %d; want <= %d", got, maxKeys)
	}
}

func BenchmarkMillionAddresses(b *testing.B) {
	const (
		addresses = 1_000_000
		maxKeys   = 100_000
	)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	l := New(1, 2, maxKeys)
	for i := range uint32(addresses) {
		l.Allow(addr4(i), testNow)
	}

	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	if got := l.Len(); got != maxKeys {
		b.Fatalf("Len() = %d after %d addresses; want %d", got, addresses, maxKeys)
	}

	// The timed part: new addresses keep arriving at a full limiter.
	i := uint32(addresses)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(addr4(i), testNow)
		i++
	}
	runtime.KeepAlive(l)

	b.ReportMetric(heap, "heap-bytes")
	b.ReportMetric(heap/maxKeys, "heap-bytes/key")
	b.Logf("%d addresses into maxKeys %d: Len %d, heap held %.0f bytes (%.0f per key)",
		addresses, maxKeys, l.Len(), heap, heap/maxKeys)
}

// Named limits per name, in the same bounded table: each name has its own
// bucket, and the table never holds more than maxKeys names.
func TestNamed(t *testing.T) {
	l := NewNamed(1, 2, 100)
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 2; i++ {
		if ok, _ := l.Allow("client-a", now); !ok {
			t.Fatalf("event %d within the burst refused", i)
		}
	}
	if ok, wait := l.Allow("client-a", now); ok || wait <= 0 {
		t.Fatalf("beyond the burst: %v, %v; want refused with a wait", ok, wait)
	}
	if ok, _ := l.Allow("client-b", now); !ok {
		t.Fatal("another name shares the first one's bucket")
	}
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprintf("name-%d", i), now)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("Len() = %d; want at most 100", n)
	}
}

// Len returns the number of keys currently held. It never exceeds the
// maxKeys given to New.
func (l *table[K]) Len() int {
	return l.sum(func(s *shard[K]) int { return len(s.buckets) })
}

// sum returns the sum of f over the shards, each called with its shard's
// lock held.
func (l *table[K]) sum(f func(s *shard[K]) int) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += f(s)
		s.mu.Unlock()
	}
	return n
}
