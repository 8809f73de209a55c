#!/usr/bin/env bash
# Builds oauth2-proxy, for the interop tests of deploy/examples/oauth2-proxy.cfg,
# from the Go module proxy, once per version, into a cache directory, and
# prints the binary's path:
#   OAUTH2_PROXY_BIN=$(scripts/oauth2-proxy.sh) make interop
# The cache is $OAUTH2_PROXY_CACHE, or ~/.cache/oauth2-api-interop
# ($XDG_CACHE_HOME if set); a cached binary is checked to be that version.
# Nothing of it reaches the server's go.mod or interop/go.mod.
set -euo pipefail
VERSION=v7.15.6
MODULE=github.com/oauth2-proxy/oauth2-proxy/v7
dir="${OAUTH2_PROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-api-interop}/oauth2-proxy-$VERSION"
bin="$dir/oauth2-proxy"
built() { go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$MODULE[[:space:]]+$VERSION[[:space:]]"; }
if ! built; then
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  # Outside any module, so that no go.mod or go.work of this repository is used.
  (cd "$tmp" && GOBIN="$tmp" GOFLAGS= GOWORK=off CGO_ENABLED=0 go install -trimpath "$MODULE@$VERSION") >&2
  mv "$tmp/oauth2-proxy" "$bin"
  built || { echo "oauth2-proxy.sh: $bin is not $MODULE $VERSION" >&2; exit 1; }
  echo "oauth2-proxy.sh: built $MODULE@$VERSION in $(( $(date +%s) - start ))s" >&2
fi
echo "$bin"
