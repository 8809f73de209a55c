//go:build !nosqlite && !nopostgres

package storetest

import "oauth2-api/store"

var dialects = []string{store.SQLite, store.Postgres}
