package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Backchannel tells relying parties that a browser sign-in ended (OpenID
// Connect Back-Channel Logout 1.0): for each client the sign-in gave a code
// to that registered a back-channel logout URI, a logout token signed with
// the ID token key is POSTed there. It runs off the request path, in a
// bounded queue, each delivery with a short timeout and a few retries, and
// never follows a redirect (the URI is the one registered, nothing else).
type Backchannel struct {
	signer *token.Signer
	issuer string
	log    *slog.Logger
	m      *Metrics
	client *http.Client
	q      *queue[store.SignIn]
}

// Delivery bounds: a relying party that does not answer within
// logoutTimeout is tried again after each backoff, then given up (logged
// and counted). logoutWorkers deliver side by side, so one dead RP does not
// hold up the others.
const (
	logoutTimeout = 5 * time.Second
	logoutWorkers = 4
)

var logoutBackoff = []time.Duration{time.Second, 4 * time.Second}

// NewBackchannel starts delivering logout tokens signed by signer (the ID
// token key), with a queue of n sign-ins. Close stops it.
func NewBackchannel(signer *token.Signer, issuer string, n int, log *slog.Logger, m *Metrics) *Backchannel {
	bc := &Backchannel{signer: signer, issuer: issuer, log: log, m: m,
		client: &http.Client{Timeout: logoutTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	bc.q = newQueue(n, logoutWorkers, bc.deliver, func(left []store.SignIn) {
		m.Logouts.With(logoutDropped).Add(uint64(len(left)))
		for _, si := range left {
			log.Warn("back-channel logout queue closed before it was empty: logout token dropped", "client_id", si.ClientID)
		}
	})
	return bc
}

// Announce queues a logout token for each ended sign-in. A full or closed
// queue drops it, logged and counted: the user's request never waits.
func (bc *Backchannel) Announce(ins []store.SignIn) {
	if bc == nil {
		return
	}
	for _, si := range ins {
		if bc.q.put(si) != "" {
			bc.m.Logouts.With(logoutDropped).Inc()
			bc.log.Error("back-channel logout queue full or closed: logout token dropped", "client_id", si.ClientID)
		}
	}
}

// Close stops taking sign-ins and waits until every queued one is
// delivered or ctx ends, which abandons the rest: a delivery in flight
// fails, the sign-ins still queued are dropped, each logged and counted.
func (bc *Backchannel) Close(ctx context.Context) {
	if bc == nil {
		return
	}
	bc.q.close(ctx)
}

// Outcomes: the label values of oauth2_backchannel_logouts_total.
const (
	logoutSent    = "sent"
	logoutFailed  = "failed"  // every try failed
	logoutDropped = "dropped" // the queue was full, or closed before it was sent
)

// deliver sends one logout token, trying again after each backoff.
func (bc *Backchannel) deliver(ctx context.Context, si store.SignIn) {
	now := time.Now()
	raw, err := bc.signer.Sign(token.TypeLogout, &token.Claims{
		Issuer: bc.issuer, Subject: store.FormatID(si.UserID), Audience: si.ClientID,
		IssuedAt: now.Unix(), Expiry: now.Add(2 * time.Minute).Unix(), ID: token.NewID(),
		SessionID: si.SID, Events: &token.Events{},
	})
	for try := 0; err == nil; try++ { // a signing error skips the loop
		err = bc.post(ctx, si.URI, raw)
		if err == nil {
			bc.m.Logouts.With(logoutSent).Inc()
			return
		}
		if try < len(logoutBackoff) {
			// Wait the backoff, or less if ctx ends first (err then stands).
			select {
			case <-ctx.Done():
			case <-time.After(logoutBackoff[try]):
				err = nil // after the backoff, try again
			}
		}
	}
	bc.m.Logouts.With(logoutFailed).Inc()
	bc.log.Warn("back-channel logout not delivered", "client_id", si.ClientID, "err", err)
}

// post sends the logout token (Back-Channel Logout §2.5: a form POST); any
// 2xx is success (§2.8 asks for 200; some frameworks answer 204).
func (bc *Backchannel) post(ctx context.Context, uri, raw string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, strings.NewReader(url.Values{"logout_token": {raw}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := bc.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New("the relying party answered " + http.StatusText(resp.StatusCode))
	}
	return nil
}
