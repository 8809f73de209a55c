// Package ratelimit limits events per client address with token buckets
// (golang.org/x/time/rate) held in bounded memory.
//
// # Security
//
// The limiter is meant to sit in front of credential endpoints, where an
// attacker controls how many distinct source addresses a server sees. Memory is
// therefore bounded by maxKeys whatever the traffic: when a shard is full, idle
// entries (buckets that have refilled completely) are evicted first, because
// forgetting them loses nothing. Only when no idle entry can be found is an
// active entry evicted, which gives that one address a fresh bucket. That
// weakens the limit for the evicted address, but the alternative, growing
// without bound, lets anyone with enough addresses exhaust the server's memory.
//
// IPv6 clients are keyed by their /64 prefix and IPv4-mapped IPv6 addresses by
// their IPv4 form; see KeyOf.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxShards is the number of shards a Limiter uses when maxKeys allows it.
// Each shard has its own mutex, so requests from different addresses running
// on different cores rarely wait for each other.
const maxShards = 64

// sampleSize is how many entries the fallback eviction inspects when a full
// shard has no idle entry left to drop.
const sampleSize = 4

// shrinkFloor is the fewest entries a shard must have held before a sweep
// rebuilds its map: copying a small map would gain almost nothing.
const shrinkFloor = 64

// A Limiter holds one token bucket per client address (see KeyOf). It is
// safe for concurrent use. The zero value is not usable; call New.
type Limiter struct{ *table[netip.Addr] }

// New returns a Limiter allowing r events per second with the given burst per
// address, holding at most maxKeys addresses. New panics if r is not positive
// or is rate.Inf, if burst is less than 1 or if maxKeys is less than 1: these
// are programming errors found at startup.
func New(r rate.Limit, burst int, maxKeys int) *Limiter {
	return &Limiter{newTable[netip.Addr](r, burst, maxKeys)}
}

// Allow reports whether one event for addr may happen at now. When it may
// not, retryAfter is how long until it may; it is then always positive.
// Rounding it up to whole seconds for a Retry-After header is the caller's
// job. A refused event consumes no token.
func (l *Limiter) Allow(addr netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.table.Allow(KeyOf(addr), now)
}

// Named holds one token bucket per name (an authenticated client's id), in
// the same bounded table as Limiter. Its Allow is the table's: Limiter.Allow
// for a name.
type Named struct{ *table[string] }

// NewNamed is New for names.
func NewNamed(r rate.Limit, burst int, maxKeys int) *Named {
	return &Named{newTable[string](r, burst, maxKeys)}
}

// table is the bounded, sharded map of buckets both limiters use.
type table[K comparable] struct {
	limit rate.Limit
	burst int

	// seed makes the choice of shard for a key unpredictable, so an
	// attacker cannot aim all of their addresses at one shard and evict the
	// entries of legitimate clients that share it.
	seed   maphash.Seed
	shards []shard[K]
}

// A shard is one part of a table, with its own lock and capacity.
type shard[K comparable] struct {
	mu sync.Mutex
	// buckets maps a key to its token bucket. Every bucket is read and
	// written only while mu is held.
	buckets map[K]*rate.Limiter
	// capacity is the most keys this shard holds; the capacities of all
	// shards add up to the Limiter's maxKeys.
	capacity int
	// insertsSinceSweep counts keys added since the last sweep of this
	// shard. A full shard is swept again only after capacity/4 inserts, so
	// the O(capacity) sweep costs O(1) per insert even when it frees
	// nothing.
	insertsSinceSweep int
	// peak is the most entries buckets has held since it was last built.
	// Entries leave buckets only in sweep (an eviction makes room for an
	// insert), so the size at the start of a sweep is the largest since the
	// one before.
	peak int

	// _ keeps the mutexes of neighbouring shards on different cache lines,
	// so locking one shard does not slow a core working on the next.
	_ [64]byte
}

func newTable[K comparable](r rate.Limit, burst int, maxKeys int) *table[K] {
	if !(r > 0) || r == rate.Inf {
		panic(fmt.Sprintf("ratelimit: rate %v must be positive and finite", r))
	}
	if burst < 1 {
		panic(fmt.Sprintf("ratelimit: burst %d must be at least 1", burst))
	}
	if maxKeys < 1 {
		panic(fmt.Sprintf("ratelimit: maxKeys %d must be at least 1", maxKeys))
	}

	// Use fewer shards than maxShards when maxKeys is small, so that every
	// shard can hold at least one key.
	n := min(maxShards, maxKeys)
	l := &table[K]{
		limit:  r,
		burst:  burst,
		seed:   maphash.MakeSeed(),
		shards: make([]shard[K], n),
	}
	// Share maxKeys out so the capacities add up to exactly maxKeys: each
	// shard gets maxKeys/n, and the first maxKeys%n shards one more, which
	// is at most ceil(maxKeys/n) per shard.
	for i := range l.shards {
		s := &l.shards[i]
		s.capacity = maxKeys / n
		if i < maxKeys%n {
			s.capacity++
		}
		s.buckets = make(map[K]*rate.Limiter)
	}
	return l
}

// KeyOf returns the key under which addr is limited.
//
// An IPv4-mapped IPv6 address (::ffff:192.0.2.1) is the IPv4 client
// 192.0.2.1 reached through a dual-stack socket, so it is unmapped to share
// that client's bucket.
//
// An IPv6 address is reduced to its /64 prefix. A /64 is the smallest block
// normally assigned to one subscriber or LAN, and hosts pick their own
// interface identifiers (the low 64 bits) at will, for example with privacy
// extensions (RFC 8981). Keying by the full address would give a single host
// 2^64 fresh buckets for free, and would let it fill the table by itself.
//
// An invalid (zero) addr, such as when the caller could not parse the client
// address, is returned unchanged: all such requests share one bucket.
func KeyOf(addr netip.Addr) netip.Addr {
	if !addr.IsValid() {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr
	}
	return netip.PrefixFrom(addr, 64).Masked().Addr()
}

// shardFor returns the shard holding key.
func (l *table[K]) shardFor(key K) *shard[K] {
	return &l.shards[maphash.Comparable(l.seed, key)%uint64(len(l.shards))]
}

// Allow reports whether one event for key may happen at now, as
// Limiter.Allow says: it is Named's Allow, and Limiter's calls it with
// KeyOf(addr). Outside this package a Limiter's table, and so an Allow
// that skips KeyOf, cannot be reached.
func (l *table[K]) Allow(key K, now time.Time) (ok bool, retryAfter time.Duration) {
	s := l.shardFor(key)

	s.mu.Lock()
	defer s.mu.Unlock()

	b, found := s.buckets[key]
	if !found {
		s.makeRoom(l.burst, now)
		b = rate.NewLimiter(l.limit, l.burst)
		s.buckets[key] = b
	}

	r := b.ReserveN(now, 1)
	if !r.OK() {
		// ReserveN fails only when 1 exceeds the burst, which New rules
		// out; refuse rather than allow if it ever happens.
		return false, time.Second
	}
	delay := r.DelayFrom(now)
	if delay == 0 {
		return true, 0
	}
	// The caller will not act, so give the token back: a client that keeps
	// retrying too early must not push its own retry time further out.
	r.CancelAt(now)
	return false, delay
}

// makeRoom ensures s can take one more key, evicting an entry if s is full.
// The caller then adds the key. It must be called with s.mu held.
func (s *shard[K]) makeRoom(burst int, now time.Time) {
	s.insertsSinceSweep++
	if len(s.buckets) < s.capacity {
		return
	}

	// Idle entries carry no information: a bucket that has refilled
	// completely behaves exactly like a new one. Evicting them is lossless,
	// so try that first, but at most once every capacity/4 inserts.
	if s.insertsSinceSweep >= max(1, s.capacity/4) {
		s.sweep(burst, now)
		if len(s.buckets) < s.capacity {
			return
		}
	}

	// Still full: every entry is in use, which is what an attacker with many
	// addresses produces. Evict one entry anyway to keep memory bounded. Of
	// a few entries taken in map iteration order (which Go randomises), drop
	// the one with the most tokens: it is the closest to idle, and a client
	// that is currently being refused (fewest tokens) is the last one we want
	// to hand a fresh bucket.
	var victim K
	var most float64
	seen := 0
	for k, b := range s.buckets {
		if t := b.TokensAt(now); seen == 0 || t > most {
			victim, most = k, t
		}
		seen++
		if seen == sampleSize {
			break
		}
	}
	delete(s.buckets, victim)
}

// sweep removes the idle entries of s and returns how many it removed. It
// must be called with s.mu held.
func (s *shard[K]) sweep(burst int, now time.Time) int {
	s.insertsSinceSweep = 0
	s.peak = max(s.peak, len(s.buckets))
	n := 0
	for k, b := range s.buckets {
		if b.TokensAt(now) >= float64(burst) {
			delete(s.buckets, k)
			n++
		}
	}

	// A Go map never gives back the memory of deleted entries, so after a
	// flood from many addresses it would stay at the flood's size for good.
	// Copy what is left into a new map once it is under a quarter of its
	// peak. maps.Clone would not do: it copies the old map's size too.
	if s.peak >= shrinkFloor && len(s.buckets) < s.peak/4 {
		m := make(map[K]*rate.Limiter, len(s.buckets))
		for k, b := range s.buckets {
			m[k] = b
		}
		s.buckets = m
		s.peak = len(m)
	}
	return n
}

// Sweep removes every entry whose bucket is full at now, which loses no
// information, and returns how many it removed. Allow sweeps a shard by
// itself when the shard is full; a caller may also run Sweep periodically so
// that memory shrinks back after a burst of traffic: a shard left with under
// a quarter of the most entries it held gets a new, smaller map.
func (l *table[K]) Sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.sweep(l.burst, now)
		s.mu.Unlock()
	}
	return n
}
