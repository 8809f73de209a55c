//go:build !nosqlite

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDriver opens SQLite files (openSQLite).
var sqliteDriver = &Driver{Open: openSQLite, Unavailable: sqliteUnavailable, Unique: sqliteUnique,
	ForeignKey: sqliteForeignKey, Migrations: embedded(SQLite)}

// openSQLite opens the file at path as two pools: one writer connection
// (SQLite allows one writer at a time; BEGIN IMMEDIATE makes a transaction
// take the write lock up front instead of failing on upgrade) and read-only
// readers, which WAL lets run beside the writer. WAL with synchronous=NORMAL
// survives a crash of the process (SIGKILL), not a power cut between
// checkpoints: the usual trade for an embedded database.
func openSQLite(ctx context.Context, path string, o Options) (w, r *sql.DB, err error) {
	base := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	// The file holds password hashes: create it readable by us only.
	switch f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); {
	case err == nil:
		f.Close()
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ENOTDIR):
		// No such directory, no permission, a read-only file system (the
		// unit's ProtectSystem=strict outside its StateDirectory): no retry
		// helps, so ErrBadURL (exit 2, which systemd does not restart; it
		// restarted every 5 s). A full disk, say, is left to the open.
		return nil, nil, fmt.Errorf("%w: sqlite %s: %v", ErrBadURL, path, errors.Unwrap(err))
	}
	if w, err = sql.Open("sqlite", base+"&_txlock=immediate"); err != nil {
		return nil, nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	// Ping the writer first: it creates the file and switches it to WAL
	// before any reader opens it.
	if err := pingWriter(ctx, w); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if r, err = sql.Open("sqlite", base+"&_pragma=query_only(1)"); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := min(o.MaxOpenConns, 2*runtime.GOMAXPROCS(0)+2)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	return w, r, nil
}

// pingWriter pings a new SQLite writer, retrying while the file is locked:
// switching a fresh file to WAL needs it to itself, and SQLite answers
// SQLITE_BUSY at once, without its busy timeout, when another process
// holds it (several instances starting on one new file).
func pingWriter(ctx context.Context, w *sql.DB) error {
	deadline := time.Now().Add(OpTimeout)
	for {
		err := pingWithin(ctx, w)
		var lite *sqlite.Error
		if err == nil || !errors.As(err, &lite) || lite.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sqliteUnavailable: the file is locked, or could not be read or written.
func sqliteUnavailable(err error) (known, unavailable bool) {
	var lite *sqlite.Error
	if !errors.As(err, &lite) {
		return false, false
	}
	switch lite.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_READONLY:
		return true, true
	}
	return true, false
}

func sqliteUnique(err error) bool {
	var lite *sqlite.Error
	return errors.As(err, &lite) && (lite.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || lite.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func sqliteForeignKey(err error) bool {
	var lite *sqlite.Error
	return errors.As(err, &lite) && lite.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
