package auth

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
)

// The audit log (API.md "Audit log"; the chain is store/audit.go's). A
// handler builds the event of what it is about to change (auditEvent) and
// hands it to the store write that makes the change (store.WithEvent), so
// both commit together. The request notes every event it made that a write
// committed (httpx.Observe): its access log line carries the event's hash (a
// copy outside the database: `audit verify --head` finds a cut tail with
// it), and the event is counted. An event that is the only write (a failed
// login) goes through db.Audit, and a failure to write it fails the
// request. Events hold ids, addresses and outcomes: never a secret,
// password, token or code, nor what was typed into a login field (a
// password typed there by mistake would otherwise be kept).

// AuditActions are the label values of oauth2_audit_events_total.
const (
	actLoginSuccess   = "login.success"
	actLoginFailure   = "login.failure"
	actLoginLockout   = "login.lockout"
	actPasswordChange = "password.change"
	actResetRequest   = "password.reset_request"
	actReset          = "password.reset"
	actEmailVerified  = "email.verified"
	actSessionEnded   = "session.ended" // detail reason: logout, revocation, reuse
	actClientCreated  = "client.created"
	actClientDeleted  = "client.deleted"
	actClientRotated  = "client.secret_rotated"
	actClientRegister = "client.registered"
	actClientUpdated  = "client.updated" // by its registrant (RFC 7592) or the CLI (set-resource); detail changed: the names of the metadata changed
	actInitialToken   = "client.registration_token_issued"
	actUserCreated    = "user.created"
	actUserUpdated    = "user.updated"
	actUserDeleted    = "user.deleted"
	ActKeysInUse      = "keys.in_use" // written by main at startup
)

var AuditActions = []string{actLoginSuccess, actLoginFailure, actLoginLockout, actPasswordChange, actResetRequest, actReset,
	actEmailVerified, actSessionEnded, actClientCreated, actClientDeleted, actClientRotated, actClientRegister,
	actClientUpdated, actInitialToken, actUserCreated, actUserUpdated, actUserDeleted, ActKeysInUse}

// Outcomes.
const (
	outSuccess = "success"
	outFailure = "failure"
)

// auditEvent is the event of action on subject by the caller of the
// request ctx belongs to (its user, else its client; "cli" outside one),
// from its address, with detail as key, value pairs. The request's access
// log line notes it if a write appends it (httpx.Audited).
func auditEvent(ctx context.Context, action, subject, outcome string, detail ...string) *store.Event {
	info := httpx.InfoOf(ctx)
	e := &store.Event{Action: action, Subject: subject, Outcome: outcome, ClientID: info.ClientID, RequestID: info.ID,
		Actor: info.UserID, Detail: map[string]string{}}
	if e.Actor == "" {
		e.Actor = info.ClientID
	}
	if info.ClientIP.IsValid() {
		e.IP = info.ClientIP.String()
	} else if info.ID == "" {
		e.Actor = "cli"
	}
	for i := 0; i+1 < len(detail); i += 2 {
		e.Detail[detail[i]] = detail[i+1]
	}
	info.Audit = append(info.Audit, audited{e})
	return e
}

// audited is an event as the request's access log notes it (httpx.Audited):
// once a write has appended it.
type audited struct{ e *store.Event }

func (a audited) Ref() (httpx.AuditRef, bool) {
	return httpx.AuditRef{ID: a.e.ID, Action: a.e.Action, Hash: a.e.Hash}, a.e.Hash != ""
}

// handleAuditList serves GET /api/v1/audit?since=&action=&user=&after=&limit=
// (admin): events oldest first, a page at a time (next_after continues).
func handleAuditList(log *slog.Logger, db *store.DB) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		q := r.URL.Query()
		f := store.AuditFilter{Action: q.Get("action"), User: q.Get("user")}
		if f.Action != "" && !slices.Contains(AuditActions, f.Action) {
			return 0, nil, invalid("action", "must be one of the audit's actions (API.md)")
		}
		if s := q.Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return 0, nil, invalid("since", "must be an RFC 3339 time")
			}
			f.Since = t
		}
		after, ok := queryInt(r, "after", 0, 0, math.MaxInt)
		if !ok {
			return 0, nil, invalid("after", "must be a non-negative integer")
		}
		f.AfterID = int64(after)
		if f.Limit, ok = queryInt(r, "limit", 100, 1, 1000); !ok {
			return 0, nil, invalid("limit", "must be 1 to 1000")
		}
		list, err := db.ListAudit(r.Context(), f)
		if err != nil {
			return 0, nil, err
		}
		out := map[string]any{"events": list}
		if len(list) == f.Limit {
			out["next_after"] = list[len(list)-1].ID
		}
		if list == nil {
			out["events"] = []store.Event{}
		}
		return http.StatusOK, out, nil
	})
}
