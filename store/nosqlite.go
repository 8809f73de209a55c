//go:build nosqlite

package store

// This build has no SQLite (-tags nosqlite): PostgreSQL only. Open refuses
// a SQLite path, saying so.
var sqliteDriver *Driver
