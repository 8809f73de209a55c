package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// DPoP (RFC 9449): a proof at the token endpoint binds the tokens it issues
// to the proof's key; a bound access token then works only with a proof of
// that key, made for the request it comes with. token.ParseProof checks a
// proof's form, signature, method, URL, age and token hash; here it is
// spent in the replay cache every instance shares, and the server's nonce
// is checked where a deployment asks for one (DPOP_NONCE). At the token
// endpoint a proof is spent only once the grant it comes with has checked
// out: a stranger naming a public client with a bogus code or refresh
// token writes no row.

// dpopAlgs is the algs parameter of a DPoP challenge (RFC 9449 §7.1).
var dpopAlgs = strings.Join(token.ProofAlgs, " ")

// nonceStep is how long a server nonce is new; the one before it is still
// accepted, so a nonce works for one to two steps.
const nonceStep = 5 * time.Minute

// dpopNonce is the server nonce of the step that t falls in: keyed with
// NonceKey, so every instance makes and accepts the same ones without
// sharing state.
func (ts *Tokens) dpopNonce(t time.Time) string {
	step := strconv.FormatInt(t.Unix()/int64(nonceStep/time.Second), 10)
	return base64.RawURLEncoding.EncodeToString(token.MAC(ts.NonceKey, "dpop-nonce "+step)[:18])
}

// proofOf checks the request's DPoP proof, when it has one (nil, nil when
// not), and spends it (spendProof): accessToken is the token presented with
// it at a resource, "" elsewhere.
func (ts *Tokens) proofOf(r *http.Request, db *store.DB, accessToken string, now time.Time) (*token.Proof, error) {
	kind := httpx.KindInvalidDPoPProof
	if accessToken != "" {
		kind = httpx.KindDPoPProofRefused
	}
	p, err := ts.checkProof(r, accessToken, kind, now)
	if err != nil {
		return nil, err
	}
	return p, spendProof(r.Context(), db, p, kind, now)
}

// checkProof checks the request's DPoP proof, when it has one (nil, nil
// when not), without spending it: its form, signature, method, URL, age and
// token hash, and, away from a resource (accessToken ""), the server nonce
// if required. A refusal is of kind.
func (ts *Tokens) checkProof(r *http.Request, accessToken string, kind httpx.Kind, now time.Time) (*token.Proof, error) {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return nil, nil
	case len(values) > 1:
		return nil, dpopError(kind, "send one DPoP proof")
	}
	p, err := token.ParseProof(values[0], token.ProofWant{Method: r.Method, URL: ts.Issuer + r.URL.EscapedPath(),
		AccessToken: accessToken, Now: now})
	if err != nil {
		return nil, dpopError(kind, "the DPoP proof is invalid")
	}
	if ts.NonceKey != nil && accessToken == "" {
		if p.Nonce != ts.dpopNonce(now) && p.Nonce != ts.dpopNonce(now.Add(-nonceStep)) {
			return nil, httpx.E(httpx.KindUseDPoPNonce, "the DPoP proof must carry the server's nonce (DPoP-Nonce)")
		}
	}
	return p, nil
}

// spendProof accepts a checked proof once (nil: none): its key's thumbprint
// and jti are spent in the database, which every instance shares, so that
// the same proof again, here or on another instance, is refused (of kind).
func spendProof(ctx context.Context, db *store.DB, p *token.Proof, kind httpx.Kind, now time.Time) error {
	if p == nil {
		return nil
	}
	err := db.SpendProof(ctx, token.Hash(p.JKT+"."+p.ID), time.Unix(p.IssuedAt, 0).Add(token.ProofWindow+time.Second), now)
	if errors.Is(err, store.ErrReused) {
		return dpopError(kind, "the DPoP proof was used before")
	}
	return err
}

// dpopError is a refused proof; at a resource it carries the DPoP
// challenge (RFC 9449 §7.1).
func dpopError(kind httpx.Kind, msg string) error {
	e := httpx.E(kind, "%s", msg)
	if kind == httpx.KindDPoPProofRefused {
		e.Authenticate = challenge(true, `error="invalid_dpop_proof", error_description="`+httpx.OAuthText(msg)+`"`)
	}
	return e
}

// setNonce sends the current server nonce (RFC 9449 §8.2), when nonces are
// required; with use_dpop_nonce the client retries with it.
func (ts *Tokens) setNonce(w http.ResponseWriter, now time.Time) {
	if ts.NonceKey != nil {
		w.Header().Set("DPoP-Nonce", ts.dpopNonce(now))
	}
}
