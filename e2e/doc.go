// Package e2e holds end-to-end tests that run the real oauth2-api binary as a
// subprocess: hostile input (hostile_test.go), faults such as a database that
// goes away, SIGKILL and SIGTERM (faults_test.go), and abuse such as password
// guessing across replicas and login floods (abuse_test.go).
//
// TestMain builds the binary once per test run with `go build` from the
// module root, or runs the one OAUTH2_API_BIN names. Servers start on free
// ports with their configuration in the environment; users and clients are
// made with the binary's own CLI. Tests that need PostgreSQL read
// TEST_POSTGRES_URL and skip without it, except when CI is set, where they
// fail. The tests of instances sharing a database run on every server
// dialect storetest has: PostgreSQL, and MySQL when mysql/test.sh runs them
// with oauth2-api-mysql and TEST_MYSQL_URL.
//
// The package has no code outside its tests.
package e2e
