//go:build nosqlite

package storetest

import "oauth2-api/store"

var dialects = []string{store.Postgres}
