package auth

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// handleRevoke serves POST /oauth2/revoke (RFC 7009) for the client its
// caller check authenticated (a public client by its id). A client revokes
// only its own tokens; unknown, invalid, expired or foreign tokens answer
// 200 and change nothing (§2.2: the client cannot act on the difference).
// Revoking a refresh token ends its session, access tokens included
// (§2.1). The answer comes once the revocation is stored.
//
// A public client's token bound to a DPoP key is revoked only with a proof
// of that key (RFC 9449), a spent one never: without the key it neither
// refreshes nor works at a resource, so whoever finds it (in a log, say)
// and names the client holds nothing, and must not end a DPoP-protected
// session by it (as Tokens.Rotate). A confidential client's secret is its
// proof enough (RFC 7009).
func handleRevoke(log *slog.Logger, db *store.DB, ts *Tokens, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, t := principalOf(r), now()
		ts.setNonce(w, t) // checkProof asks for the nonce here too (RFC 9449 §8)
		proof, err := ts.checkProof(r, "", httpx.KindInvalidDPoPProof, t)
		if err == nil {
			err = revoke(r.Context(), db, ts, p.client, p.form.Get("token"), proof, t)
		}
		writeOAuth(w, r, log, http.StatusOK, nil, err)
	})
}

// revoke revokes tok if it is the client's, and bound to the key of proof
// (checked, not spent; nil: none) if bound. The proof is spent only when
// the token is the client's and is revoked, so that strangers naming a
// public client with a bogus token write no row.
func revoke(ctx context.Context, db *store.DB, ts *Tokens, c *store.Client, tok string, proof *token.Proof, now time.Time) error {
	key := ""
	if proof != nil {
		key = proof.JKT
	}
	claims, rt, err := presented(ctx, db, ts, tok, now)
	switch {
	case claims != nil && claims.ClientID == c.ID && (claims.Cnf == nil || !c.Public() || claims.Cnf.JKT == key):
		if err := spendProof(ctx, db, proof, httpx.KindInvalidDPoPProof, now); err != nil {
			return err
		}
		// No audit event: one access token revoked ends no session, and a
		// client refreshing and revoking at its token budget would append
		// events kept a year without bound.
		return ts.RevokeAccess(ctx, db, claims)
	case rt != nil && rt.Family.ClientID == c.ID && !(rt.Used && rt.Bound) && (rt.Used || rt.Family.DPoPJKT == "" || rt.Family.DPoPJKT == key):
		if err := spendProof(ctx, db, proof, httpx.KindInvalidDPoPProof, now); err != nil {
			return err
		}
		return ts.endSessionAudited(ctx, db, rt.Family.UserID, rt.Family.ID, "revocation", now)
	}
	return err
}

// presented returns what the token parameter of a revocation or
// introspection request holds: an access token this server issued (its
// claims, as VerifyIssued accepts them), a refresh token, expired or not
// (revoking one ends its session, whose access tokens may outlive it:
// RFC 7009 §2.1; introspect checks its expiry), or neither (both nil), or
// ErrStale for an access token while the revocation list is too old to
// tell (Revocations.Fresh). The token's form says which it is:
// token_type_hint is only a hint (RFC 7009 §2.1).
func presented(ctx context.Context, db *store.DB, ts *Tokens, tok string, now time.Time) (*token.Claims, *store.RefreshToken, error) {
	if tok == "" {
		return nil, nil, httpx.E(httpx.KindInvalid, "token is required")
	}
	if strings.Count(tok, ".") == 2 {
		claims, err := ts.VerifyIssued(tok, now)
		if err != nil && !errors.Is(err, ErrStale) {
			return nil, nil, nil // not valid: neither
		}
		return claims, nil, err
	}
	if len(tok) != token.OpaqueLen {
		return nil, nil, nil
	}
	rt, err := db.AnyRefreshToken(ctx, token.Hash(tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	return nil, rt, err
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool       `json:"active"`
	Scope     string     `json:"scope,omitempty"`
	ClientID  string     `json:"client_id,omitempty"`
	Username  string     `json:"username,omitempty"`
	TokenType string     `json:"token_type,omitempty"`
	Exp       int64      `json:"exp,omitempty"`
	Iat       int64      `json:"iat,omitempty"`
	Sub       string     `json:"sub,omitempty"`
	Aud       string     `json:"aud,omitempty"`
	Iss       string     `json:"iss,omitempty"`
	Jti       string     `json:"jti,omitempty"`
	Cnf       *token.Cnf `json:"cnf,omitempty"` // a DPoP-bound token's key (RFC 9449 §6.2)
}

var inactive = &introspection{Active: false}

// handleIntrospect serves POST /oauth2/introspect (RFC 7662) to the
// confidential client its caller check authenticated. A client learns about
// the tokens issued to it, whatever their aud; one registered
// --resource-server also about the access tokens for it: whose aud is its
// resource, or the ISSUER for one registered without (§4: the server MUST
// tell whether the token can be used at the resource server asking; a
// token for another resource cannot). Anything else, refresh tokens of
// other clients included, and anything expired, revoked, forged or
// unknown, is {"active":false}.
func handleIntrospect(log *slog.Logger, db *store.DB, ts *Tokens, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		resp, err := introspect(r.Context(), db, ts, p.client, p.form.Get("token"), now())
		writeOAuth(w, r, log, http.StatusOK, resp, err)
	})
}

func introspect(ctx context.Context, db *store.DB, ts *Tokens, c *store.Client, tok string, now time.Time) (*introspection, error) {
	claims, rt, err := presented(ctx, db, ts, tok, now)
	switch {
	case claims != nil && now.Unix() < claims.Expiry && (claims.ClientID == c.ID || c.ResourceServer && claims.Audience == cmp.Or(c.Resource, ts.Issuer)): // strict about exp: no leeway
		typ := "Bearer"
		if claims.Cnf != nil {
			typ = "DPoP"
		}
		return &introspection{Active: true, Scope: claims.Scope, ClientID: claims.ClientID, TokenType: typ,
			Exp: claims.Expiry, Iat: claims.IssuedAt, Sub: claims.Subject, Aud: claims.Audience, Iss: claims.Issuer, Jti: claims.ID, Cnf: claims.Cnf}, nil
	case rt != nil && rt.Family.ClientID == c.ID && ts.refreshable(rt, now):
		return &introspection{Active: true, Scope: rt.Scope, ClientID: rt.Family.ClientID, Exp: rt.ExpiresAt.Unix(),
			Sub: store.FormatID(rt.Family.UserID), Iss: ts.Issuer}, nil // no token_type: RFC 7662 §2.2's are access token types
	}
	return inactive, err
}
