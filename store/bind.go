package store

import (
	"cmp"
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"
)

// Statements are written once, with $n placeholders, which SQLite and pgx
// bind by number. MySQL's driver binds only ?, by position: bind rewrites a
// statement for it, and the places that send statements (txn, read, rowOn,
// exec) call it, so that no statement is written twice for the placeholders
// alone.

// bind returns query and args as the dialect's driver takes them: unchanged,
// or for MySQL with each $n replaced by ? and args in the order of the
// placeholders, repeated where a placeholder is ($2 twice sends args[1]
// twice). A query naming an argument it was not given is left as it is,
// for the server to refuse.
func (db *DB) bind(query string, args []any) (string, []any) {
	text, order := positional(db.dialect, query)
	if order == nil {
		return query, args
	}
	out := make([]any, len(order))
	for i, n := range order {
		if n > len(args) {
			return query, args
		}
		out[i] = args[n-1]
	}
	return text, out
}

// positional returns query with each $n outside a quoted literal replaced
// by ?, and the n of each in order, for MySQL; for other dialects, query
// and nil.
func positional(dialect, query string) (string, []int) {
	if dialect != MySQL || !strings.Contains(query, "$") {
		return query, nil
	}
	var b strings.Builder
	var order []int
	quoted := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		if c == '\'' {
			quoted = !quoted // '' inside a literal toggles twice
		}
		if c == '$' && !quoted {
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			if n, err := strconv.Atoi(query[i+1 : j]); err == nil && n >= 1 {
				b.WriteByte('?')
				order = append(order, n)
				i = j - 1
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String(), order
}

// read runs a query on the reader pool.
func (db *DB) read(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query, args = db.bind(query, args)
	return db.r.QueryContext(ctx, query, args...)
}

// readAll runs a query on the reader pool, within OpTimeout, and returns
// every row as scan reads it (an empty list, not nil, for none).
func readAll[T any](ctx context.Context, db *DB, scan func(scanner) (*T, error), query string, args ...any) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	rows, err := db.read(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

// collect returns every row of rows as scan reads it (an empty list, not
// nil, for none), and closes rows: in a transaction, before its next
// statement, which MySQL's driver cannot send while rows are open.
func collect[T any](rows *sql.Rows, scan func(scanner) (*T, error)) ([]T, error) {
	defer rows.Close()
	list := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, *v)
	}
	return list, rows.Err()
}

// scanString reads a row of one text column, for collect.
func scanString(s scanner) (*string, error) {
	var v string
	return &v, s.Scan(&v)
}

// txn is a write transaction (DB.tx) whose statements bind as the dialect
// does (bind). ExecContext and QueryRowContext run a hot statement (hotTx)
// as the writer's statement, prepared once per connection, so that a hot
// transaction does not parse its SQL every time. Other statements are sent
// as written (preparing on the pool from inside a transaction would wait
// for the SQLite writer's one connection, which the transaction holds).
//
// Its statements run under the transaction's own context, bounded by
// OpTimeout (tx), whatever context they are given: the closures pass their
// caller's, often without a deadline, and database/sql's rollback at the
// transaction's deadline waits for the statement in flight, so that one
// waiting for a row lock on PostgreSQL waited for as long as the lock was
// held. (MySQL's lock waits end by themselves, at OpTimeout.)
type txn struct {
	*sql.Tx
	db  *DB
	ctx context.Context
	at  int64 // written's stamp: taken once
}

func (t *txn) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	query, args = t.db.bind(query, args)
	if s := t.db.hot(query); s != nil {
		return t.StmtContext(t.ctx, s).ExecContext(t.ctx, args...)
	}
	return t.Tx.ExecContext(t.ctx, query, args...)
}

func (t *txn) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	query, args = t.db.bind(query, args)
	return t.Tx.QueryContext(t.ctx, query, args...)
}

func (t *txn) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	query, args = t.db.bind(query, args)
	if s := t.db.hot(query); s != nil {
		return t.StmtContext(t.ctx, s).QueryRowContext(t.ctx, args...)
	}
	return t.Tx.QueryRowContext(t.ctx, query, args...)
}

// execOr runs query in t and returns none when it matched no row: the
// statements that spend, change or delete one thing, whose caller must hear
// that the thing was not there (ErrNotFound) or was spent already (ErrReused).
// DB.exec is its form outside a transaction.
func (t *txn) execOr(ctx context.Context, none error, query string, args ...any) error {
	res, err := t.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	return affected(res, none)
}

// affected is none when the write res reports matched no row.
func affected(res sql.Result, none error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return none
	}
	return nil
}

// updateReturning runs update, which changes at most one row, and returns
// that row's cols as the update left them: with RETURNING, or on MySQL,
// which has no UPDATE … RETURNING, as a SELECT of cols from from (the
// row's table and key, "users WHERE id = $1", with update's arguments).
// The UPDATE holds the row's lock until the transaction ends, so the SELECT
// reads what it wrote; RowsAffected counts the rows matched (the MySQL
// driver is opened with clientFoundRows), so an update that changes no value
// still finds its row. No row is sql.ErrNoRows.
func (t *txn) updateReturning(ctx context.Context, update, cols, from string, args ...any) scanner {
	if t.db.dialect != MySQL {
		return t.QueryRowContext(ctx, update+" RETURNING "+cols, args...)
	}
	res, err := t.ExecContext(ctx, update, args...)
	if err != nil {
		return &row{err: err}
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return &row{err: cmp.Or(err, sql.ErrNoRows)}
	}
	return t.QueryRowContext(ctx, "SELECT "+cols+" FROM "+from, args...)
}

// updateRow is updateReturning outside a transaction: one statement, or on
// MySQL a transaction of its own (which appends no audit event: a single
// statement does not either). scan reads the row.
func (db *DB) updateRow(ctx context.Context, scan func(scanner) error, update, cols, from string, args ...any) error {
	if db.dialect != MySQL {
		return scan(db.writeRow(ctx, update+" RETURNING "+cols, args...))
	}
	return db.tx(withoutEvent(ctx), func(t *txn) error {
		return scan(t.updateReturning(ctx, update, cols, from, args...))
	})
}

type scanner interface{ Scan(...any) error }

// unix scans a column of Unix seconds, as every time is stored, into *t,
// in UTC. Drivers send an int64, taken as it is (no allocation on the hot
// path); MySQL's text protocol sends digits, which NullInt64 converts.
type unix struct{ t *time.Time }

func (u unix) Scan(v any) error {
	n, ok := v.(int64)
	if !ok {
		var i sql.NullInt64
		if err := i.Scan(v); err != nil {
			return err
		}
		n = i.Int64
	}
	*u.t = time.Unix(n, 0).UTC()
	return nil
}

// withoutEvent is ctx without its audit event, for a transaction that
// stands for a single statement, which appends none.
func withoutEvent(ctx context.Context) context.Context {
	return context.WithValue(ctx, eventKey{}, nil)
}

// keepExisting ends an INSERT whose row may be there already (table's key
// holds col), leaving that row as it is: ON CONFLICT DO NOTHING, or on
// MySQL an ON DUPLICATE KEY UPDATE that changes nothing (INSERT IGNORE
// would also let through, as warnings, what else the insert does wrong).
func (db *DB) keepExisting(table, col string) string {
	if db.dialect == MySQL {
		return " ON DUPLICATE KEY UPDATE " + table + "." + col + " = " + table + "." + col
	}
	return " ON CONFLICT DO NOTHING"
}

// statements splits a migration into the statements a driver runs one at a
// time: MySQL's, whose connections are opened without multiStatements (a
// statement sent with a value spliced in can then never carry a second).
// Each ends with ";" at the end of a line; lines that are only a comment
// are dropped. Other dialects run a migration as one text.
func (db *DB) statements(body string) []string {
	if db.dialect != MySQL {
		return []string{body}
	}
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(body) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
