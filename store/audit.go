package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The audit log (API.md "Audit log") is a hash chain in one table. Each
// event's hash is SHA-256 over its predecessor's hash and its own canonical
// bytes (canonical), so an edited, deleted or reordered row no longer fits
// the hashes after it (VerifyAudit). Appends are serialised by the one row
// of audit_head, which each append updates first in its transaction: on
// PostgreSQL that UPDATE takes the row's lock until commit, so concurrent
// appends from any number of instances queue behind it and each reads the
// hash its predecessor committed; on SQLite every write transaction already
// holds the database's write lock. MySQL has no UPDATE … RETURNING: there the
// UPDATE is followed by a SELECT of the row (updateReturning). InnoDB's
// UPDATE locks the row until commit too, reading its latest committed
// version, not a snapshot, and the SELECT in the same transaction reads the
// row this transaction wrote: appends queue as they do on PostgreSQL. The head also keeps the base: the hash
// and number of the last event pruned, from which the kept chain verifies.
//
// An event rides in the context of the write it records (WithEvent): the
// write's transaction appends it before committing, so the change and its
// record commit together or not at all; a write that finds nothing to
// change (errNoChange) appends none. An event that is the only write (a
// failed login) is appended by Audit, and its failure is the request's.

// Event is one audit record. It never holds a secret, password, token or
// code, nor a hash of one.
type Event struct {
	ID        int64             `json:"id"`
	Time      time.Time         `json:"time"`
	Action    string            `json:"action"`
	Actor     string            `json:"actor"`   // a user id, a client id, "cli" or "system"; "" for a caller no one knows (a failed login, a self-registration, a browser logout)
	Subject   string            `json:"subject"` // what the action was done to: a user or client id
	ClientID  string            `json:"client_id"`
	IP        string            `json:"ip"`
	RequestID string            `json:"request_id"`
	Outcome   string            `json:"outcome"` // success, failure, refused
	Detail    map[string]string `json:"detail"`
	Hash      string            `json:"hash"` // hex; set by the append
}

// genesis is the hash before the first event.
const genesis = "0000000000000000000000000000000000000000000000000000000000000000"

type eventKey struct{}

// WithEvent returns ctx carrying e, which the next write made with ctx
// appends in its own transaction (setting e.ID and e.Hash), once.
func WithEvent(ctx context.Context, e *Event) context.Context {
	return context.WithValue(ctx, eventKey{}, e)
}

// pendingEvent is ctx's event if it has not been appended yet.
func pendingEvent(ctx context.Context) *Event {
	if e, ok := ctx.Value(eventKey{}).(*Event); ok && e.Hash == "" {
		return e
	}
	return nil
}

// eventSubject names id as the subject of ctx's pending event, for a write
// whose caller could not know it before (the user a token belongs to, a
// new user).
func eventSubject(ctx context.Context, id int64) {
	if e := pendingEvent(ctx); e != nil && e.Subject == "" {
		e.Subject = FormatID(id)
	}
}

// Audit appends e on its own: the event is the only write.
func (db *DB) Audit(ctx context.Context, e *Event) (err error) {
	defer db.wrap(&err, "audit")
	return db.tx(WithEvent(ctx, e), func(*txn) error { return nil })
}

// appendEvent appends e to the chain in tx.
func appendEvent(ctx context.Context, tx *txn, e *Event) error {
	var prev string
	if err := tx.updateReturning(ctx, `UPDATE audit_head SET n = n + 1 WHERE one = 1`, `n, hash`, `audit_head WHERE one = 1`).Scan(&e.ID, &prev); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	detail, _ := json.Marshal(e.Detail) // map[string]string: sorted keys, always marshals
	if e.Detail == nil {
		detail = []byte("{}")
	}
	hash := chainHash(prev, canonical(e, detail))
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (id, time_ms, action, actor, subject, client_id, ip, request_id, outcome, detail, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, e.ID, e.Time.UnixMilli(), e.Action, e.Actor, e.Subject, e.ClientID, e.IP, e.RequestID, e.Outcome, string(detail), hash); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET hash = $1 WHERE one = 1`, hash); err != nil {
		return err
	}
	e.Hash = hash
	return nil
}

// canonical is an event's bytes for its hash: every field, in one order,
// each as its decimal length, a colon and its bytes, so that no two
// different events share them (no field can run into the next).
func canonical(e *Event, detail []byte) []byte {
	b := []byte("oauth2-api audit 1")
	for _, f := range []string{strconv.FormatInt(e.ID, 10), strconv.FormatInt(e.Time.UnixMilli(), 10), e.Action, e.Actor,
		e.Subject, e.ClientID, e.IP, e.RequestID, e.Outcome, string(detail)} {
		b = strconv.AppendInt(append(b, '\n'), int64(len(f)), 10)
		b = append(append(b, ':'), f...)
	}
	return b
}

func chainHash(prev string, canon []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// AuditFilter selects events for ListAudit.
type AuditFilter struct {
	Since   time.Time // events at or after (zero: all)
	Action  string    // "" for any
	User    string    // a user id as actor or subject; "" for any
	AfterID int64     // events after this id (paging)
	Limit   int
}

// ListAudit returns events oldest first. A filter no row can hold (not
// storable) matches none; "" is none, told apart in Go, since MySQL's text
// comparison takes " " for "".
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) (list []Event, err error) {
	defer db.wrap(&err, "list audit events")
	if !storable(f.Action) || !storable(f.User) {
		return []Event{}, nil
	}
	return readAll(ctx, db, func(s scanner) (*Event, error) {
		e, _, err := scanEvent(s)
		return e, err
	}, `SELECT `+eventColumns+` FROM audit_events
WHERE id > $1 AND time_ms >= $2 AND ($3 OR action = $4) AND ($5 OR actor = $6 OR subject = $6)
ORDER BY id LIMIT $7`, f.AfterID, f.Since.UnixMilli(), f.Action == "", f.Action, f.User == "", f.User, f.Limit)
}

const eventColumns = `id, time_ms, action, actor, subject, client_id, ip, request_id, outcome, detail, hash`

// scanEvent reads an event, and its detail as stored, which its hash covers.
func scanEvent(s scanner) (*Event, []byte, error) {
	var e Event
	var ms int64
	var detail string
	if err := s.Scan(&e.ID, &ms, &e.Action, &e.Actor, &e.Subject, &e.ClientID, &e.IP, &e.RequestID, &e.Outcome, &detail, &e.Hash); err != nil {
		return nil, nil, err
	}
	e.Time = time.UnixMilli(ms).UTC()
	if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
		e.Detail = map[string]string{"unreadable": detail}
	}
	return &e, []byte(detail), nil
}

// ErrChainBroken is wrapped by VerifyAudit's error for a chain that does
// not verify; the error names the first event that does not fit.
var ErrChainBroken = errors.New("audit chain broken")

// VerifyAudit checks the chain from its base to the head and returns how
// many events it holds. With head (a hash copied from a log line or an
// earlier run) not empty, that event must still be in the chain: a deleted
// tail, which no chain shows by itself, then fails too.
func (db *DB) VerifyAudit(ctx context.Context, head string) (n int, err error) {
	defer func() {
		if !errors.Is(err, ErrChainBroken) {
			db.wrap(&err, "verify audit log")
		}
	}()
	// The head and the events from one snapshot, so that what a live server
	// appends or prunes meanwhile is not half seen: a read-only REPEATABLE
	// READ transaction, or on SQLite a read transaction, which in WAL mode
	// reads one snapshot. (Neither statement takes a parameter.)
	iso := sql.LevelRepeatableRead
	if db.dialect == SQLite {
		iso = sql.LevelDefault
	}
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{Isolation: iso, ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var lastN, baseN int64
	var lastHash, prev string
	if err := tx.QueryRowContext(ctx, `SELECT n, hash, base_n, base_hash FROM audit_head WHERE one = 1`).Scan(&lastN, &lastHash, &baseN, &prev); err != nil {
		return 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+eventColumns+` FROM audit_events ORDER BY id`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	want, sawHead := baseN+1, head == "" || head == prev
	for rows.Next() {
		e, detail, err := scanEvent(rows)
		if err != nil {
			return n, err
		}
		switch {
		case e.ID != want:
			return n, fmt.Errorf("%w: event %d is missing (found %d next)", ErrChainBroken, want, e.ID)
		case chainHash(prev, canonical(e, detail)) != e.Hash:
			return n, fmt.Errorf("%w: event %d does not fit the chain (edited, or its predecessor was)", ErrChainBroken, e.ID)
		}
		prev, want, n = e.Hash, want+1, n+1
		sawHead = sawHead || e.Hash == head
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	switch {
	case want-1 != lastN || prev != lastHash:
		return n, fmt.Errorf("%w: the log ends at event %d, its head says %d: events were deleted from the end", ErrChainBroken, want-1, lastN)
	case !sawHead && baseN > 0:
		return n, fmt.Errorf("%w: the event with hash %.16s… is not in the log: it was cut or rewritten after it, or pruned with the events up to %d", ErrChainBroken, head, baseN)
	case !sawHead:
		return n, fmt.Errorf("%w: the event with hash %.16s… is not in the log: it was cut or rewritten after it", ErrChainBroken, head)
	}
	return n, nil
}

// PruneAudit deletes the events older than before that come before every
// newer one, keeping the chain verifiable: oldest first, in batches of at
// most purgeBatch, each a transaction that also sets the head's base to
// its last event's number and hash. A prune cut short (OpTimeout, a lock)
// keeps the batches it committed, each of which left a chain that
// verifies, and the next goes on from there.
//
// Not up to the last old event: an event's time is its instance's clock,
// its number the shared head's, and one event stamped a year back (an
// instance started before its clock was set) took every event before it,
// however recent. Such an event waits for those before it to grow old.
// One stamped after now (a clock ahead) is not taken for a newer one, or
// it held back every prune until a retention after its stamp.
func (db *DB) PruneAudit(ctx context.Context, before, now time.Time) (err error) {
	defer db.wrap(&err, "prune audit log")
	var last sql.NullInt64 // the last event to prune, found once: the batches then read only the key
	err = db.queryRow(ctx, `SELECT id - 1 FROM audit_events WHERE time_ms >= $1 AND time_ms <= $2 ORDER BY id LIMIT 1`,
		before.UnixMilli(), now.Add(time.Minute).UnixMilli()).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) { // every event is old
		err = db.queryRow(ctx, `SELECT MAX(id) FROM audit_events WHERE time_ms < $1`, before.UnixMilli()).Scan(&last)
	}
	if err != nil || !last.Valid || last.Int64 < 1 {
		return err
	}
	for more := true; more && err == nil; {
		err = db.tx(ctx, func(tx *txn) error {
			var id int64
			var hash string
			err := tx.QueryRowContext(ctx, `SELECT id, hash FROM audit_events WHERE id = (SELECT MAX(id) FROM
  (SELECT id FROM audit_events WHERE id <= $1 ORDER BY id LIMIT $2) AS batch)`, last.Int64, purgeBatch).Scan(&id, &hash)
			if errors.Is(err, sql.ErrNoRows) {
				more = false // pruned meanwhile (by another instance)
				return nil
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE id <= $1`, id); err != nil {
				return err
			}
			more = id < last.Int64
			// Never back: of two instances pruning at once, the one with the
			// earlier cutoff may commit last (the UPDATE reads the committed
			// base). The head's row is not taken first, so appends do not wait
			// for the DELETE.
			_, err = tx.ExecContext(ctx, `UPDATE audit_head SET base_n = $1, base_hash = $2 WHERE one = 1 AND base_n < $1`, id, hash)
			return err
		})
	}
	return err
}
