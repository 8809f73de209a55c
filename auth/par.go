package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/token"
)

// Pushed authorization requests (RFC 9126): the client posts the request
// to the server first, authenticated, and the browser carries only an
// opaque request_uri, so the parameters can be neither read nor changed on
// the way, and their errors come back as JSON before any browser is
// involved.

const (
	requestURIPrefix = "urn:ietf:params:oauth:request_uri:" // RFC 9126 §2.2
	parTTL           = 60 * time.Second                     // API.md: expires_in 60
	// parSignIn is how long a pushed request, once its request_uri has
	// arrived, serves the login and consent forms of that sign-in.
	parSignIn = 10 * time.Minute
)

// handlePAR serves POST /oauth2/par (RFC 9126 §2) for the client its caller
// check authenticated: the authorize endpoint's validation, then 201 with a
// single-use request_uri. A DPoP proof binds the code to its key (RFC 9449
// §10.1), as dpop_jkt does. The proof is spent only with a request that
// checks out, as at the token endpoint (handleToken): a refused request
// writes nothing, and its client may send the proof again, once.
func handlePAR(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, oidc bool, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := now()
		ts.setNonce(w, t)
		uri, err := push(r, db, ts, cs, oidc, t)
		writeOAuth(w, r, log, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": int(parTTL / time.Second)}, err)
	})
}

func push(r *http.Request, db *store.DB, ts *Tokens, cs *Clients, oidc bool, now time.Time) (string, error) {
	p := principalOf(r) // a client_id in the body is the authenticated client's (authenticateClient)
	if p.form.Has("request_uri") {
		return "", httpx.E(httpx.KindInvalid, "request_uri cannot be pushed")
	}
	if p.form.Has("request") { // not among authParams, so parseAuthRequest would not see it
		return "", errRequestObject
	}
	params := url.Values{}
	for _, k := range authParams {
		if v, ok := p.form[k]; ok {
			params[k] = v
		}
	}
	params.Set("client_id", p.client.ID)
	proof, err := ts.checkProof(r, "", httpx.KindInvalidDPoPProof, now)
	if err != nil {
		return "", err
	}
	if proof != nil {
		if jkt := params.Get("dpop_jkt"); jkt != "" && jkt != proof.JKT {
			return "", httpx.E(httpx.KindInvalidDPoPProof, "dpop_jkt is not the key of the DPoP proof")
		}
		params.Set("dpop_jkt", proof.JKT)
	}
	if _, err := parseAuthRequest(r.Context(), cs, ts, params, oidc, now); err != nil {
		return "", err
	}
	if err := spendProof(r.Context(), db, proof, httpx.KindInvalidDPoPProof, now); err != nil {
		return "", err
	}
	uri := requestURIPrefix + token.NewOpaque()
	err = db.PushRequest(r.Context(), token.Hash(uri), p.client.ID, params.Encode(), now.Add(parTTL), now)
	if errors.Is(err, store.ErrNotFound) { // deleted on another instance since this one cached it
		return "", httpx.E(httpx.KindInvalidClient, "client authentication failed")
	}
	return uri, err
}

// formFields are what the login and consent forms add to a request.
var formFields = map[string]bool{"login": true, "password": true, "shown": true, "action": true, "csrf_token": true, "consent": true}

// pushedParams returns the pushed request that params' request_uri names
// (RFC 9126 §4), with the forms' own fields, and the hash that names it.
// Only the pushed request is used: what else comes beside request_uri and
// client_id is ignored (RFC 9101 §6.3, on which RFC 9126 §4 builds: a
// client may repeat what it pushed, and openid-client and
// mod_auth_openidc add scope=openid), but for our forms' own fields, read
// from our forms alone. The first arrival (a GET,
// or a client's POST: not one of our forms) takes it, which a second cannot; the forms of that sign-in then read it
// until the response is sent (authorization.finishPushed), and only from that
// browser (its CSRF cookie, browser): taken, it is named by both, so
// another browser cannot sign in to it and carry its state and PKCE
// challenge away in a code of its own (RFC 9126 §7.3).
func pushedParams(ctx context.Context, db *store.DB, params url.Values, browser string, first bool, now time.Time) (url.Values, string, error) {
	uri, id := params.Get("request_uri"), params.Get("client_id")
	taken := token.Hash(uri + "\x00" + browser)
	var raw string
	var err error
	if first {
		raw, err = db.TakePushedRequest(ctx, token.Hash(uri), taken, id, now.Add(parSignIn), now)
	} else {
		raw, err = db.PushedRequest(ctx, taken, id, now)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", httpx.E(httpx.KindInvalid, "The request_uri is unknown, expired, already used, or not this client's.")
	}
	if err != nil {
		return nil, "", err
	}
	pushed, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "", err
	}
	for k := range formFields {
		if v, ok := params[k]; ok && !first {
			pushed[k] = v
		}
	}
	pushed.Set("request_uri", uri) // the forms carry it, and client_id, and nothing else
	return pushed, taken, nil
}
