package store

import (
	"context"
	"time"
)

// --- device authorization (RFC 8628) ---

// The states of a device request: pending until the user decides at the
// device page, then approved or denied; an approved one is redeemed once at
// the token endpoint.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceRedeemed = "redeemed"
)

// DeviceCode is one device authorization request.
type DeviceCode struct {
	Hash      string // SHA-256 hex of the device_code
	UserCode  string // HMAC of the normalised user code (auth decides how)
	ClientID  string
	Scope     string
	ExpiresAt time.Time
	Interval  int // seconds between polls; grows with each slow_down
	Status    string
	UserID    int64     // who decided (approved)
	AuthTime  time.Time // when they signed in
	SID       string    // their browser sign-in
	FamilyID  string    // the session the redemption started
	PollEarly bool      // set by PollDeviceCode: this poll came before the interval had passed
	Resource  string    // the resource its tokens are for (RFC 8707), or ""
	Address   string    // who asked: an IPv4 address or IPv6 /64 (auth's addressKey), at most 64 bytes
}

const deviceColumns = `hash, user_code, client_id, scope, expires_at, interval_s, status, COALESCE(user_id, 0), auth_time, sid, COALESCE(family_id, ''), poll_early, resource`

func scanDeviceCode(s scanner) (*DeviceCode, error) {
	var d DeviceCode
	if err := s.Scan(&d.Hash, &d.UserCode, &d.ClientID, &d.Scope, unix{&d.ExpiresAt}, &d.Interval, &d.Status, &d.UserID, unix{&d.AuthTime}, &d.SID, &d.FamilyID, &d.PollEarly, &d.Resource); err != nil {
		return nil, err
	}
	return &d, nil
}

// CreateDeviceCode stores a new pending request, unless max requests of
// its client are alive already (unexpired, whatever their status), or
// perAddress pending ones came from d.Address: then ErrLimited, and
// nothing is stored. The address's count is of pending requests only, so
// that a device signed in (or refused) frees its place for the next one
// behind that address; max counts every live row, as it bounds the table.
// With max 0 nothing is counted, and with perAddress 0 no address's share
// is (a confidential client's requests are its own). Anyone may ask in a
// public client's name, and each pending request is one more code a
// guesser of user codes may hit: max bounds both over all addresses, and
// perAddress keeps one address from spending max alone. It holds the
// client's row first, so concurrent requests of a client, on any number of
// instances, count one after another (as RegisterClient does under
// cap_locks); a client no longer there (deleted since the caller read it)
// is ErrNotFound. A user code already in a row (a collision of random
// codes) is ErrConflict: the caller draws another.
func (db *DB) CreateDeviceCode(ctx context.Context, d *DeviceCode, max, perAddress int, now time.Time) (err error) {
	defer db.wrap(&err, "create device code")
	return db.tx(ctx, func(tx *txn) error {
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE clients SET updated_at = updated_at WHERE id = $1`, d.ClientID); err != nil {
			return err
		}
		if max > 0 {
			var all, here int
			if err := tx.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN address = $3 AND status = 'pending' THEN 1 END) FROM device_codes WHERE client_id = $1 AND expires_at > $2`,
				d.ClientID, now.Unix(), d.Address).Scan(&all, &here); err != nil {
				return err
			}
			if all >= max || perAddress > 0 && here >= perAddress {
				return ErrLimited
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO device_codes (hash, user_code, client_id, scope, created_at, expires_at, interval_s, resource, address) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			d.Hash, d.UserCode, d.ClientID, d.Scope, now.Unix(), d.ExpiresAt.Unix(), d.Interval, d.Resource, d.Address)
		return err
	})
}

// PendingDeviceCode returns the pending, unexpired request with the user
// code userCode (its HMAC), or ErrNotFound.
func (db *DB) PendingDeviceCode(ctx context.Context, userCode string, now time.Time) (d *DeviceCode, err error) {
	defer db.wrap(&err, "pending device code")
	if !storable(userCode) {
		return nil, ErrNotFound
	}
	return scanDeviceCode(db.queryRow(ctx, `SELECT `+deviceColumns+` FROM device_codes WHERE user_code = $1 AND status = 'pending' AND expires_at > $2`, userCode, now.Unix()))
}

// DecideDeviceCode approves the pending, unexpired request with the user
// code userCode for the browser sign-in s, or denies it (s is then
// ignored). An approval records that the sign-in gave the client access,
// for back-channel logout, as CreateCode does. A request that is not
// pending or has expired, or a sign-in that has ended or its user gone or
// inactive (signInLive), is
// ErrNotFound, and nothing changes.
func (db *DB) DecideDeviceCode(ctx context.Context, userCode string, approve bool, s *Session, now time.Time) (err error) {
	defer db.wrap(&err, "decide device code")
	return db.tx(ctx, func(tx *txn) error {
		if !approve {
			return tx.execOr(ctx, ErrNotFound, `UPDATE device_codes SET status = 'denied' WHERE user_code = $1 AND status = 'pending' AND expires_at > $2`, userCode, now.Unix())
		}
		if err := signInLive(ctx, tx, s.UserID, s.Hash, now); err != nil {
			return err
		}
		// The client's row before the request's, the order of a client's
		// deletion (whose requests go with it, ON DELETE CASCADE): the
		// session_clients row below locks the client's row too (its foreign
		// key), and one taken after the request's, beside a deletion, had
		// each hold what the other waited for: a deadlock's victim, 503
		// (TestClientDeletionNoDeadlock). A request's client never changes,
		// so it is read unlocked.
		var clientID string
		if err := tx.QueryRowContext(ctx, `SELECT client_id FROM device_codes WHERE user_code = $1`, userCode).Scan(&clientID); err != nil {
			return err
		}
		if err := tx.execOr(ctx, ErrNotFound, `UPDATE clients SET updated_at = updated_at WHERE id = $1`, clientID); err != nil {
			return err
		}
		err := tx.execOr(ctx, ErrNotFound, `UPDATE device_codes SET status = 'approved', user_id = $3, auth_time = $4, sid = $5
WHERE user_code = $1 AND status = 'pending' AND expires_at > $2`, userCode, now.Unix(), s.UserID, s.AuthTime.Unix(), s.SID)
		if err != nil || s.Hash == "" {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO session_clients (session_hash, client_id) VALUES ($1, $2)`+db.keepExisting("session_clients", "client_id"), s.Hash, clientID)
		return err
	})
}

// PollDeviceCode records a poll by clientID of the request whose device
// code hashes to hash, and returns the request. A poll of a pending request
// that comes sooner than its interval, less slack, after the previous poll
// sets PollEarly and grows the interval by step (RFC 8628 §3.5: slow_down
// "for this and all subsequent requests"); the first poll is measured from
// nothing. The interval grows only while shorter than the request's
// lifetime (a wait past its expiry means nothing): unbounded, about 430,000
// early polls within that lifetime took it past 2,147,483 s, whose
// milliseconds overflow PostgreSQL's integer below, and every poll after
// failed. One statement does it, so concurrent polls each see the one
// before. An unknown hash, or another client's request, is ErrNotFound.
func (db *DB) PollDeviceCode(ctx context.Context, hash, clientID string, slack, step time.Duration, now time.Time) (d *DeviceCode, err error) {
	defer db.wrap(&err, "poll device code")
	if !storable(clientID) {
		return nil, ErrNotFound
	}
	// In SET every column is the row before the update; RETURNING gives the
	// row after. MySQL assigns left to right, each assignment seeing those
	// before it: early reads no column assigned before it, so it means the
	// same there.
	const early = `status = 'pending' AND polled_ms IS NOT NULL AND $3 - polled_ms < interval_s * 1000 - $4`
	err = db.updateRow(ctx, func(r scanner) (err error) { d, err = scanDeviceCode(r); return err }, `UPDATE device_codes SET
  poll_early = (`+early+`),
  interval_s = CASE WHEN `+early+` AND interval_s < expires_at - created_at THEN interval_s + $5 ELSE interval_s END,
  polled_ms = $3
WHERE hash = $1 AND client_id = $2`, deviceColumns, `device_codes WHERE hash = $1`,
		hash, clientID, now.UnixMilli(), slack.Milliseconds(), int(step/time.Second))
	if err != nil {
		return nil, err
	}
	return d, nil
}

// RedeemDeviceCode spends an approved, unexpired request and stores the
// session it starts (is), atomically: of any number of concurrent
// redemptions at most one succeeds; the others, and every later one, get
// ErrReused. A user gone or inactive is ErrNotFound. It returns the
// families of the user it ended (createFamilyTx).
func (db *DB) RedeemDeviceCode(ctx context.Context, hash string, is Issued, accessTTL time.Duration, now time.Time) (e Ended, err error) {
	defer db.wrap(&err, "redeem device code")
	return db.startFamily(ctx, is, accessTTL, now, func(tx *txn) error {
		return tx.execOr(ctx, ErrReused, `UPDATE device_codes SET status = 'redeemed', family_id = $2
WHERE hash = $1 AND status = 'approved' AND expires_at > $3`, hash, is.Family.ID, now.Unix())
	})
}

// RefundAttempt takes back one attempt that CountLoginAttempt counted
// against account in the window that started at started, where only
// failed attempts are meant to stay counted (a user code that turned out
// right). Only in that window: refunds landing after a restart took back
// the new window's wrong guesses, and about doubled them.
func (db *DB) RefundAttempt(ctx context.Context, account string, started time.Time) (err error) {
	defer db.wrap(&err, "refund attempt")
	return db.exec(ctx, nil, `UPDATE login_failures SET failures = failures - 1 WHERE account = $1 AND window_start = $2 AND failures > 0`, account, started.Unix())
}
