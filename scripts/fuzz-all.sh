#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each: the
# packages two at a time (each package's targets one after another), as
# most of each run is the test binary's build, so that CI's short fuzz
# takes half the time.
#
# The Go fuzzer sometimes ends a time-bounded run with "context deadline
# exceeded" when a worker is busy as the time runs out on a loaded machine
# (golang/go#56238); that is not a finding. A real finding prints "Failing
# input written to testdata/fuzz/...", and fails this script.
set -uo pipefail
t=${1:-10s}
cd "$(dirname "$0")/.."

# fuzz_package runs each target of package $1 for $t; its output is
# printed in one piece, so that two packages' lines do not interleave.
fuzz_package() {
  local pkg=$1 dir status=0 out rc log=""
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    log+="== $pkg $f ($t)"$'\n'
    out=$(go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg" 2>&1)
    rc=$?
    log+="$(echo "$out" | tail -n 3)"$'\n'
    if [ $rc -ne 0 ]; then
      if echo "$out" | grep -q "Failing input written" || ! echo "$out" | grep -q "context deadline exceeded"; then
        log+="$out"$'\n'
        status=1
      else
        log+="(fuzzer stopped on its deadline while busy; no failing input: not a finding)"$'\n'
      fi
    fi
  done
  printf '%s' "$log"
  return $status
}
export -f fuzz_package
export t

go list ./... | xargs -P 2 -I{} bash -c 'fuzz_package "$1"' _ {}
