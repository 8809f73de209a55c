//go:build nosqlite

package store

import (
	"context"
	"database/sql"
	"errors"
)

// This build has no SQLite (-tags nosqlite): PostgreSQL only. Its
// sqliteDriver only refuses to open, so nothing asks it more.
var sqliteDriver = &Driver{Open: func(context.Context, string, Options) (w, r *sql.DB, err error) {
	return nil, nil, errors.New("this oauth2-api was built without SQLite (-tags nosqlite): set DATABASE_URL to a postgres:// URL")
}}
