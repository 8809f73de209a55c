//go:build nopostgres

package store

// This build has no PostgreSQL (-tags nopostgres): SQLite only. Open refuses
// a postgres:// URL, saying so.
var postgresDriver *Driver
