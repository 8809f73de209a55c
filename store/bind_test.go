package store

import (
	"slices"
	"testing"
)

func TestBind(t *testing.T) {
	args := []any{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, tc := range []struct {
		dialect, in, want string
		args              []any
	}{
		{MySQL, `SELECT 1`, `SELECT 1`, args},
		{MySQL, `WHERE a = $1 AND b = $2`, `WHERE a = ? AND b = ?`, []any{"a", "b"}},
		{MySQL, `SET x = $2 WHERE id = $1 AND y > $2`, `SET x = ? WHERE id = ? AND y > ?`, []any{"b", "a", "b"}},
		{MySQL, `VALUES ($10, $1)`, `VALUES (?, ?)`, []any{"j", "a"}},
		{MySQL, `WHERE s = '$1' AND t = $1 AND u = 'it''s $2'`, `WHERE s = '$1' AND t = ? AND u = 'it''s $2'`, []any{"a"}},
		{MySQL, `WHERE cost = $ AND a = $3`, `WHERE cost = $ AND a = ?`, []any{"c"}},
		{MySQL, `WHERE a = $11`, `WHERE a = $11`, args}, // no 11th argument: sent as written, for the server to refuse
		{Postgres, `WHERE a = $2`, `WHERE a = $2`, args},
		{SQLite, `WHERE a = $2`, `WHERE a = $2`, args},
	} {
		db := &DB{dialect: tc.dialect}
		got, gotArgs := db.bind(tc.in, args)
		if got != tc.want || !slices.Equal(gotArgs, tc.args) {
			t.Errorf("%s: bind(%q) = %q, %v; want %q, %v", tc.dialect, tc.in, got, gotArgs, tc.want, tc.args)
		}
	}
}

func TestStatements(t *testing.T) {
	body := "-- a comment; with a semicolon\nCREATE TABLE a (\n    x INT -- inline\n);\n\nINSERT INTO a VALUES (1)\n    ON DUPLICATE KEY UPDATE x = x;\n-- trailing comment\n"
	got := (&DB{dialect: MySQL}).statements(body)
	want := []string{"CREATE TABLE a (\n    x INT -- inline\n)", "INSERT INTO a VALUES (1)\n    ON DUPLICATE KEY UPDATE x = x"}
	if !slices.Equal(got, want) {
		t.Errorf("statements = %q; want %q", got, want)
	}
	if got := (&DB{dialect: Postgres}).statements(body); !slices.Equal(got, []string{body}) {
		t.Errorf("statements on PostgreSQL = %q; want the body whole", got)
	}
}
