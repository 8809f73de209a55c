#!/usr/bin/env bash
# Runs the root module's store, handler and e2e suites on MySQL, and this
# module's own tests. The root module cannot import the driver, so the
# suites run from here, with overlay.json: it replaces
# store/storetest/nomysql.go with one that names mysql.Driver, which adds
# MySQL to storetest.Dialects (and the root's nomysql.go, for the binary).
# The e2e tests start oauth2-api-mysql, built here first.
#
#   TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test ./mysql/test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")"
bin=$(mktemp -d)/oauth2-api-mysql
trap 'rm -rf "$(dirname "$bin")"' EXIT
CGO_ENABLED=0 go build -overlay=overlay.json -o "$bin" oauth2-api
go test -count=1 "$@" ./...
# e2e: the tests that run on every shared database (instances side by
# side, a refresh token spent twice at once, a database cut, hostile text,
# bounded tables), on MySQL alone: make test runs them on PostgreSQL. They
# run beside the store and handler suites, as make test runs every package
# at once (each test has a database of its own): mostly waiting on
# MariaDB, the two took about 2.5 and 3 minutes one after the other in CI.
shared='TestLoginThrottleAcrossInstances|TestChangesReachOtherInstances|TestRefreshDoubleSpendAcrossInstances|TestLoginChecksBoundedAcrossInstances|TestRevocationWithDatabaseCut|TestBackchannelAcrossInstances|TestHostilePostgres|TestTablesBounded'
# A renamed test would match nothing and pass: each must be there.
found=$(go test -overlay=overlay.json -list "^($shared)\$" oauth2-api/e2e | grep -c '^Test' || true)
if [ "$found" -ne 8 ]; then echo "mysql/test.sh: $found of the 8 shared e2e tests found"; exit 1; fi
OAUTH2_API_BIN=$bin go test -count=1 -overlay=overlay.json -run "^($shared)\$/^mysql\$" "$@" oauth2-api/e2e &
e2e=$!
# Both finish before the exit (and the trap) removes the binary, however
# the first ends: else e2e fails at once for want of it, and hides which failed.
status=0
go test -count=1 -overlay=overlay.json "$@" oauth2-api/store/... oauth2-api/auth || status=$?
wait "$e2e" || status=$?
exit "$status"
