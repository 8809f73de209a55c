#!/bin/sh
# sbom.sh BINARY VERSION > BINARY.cdx.json
#
# A CycloneDX 1.5 JSON software bill of materials for a Go binary, from the
# build information the Go toolchain embeds in it (`go version -m`): the
# binary itself (its SHA-256, Go version, GOOS/GOARCH and build settings),
# the Go standard library at that version, and every module linked in, each
# with its package URL (pkg:golang/...) and go.sum hash (h1:, a base64
# SHA-256 of the module's files). Nothing but go, awk and sha256sum: `make
# release` writes one beside each binary and puts them in SHA256SUMS.
#
# The timestamp is the commit's (SOURCE_DATE_EPOCH if set, else the
# commit time, else now), and there is no random serial number, so the same
# binary gives the same file.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BINARY VERSION" >&2; exit 2; }
bin=$1 version=$2
GO=${GO:-go}
info=$("$GO" version -m "$bin") || { echo "sbom.sh: go version -m $bin failed" >&2; exit 1; }
sum=$(sha256sum "$bin" | cut -d' ' -f1)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	ts=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
elif ts=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null) && [ -n "$ts" ]; then
	:
else
	ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

printf '%s\n' "$info" | awk -F '\t' -v sum="$sum" -v version="$version" -v ts="$ts" -v name="$(basename "$bin")" '
# JSON string: the values here are module paths, versions and build
# settings; escape what JSON requires anyway.
function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, "\\t", s); return "\"" s "\"" }
function prop(n, v) { return "{\"name\":" q(n) ",\"value\":" q(v) "}" }
NR == 1 { sub(/^[^:]*: /, ""); gover = $0; next }
$2 == "path" { path = $3; next }
$2 == "mod"  { mainmod = $3; next }
$2 == "dep"  { n++; dp[n] = $3; dv[n] = $4; dh[n] = $5; next }
$2 == "=>"   { rp[n] = $3; rv[n] = $4; rh[n] = $5; next }   # replaces the dep above
$2 == "build" { b++; bs[b] = $3; if ($3 ~ /^GOOS=/) goos = substr($3, 6); if ($3 ~ /^GOARCH=/) goarch = substr($3, 8); next }
END {
	if (gover == "" || path == "") { print "sbom.sh: no Go build information" > "/dev/stderr"; exit 1 }
	stdv = gover; sub(/^go/, "", stdv)
	mainref = "pkg:golang/" mainmod "@" version "?goos=" goos "&goarch=" goarch
	printf "{\n  \"bomFormat\": \"CycloneDX\",\n  \"specVersion\": \"1.5\",\n  \"version\": 1,\n"
	printf "  \"metadata\": {\n    \"timestamp\": %s,\n", q(ts)
	printf "    \"tools\": {\"components\": [{\"type\": \"application\", \"name\": \"scripts/sbom.sh\", \"description\": \"from go version -m\"}]},\n"
	printf "    \"component\": {\n      \"type\": \"application\", \"bom-ref\": %s, \"name\": %s, \"version\": %s, \"purl\": %s,\n", q(mainref), q(mainmod), q(version), q(mainref)
	printf "      \"hashes\": [{\"alg\": \"SHA-256\", \"content\": %s}],\n", q(sum)
	printf "      \"properties\": [%s, %s, %s", prop("file", name), prop("go:path", path), prop("go:version", gover)
	for (i = 1; i <= b; i++) printf ", %s", prop("go:build", bs[i])
	printf "]\n    }\n  },\n  \"components\": [\n"
	stdref = "pkg:golang/stdlib@" stdv
	printf "    {\"type\": \"library\", \"bom-ref\": %s, \"name\": \"stdlib\", \"version\": %s, \"purl\": %s, \"description\": \"the Go standard library\"}", q(stdref), q(stdv), q(stdref)
	for (i = 1; i <= n; i++) {
		p = dp[i]; v = dv[i]; h = dh[i]; extra = ""
		if (rp[i] != "") { extra = ", " prop("go:replaces", dp[i] "@" dv[i]); p = rp[i]; v = rv[i]; h = rh[i] }
		ref[i] = "pkg:golang/" p "@" v
		printf ",\n    {\"type\": \"library\", \"bom-ref\": %s, \"name\": %s, \"version\": %s, \"purl\": %s, \"properties\": [%s%s]}", q(ref[i]), q(p), q(v), q(ref[i]), prop("go:sum", h), extra
	}
	printf "\n  ],\n  \"dependencies\": [\n    {\"ref\": %s, \"dependsOn\": [%s", q(mainref), q(stdref)
	for (i = 1; i <= n; i++) printf ", %s", q(ref[i])
	printf "]}\n  ]\n}\n"
}'
