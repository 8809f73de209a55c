package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"oauth2-api/store"
	"oauth2-api/token"
)

// Backchannel tells relying parties that a browser sign-in ended (OpenID
// Connect Back-Channel Logout 1.0): for each client the sign-in gave a code
// to that registered a back-channel logout URI, a logout token signed with
// the ID token key is POSTed there. It runs off the request path, in a
// bounded queue, each try with a short timeout, a few tries, and never
// follows a redirect (the URI is the one registered, nothing else).
//
// The queue is one lane per client: a client's logout tokens go out in
// order, one try at a time, and a try that failed waits out its backoff off
// the senders. So a relying party that never answers holds one sender for
// one try's timeout at a time, and the others' logouts go out meanwhile. A
// full queue makes room for a client by dropping the newest of the longest
// backlog (evict): the relying parties that are down lose their own logout
// tokens, never those of one that answers.
type Backchannel struct {
	signer *token.Signer
	issuer string
	log    *slog.Logger
	m      *Metrics
	client *http.Client
	n      int        // sign-ins held at most, over every client
	ready  chan *lane // lanes whose next try may start; each is in it at most once, so n never fills
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	lanes   map[string]*lane // by client_id, while the client has sign-ins held
	held    int
	closed  bool
	drained chan struct{} // closed once closed and nothing is held
}

// lane is one client's sign-ins, oldest first. Its head is the one being
// tried: by a sender, in ready, or waiting out a backoff; only one
// goroutine at a time has it.
type lane struct {
	ins   []store.SignIn
	tries int // the head's
}

// Delivery bounds: a relying party that does not answer within
// logoutTimeout is tried again after each backoff, then given up (logged
// and counted).
const (
	logoutTimeout = 5 * time.Second
	logoutWorkers = 4
)

var logoutBackoff = []time.Duration{time.Second, 4 * time.Second}

// NewBackchannel starts delivering logout tokens signed by signer (the ID
// token key), with a queue of n sign-ins. Close stops it.
func NewBackchannel(signer *token.Signer, issuer string, n int, log *slog.Logger, m *Metrics) *Backchannel {
	ctx, stop := context.WithCancel(context.Background())
	bc := &Backchannel{signer: signer, issuer: issuer, log: log, m: m, n: n, ready: make(chan *lane, n), stop: stop,
		lanes: map[string]*lane{}, drained: make(chan struct{}),
		client: &http.Client{Timeout: logoutTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for range logoutWorkers {
		bc.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case l := <-bc.ready:
					if ctx.Err() != nil { // Close abandoned it: counted there
						return
					}
					bc.try(ctx, l)
				}
			}
		})
	}
	return bc
}

// Announce queues a logout token for each ended sign-in. A closed queue,
// or a full one that has no room to make for its client (evict), drops it,
// logged and counted: the user's request never waits.
func (bc *Backchannel) Announce(ins []store.SignIn) {
	if bc == nil {
		return
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	for _, si := range ins {
		if bc.closed || bc.held == bc.n && !bc.evict(si.ClientID) {
			bc.dropped(si.ClientID)
			continue
		}
		bc.held++
		l := bc.lanes[si.ClientID]
		if l != nil {
			l.ins = append(l.ins, si)
			continue
		}
		l = &lane{ins: []store.SignIn{si}}
		bc.lanes[si.ClientID] = l
		bc.ready <- l
	}
}

// evict makes room in the full queue for a sign-in of the client id, by
// dropping the newest sign-in of the client with the longest backlog, if
// that has at least two more than id's: so the clients whose relying
// parties do not answer, whose sign-ins pile up, make room for the others,
// and a full queue is shared equally. Never a head: it is being tried.
func (bc *Backchannel) evict(id string) bool {
	var most *lane
	for _, l := range bc.lanes {
		if most == nil || len(l.ins) > len(most.ins) {
			most = l
		}
	}
	own := 0
	if l := bc.lanes[id]; l != nil {
		own = len(l.ins)
	}
	if most == nil || len(most.ins) < own+2 {
		return false
	}
	bc.dropped(most.ins[len(most.ins)-1].ClientID)
	most.ins = most.ins[:len(most.ins)-1]
	bc.held--
	return true
}

// dropped logs and counts a logout token not sent for want of room.
func (bc *Backchannel) dropped(clientID string) {
	bc.m.Logouts.With(logoutDropped).Inc()
	bc.log.Error("back-channel logout queue full or closed: logout token dropped", "client_id", clientID)
}

// Close stops taking sign-ins and waits until every queued one is
// delivered or given up, or ctx ends, which abandons the rest: a try in
// flight fails, the sign-ins still queued are dropped, each logged and
// counted. It returns once every sender has ended, so bound ctx.
func (bc *Backchannel) Close(ctx context.Context) {
	if bc == nil {
		return
	}
	bc.mu.Lock()
	if !bc.closed {
		bc.closed = true
		if bc.held == 0 {
			close(bc.drained)
		}
	}
	bc.mu.Unlock()
	select {
	case <-bc.drained:
	case <-ctx.Done():
	}
	bc.stop()
	bc.wg.Wait()
	bc.mu.Lock()
	defer bc.mu.Unlock()
	for id, l := range bc.lanes {
		bc.m.Logouts.With(logoutDropped).Add(uint64(len(l.ins)))
		for range l.ins {
			bc.log.Warn("back-channel logout queue closed before it was empty: logout token dropped", "client_id", id)
		}
		delete(bc.lanes, id)
	}
	if bc.held > 0 { // a backoff's timer may still put its lane in ready: nobody takes it
		bc.held = 0
		close(bc.drained)
	}
}

// Outcomes: the label values of oauth2_backchannel_logouts_total.
const (
	logoutSent    = "sent"
	logoutFailed  = "failed"  // every try failed
	logoutDropped = "dropped" // the queue was full, or closed before it was sent
)

// try sends the head of l once. A failure with tries left puts l back in
// ready after its backoff; otherwise the head is done, and the next one,
// if any, is ready.
//
// Each try sends a logout token of its own, signed as it starts: a retry
// may wait in ready long past a first token's two minutes, and a relying
// party that took the first but whose answer was lost would refuse its
// jti again (§2.6) where it takes a new one (ending a session twice is
// nothing).
func (bc *Backchannel) try(ctx context.Context, l *lane) {
	bc.mu.Lock()
	si := l.ins[0]
	bc.mu.Unlock()
	now := time.Now()
	raw, err := bc.signer.Sign(token.TypeLogout, &token.Claims{
		Issuer: bc.issuer, Subject: store.FormatID(si.UserID), Audience: si.ClientID,
		IssuedAt: now.Unix(), Expiry: now.Add(2 * time.Minute).Unix(), ID: token.NewID(),
		SessionID: si.SID, Events: &token.Events{},
	})
	if err == nil {
		err = bc.post(ctx, si.URI, raw)
		if err != nil && l.tries < len(logoutBackoff) && ctx.Err() == nil {
			l.tries++
			time.AfterFunc(logoutBackoff[l.tries-1], func() { bc.ready <- l })
			return
		}
	}
	if err == nil {
		bc.m.Logouts.With(logoutSent).Inc()
	} else {
		bc.m.Logouts.With(logoutFailed).Inc()
		bc.log.Warn("back-channel logout not delivered", "client_id", si.ClientID, "err", err)
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	l.ins, l.tries = l.ins[1:], 0
	bc.held--
	if len(l.ins) > 0 {
		bc.ready <- l
	} else {
		delete(bc.lanes, si.ClientID)
	}
	if bc.closed && bc.held == 0 {
		close(bc.drained)
	}
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
