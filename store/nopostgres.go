//go:build nopostgres

package store

import (
	"database/sql"
	"errors"
)

// This build has no PostgreSQL (-tags nopostgres): SQLite only.

func openPostgres(string, Options) (w, r *sql.DB, err error) {
	return nil, nil, errors.New("this oauth2-api was built without PostgreSQL (-tags nopostgres): set DATABASE_URL to a SQLite path")
}

func postgresUnavailable(error) (known, unavailable bool) { return false, false }

func postgresUnique(error) bool { return false }
