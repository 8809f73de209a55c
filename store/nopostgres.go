//go:build nopostgres

package store

import (
	"context"
	"database/sql"
	"errors"
)

// This build has no PostgreSQL (-tags nopostgres): SQLite only. Its
// postgresDriver only refuses to open, so nothing asks it more.
var postgresDriver = &Driver{Open: func(context.Context, string, Options) (w, r *sql.DB, err error) {
	return nil, nil, errors.New("this oauth2-api was built without PostgreSQL (-tags nopostgres): set DATABASE_URL to a SQLite path")
}}
