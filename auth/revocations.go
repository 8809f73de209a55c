package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Revocations is this instance's copy of the shared revocation list. A change
// made here applies at once (Add); changes made by other instances arrive by
// polling the database (Run), within one poll interval. Entries are dropped
// once no token they cover can still be valid, so memory is bounded by the
// number of tokens revoked within one access token lifetime.
type Revocations struct {
	mu       sync.RWMutex
	jtis     map[idKey]uint32     // jti → when the token expires (Unix seconds)
	sids     map[idKey]uint32     // session (family id) → when its last access token expires
	subjects map[revKey]notBefore // a user, a client (by id) or a client secret (by tag) → which of its tokens are revoked

	onClient func(id string) // called for every client entry (cache invalidation)
	loaded   time.Time       // when Load began, by the database's clock: where Run's polls begin
	// polled is when the last successful read of the database began (Load
	// or a poll), in Unix nanoseconds: the list holds every revocation
	// stored before it. staleAfter is Run's bound on its age (Fresh); 0
	// (not polling: one instance, or a test) checks nothing.
	polled, staleAfter atomic.Int64
}

// ErrStale means the list has not been read from the database for longer
// than Run allows (Fresh). It is unavailability, as the database's own:
// 503 with Retry-After, logged at warn.
var ErrStale error = staleError{}

type staleError struct{}

func (staleError) Error() string     { return "revocation list stale: not read from the database in time" }
func (staleError) Unavailable() bool { return true }

// revKey names a user (store.RevokeUser), or a client or a client secret
// (store.RevokeClient, store.SecretRevocation).
type revKey struct{ kind, subject string }

// notBefore revokes the tokens of a user or a client minted at or before ms
// (Unix milliseconds); the entry can be dropped after expires (Unix
// seconds), when none of them can still be valid.
type notBefore struct{ ms, expires int64 }

// idKey holds an identifier this server minted (a jti or a family id: 16
// bytes in base64url) as its 16 bytes. Revoked ids are kept on every
// instance for an access token's lifetime, one entry per revoked token:
// with the string (22 bytes in an allocation of its own, and its header)
// the list cost about 80 bytes of heap and 100 of RSS per entry; with the
// bytes inline about 45 and 60: under 64 MiB per million revoked tokens
// (BenchmarkRevokedMemory, BENCHMARKS.md).
type idKey [16]byte

// keyOf returns id's key: its bytes when it is 16 bytes of base64url, else
// (an id another minter made) the first 16 bytes of its SHA-256.
func keyOf(id string) idKey {
	var k idKey
	if len(id) == 22 {
		if n, err := base64.RawURLEncoding.Strict().Decode(k[:], []byte(id)); err == nil && n == 16 {
			return k
		}
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

// NewRevocations returns an empty list. onClient, if not nil, is called with
// the client id of every client revocation seen (locally or from the database).
func NewRevocations(onClient func(id string)) *Revocations {
	return &Revocations{
		jtis: map[idKey]uint32{}, sids: map[idKey]uint32{}, subjects: map[revKey]notBefore{}, onClient: onClient,
	}
}

// Add applies r to this instance.
func (rv *Revocations) Add(r store.Revocation) {
	rv.mu.Lock()
	switch r.Kind {
	case store.RevokeJTI:
		k := keyOf(r.Subject)
		rv.jtis[k] = max(rv.jtis[k], uint32(r.ExpiresAt))
	case store.RevokeSID:
		k := keyOf(r.Subject)
		rv.sids[k] = max(rv.sids[k], uint32(r.ExpiresAt))
	case store.RevokeUser, store.RevokeClient:
		k := revKey{r.Kind, r.Subject}
		nb := rv.subjects[k]
		rv.subjects[k] = notBefore{ms: max(nb.ms, r.NotBeforeMs), expires: max(nb.expires, r.ExpiresAt)}
	}
	rv.mu.Unlock()
	if r.Kind == store.RevokeClient && rv.onClient != nil {
		rv.onClient(r.Subject)
	}
}

// Revoked reports whether the access token with claims c has been revoked:
// by its jti, by its session (sid), or because its user, its client or the
// client secret it was minted with (secret_tag) was revoked when or after
// it was minted. The mint time comes, to the millisecond, from the jti the
// server put in it (see mintedMs).
func (rv *Revocations) Revoked(c *token.Claims) bool {
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	if len(rv.jtis) > 0 {
		if _, ok := rv.jtis[keyOf(c.ID)]; ok {
			return true
		}
	}
	if len(rv.sids) > 0 && c.SessionID != "" {
		if _, ok := rv.sids[keyOf(c.SessionID)]; ok {
			return true
		}
	}
	user, okUser := rv.subjects[revKey{store.RevokeUser, c.Subject}]
	client, okClient := rv.subjects[revKey{store.RevokeClient, c.ClientID}]
	secret, okSecret := rv.subjects[revKey{store.RevokeClient, c.SecretTag}]
	if !okUser && !okClient && !okSecret {
		return false
	}
	ms := mintedMs(c)
	return (okUser && ms <= user.ms) || (okClient && ms <= client.ms) || (okSecret && ms <= secret.ms)
}

// Fresh returns ErrStale while Run polls and the list is older than its
// bound: another instance may have revoked a token since. Tokens.verify
// calls it for every check that relies on the list (introspection, the
// bearer routes): with the database away from this instance alone, a
// token whose client is cached, or the REST login's, meets nothing else.
func (rv *Revocations) Fresh(now time.Time) error {
	if bound := time.Duration(rv.staleAfter.Load()); bound > 0 && rv.Age(now) > bound {
		return ErrStale
	}
	return nil
}

// Age is how long ago the last successful read of the database began
// (oauth2_revocations_age_seconds).
func (rv *Revocations) Age(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, rv.polled.Load()))
}

// mintedMs is when the token was minted, in Unix milliseconds: read from its
// jti (token.NewTimedID) when that agrees with iat, otherwise the first
// millisecond of the iat second, so that a token whose jti says nothing is
// counted as revoked by any revocation in its second.
func mintedMs(c *token.Claims) int64 {
	if ms, ok := token.TimedIDTime(c.ID); ok && ms/1000 == c.IssuedAt {
		return ms
	}
	return c.IssuedAt * 1000
}

// prune drops entries that can no longer matter.
func (rv *Revocations) prune(now int64) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, m := range []map[idKey]uint32{rv.jtis, rv.sids} {
		for k, exp := range m {
			if int64(exp)+int64(token.Leeway/time.Second) < now {
				delete(m, k)
			}
		}
	}
	for k, nb := range rv.subjects {
		if nb.expires < now {
			delete(rv.subjects, k)
		}
	}
}

// Load reads every entry unexpired at now from the database (at start), in
// pages, and marks where Run's polls begin: when it began, by the
// database's clock (as entries are stamped), less PollOverlap, however long
// it took. An entry it missed, committed behind a page it had read, was
// committed after that, within OpTimeout + TxIdleTimeout of its stamp (the
// database refuses a later COMMIT: store's txn.written): in the first poll.
func (rv *Revocations) Load(ctx context.Context, db *store.DB, now time.Time) (err error) {
	rv.polled.Store(now.UnixNano())
	rv.loaded, err = db.RevocationsSince(ctx, time.Unix(0, 0), now, revocationPage, rv.apply)
	return err
}

// revocationPage is the most entries one statement reads (store.RevocationsSince).
var revocationPage = 50_000

func (rv *Revocations) apply(list []store.Revocation) {
	for _, r := range list {
		rv.Add(r)
	}
}

// PollOverlap is how far back each poll looks before the previous one, to
// catch entries whose transaction committed after the time it stamped: the
// time it wrote them, whatever its request's, so within store.OpTimeout +
// store.TxIdleTimeout (10 s), past which the database refuses the COMMIT.
const PollOverlap = 15 * time.Second

// Run polls db every interval until ctx ends, applying new entries and
// pruning old ones. A failed poll is logged and retried on the next tick,
// from the same point, so nothing is missed while the database is away; it
// reads in pages, each within OpTimeout, so that however far it fell
// behind it catches up. Its first poll, at once, reads from where Load
// began, or from the first entry if Load never ran. Where a poll reads
// from is the database's time, as entries are stamped, so that instances
// whose clocks disagree still read each other's; now is this instance's,
// for what it checks tokens by (Fresh, expiry).
//
// From its start, token checks refuse a list older than two intervals and
// OpTimeout (Fresh): successful polls leave it at most an interval and a
// statement old, so this allows one more failed or slow poll before they
// answer 503, whereas past it a revocation stored on another instance
// would go unseen for as long as the database stays away. With 2 s polls
// that is 9 s: API.md's 5 s for a change to reach every instance, and at
// most 4 s more while this one cannot read the database.
func (rv *Revocations) Run(ctx context.Context, db *store.DB, interval time.Duration, log *slog.Logger, now func() time.Time) {
	rv.staleAfter.Store(int64(2*interval + store.OpTimeout))
	since := rv.loaded.Add(-PollOverlap)
	t := time.NewTicker(interval)
	defer t.Stop()
	for { // the first poll at once: a long Load leaves the list older than the bound
		start := now()
		if began, err := db.RevocationsSince(ctx, since, start, revocationPage, rv.apply); err != nil {
			if ctx.Err() == nil {
				log.Warn("revocation poll failed", "err", err)
			}
		} else {
			since = began.Add(-PollOverlap)
			rv.polled.Store(start.UnixNano())
			rv.prune(start.Unix())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
