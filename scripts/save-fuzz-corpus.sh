#!/usr/bin/env bash
# Copies up to N of the smallest inputs the fuzzer found interesting (kept in
# the Go build cache by `make fuzz`) into each package's testdata/fuzz, where
# `go test` runs them as seeds on every run. Review the diff before committing.
set -euo pipefail
n=${1:-25}
cd "$(dirname "$0")/.."
cache="$(go env GOCACHE)/fuzz/$(go list -m)"
for dir in "$cache"/*/ "$cache"/*/*/; do
  [ -d "$dir" ] || continue
  for target in "$dir"Fuzz*; do
    [ -d "$target" ] || continue
    rel=${target#"$cache"/}           # e.g. auth/FuzzPKCE
    pkg=${rel%/*}; name=${rel##*/}
    [ -d "$pkg" ] || continue
    mkdir -p "$pkg/testdata/fuzz/$name"
    ls -S -r "$target" | head -n "$n" | while read -r f; do cp "$target/$f" "$pkg/testdata/fuzz/$name/$f"; done
    echo "$pkg/testdata/fuzz/$name: $(ls "$pkg/testdata/fuzz/$name" | wc -l) inputs"
  done
done
