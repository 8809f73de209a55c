package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// RESTClientID is the client_id claim of tokens issued by the first-party
// REST API (/api/v1/auth/login). Registered clients get random ids, so it
// cannot collide with one. /api/v1 accepts tokens with this client_id and
// those of clients registered first-party: a token a user granted to a
// third-party client cannot change their password.
const RESTClientID = "oauth2-api"

// Tokens mints and checks access and refresh tokens. It is the one place
// that knows the token lifetimes, the signing key and the revocation list.
type Tokens struct {
	Issuer     string // ISSUER: "iss" and "aud" of access tokens
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	MaxAge     time.Duration   // REFRESH_TOKEN_MAX_DAYS: no session outlives it, whatever the rotations
	Signer     *token.Signer   // signs access and ID tokens
	Verifier   *token.Verifier // every configured key, current and previous
	Revoked    *Revocations
	Logout     *Backchannel // tells relying parties of ended sign-ins; nil without ID tokens
	NonceKey   []byte       // DPOP_NONCE: proofs at the token and PAR endpoints carry a nonce made with it; nil: none
	Resources  []string     // RESOURCES: what a token may be asked for instead of the ISSUER (RFC 8707)
}

// Ended applies what a stored change ended: its revocations here (the
// other instances read them from the database) and its ended sign-ins
// announced to the relying parties by back-channel logout.
func (ts *Tokens) Ended(e store.Ended) {
	for _, r := range e.Revocations {
		ts.Revoked.Add(r)
	}
	ts.Logout.Announce(e.SignIns)
}

// Mint is what an access token is for, besides its subject and client.
type Mint struct {
	Scope     string
	SessionID string    // the session (refresh-token family) it names in sid
	Audience  string    // one of RESOURCES (RFC 8707); "" for the ISSUER
	JKT       string    // the DPoP key it is bound to (cnf, RFC 9449 §6.1), or ""
	AuthTime  time.Time // when the user signed in; zero for none
	SecretTag string    // the client secret the request showed (store.SecretTag), or ""
	// TTL is its lifetime; 0: AccessTTL.
	TTL time.Duration
}

// Access mints an access token (RFC 9068) and returns it with its claims.
func (ts *Tokens) Access(sub, clientID string, m Mint, now time.Time) (string, *token.Claims, error) {
	c := &token.Claims{
		Issuer: ts.Issuer, Subject: sub, Audience: cmp.Or(m.Audience, ts.Issuer),
		IssuedAt: now.Unix(), Expiry: now.Add(cmp.Or(m.TTL, ts.AccessTTL)).Unix(),
		ID: token.NewTimedID(now), ClientID: clientID, Scope: m.Scope, SessionID: m.SessionID, SecretTag: m.SecretTag,
	}
	if m.JKT != "" {
		c.Cnf = &token.Cnf{JKT: m.JKT}
	}
	if !m.AuthTime.IsZero() {
		c.AuthTime = m.AuthTime.Unix()
	}
	raw, err := ts.Signer.Sign(token.TypeAccess, c)
	return raw, c, err
}

// ErrRevoked means a well-formed, unexpired access token has been revoked.
var ErrRevoked = fmt.Errorf("%w: revoked", token.ErrInvalid)

// Verify parses an access token for this server (aud is the ISSUER) and
// checks it against the revocation list. Every failure wraps
// token.ErrInvalid, but ErrStale: a list too old to rely on.
func (ts *Tokens) Verify(raw string, now time.Time) (*token.Claims, error) {
	return ts.verify(raw, false, now)
}

// VerifyIssued is Verify for any token this server issued, whatever its
// audience (one of RESOURCES too): for revocation and introspection.
func (ts *Tokens) VerifyIssued(raw string, now time.Time) (*token.Claims, error) {
	return ts.verify(raw, true, now)
}

func (ts *Tokens) verify(raw string, anyAudience bool, now time.Time) (*token.Claims, error) {
	c, err := ts.Verifier.Parse(raw, token.Expect{Type: token.TypeAccess, Issuer: ts.Issuer, Audience: ts.Issuer, AnyAudience: anyAudience}, now)
	if err != nil {
		return nil, err
	}
	if c.Audience != ts.Issuer && !slices.Contains(ts.Resources, c.Audience) {
		return nil, fmt.Errorf("%w: audience %q", token.ErrInvalid, c.Audience)
	}
	// Nor past ACCESS_TOKEN_TTL from its issue, whatever its exp: a
	// revocation is kept as long as a token minted when it is written can
	// live (store.revocationFor), so a token minted under a longer TTL,
	// before a restart that lowered it, would verify again once the
	// revocation that ended it was purged. Instances on one database must
	// run with one TTL (README): one on a longer TTL than the instance that
	// wrote a revocation would accept the token again after the shorter.
	if now.Unix() >= c.IssuedAt+int64((ts.AccessTTL+token.Leeway)/time.Second) {
		return nil, fmt.Errorf("%w: older than ACCESS_TOKEN_TTL", token.ErrInvalid)
	}
	if err := ts.Revoked.Fresh(now); err != nil {
		return nil, err
	}
	if ts.Revoked.Revoked(c) {
		return nil, ErrRevoked
	}
	return c, nil
}

// RevokeAccess revokes one access token on every instance: through the
// database, then here. Only a stored revocation is applied locally, so a
// failed write leaves nothing that would make a retry look done while
// other instances still accept the token.
func (ts *Tokens) RevokeAccess(ctx context.Context, db *store.DB, c *token.Claims) error {
	// Kept while the token verifies, until exp and the leeway after it, and
	// a minute more, as a session's or a user's revocation is (a minute past
	// the TTL): an instance whose clock is behind still verifies the token
	// after one ahead has purged the row at its expiry, and one that starts
	// then loads only the rows left (it served the revoked token).
	r := store.Revocation{Kind: store.RevokeJTI, Subject: c.ID, ExpiresAt: c.Expiry + int64((token.Leeway+time.Minute)/time.Second)}
	if err := db.Revoke(ctx, r); err != nil {
		return err
	}
	ts.Revoked.Add(r)
	return nil
}

// endSessionAudited ends a session (a refresh-token family) on every
// instance: its refresh tokens and every access token minted from it (by
// sid), stored first and then applied here. It is stored with its audit
// record: session.ended, with why (reuse, grant replay, revocation, logout)
// and the session's id.
func (ts *Tokens) endSessionAudited(ctx context.Context, db *store.DB, userID int64, familyID, reason string, now time.Time) error {
	e := auditEvent(ctx, actSessionEnded, store.FormatID(userID), outSuccess, "reason", reason, "session", familyID)
	r, err := db.RevokeSession(store.WithEvent(ctx, e), familyID, ts.AccessTTL, now)
	if err != nil {
		return err
	}
	if r != nil {
		ts.Revoked.Add(*r)
	}
	return nil
}

// refreshExpiry is when the first refresh token of a session whose login
// was at authTime expires: after RefreshTTL, but never after MaxAge from
// that login. (The rotations' bound is DB.RotateRefresh's.)
func (ts *Tokens) refreshExpiry(authTime, now time.Time) time.Time {
	return now.Add(min(ts.RefreshTTL, store.SessionStart(authTime, now).Add(ts.MaxAge).Sub(now)))
}

// Pair is a token response (RFC 6749 §5.1; API.md's token pair).
type Pair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// StartSession mints an access token and the first refresh token of a new
// family (a session) for a user whose password was just verified. The
// access token names the family in sid, so that ending the session revokes
// it. It is errChangedMeanwhile if the password changed since it was read.
func (ts *Tokens) StartSession(ctx context.Context, db *store.DB, u *store.User, clientID, scope string, authTime, now time.Time) (*Pair, error) {
	f := store.Family{ID: token.NewID(), UserID: u.ID, ClientID: clientID, Scope: scope, AuthTime: authTime, Verified: u.PasswordHash}
	access, _, err := ts.Access(store.FormatID(u.ID), clientID, Mint{Scope: scope, SessionID: f.ID, AuthTime: authTime}, now)
	if err != nil {
		return nil, err
	}
	refresh := token.NewOpaque()
	ended, err := db.CreateFamily(ctx, f, token.Hash(refresh), ts.refreshExpiry(authTime, now), ts.AccessTTL, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errChangedMeanwhile
	} else if err != nil {
		return nil, err
	}
	ts.Ended(ended) // the user's oldest sessions, past the cap of live ones
	return ts.pair(access, refresh, scope, ""), nil
}

// refreshFailure is what a client learns of a refused refresh token: on the
// REST API 401 invalid_token, at the token endpoint (oauth) invalid_grant,
// or invalid_scope for a widening (RFC 6749 §5.2). A reuse, which has just
// ended the session, is logged as a warning with the client IP.
func refreshFailure(ctx context.Context, log *slog.Logger, info *httpx.Info, err error, oauth bool) error {
	if errors.Is(err, ErrRefreshReused) {
		log.WarnContext(ctx, "refresh token reuse: session ended", "client_id", info.ClientID, "client_ip", info.ClientIP.String(), "request_id", info.ID)
	}
	switch {
	case errors.Is(err, ErrRefreshScope) && oauth:
		return httpx.E(httpx.KindInvalidScope, "the scope may only be narrowed")
	case errors.Is(err, ErrRefreshDPoP):
		return httpx.E(httpx.KindInvalidDPoPProof, "the refresh token is bound to a DPoP key: prove it (RFC 9449 §5)")
	case !errors.Is(err, ErrRefreshInvalid) && !errors.Is(err, ErrRefreshReused) && !errors.Is(err, ErrRefreshClient) && !errors.Is(err, ErrRefreshScope):
		return err // the database: not the token's fault
	case oauth:
		return httpx.E(httpx.KindInvalidGrant, "refresh token is invalid, expired or revoked")
	}
	return &httpx.Error{Kind: httpx.KindInvalidToken, Message: "refresh token is invalid, expired or revoked"}
}

// pair is a token response; refresh is "" when none is issued. Tokens
// bound to the DPoP key jkt are of type DPoP (RFC 9449 §5).
func (ts *Tokens) pair(access, refresh, scope, jkt string) *Pair {
	p := &Pair{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(ts.AccessTTL / time.Second), RefreshToken: refresh, Scope: scope}
	if jkt != "" {
		p.TokenType = "DPoP"
	}
	return p
}

// Narrow is what a refresh request asks of its new tokens (RFC 6749 §6,
// RFC 8707 §2.2, RFC 9449 §5).
type Narrow struct {
	Scope     string   // "" keeps the token's scope; otherwise a subset of it
	Resource  []string // the resource parameters: none, or the session's own
	JKT       string   // the DPoP key the request proved, or ""
	SecretTag string   // as Mint's
	// Bind: the client is public, so a session bound to no key is bound to
	// JKT from this refresh on (RFC 9449 §5: "refresh tokens issued to
	// public clients [with a DPoP proof] MUST be bound").
	Bind bool
	// Proof is the request's DPoP proof (of JKT), not yet spent, or nil:
	// spent once the token is known to be the client's (and, unless it is
	// spent and was issued unbound, bound to no other key), before a reuse
	// ends its session, so that a stranger's bogus token writes nothing
	// and a replayed request is refused as a replay without ending the
	// session.
	Proof *token.Proof
}

// Refresh failures.
var (
	ErrRefreshInvalid = errors.New("refresh token unknown, expired or revoked")
	ErrRefreshReused  = errors.New("refresh token reused: family revoked")
	ErrRefreshClient  = errors.New("refresh token issued to another client")
	ErrRefreshScope   = errors.New("requested scope exceeds the granted scope")
	ErrRefreshDPoP    = errors.New("refresh token bound to another DPoP key")
)

// Rotate spends refresh and returns a new pair in the same family, for the
// client clientID. n.Scope, if not empty, narrows the access token's scope
// (RFC 6749 §6: never widens), not the new refresh token's. A token of
// another client is refused. A spent one ends its session, access tokens
// included (RFC 9700 §4.14.2), whatever proof comes with it, unless it was
// issued bound to a DPoP key: then without that key's proof it is refused
// as a live one is. One of a session older than MaxAge, of a user who was
// deleted or deactivated, or bound to another DPoP key than n.JKT (the
// request's proof, "" for none), is refused without being spent, as is a
// request for another resource than the session's. The new access token
// is bound to n.JKT.
func (ts *Tokens) Rotate(ctx context.Context, db *store.DB, refresh, clientID string, n Narrow, now time.Time) (*Pair, *store.RefreshToken, error) {
	if len(refresh) != token.OpaqueLen {
		return nil, nil, ErrRefreshInvalid
	}
	h, next := token.Hash(refresh), token.NewOpaque()
	if n.Scope == "" && len(n.Resource) == 0 && n.Proof == nil {
		// The common case in one step; anything unusual falls through to
		// the careful path below, which says why and revokes on reuse. A
		// proof takes the careful path: it is spent between the checks and
		// the rotation, so that a bogus token spends nothing and a replayed
		// proof rotates nothing.
		spent, err := db.RotateRefresh(ctx, h, token.Hash(next), clientID, n.JKT, n.Bind, ts.RefreshTTL, ts.MaxAge, now)
		if err == nil {
			return ts.finishRotation(spent, next, clientID, spent.Scope, n, now)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
	}
	// Expired ones too: a spent token presented after its expiry is a
	// reuse all the same (the thief may have refreshed a month ago); the
	// purge keeps it while its family lives.
	old, err := db.AnyRefreshToken(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrRefreshInvalid
	}
	if err != nil {
		return nil, nil, err
	}
	if old.Family.ClientID != clientID {
		return nil, nil, ErrRefreshClient
	}
	if old.Used {
		// A token issued while its family was bound never refreshed
		// without the key: presented spent without it, it shows no theft
		// of what could refresh, and ending the session would let anyone
		// who found it in a log end a DPoP-protected session. Refused as a
		// live one is; nothing ends, and the proof is not spent.
		if old.Bound && old.Family.DPoPJKT != n.JKT {
			return nil, nil, ErrRefreshDPoP
		}
		// Any other reuse ends the session (ErrRefreshReused, unless
		// ending it failed) whatever key or resource comes with it: a
		// thief who refreshed first with a proof of his own bound the
		// family to his key, so the family's key tells nothing of who
		// presents a token issued before the binding (RFC 9700 §4.14.2).
		// The proof first: a replay of the whole request is refused as
		// one and ends nothing.
		if err := spendProof(ctx, db, n.Proof, httpx.KindInvalidDPoPProof, now); err != nil {
			return nil, nil, err
		}
		return nil, nil, cmp.Or(ts.endSessionAudited(ctx, db, old.Family.UserID, old.Family.ID, "reuse", now), ErrRefreshReused)
	}
	if !now.Before(old.ExpiresAt) {
		return nil, nil, ErrRefreshInvalid
	}
	if old.Family.DPoPJKT != "" && old.Family.DPoPJKT != n.JKT {
		return nil, nil, ErrRefreshDPoP
	}
	if _, err := ts.audience(old.Family.Resource, n.Resource, false); err != nil {
		return nil, nil, err
	}
	// Revoked, too old, or the user deleted or deactivated since.
	if !ts.refreshable(old, now) {
		return nil, nil, ErrRefreshInvalid
	}
	accessScope := old.Scope
	if n.Scope != "" {
		want, ok := parseScope(n.Scope)
		if !ok || !scopeSubset(n.Scope, old.Scope) {
			return nil, nil, ErrRefreshScope
		}
		accessScope = strings.Join(want, " ")
	}
	// The proof last: a request refused above may be sent again with it.
	if err := spendProof(ctx, db, n.Proof, httpx.KindInvalidDPoPProof, now); err != nil {
		return nil, nil, err
	}
	// The new refresh token has the spent one's scope (RFC 6749 §6:
	// "identical"); only the access token is narrowed.
	spent, err := db.RotateRefresh(ctx, h, token.Hash(next), clientID, n.JKT, n.Bind, ts.RefreshTTL, ts.MaxAge, now)
	if errors.Is(err, store.ErrNotFound) {
		// Spent by a concurrent request between the read and now: a reuse.
		return nil, nil, cmp.Or(ts.endSessionAudited(ctx, db, old.Family.UserID, old.Family.ID, "reuse", now), ErrRefreshReused)
	}
	if err != nil {
		return nil, nil, err
	}
	return ts.finishRotation(spent, next, clientID, accessScope, n, now)
}

// refreshable tells whether rt would refresh now, whoever presents it: it
// is unspent and unexpired, its session is not revoked nor past MaxAge,
// its user active, its resource still one of RESOURCES. Rotate refuses
// what it is not, and introspection calls it inactive (RFC 7662 §2.2:
// whether it can be used now).
func (ts *Tokens) refreshable(rt *store.RefreshToken, now time.Time) bool {
	f := rt.Family
	return !rt.Used && now.Before(rt.ExpiresAt) && !f.Revoked && now.Before(f.CreatedAt.Add(ts.MaxAge)) && rt.UserActive &&
		(f.Resource == "" || slices.Contains(ts.Resources, f.Resource))
}

// finishRotation mints the access token of a rotated family, for the
// family's resource, if that is still one of RESOURCES (else errDropped,
// which Rotate's careful path gives before spending the token; the
// one-step rotation has spent it, and the client, told to start over,
// holds no refresh token of the session any more).
// It expires with the session, at MaxAge from its start if that comes
// before AccessTTL (API.md: no session outlives REFRESH_TOKEN_MAX_DAYS,
// access tokens included); the rotation refused a family at MaxAge, so the
// TTL is above 0.
func (ts *Tokens) finishRotation(spent *store.RefreshToken, next, clientID, scope string, n Narrow, now time.Time) (*Pair, *store.RefreshToken, error) {
	if _, err := ts.audience(spent.Family.Resource, nil, false); err != nil {
		return nil, nil, err
	}
	ttl := min(ts.AccessTTL, spent.Family.CreatedAt.Add(ts.MaxAge).Sub(now))
	access, _, err := ts.Access(store.FormatID(spent.Family.UserID), clientID, Mint{Scope: scope, SessionID: spent.Family.ID, Audience: spent.Family.Resource, JKT: n.JKT, AuthTime: spent.Family.AuthTime, SecretTag: n.SecretTag, TTL: ttl}, now)
	if err != nil {
		return nil, nil, err
	}
	p := ts.pair(access, next, scope, n.JKT)
	p.ExpiresIn = int64(ttl / time.Second)
	return p, spent, nil
}
