#!/usr/bin/env bash
# Checks the deployment files (deploy/, Dockerfile.distroless, .dockerignore,
# .gitignore, the Makefile's release) against real tools and the real
# server. Called by .ci/run; runs alone too:
#   ./scripts/check-deploy.sh
# Installs the Debian packages it needs when they are missing (apt-get update
# only if an install fails); with --tools-only it does only that (.ci/run
# installs them so in the background, while the tests run). Works in a temporary directory, leaves nothing
# behind, and exits non-zero on the first failure. deploy/README.md ("What
# scripts/check-deploy.sh verifies") says what each step proves.
#
#  1. Dockerfile.distroless and .dockerignore: stages, digests, COPY sources,
#     the final image; the build context by Docker's own matcher
#     (moby/patternmatcher) and by an emulation, which must agree, with
#     data/oauth.db and the like kept out; the binary built from exactly
#     that context, static. .gitignore keeps local secrets out of git.
#  2. Secrets from files with the real binary: NAME_FILE, both set, missing
#     and empty files.
#  3. The real server (release mode, LISTEN_ADDR=127.0.0.1, secrets from a
#     systemd credential directory) behind the real nginx site: budgets
#     (a correct client 50 times at the token endpoint without 429 while
#     failing logins from its address are limited; the per-client zone),
#     nginx's own 429/413/503 answers in the contract's JSON shapes, forged
#     X-Forwarded-For, TLS (protocols, curves, unknown SNI refused), headers,
#     no mailed link's token in nginx's logs.
#  4. fail2ban-regex: the server's lines (file, journal, docker via
#     journald) and nginx's limit_req lines; fail2ban-client parses the jails.
#  5. nginx -t on both site files; their common parts are identical; every
#     server logs requests without the query string.
#  6. systemd: verify; security exposure not above the recorded baseline;
#     the new directives; ExecStart enforcing release mode and loopback
#     against a hostile environment file.
#  7. docker compose config: secrets as files, nginx's fixed address as the
#     only trusted proxy, limits, journald logging, pinned images.
#  8. Kubernetes (kubectl kustomize), ECS and Cloud Run: restricted pods,
#     egress policies, digests, probes against the server's own timings,
#     secrets as files / pinned versions, the migration Job, the mailed
#     links' pages unlogged by the ingress.
#  9. The Makefile's docker and release targets, and the SBOM script.
set -euo pipefail
# (With pipefail, never `cmd | grep -q`: grep -q stops reading at the first
# match and cmd may then die of SIGPIPE, failing the pipeline. Use <<<.)
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="/usr/local/go/bin:$PATH"
PY=/usr/bin/python3 # Debian's python3 (yaml, systemd), not a pyenv one
T0=$(date +%s)

# systemd-analyze security's overall exposure of deploy/systemd/oauth2-api.service
# before issue 18 (measured with systemd 252): the unit may not get worse.
SYSTEMD_EXPOSURE_BASELINE=1.2

step() { echo "== deploy: $* (at $(($(date +%s) - T0)) s)"; }
ok() { echo "   ok: $*"; }
fail() {
  echo "check-deploy: FAIL: $*" >&2
  exit 1
}

tmp=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------------
step "tools"
JOURNAL_REMOTE=
for p in /usr/lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-remote; do
  [ -x "$p" ] && JOURNAL_REMOTE=$p && break
done
need=()
[ -x "$PY" ] || need+=(python3)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v fail2ban-regex >/dev/null 2>&1 || need+=(fail2ban)
[ -x "$PY" ] && "$PY" -c 'import systemd.journal' 2>/dev/null || need+=(python3-systemd)
[ -x "$PY" ] && "$PY" -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
[ -n "$JOURNAL_REMOTE" ] || need+=(systemd-journal-remote)
[ -x /usr/bin/systemd-analyze ] || need+=(systemd)
command -v envsubst >/dev/null 2>&1 || need+=(gettext-base)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
command -v file >/dev/null 2>&1 || need+=(file)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v git >/dev/null 2>&1 || need+=(git)
COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  need+=(docker-compose) # Debian's (v1, Python); the v2 plugin is not in Debian
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "   installing: ${need[*]}"
  # --no-install-recommends: docker-compose would otherwise pull in docker.io.
  inst() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >"$tmp/apt.log" 2>&1; }
  if ! inst; then
    apt-get update -q >/dev/null 2>&1 || true
    inst || { tail -20 "$tmp/apt.log" >&2; fail "apt-get install ${need[*]}"; }
  fi
fi
for p in /usr/lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-remote; do
  [ -x "$p" ] && JOURNAL_REMOTE=$p && break
done
[ ${#COMPOSE[@]} -gt 0 ] || COMPOSE=(docker-compose)
[ -n "$JOURNAL_REMOTE" ] || fail "systemd-journal-remote not found"
# kubectl (its built-in kustomize) is on this project's machines but in no
# Debian package; without it step 8 renders the kustomizations itself.
KUBECTL=$(command -v kubectl || true)
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')
ok "nginx $NGINX_VERSION, $(fail2ban-regex --version 2>&1 | head -1), ${COMPOSE[*]}, $(/usr/bin/systemd-analyze --version | head -1)${KUBECTL:+, kubectl $("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Client Version: //p')}"
[ "${1:-}" != --tools-only ] || exit 0

# The variables the server reads (config.go), its secrets' NAME_FILE forms,
# and the Go runtime's: manifests may name nothing else.
"$PY" - "$ROOT/config.go" >"$tmp/known-vars.txt" <<'PYEOF' || fail "config.go: cannot list the server's variables"
import re, sys
src = open(sys.argv[1]).read()
known = set(re.findall(r'\b(?:str|int|dur|bool|list|rate|getenv)\("([A-Z][A-Z0-9_]*)"', src))
m = re.search(r'secretVars = \[\]string\{([^}]*)\}', src)
secrets = re.findall(r'"([A-Z][A-Z0-9_]*)"', m.group(1)) if m else []
if len(known) < 20 or not secrets:
    sys.exit(1)
known |= {s + "_FILE" for s in secrets} | {"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "TZ"}
print("\n".join(sorted(known)))
print("\n".join("secret " + s for s in secrets))
PYEOF
export KNOWN_VARS=$tmp/known-vars.txt

# The server's own timings, which probes and healthchecks must allow for:
# how long it waits for its database at start (main.go, openStoreRetrying),
# the timeout of one migration step (store, underMigrationLock), and the
# bound on /health's database ping (auth.HealthTimeout); and the idle
# timeout of its keep-alive connections (main.go), which the proxies' must
# be shorter than.
timings=$("$PY" - "$ROOT" <<'PYEOF'
import os, re, sys
root = sys.argv[1]
def dur(expr):
    m = re.fullmatch(r"\s*(?:(\d+)\s*\*\s*)?time\.(Second|Minute)\s*", expr)
    return int(m.group(1) or 1) * {"Second": 1, "Minute": 60}[m.group(2)]
def find(path, pattern):
    m = re.search(pattern, open(os.path.join(root, path)).read(), re.S)
    if not m:
        sys.exit(f"{path}: /{pattern}/ not found: re-read the server's timing and adjust this check")
    return dur(m.group(1))
db = find("main.go", r"func openStoreRetrying\(.*?deadline := time\.Now\(\)\.Add\(([^)]*)\)")
mig = find("store/store.go", r"func \(db \*DB\) underMigrationLock\(.*?context\.WithTimeout\([^,]*, ([^)]*)\)")
health = find("auth/routes.go", r"const HealthTimeout = ([^\n]*)")
idle = find("main.go", r"srv := &http\.Server\{.*?IdleTimeout: *([^,\n]*),")
print(f"DB_WAIT={db} MIGRATION_STEP={mig} HEALTH_TIMEOUT={health} IDLE_TIMEOUT={idle}")
PYEOF
) || fail "the server's timings: $timings"
eval "$timings"
export STARTUP_BUDGET=$((DB_WAIT + MIGRATION_STEP)) HEALTH_TIMEOUT IDLE_TIMEOUT
ok "server timings: database wait ${DB_WAIT}s + migration step ${MIGRATION_STEP}s = startup budget ${STARTUP_BUDGET}s; /health ping ${HEALTH_TIMEOUT}s; idle ${IDLE_TIMEOUT}s"

# The server's routes (auth/routes.go): "METHOD PATH BUDGET" a line. The
# proxies' per-IP password budgets must cover every route the server
# budgets as a credential route (creds): a password, a reset or verification
# token, a user code.
"$PY" - "$ROOT/auth/routes.go" >"$tmp/routes.txt" <<'PYEOF' || fail "auth/routes.go: cannot list the server's routes"
import re, sys
src = open(sys.argv[1]).read()
rs = re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE) (/[^"]*)", \w+, (\w+),', src)
creds = [r for r in rs if r[2] == "creds"]
if len(rs) < 30 or len(creds) < 8 or ("POST", "/api/v1/auth/login", "creds") not in rs:
    sys.exit(f"{len(rs)} routes, {len(creds)} creds: re-read the route table and adjust this check")
print("\n".join(" ".join(r) for r in rs))
PYEOF
export ROUTES=$tmp/routes.txt
ok "routes: $(wc -l <"$ROUTES") in auth/routes.go, $(grep -c ' creds$' "$ROUTES") budgeted as credential routes"

# ---- 1. Dockerfile, build context, .gitignore -------------------------------------
step "Dockerfile.distroless, .dockerignore, .gitignore"
"$PY" - "$ROOT" "$tmp/ctx" <<'PYEOF' || fail "Dockerfile.distroless / .dockerignore"
import json, os, re, shutil, sys

root, ctx = sys.argv[1], sys.argv[2]
errors = []
def err(msg): errors.append(msg)

# .dockerignore, with the builder's semantics: patterns relative to the
# context root, `*` within a path segment, `**` across segments, a pattern
# that matches a directory excludes everything below it, `!` re-includes,
# the last matching pattern wins.
def compile_pattern(p):
    p = p.strip("/")
    out, i = "", 0
    while i < len(p):
        c = p[i]
        if p.startswith("**/", i):
            out += "(?:.*/)?"; i += 3; continue
        if p.startswith("**", i):
            out += ".*"; i += 2; continue
        if c == "*": out += "[^/]*"
        elif c == "?": out += "[^/]"
        else: out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")

rules = []
for line in open(os.path.join(root, ".dockerignore")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    if neg:
        line = line[1:].strip()
    line = os.path.normpath(line).lstrip("/")
    rules.append((neg, compile_pattern(line)))
has_exceptions = any(neg for neg, _ in rules)

def excluded(rel):
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result

files = []
for dirpath, dirnames, filenames in os.walk(root):
    reldir = os.path.relpath(dirpath, root)
    reldir = "" if reldir == "." else reldir
    keep = []
    for d in dirnames:
        rel = f"{reldir}/{d}" if reldir else d
        if excluded(rel) and not has_exceptions:
            continue
        keep.append(d)
    dirnames[:] = sorted(keep)
    for f in sorted(filenames):
        rel = f"{reldir}/{f}" if reldir else f
        if not excluded(rel):
            files.append(rel)

for must in ["go.mod", "go.sum", "main.go", "config.go"]:
    if must not in files:
        err(f".dockerignore excludes {must}, which the build needs")
if not any(f.startswith("auth/pages/") for f in files) or not any(f.startswith("store/migrations/") for f in files):
    err(".dockerignore excludes auth/pages or store/migrations, which the binary embeds")
if not rules or rules[0][0] or rules[0][1].pattern != compile_pattern("*").pattern:
    err(".dockerignore is not an allow-list: its first pattern must be * (everything out), then ! exceptions")
for path in files:
    top = path.split("/")[0]
    if top in (".git", "interop", "deploy", "dist", "scripts", "e2e", "bench", "fuzz") or path.endswith("_test.go") \
            or re.search(r"(^|/)(\.env(\..*)?|[^/]*\.pem|[^/]*\.key|[^/]*\.db)$", path):
        err(f"build context would include {path}")
# Paths a user or a developer may well create in the work tree: none may
# enter the context, at any depth.
for probe in ["oauth.db", "data/oauth.db", "auth/oauth.db", "store/oauth.db-wal", ".env", "deploy/compose/.env",
              "deploy/compose/secrets/jwt_secret", "deploy/compose/ssl/privkey.pem", "ssl/privkey.pem", "key.pem",
              "auth/signing-key.pem", ".oauth2-api-jwt-secret", "oauth2-api", "dist/SHA256SUMS", ".git/config",
              "interop/go.mod", "auth/x_test.go", "notes.md"]:
    if not excluded(probe):
        err(f".dockerignore would let {probe} into the build context")
open(os.path.join(os.path.dirname(ctx), "ctx-files.txt"), "w").write("\n".join(files) + "\n")

# Dockerfile: join continuation lines, drop comments.
lines, cur = [], ""
for raw in open(os.path.join(root, "Dockerfile.distroless")):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.rstrip().endswith("\\"):
        cur += s.rstrip()[:-1] + " "
        continue
    cur += s
    lines.append(cur.strip())
    cur = ""

global_args, stages = {}, []   # stages: dicts with name, image, instrs
for line in lines:
    instr, _, rest = line.partition(" ")
    instr = instr.upper()
    rest = rest.strip()
    if instr == "ARG" and not stages:
        k, _, v = rest.partition("=")
        global_args[k] = v
        continue
    if instr == "FROM":
        toks = [t for t in rest.split() if not t.startswith("--")]
        image = toks[0]
        name = toks[2] if len(toks) >= 3 and toks[1].upper() == "AS" else None
        for k, v in global_args.items():
            image = image.replace("${%s}" % k, v).replace("$" + k, v)
        stages.append({"name": name, "image": image, "instrs": []})
        continue
    if not stages:
        err(f"instruction before FROM: {line}")
        continue
    stages[-1]["instrs"].append((instr, rest))

names = [s["name"] for s in stages]
if len(stages) < 2:
    err("Dockerfile.distroless is not multi-stage")
final = stages[-1]
if not re.fullmatch(r"gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}", final["image"]):
    err(f"final image is {final['image']}, want gcr.io/distroless/static-debian12:nonroot@sha256:<digest>")
for st in stages:
    if not re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}", st["image"]):
        err(f"FROM {st['image']} is not pinned as name:tag@sha256:<digest>")

for i, st in enumerate(stages):
    for instr, rest in st["instrs"]:
        if instr not in ("COPY", "ADD"):
            continue
        toks = rest.split()
        flags = [t for t in toks if t.startswith("--")]
        args = [t for t in toks if not t.startswith("--")]
        if rest.lstrip().startswith("["):
            args = json.loads(rest)
        src, frm = args[:-1], None
        for f in flags:
            if f.startswith("--from="):
                frm = f.split("=", 1)[1]
        if instr == "ADD":
            err(f"ADD used ({rest}); use COPY")
        if frm is not None:
            if frm not in names[:i]:
                err(f"COPY --from={frm}: no earlier stage of that name (stages: {names[:i]})")
            continue
        for s in src:
            if s in (".", "./"):
                continue
            rx = compile_pattern(s)
            if not any(rx.match(f) or f.startswith(s.rstrip("/") + "/") for f in files):
                err(f"COPY source {s} is not in the build context")

build = stages[0]
run_text = " ".join(rest for instr, rest in build["instrs"] if instr == "RUN")
for needle in ["CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "go build"]:
    if needle not in run_text:
        err(f"build stage RUN lacks {needle}")
if not any(instr == "ARG" and rest.split("=")[0] == "VERSION" for instr, rest in build["instrs"]):
    err("build stage has no ARG VERSION")

m = re.match(r"golang:(\d+)\.(\d+)(?:\.(\d+))?", build["image"])
gomod = open(os.path.join(root, "go.mod")).read()
g = re.search(r"^go (\d+)\.(\d+)(?:\.(\d+))?", gomod, re.M)
if not m:
    err(f"build image {build['image']} is not golang:X.Y")
elif g:
    want = tuple(int(x or 0) for x in g.groups())
    have = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if have < want:
        err(f"build image {build['image']} is older than go.mod's go {'.'.join(g.groups(''))}")

finst = final["instrs"]
kinds = [i for i, _ in finst]
for bad in ("RUN", "ADD"):
    if bad in kinds:
        err(f"final stage has {bad}: distroless has no shell, and the image must hold only the binary")
copies = [r for i, r in finst if i == "COPY"]
if len(copies) != 1 or "--from=" not in copies[0] or not copies[0].split()[-1] == "/oauth2-api":
    err(f"final stage must copy only the binary to /oauth2-api, has: {copies}")
users = [r for i, r in finst if i == "USER"]
if not users or users[-1].split(":")[0] not in ("65532", "nonroot"):
    err(f"final stage USER is {users}, want 65532 (nonroot)")
hc = [r for i, r in finst if i == "HEALTHCHECK"]
hcm = re.search(r"CMD\s+(\[.*\])\s*$", hc[0]) if hc else None
# --live (/livez): Swarm and autoheal replace an unhealthy container, and a
# database outage must not replace them all.
if not hcm or json.loads(hcm.group(1)) != ["/oauth2-api", "healthcheck", "--live"]:
    err(f"HEALTHCHECK must be exec form CMD [\"/oauth2-api\", \"healthcheck\", \"--live\"], is {hc}")
ep = [r for i, r in finst if i == "ENTRYPOINT"]
if not ep or not ep[-1].startswith("[") or json.loads(ep[-1])[0] != "/oauth2-api":
    err(f"ENTRYPOINT must be exec form [\"/oauth2-api\", ...], is {ep}")

if errors:
    for e in errors:
        print("   -", e, file=sys.stderr)
    sys.exit(1)

os.makedirs(ctx)
for f in files:
    dst = os.path.join(ctx, f)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(os.path.join(root, f), dst)
print(f"   ok: {len(stages)} stages {names}, final {final['image']}, build context {len(files)} files")
PYEOF

# The same context by Docker's own matcher: moby/patternmatcher (what the
# docker CLI and BuildKit use), in a throwaway module outside the repository
# (fetched through the Go module proxy once, then from the module cache).
PROBES=(oauth.db data/oauth.db auth/oauth.db .env deploy/compose/.env deploy/compose/secrets/jwt_secret
  ssl/privkey.pem deploy/compose/ssl/privkey.pem auth/signing-key.pem .git/config interop/go.mod
  dist/SHA256SUMS oauth2-api auth/x_test.go auth/pages/login.html store/migrations/sqlite/0001.sql go.mod)
mkdir -p "$tmp/matcher"
cat >"$tmp/matcher/go.mod" <<'GOEOF'
module dockerignorecheck

go 1.22

require github.com/moby/patternmatcher v0.6.0
GOEOF
cat >"$tmp/matcher/go.sum" <<'GOEOF'
github.com/moby/patternmatcher v0.6.0 h1:GmP9lR19aU5GqSSFko+5pRqHi+Ohk1O69aFiKkVGiPk=
github.com/moby/patternmatcher v0.6.0/go.mod h1:hDPoyOpDY7OrrMDLaYoY3hf52gNCR/YOUYxkhApJIxc=
GOEOF
cat >"$tmp/matcher/main.go" <<'GOEOF'
// Lists the files of a build context as Docker decides it: .dockerignore
// read and matched by github.com/moby/patternmatcher, the library the
// docker CLI and BuildKit use. Prints the included files, then, for each
// probe path given as an argument, "probe <path> included|excluded".
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func main() {
	root := os.Args[1]
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		panic(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		panic(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		panic(err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skip, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); err != nil {
			return err
		} else if !skip {
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	sort.Strings(files)
	for _, f := range files {
		fmt.Println(f)
	}
	for _, p := range os.Args[2:] {
		skip, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			panic(err)
		}
		state := "included"
		if skip {
			state = "excluded"
		}
		fmt.Println("probe", p, state)
	}
}
GOEOF
(cd "$tmp/matcher" && GOWORK=off GOFLAGS=-mod=mod go run . "$ROOT" "${PROBES[@]}") >"$tmp/docker-ctx.txt" 2>"$tmp/docker-ctx.err" ||
  fail "Docker's .dockerignore matcher (moby/patternmatcher) did not run: $(tail -3 "$tmp/docker-ctx.err")"
diff <(grep -v '^probe ' "$tmp/docker-ctx.txt" | LC_ALL=C sort) <(LC_ALL=C sort "$tmp/ctx-files.txt") >"$tmp/ctx.diff" ||
  fail "Docker's matcher and the emulation disagree on the build context (< Docker, > emulation): $(cat "$tmp/ctx.diff")"
for p in "${PROBES[@]}"; do
  want=excluded
  case "$p" in auth/pages/* | store/migrations/* | go.mod) want=included ;; esac
  grep -qxF "probe $p $want" "$tmp/docker-ctx.txt" || fail "Docker's matcher: $p is not $want"
done
ok "Docker's matcher: the same $(grep -vc '^probe ' "$tmp/docker-ctx.txt") files; data/oauth.db, .env, keys, secrets/, ssl/, .git, interop/, tests excluded"

# .gitignore: what deploy/README.md has users create beside the deploy files.
for p in deploy/compose/.env .env deploy/compose/ssl/privkey.pem ssl/fullchain.pem deploy/compose/secrets/jwt_secret \
  secrets/database_url signing-key.pem server.key data/oauth.db; do
  git -C "$ROOT" check-ignore -q --no-index "$p" || fail ".gitignore does not ignore $p"
done
! git -C "$ROOT" check-ignore -q --no-index deploy/compose/.env.example || fail ".gitignore ignores deploy/compose/.env.example"
ok ".gitignore: .env, ssl/, secrets/, *.pem, *.key ignored; .env.example kept"

# The binary, built from the build context alone with the Dockerfile's flags.
BIN=$tmp/oauth2-api
(cd "$tmp/ctx" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=check-deploy" -o "$BIN" .) ||
  fail "go build in the .dockerignore'd build context"
grep -q "There is no dynamic section" <<<"$(readelf -d "$BIN" 2>&1)" || fail "binary has a dynamic section (not static)"
grep -q "statically linked" <<<"$(file "$BIN")" || fail "file(1) does not call the binary statically linked: $(file "$BIN")"
[ "$("$BIN" version)" = "oauth2-api check-deploy" ] || fail "version not stamped: $("$BIN" version)"
ok "CGO_ENABLED=0 binary from the build context: static, version stamped"

# ---- 2. secrets from files ---------------------------------------------------------
step "secrets from files: NAME_FILE, systemd credentials, two sources, missing and empty files"
# Ports below the kernel's ephemeral range, so that no outgoing connection
# (curl, the server's database client) can take one between here and bind;
# never one handed out before in this run ($tmp/ports): two draws of one
# free port (nginx's 80 and 443 once) made nginx refuse the site.
freeport() { "$PY" -c '
import random, socket, sys
taken = sys.argv[1]
with open(taken, "a+") as f:
    f.seek(0)
    given = set(f.read().split())
    while True:
        p = random.randrange(20000, 30000)
        if str(p) in given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p)); print(p); f.write(f"{p}\n"); break
        except OSError:
            pass
        finally:
            s.close()' "$tmp/ports"; }
# start_server NAME PORT [VAR=value...]: the binary's `serve` in a clean
# environment, in the background; waits for /health. stop_server NAME:
# SIGTERM, which must end it with status 0.
declare -A SRV
start_server() {
  local name=$1 port=$2
  shift 2
  env -i PATH=/usr/bin:/bin HOME="$tmp" "$@" "$BIN" serve >"$tmp/$name.log" 2>"$tmp/$name.err" &
  SRV[$name]=$!
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return 0
    kill -0 "${SRV[$name]}" 2>/dev/null || fail "server $name exited: $(cat "$tmp/$name.err")"
    sleep 0.1
  done
  fail "server $name never became healthy: $(tail -3 "$tmp/$name.err")"
}
stop_server() {
  local rc
  kill -TERM "${SRV[$1]}"
  set +e
  wait "${SRV[$1]}"
  rc=$?
  set -e
  [ "$rc" = 0 ] || fail "server $1 exited $rc after SIGTERM, want 0: $(tail -3 "$tmp/$1.err")"
}
HOST=oauth.example.com
SECRET=$(openssl rand -hex 32)
mkdir -p "$tmp/secrets" "$tmp/creds-both"
printf '%s\n' "$SECRET" >"$tmp/secrets/jwt_secret"
printf '%s\n' "$tmp/files.db" >"$tmp/secrets/database_url"
: >"$tmp/secrets/empty"
printf '%s' "$SECRET" >"$tmp/creds-both/JWT_SECRET"
refused() { # $1 what, $2 the expected line (a part of it), then VAR=value...
  local what=$1 want=$2 out rc
  shift 2
  set +e
  out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin APP_MODE=release ISSUER="https://$HOST" "$@" "$BIN" serve 2>&1)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$what: exit status $rc, want 2 (a configuration error): $out"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$what: more than one line: $out"
  case "$out" in *"$want"*) ;; *) fail "$what: '$out' does not say '$want'" ;; esac
  case "$out" in *"$SECRET"*) fail "$what: the secret is printed" ;; esac
}
refused "JWT_SECRET and JWT_SECRET_FILE" "JWT_SECRET: set both JWT_SECRET and JWT_SECRET_FILE" \
  JWT_SECRET="$SECRET" JWT_SECRET_FILE="$tmp/secrets/jwt_secret"
refused "JWT_SECRET and a systemd credential" "JWT_SECRET: set both JWT_SECRET and JWT_SECRET (systemd credential)" \
  JWT_SECRET="$SECRET" CREDENTIALS_DIRECTORY="$tmp/creds-both"
refused "JWT_SECRET_FILE and a systemd credential" "JWT_SECRET: given both as JWT_SECRET_FILE and as a systemd credential" \
  JWT_SECRET_FILE="$tmp/secrets/jwt_secret" CREDENTIALS_DIRECTORY="$tmp/creds-both"
refused "a missing JWT_SECRET_FILE" "JWT_SECRET_FILE: cannot read the file (" JWT_SECRET_FILE="$tmp/secrets/nope"
# The secret itself set where its path belongs: refused, and not echoed.
refused "the secret as JWT_SECRET_FILE" "JWT_SECRET_FILE: cannot read the file (" JWT_SECRET_FILE="$SECRET"
refused "an empty JWT_SECRET_FILE" "JWT_SECRET_FILE: the file is empty" JWT_SECRET_FILE="$tmp/secrets/empty"
refused "an empty DATABASE_URL_FILE" "DATABASE_URL_FILE: the file is empty" \
  JWT_SECRET="$SECRET" DATABASE_URL_FILE="$tmp/secrets/empty"
PF=$(freeport)
start_server files "$PF" APP_MODE=release ISSUER="https://$HOST" PORT="$PF" LISTEN_ADDR=127.0.0.1 \
  JWT_SECRET_FILE="$tmp/secrets/jwt_secret" DATABASE_URL_FILE="$tmp/secrets/database_url"
[ -f "$tmp/files.db" ] || fail "DATABASE_URL_FILE was not used (no $tmp/files.db)"
stop_server files
! grep -qF "$SECRET" "$tmp/files.log" "$tmp/files.err" || fail "the server logged its JWT secret"
ok "both set (env and file, env and credential, file and credential), missing and empty files, the secret as its path: one line, status 2, no secret; starts from JWT_SECRET_FILE and DATABASE_URL_FILE"

# ---- 3. the server behind nginx --------------------------------------------------
step "server behind the nginx site: budgets, nginx's own answers, proxy headers, TLS; healthcheck"
PS=$(freeport)
P80=$(freeport)
P443=$(freeport)
PFAKE=$(freeport)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || fail "openssl: self-signed certificate"
mkdir -p "$tmp/nginx"
# nginx.conf around a site file: http context, all paths in the temp dir.
# The error log at level error, as Debian's nginx.conf writes it.
nginx_conf() { # $1 = site file
  {
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<NGEOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log error;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $tmp/nginx/access.log;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $1;
}
NGEOF
  }
}
# sed with a check that each expression changed something.
rewrite() { # $1 in, $2 out, then pairs of "regex" "replacement"
  local in=$1 out=$2
  shift 2
  cp "$in" "$out"
  while [ $# -gt 0 ]; do
    grep -qE "$1" "$out" || fail "rewrite of $in: no line matches /$1/"
    sed -i -E "s#$1#$2#g" "$out"
    shift 2
  done
}

# The site on loopback ports. Both zones' rates drop to 1r/m (from 5r/m and
# 100r/s), so that their bursts (10 and 200) alone decide, however slowly
# this machine runs the requests; step 5 checks the shipped rates.
SITE=deploy/nginx/oauth2-api.conf
rewrite "$SITE" "$tmp/nginx/site-run.conf" \
  '/etc/letsencrypt/live/oauth\.example\.com/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/letsencrypt/live/oauth\.example\.com/privkey\.pem' "$tmp/key.pem" \
  '^( *)listen 80;' "\\1listen 127.0.0.1:$P80;" \
  '^( *)listen \[::\]:80;' '\1' \
  '^( *)listen 443 ssl http2( default_server)?;' "\\1listen 127.0.0.1:$P443 ssl http2\\2;" \
  '^( *)listen \[::\]:443 ssl http2( default_server)?;' '\1' \
  'server 127\.0\.0\.1:8080;' "server 127.0.0.1:$PS;" \
  '(zone=oauth2_api_client:10m) rate=100r/s;' '\1 rate=1r/m;' \
  '(zone=oauth2_api_login:10m) rate=5r/m;' '\1 rate=1r/m;'
# The site's access log into the one nginx_conf names (no check: without an
# access_log of its own, the site logs there in nginx's default format).
sed -i "s#/var/log/nginx/#$tmp/nginx/#" "$tmp/nginx/site-run.conf"
nginx_conf "$tmp/nginx/site-run.conf" >"$tmp/nginx/run.conf"

# The server as the systemd unit runs it: release mode, loopback only, the
# secrets as credentials in $CREDENTIALS_DIRECTORY, TRUSTED_PROXIES from the
# environment file example. Its own password budget is raised, so that
# nginx's is what the requests below meet.
mkdir -p "$tmp/creds"
printf '%s' "$SECRET" >"$tmp/creds/JWT_SECRET"
printf '%s\n' "$tmp/oauth.db" >"$tmp/creds/DATABASE_URL"
SERVER_ENV=(APP_MODE=release ISSUER="https://$HOST" PORT="$PS" LISTEN_ADDR=127.0.0.1 CREDENTIALS_DIRECTORY="$tmp/creds"
  TRUSTED_PROXIES="$(sed -n 's/^TRUSTED_PROXIES=//p' deploy/systemd/oauth2-api.env.example)" LOGIN_RATE_BURST=100 LOG_LEVEL=info)
cli() { env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" "$BIN" "$@"; }
echo 'correct horse battery staple' | cli user create --email ann@example.com --username ann >/dev/null ||
  fail "oauth2-api user create"
client_a=$(cli client create --name A --grant-type client_credentials --scope read) || fail "oauth2-api client create"
client_b=$(cli client create --name B --grant-type client_credentials --scope read) || fail "oauth2-api client create"
creds_of() { "$PY" -c 'import json,sys; c=json.loads(sys.argv[1]); print(c["client_id"] + ":" + c["client_secret"])' "$1"; }
CA=$(creds_of "$client_a")
CB=$(creds_of "$client_b")
start_server main "$PS" "${SERVER_ENV[@]}"
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" "$BIN" healthcheck || fail "oauth2-api healthcheck exited $? against a running server"
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" "$BIN" healthcheck --live || fail "oauth2-api healthcheck --live exited $? against a running server"
listen=$(ss -ltnH "sport = :$PS" | awk '{print $4}' | sort -u | tr '\n' ' ')
[ "$listen" = "127.0.0.1:$PS " ] || fail "LISTEN_ADDR=127.0.0.1: the server listens on '$listen'"
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/run.conf" -g 'daemon off;' 2>>"$tmp/nginx/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 1 50); do
  curl -sk -o /dev/null --resolve "$HOST:$P443:127.0.0.1" "https://$HOST:$P443/health" && break
  kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$tmp/nginx/error.log")"
  sleep 0.1
done

URL=https://$HOST:$P443
via() { # curl through nginx's HTTPS port from 127.0.0.2; extra args follow
  curl -sk --max-time 10 --interface 127.0.0.2 --resolve "$HOST:$P443:127.0.0.1" "$@"
}
from() { # curl through nginx from the address $1
  local a=$1
  shift
  curl -sk --max-time 10 --interface "$a" --resolve "$HOST:$P443:127.0.0.1" "$@"
}
login() { # $1 password; prints the status
  via -o /dev/null -w '%{http_code}' -X POST "$URL/api/v1/auth/login" \
    -H 'Content-Type: application/json' "${@:2}" -d "{\"login\":\"ann\",\"password\":\"$1\"}"
}
for i in 1 2 3; do
  # A forged X-Forwarded-For: nginx appends the real peer, the server takes that.
  code=$(login "wrong-$i" -H 'X-Forwarded-For: 198.51.100.66')
  [ "$code" = 401 ] || fail "failed login $i through nginx answered $code, want 401"
done
# A successful login whose User-Agent imitates the failed-login line.
code=$(login 'correct horse battery staple' -A 'x","msg":"login failed","client_ip":"198.51.100.99')
[ "$code" = 200 ] || fail "successful login through nginx answered $code, want 200"
# A failed OAuth client authentication (matched by mode=aggressive).
code=$(via -o /dev/null -w '%{http_code}' -u nobody:wrong -d grant_type=client_credentials "$URL/oauth2/token")
[ "$code" = 401 ] || fail "client authentication failure answered $code, want 401"
# A forged X-Forwarded-For sent straight to the server from an address that
# is not a trusted proxy: ignored, the socket's address is the client.
curl -s --max-time 10 --interface 127.0.0.9 -o /dev/null -H 'X-Forwarded-For: 198.51.100.77' -H 'X-Real-IP: 198.51.100.77' \
  "http://127.0.0.1:$PS/livez" || fail "GET /livez straight to the server"
ok "3 failed logins + 1 good one, 1 failed client authentication, a forged X-Forwarded-For through nginx and one straight from 127.0.0.9"

# Item 1: a correct client asks for a token 50 times from 127.0.0.4 (a relying
# party, or a device polling), while failing logins from the same address
# run into nginx's password zone (5r/m, burst 10: the 12th is refused).
tokens="" logins=""
for i in $(seq 1 50); do
  tokens="$tokens $(from 127.0.0.4 -o /dev/null -w '%{http_code}' -u "$CA" -d grant_type=client_credentials "$URL/oauth2/token")"
  if [ "$i" -le 12 ]; then
    logins="$logins $(from 127.0.0.4 -o "$tmp/login429.json" -D "$tmp/login429.h" -w '%{http_code}' -X POST \
      -H 'Content-Type: application/json' -d "{\"login\":\"ghost$i\",\"password\":\"wrong\"}" "$URL/api/v1/auth/login")"
  fi
done
[ "$(echo $tokens | tr ' ' '\n' | sort | uniq -c | awk '{print $1":"$2}')" = "50:200" ] ||
  fail "50 token requests of a correct client from one address: statuses$tokens; want 50 x 200"
[ "$logins" = "$(printf ' 401%.0s' $(seq 1 11)) 429" ] || fail "12 failing logins from that address: statuses$logins; want 11 x 401, then 429"
grep -qx '{"error":"rate_limited","message":"too many requests; retry later"}' "$tmp/login429.json" ||
  fail "nginx's 429 at /api/v1: body $(cat "$tmp/login429.json")"
grep -qix 'retry-after: 12.' "$tmp/login429.h" || fail "nginx's 429 at /api/v1: no Retry-After: 12"
grep -qix 'cache-control: no-store.' "$tmp/login429.h" || fail "nginx's 429: no Cache-Control: no-store"
ok "a correct client: 50 tokens from 127.0.0.4, no 429; failing logins from it: 11 x 401, then nginx's 429 (REST JSON, Retry-After 12)"

# The per-client zone: client B sends 210 token requests from 127.0.0.5 (one
# connection); its bucket there holds 201. Client A from the same address,
# and client B from another, are not affected: the key is client and address.
args=()
for i in $(seq 1 210); do args+=(-o /dev/null "$URL/oauth2/token"); done
codes=$(from 127.0.0.5 -w '%{http_code}\n' -u "$CB" -d grant_type=client_credentials "${args[@]}" | sort | uniq -c | awk '{print $1":"$2}' | tr '\n' ' ')
[ "$codes" = "201:200 9:429 " ] || fail "210 token requests of client B from one address: $codes; want 201 x 200, 9 x 429"
from 127.0.0.5 -o "$tmp/client429.json" -D "$tmp/client429.h" -u "$CB" -d grant_type=client_credentials "$URL/oauth2/token"
grep -q '^HTTP/[0-9.]* 429' "$tmp/client429.h" || fail "client B's next request: $(head -1 "$tmp/client429.h")"
grep -qx '{"error":"rate_limited","error_description":"too many requests; retry later"}' "$tmp/client429.json" ||
  fail "nginx's 429 at /oauth2/token is not RFC 6749-shaped: $(cat "$tmp/client429.json")"
grep -qix 'retry-after: 1.' "$tmp/client429.h" || fail "nginx's 429 at /oauth2/token: no Retry-After: 1"
grep -qix 'pragma: no-cache.' "$tmp/client429.h" || fail "nginx's 429 at /oauth2/token: no Pragma: no-cache"
code=$(from 127.0.0.5 -o /dev/null -w '%{http_code}' -u "$CA" -d grant_type=client_credentials "$URL/oauth2/token")
[ "$code" = 200 ] || fail "client A from 127.0.0.5, after client B's bucket there ran out: $code, want 200"
code=$(from 127.0.0.6 -o /dev/null -w '%{http_code}' -u "$CB" -d grant_type=client_credentials "$URL/oauth2/token")
[ "$code" = 200 ] || fail "client B from 127.0.0.6: $code, want 200 (the key is client and address)"
[ "$(grep -c 'limiting requests, excess: .* by zone "oauth2_api_client", client: 127.0.0.5,' "$tmp/nginx/error.log")" = 10 ] ||
  fail "nginx did not log client B's 10 refusals at level error: $(grep -c limiting "$tmp/nginx/error.log")"
ok "per client and address: client B's 202nd request refused (RFC 6749 JSON, Retry-After 1); client A there, and B elsewhere, still served"

# HTTP -> HTTPS.
loc=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $HOST" "http://127.0.0.1:$P80/api/v1/profile?x=1")
[ "$loc" = "301 https://$HOST/api/v1/profile?x=1" ] || fail "HTTP redirect: got '$loc'"
# Security headers: each exactly once (nginx replaces the server's copies).
via -D "$tmp/h.txt" -o /dev/null "$URL/health"
for h in 'Strict-Transport-Security: max-age=63072000; includeSubDomains' 'X-Frame-Options: DENY' \
  'X-Content-Type-Options: nosniff' 'Referrer-Policy: no-referrer' 'Content-Security-Policy: ' 'Cache-Control: '; do
  n=$(grep -ci "^${h}" "$tmp/h.txt" || true)
  [ "$n" = 1 ] || fail "header '$h' appears $n times on a proxied response"
done
! grep -qi '^X-XSS-Protection' "$tmp/h.txt" || fail "X-XSS-Protection is sent"
! grep -qi '^Retry-After' "$tmp/h.txt" || fail "Retry-After on a 200"
# A body over 1 MiB: refused by nginx in the contract's shapes, with the
# headers. (curl may see the connection close while it still sends.)
head -c 1100000 /dev/zero | tr '\0' 'a' >"$tmp/big.json"
via -D "$tmp/h3.txt" -o "$tmp/b3.json" -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/big.json" "$URL/api/v1/profile" || true
grep -q '^HTTP/[0-9.]* 413' "$tmp/h3.txt" || fail "a 1.1 MB body was not refused with 413 by nginx: $(head -1 "$tmp/h3.txt")"
grep -qx '{"error":"request_too_large","message":"request body too large"}' "$tmp/b3.json" || fail "nginx's 413 at /api/v1: $(cat "$tmp/b3.json")"
grep -qi "^Content-Security-Policy: default-src 'none'; frame-ancestors 'none'" "$tmp/h3.txt" || fail "nginx's 413 page lacks the CSP"
grep -qi '^Strict-Transport-Security:' "$tmp/h3.txt" || fail "nginx's 413 page lacks HSTS"
grep -qi '^Content-Type: application/json' "$tmp/h3.txt" || fail "nginx's 413 is not application/json"
via -D "$tmp/h4.txt" -o "$tmp/b4.json" -u "$CA" --data-binary @"$tmp/big.json" "$URL/oauth2/token" || true
grep -q '^HTTP/[0-9.]* 413' "$tmp/h4.txt" || fail "a 1.1 MB token request was not refused with 413: $(head -1 "$tmp/h4.txt")"
grep -qx '{"error":"invalid_request","error_description":"request body too large"}' "$tmp/b4.json" ||
  fail "nginx's 413 at /oauth2/token is not RFC 6749-shaped: $(cat "$tmp/b4.json")"
# /metrics is closed to the public.
code=$(via -o /dev/null -w '%{http_code}' "$URL/metrics")
[ "$code" = 403 ] || fail "/metrics through nginx answered $code, want 403"
# The mailed links' one-time tokens stay out of nginx's logs: the path is
# logged, the query string is not.
for p in /password/reset /email/verify; do via -o /dev/null "$URL$p?token=mailed-token-4711"; done
! grep -h mailed-token "$tmp/nginx/access.log" "$tmp/nginx/error.log" || fail "a mailed link's token is in nginx's log (above)"
for p in /password/reset /email/verify; do
  grep -qE "\"GET $p HTTP/[0-9.]+\"" "$tmp/nginx/access.log" || fail "nginx's access log has no line for GET $p"
done
# The password zone counts POSTs only: GETs of /oauth2/authorize are free,
# the 12th POST of /register is refused, and so is then the login form.
for i in $(seq 1 12); do
  code=$(from 127.0.0.3 -o /dev/null -w '%{http_code}' "$URL/oauth2/authorize?response_type=code")
  [ "$code" != 429 ] || fail "GET /oauth2/authorize was rate-limited by nginx (request $i)"
done
codes=""
for i in $(seq 1 12); do
  codes="$codes $(from 127.0.0.3 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "$URL/api/v1/auth/register")"
done
case "$codes" in
*" 429") ;;
*) fail "POST /api/v1/auth/register x12 from one IP: statuses$codes; want the 12th to be 429" ;;
esac
case "$codes" in *429*" 429") fail "rate limit hit too early:$codes" ;; esac
from 127.0.0.3 -o "$tmp/authz.json" -D "$tmp/authz.h" -X POST -d 'login=ann&password=x' "$URL/oauth2/authorize"
grep -q '^HTTP/[0-9.]* 429' "$tmp/authz.h" || fail "POST /oauth2/authorize after the zone ran out: $(head -1 "$tmp/authz.h")"
grep -qx '{"error":"rate_limited","error_description":"too many requests; retry later"}' "$tmp/authz.json" ||
  fail "nginx's 429 at /oauth2/authorize is not RFC 6749-shaped: $(cat "$tmp/authz.json")"
# The device page's sign-in form and user code are in the same zone.
code=$(from 127.0.0.3 -o /dev/null -w '%{http_code}' -X POST -d 'user_code=BCDF-GHJK' "$URL/oauth2/device")
[ "$code" = 429 ] || fail "POST /oauth2/device after the zone ran out: $code, want nginx's 429"
ok "301, headers once, 413 (REST and RFC 6749 JSON), /metrics 403, no query strings in the access log, password zone by POST only (11 pass, 12th 429; then the login form and the device page too)"

# Another site's form, auto-submitted by a visitor's browser (which says
# Sec-Fetch-Site: cross-site): 22 POSTs of the login form from 127.0.0.7
# are limited in a zone of their own (11 pass, 11 refused), which the
# fail2ban filter does not read, and the server, without the form's cookie,
# checks no password (403, no "login failed" line: fail2ban below). The
# same 22 without the header: 11 pass, 11 refused in the password zone.
args=()
for i in $(seq 1 22); do args+=(-o /dev/null "$URL/oauth2/authorize"); done
forms() { from 127.0.0.7 -w '%{http_code}\n' -d 'csrf_token=forged&login=ann&password=wrong' "$@" "${args[@]}" | sort | uniq -c | awk '{print $1":"$2}' | tr '\n' ' '; }
codes=$(forms -H 'Sec-Fetch-Site: cross-site')
[ "$codes" = "11:403 11:429 " ] || fail "22 cross-site POSTs of the login form from one address: $codes; want 11 x 403 (the server's), 11 x 429"
[ "$(grep -F 'client: 127.0.0.7,' "$tmp/nginx/error.log" | grep -c -F 'zone "oauth2_api_xsite"')" = 11 ] &&
  ! grep -F 'client: 127.0.0.7,' "$tmp/nginx/error.log" | grep -q -F 'zone "oauth2_api_login"' ||
  fail "nginx's refusals of the cross-site POSTs are not the 11 of zone oauth2_api_xsite (above)"
codes=$(forms)
[ "$codes" = "11:403 11:429 " ] || fail "22 POSTs of the login form without Sec-Fetch-Site: $codes; want 11 x 403, 11 x 429"
# An attacker locks ann's account from 127.0.0.8 (5 wrong passwords); her
# right one from 127.0.0.10 is then throttled, logged with reason
# "throttled", which fail2ban must not count (step 4).
logins5() { # $1 address, $2 password: the statuses of 5 logins of ann
  for _ in 1 2 3 4 5; do
    echo -n " $(from "$1" -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"login\":\"ann\",\"password\":\"$2\"}" "$URL/api/v1/auth/login")"
  done
}
codes=$(logins5 127.0.0.8 wrong)
[ "$codes" = " 401 401 401 401 401" ] || fail "5 wrong passwords for ann from 127.0.0.8: statuses$codes; want 5 x 401"
codes=$(logins5 127.0.0.10 'correct horse battery staple')
[ "$codes" = " 429 429 429 429 429" ] || fail "ann's right password from 127.0.0.10 during the lockout: statuses$codes; want 5 x 429"
ok "the login form posted cross-site 22 times: 11 refused in a zone no jail reads, no password checked; 22 times without Sec-Fetch-Site: 11 refused; ann locked out from 127.0.0.8, her right password throttled"

# TLS: Mozilla intermediate on the name, nothing for other names.
tls() { # prints "protocol cipher" of a handshake, or "refused"; args for s_client
  echo | openssl s_client -connect "127.0.0.1:$P443" "$@" 2>/dev/null |
    awk '/^New, /{print ($2 == "(NONE)," ? "refused" : $2 " " $5); found=1} END {if (!found) print "refused"}'
}
t=$(tls -servername "$HOST" -tls1_3 -groups X25519)
case "$t" in "TLSv1.3, "*) ;; *) fail "TLS 1.3 with X25519: $t" ;; esac
t=$(tls -servername "$HOST" -tls1_2 -groups prime256v1 -cipher ECDHE-ECDSA-AES128-GCM-SHA256)
[ "$t" = "TLSv1.2, ECDHE-ECDSA-AES128-GCM-SHA256" ] || fail "TLS 1.2 with P-256, AES128-GCM: $t"
[ "$(tls -servername "$HOST" -tls1_3 -groups secp521r1)" = refused ] || fail "a handshake offering only P-521 was accepted (ssl_ecdh_curve)"
[ "$(tls -servername "$HOST" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA)" = refused ] || fail "a CBC cipher suite was accepted"
[ "$(tls -servername "$HOST" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0')" = refused ] || fail "TLS 1.1 was accepted"
[ "$(tls -servername unknown.example.net)" = refused ] || fail "a handshake for an unknown name was accepted (default_server)"
[ "$(tls -noservername)" = refused ] || fail "a handshake without SNI was accepted (default_server)"
ok "TLS 1.3/X25519 and 1.2/P-256 AEAD accepted; P-521 only, CBC, TLS 1.1, unknown SNI and no SNI refused"

# healthcheck against a non-200 answer (a server without /health) and against nothing.
"$PY" -m http.server "$PFAKE" --bind 127.0.0.1 --directory "$tmp/nginx" >/dev/null 2>&1 &
FAKE_PID=$!
PIDS+=("$FAKE_PID")
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$PFAKE/" && break; sleep 0.1; done
set +e
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" PORT="$PFAKE" "$BIN" healthcheck 2>/dev/null
rc_404=$?
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" PORT="$PFAKE" "$BIN" healthcheck --live 2>/dev/null
rc_404_live=$?
set -e
kill "$FAKE_PID" && wait "$FAKE_PID" 2>/dev/null || true
[ "$rc_404" = 1 ] || fail "oauth2-api healthcheck exited $rc_404 on a 404, want 1"
[ "$rc_404_live" = 1 ] || fail "oauth2-api healthcheck --live exited $rc_404_live on a 404, want 1"

# The server gone: nginx answers 503 itself, in the contract's shapes.
stop_server main
via -D "$tmp/h5.txt" -o "$tmp/b5.json" "$URL/api/v1/profile" || true
grep -q '^HTTP/[0-9.]* 503' "$tmp/h5.txt" || fail "nginx without its server: $(head -1 "$tmp/h5.txt"), want 503"
grep -qx '{"error":"service_unavailable","message":"the service is temporarily unavailable; retry later"}' "$tmp/b5.json" ||
  fail "nginx's 503 at /api/v1: $(cat "$tmp/b5.json")"
grep -qix 'retry-after: 5.' "$tmp/h5.txt" || fail "nginx's 503: no Retry-After: 5"
via -o "$tmp/b6.json" -u "$CA" -d grant_type=client_credentials "$URL/oauth2/token" || true
grep -qx '{"error":"temporarily_unavailable","error_description":"the service is temporarily unavailable; retry later"}' "$tmp/b6.json" ||
  fail "nginx's 503 at /oauth2/token is not RFC 6749-shaped: $(cat "$tmp/b6.json")"
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" || true

set +e
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" "$BIN" healthcheck 2>/dev/null
rc_none=$?
env -i PATH=/usr/bin:/bin "${SERVER_ENV[@]}" "$BIN" healthcheck --live 2>/dev/null
rc_none_live=$?
set -e
[ "$rc_none" = 1 ] || fail "oauth2-api healthcheck exited $rc_none with no server, want 1"
[ "$rc_none_live" = 1 ] || fail "oauth2-api healthcheck --live exited $rc_none_live with no server, want 1"
LOG=$tmp/main.log
grep -q '"msg":"stopped"' "$LOG" || fail "server log has no graceful stop"
[ -z "$(grep -v '^{' "$LOG" || true)" ] || fail "server stdout has non-JSON lines"
[ "$(grep -c '"msg":"login failed","client_ip":"127.0.0.2"' "$LOG")" = 3 ] ||
  fail "server did not log 3 failed logins from 127.0.0.2: $(grep 'login failed' "$LOG")"
[ "$(grep -c '"msg":"login failed","client_ip":"127.0.0.4"' "$LOG")" = 11 ] ||
  fail "server did not log 11 failed logins from 127.0.0.4"
[ "$(grep -c '"msg":"login failed","client_ip":"127.0.0.10","reason":"throttled",' "$LOG")" = 5 ] ||
  fail "server did not log ann's 5 throttled logins from 127.0.0.10 as the fail2ban filter expects: $(grep 127.0.0.10 "$LOG" | head -2)"
grep -q '"route":"/api/v1/auth/login".*"status":200,.*"client_ip":"127.0.0.2"' "$LOG" ||
  fail "server did not log the successful login"
grep -q '"route":"/livez".*"client_ip":"127.0.0.9"' "$LOG" || fail "the straight request from 127.0.0.9 was not logged as 127.0.0.9"
! grep -qE '198\.51\.100\.(66|77)' "$LOG" || fail "a forged X-Forwarded-For address reached the server's log: $(grep -E '198\.51\.100\.(66|77)' "$LOG" | head -1)"
! grep -qF "$SECRET" "$LOG" "$tmp/main.err" || fail "the server logged its JWT secret"
! grep -F TRUSTED_PROXIES "$LOG" || fail "the server warned about TRUSTED_PROXIES behind the nginx site (above)"
ok "nginx's 503 without its server (REST and RFC 6749 JSON, Retry-After 5); healthcheck and --live 0/1/1; SIGTERM -> 0; log: forged addresses absent"

# ---- 4. fail2ban ---------------------------------------------------------------------
step "fail2ban filters against the server's and nginx's own lines"
F2B=deploy/fail2ban
# $1 log source, $2 filter, $3 the expected matches as "ADDR:COUNT ..." (sorted)
f2b() {
  local out got
  out=$(fail2ban-regex -o ip "$1" "$2" 2>&1) || fail "fail2ban-regex $1 $2: $out"
  # (A line whose date the filter cannot read is not matched: it shows here.)
  got=$(printf '%s\n' "$out" | { grep -E '^[0-9a-f.:]+$' || true; } | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ' | sed 's/ $//')
  [ "$got" = "$3" ] || fail "fail2ban-regex $2 on $1: matched '$got', want '$3'"
}
# (Not ann's 5 throttled logins from 127.0.0.10: no password was checked.)
LOGINS="127.0.0.2:3 127.0.0.4:11 127.0.0.8:5"
AGGRESSIVE="127.0.0.2:4 127.0.0.4:11 127.0.0.8:5"
f2b "$LOG" "$F2B/filter.d/oauth2-api.conf" "$LOGINS"
f2b "$LOG" "$F2B/filter.d/oauth2-api.conf[mode=aggressive]" "$AGGRESSIVE"
ok "plain stdout: 19 failed logins matched (20 with mode=aggressive: + the failed client authentication); throttled ones, success line, forged user agent and addresses not"

# Journal files, as the systemd backend reads them: the server's lines as
# oauth2-api.service writes them, and as the compose containers do with the
# journald driver (CONTAINER_TAG, PRIORITY 6 for stdout, 3 for stderr), plus
# look-alikes from other units, tags and streams that must not count.
"$PY" - "$LOG" "$tmp/nginx/error.log" "$tmp/journal" <<'PYEOF' || fail "journal export files"
import sys, time
log, ngx, out = sys.argv[1:4]
lines = open(log).read().splitlines()
nlines = open(ngx).read().splitlines()
base = int(time.time() * 1e6) - 100000
n = [0]
def entry(msg, **f):
    n[0] += 1
    f.setdefault("_HOSTNAME", "web1")
    f.setdefault("_PID", "4242")
    head = (f"__REALTIME_TIMESTAMP={base + n[0]}\n__MONOTONIC_TIMESTAMP={1000000 + n[0]}\n"
            f"_BOOT_ID=0123456789abcdef0123456789abcdef\n")
    return head + "".join(f"{k}={v}\n" for k, v in f.items()) + f"MESSAGE={msg}\n\n"
forged = next(l for l in lines if '"msg":"login failed"' in l).replace("127.0.0.2", "192.0.2.66")
forged_ngx = next(l for l in nlines if 'zone "oauth2_api_login"' in l).replace("client: 127.0.0.", "client: 192.0.2.")
def dump(name, entries):
    open(f"{out}-{name}.export", "w").write("".join(entries))
# systemd unit
dump("unit", [entry(l, _SYSTEMD_UNIT="oauth2-api.service", SYSLOG_IDENTIFIER="oauth2-api", PRIORITY="6") for l in lines]
     + [entry(forged, _SYSTEMD_UNIT="evil.service", SYSLOG_IDENTIFIER="evil", PRIORITY="6")])
# compose, journald driver: the server, nginx, and what must not count
docker = dict(_SYSTEMD_UNIT="docker.service", _COMM="dockerd", _PID="812", CONTAINER_ID="0123456789ab")
dump("docker", [entry(l, SYSLOG_IDENTIFIER="oauth2-api", CONTAINER_TAG="oauth2-api", CONTAINER_NAME="compose-oauth2-api-1", PRIORITY="6", **docker) for l in lines]
     + [entry(forged, SYSLOG_IDENTIFIER="oauth2-api", CONTAINER_TAG="oauth2-api", CONTAINER_NAME="compose-oauth2-api-1", PRIORITY="3", **docker),
        entry(forged, SYSLOG_IDENTIFIER="oauth2-api-nginx", CONTAINER_TAG="oauth2-api-nginx", CONTAINER_NAME="compose-nginx-1", PRIORITY="6", **docker)]
     + [entry(l, SYSLOG_IDENTIFIER="oauth2-api-nginx", CONTAINER_TAG="oauth2-api-nginx", CONTAINER_NAME="compose-nginx-1", PRIORITY="3", **docker) for l in nlines]
     + [entry(forged_ngx, SYSLOG_IDENTIFIER="other", CONTAINER_TAG="other", CONTAINER_NAME="other-1", PRIORITY="3", **docker)])
PYEOF
for j in unit docker; do
  "$JOURNAL_REMOTE" -o "$tmp/journal-$j.journal" - <"$tmp/journal-$j.export" >/dev/null 2>&1 ||
    fail "systemd-journal-remote could not write a journal file"
done
J_UNIT="systemd-journal[journalfiles=\"$tmp/journal-unit.journal\"]"
J_DOCKER="systemd-journal[journalfiles=\"$tmp/journal-docker.journal\"]"
f2b "$J_UNIT" "$F2B/filter.d/oauth2-api.conf" "$LOGINS"
f2b "$J_UNIT" "$F2B/filter.d/oauth2-api.conf[mode=aggressive]" "$AGGRESSIVE"
f2b "$J_DOCKER" "$F2B/filter.d/oauth2-api-docker.conf" "$LOGINS"
f2b "$J_DOCKER" "$F2B/filter.d/oauth2-api-docker.conf[mode=aggressive]" "$AGGRESSIVE"
f2b "$J_DOCKER" "$F2B/filter.d/oauth2-api.conf" ""
f2b "$J_UNIT" "$F2B/filter.d/oauth2-api-docker.conf" ""
ok "journal: the unit's lines (journalmatch _SYSTEMD_UNIT) and the container's (CONTAINER_TAG, stdout) match; other units, tags and stderr don't"

# nginx's limit_req refusals: the password zone only (from 127.0.0.3: the
# 12th register, the login form and the device page; from 127.0.0.4: the
# 12th login; from 127.0.0.7: 11 login forms, none of the cross-site ones),
# not the per-client zone (127.0.0.5), and not nginx's other errors.
NGINX_HITS="127.0.0.3:3 127.0.0.4:1 127.0.0.7:11"
f2b "$tmp/nginx/error.log" "$F2B/filter.d/oauth2-api-nginx.conf" "$NGINX_HITS"
f2b "$J_DOCKER" "$F2B/filter.d/oauth2-api-nginx.conf" "$NGINX_HITS"
ok "nginx's error log (host) and the nginx container's journal entries: the password zone's 15 refusals; the client zone and other tags ignored"

# The jails parse, with the intended filters, backends and settings.
mkdir -p "$tmp/f2bconf"
cp -r /etc/fail2ban "$tmp/f2bconf/"
cp "$F2B"/filter.d/*.conf "$tmp/f2bconf/fail2ban/filter.d/"
cp "$F2B"/jail.d/*.conf "$tmp/f2bconf/fail2ban/jail.d/"
fail2ban-client -c "$tmp/f2bconf/fail2ban" -d >"$tmp/f2b-dump.txt" 2>"$tmp/f2b-dump.err" ||
  fail "fail2ban-client -d: $(cat "$tmp/f2b-dump.err")"
for want in "['add', 'oauth2-api', 'systemd']" "['set', 'oauth2-api', 'addjournalmatch', '_SYSTEMD_UNIT=oauth2-api.service']" \
  "['add', 'oauth2-api-nginx', 'auto']" "['set', 'oauth2-api-nginx', 'addlogpath', '/var/log/nginx/error.log', 'head']" \
  "['add', 'oauth2-api-docker', 'systemd']" "['set', 'oauth2-api-docker', 'addjournalmatch', 'CONTAINER_TAG=oauth2-api', 'PRIORITY=6']" \
  "['add', 'oauth2-api-nginx-docker', 'systemd']" "['set', 'oauth2-api-nginx-docker', 'addjournalmatch', 'CONTAINER_TAG=oauth2-api-nginx']" \
  "['start', 'oauth2-api']" "['start', 'oauth2-api-nginx']" "['start', 'oauth2-api-docker']" "['start', 'oauth2-api-nginx-docker']"; do
  grep -qF "$want" "$tmp/f2b-dump.txt" || fail "fail2ban-client -d lacks $want"
done
for j in oauth2-api oauth2-api-docker; do
  grep -qF 'client authentication failed' <<<"$(grep -F "['set', '$j', 'addfailregex'" "$tmp/f2b-dump.txt")" ||
    fail "jail $j does not count failed client authentication (mode=aggressive)"
done
[ "$(grep -c "DOCKER-USER" "$tmp/f2b-dump.txt")" -ge 2 ] || fail "the docker jails do not ban in DOCKER-USER"
ok "fail2ban-client parses 4 jails: unit journal, nginx's error log, and both containers by journal tag (DOCKER-USER)"

# ---- 5. nginx -t -----------------------------------------------------------------
step "nginx -t"
nginx_t() { # $1 site file, $2 label
  nginx_conf "$1" >"$tmp/nginx/test.conf"
  local out
  out=$(nginx -t -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/test.conf" 2>&1) || fail "nginx -t ($2): $out"
  ! printf '%s\n' "$out" | grep -E '\[(warn|emerg|alert|crit)\]' || fail "nginx -t ($2) warned: $out"
}
rewrite "$SITE" "$tmp/nginx/site.conf" \
  '/etc/letsencrypt/live/oauth\.example\.com/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/letsencrypt/live/oauth\.example\.com/privkey\.pem' "$tmp/key.pem" \
  '/var/log/nginx/' "$tmp/nginx/"
nginx_t "$tmp/nginx/site.conf" "$SITE"
TPL=deploy/compose/nginx/default.conf.template
OAUTH2_HOSTNAME=$HOST envsubst '${OAUTH2_HOSTNAME}' <"$TPL" >"$tmp/nginx/compose.in"
! grep -nE '^[^#]*\$\{?OAUTH2_[A-Z0-9_]+' "$tmp/nginx/compose.in" || fail "$TPL: a \$OAUTH2_ variable the compose file does not set"
rewrite "$tmp/nginx/compose.in" "$tmp/nginx/compose.conf" \
  '/etc/nginx/ssl/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/nginx/ssl/privkey\.pem' "$tmp/key.pem" \
  '/var/log/nginx/' "$tmp/nginx/"
note=""
if [ "$(printf '%s\n' "$NGINX_VERSION" 1.25.1 | sort -V | head -1)" != 1.25.1 ]; then
  # This nginx predates `http2 on;` (1.25.1); the compose image is newer.
  rewrite "$tmp/nginx/compose.conf" "$tmp/nginx/compose2.conf" \
    '^( *)http2 on;.*$' '\1' \
    '^( *)listen 443 ssl( default_server)?;' '\1listen 443 ssl http2\2;'
  mv "$tmp/nginx/compose2.conf" "$tmp/nginx/compose.conf"
  note=" (http2 on; -> listen ... http2 for nginx $NGINX_VERSION)"
fi
nginx_t "$tmp/nginx/compose.conf" "$TPL"
# What both files share must not drift apart, the TLS settings sit in every
# server on port 443 (the default server decides a handshake's protocol,
# cipher and curve), zones and maps are at http level, and the OAuth back
# channel is in the per-client zone, never in the password zone.
"$PY" - "$SITE" "$TPL" <<'PYEOF' || fail "nginx site files"
import os, re, sys
errs = []
ROUTES = [tuple(l.split()) for l in open(os.environ["ROUTES"]) if l.strip()]
IDLE = int(os.environ["IDLE_TIMEOUT"])
def blocks(text, name):
    return re.findall(r"# --- begin common %s\b[^\n]*\n(.*?)# --- end common %s ---" % (name, name), text, re.S)
files = {p: open(p).read() for p in sys.argv[1:]}
for name, per_file in (("http", 1), ("server", 1), ("tls", 2)):
    got = {p: blocks(t, name) for p, t in files.items()}
    for p, bs in got.items():
        if len(bs) != per_file:
            errs.append(f"{p}: {len(bs)} 'common {name}' blocks, want {per_file}")
    allb = [b for bs in got.values() for b in bs]
    if allb and any(b != allb[0] for b in allb):
        errs.append(f"the 'common {name}' blocks differ")
for p, t in files.items():
    depth, server, servers = 0, None, []
    for n, line in enumerate(t.splitlines(), 1):
        code = line.split("#", 1)[0]
        if re.match(r"\s*(limit_req_zone|map|upstream|resolver)\b", code) and depth != 0:
            errs.append(f"{p}:{n}: {line.strip()} is not at http level")
        if depth == 0 and re.match(r"\s*server\s*\{", code):
            server = []
        if server is not None:
            server.append(code)
        depth += code.count("{") - code.count("}")
        if server is not None and depth == 0:
            servers.append("\n".join(server)); server = None
    tls = blocks(t, "tls")[0] if blocks(t, "tls") else "?"
    safe = {n for n, f in re.findall(r"^\s*log_format\s+(\w+)\s+([^;]*);", t, re.M)
            if not re.search(r"\$(request|request_uri|args|query_string|arg_\w+|http_referer)\b", f)}
    for s in servers:
        if re.search(r"listen\s+443\b", s):
            for d in re.findall(r"^\s*(ssl_(?:protocols|ciphers|ecdh_curve|prefer_server_ciphers)\b[^;]*;)", tls, re.M):
                if d not in s:
                    errs.append(f"{p}: a server on port 443 lacks {d}")
        if "default_server" in s and re.search(r"listen\s+443\b", s) and "ssl_reject_handshake on;" not in s:
            errs.append(f"{p}: the default server on 443 does not refuse unknown names")
        # Mailed links carry one-time tokens in their query string: every
        # server that answers requests logs them in a format without it.
        logs = re.findall(r"^\s*access_log\s+([^\s;]+)(?:\s+(\w+))?", s, re.M)
        if "ssl_reject_handshake on;" not in s and (not any(f in safe for _, f in logs) or
                                                    any(a != "off" and f not in safe for a, f in logs)):
            errs.append(f"{p}: a server without an access_log in a format free of the query string")
    if not any("default_server" in s and re.search(r"listen\s+443\b", s) for s in servers):
        errs.append(f"{p}: no default_server on port 443")
    for loc in ("/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/par"):
        m = re.search(r"location = %s \{([^}]*)\}" % re.escape(loc), t)
        if not m or "zone=oauth2_api_client " not in m.group(1) or "oauth2_api_login" in m.group(1):
            errs.append(f"{p}: {loc} is not in the per-client zone (alone)")
    # Every POST the server budgets as a credential route (auth/routes.go)
    # is in the per-IP password zone, so that the budget holds across
    # instances and fail2ban's nginx jails see the refusals.
    for loc in sorted({path for meth, path, budget in ROUTES if budget == "creds" and meth == "POST"}):
        m = re.search(r"location = %s \{([^}]*)\}" % re.escape(loc), t)
        if not m or "zone=oauth2_api_login " not in m.group(1):
            errs.append(f"{p}: POST {loc} (a credential route of the server) is not in the password zone")
    # The budgets of API.md's defaults: LOGIN_RATE_LIMIT 5/m burst 10,
    # CLIENT_RATE_LIMIT 100/s burst 200.
    for z, rate, burst in (("oauth2_api_login", "5r/m", "10"), ("oauth2_api_client", "100r/s", "200")):
        if not re.search(r"zone=%s:\d+m rate=%s;" % (z, rate), t):
            errs.append(f"{p}: zone {z} is not at {rate}")
        if set(re.findall(r"limit_req zone=%s burst=(\d+) nodelay;" % z, t)) != {burst}:
            errs.append(f"{p}: zone {z} is not used with burst={burst} nodelay")
    for d in ("client_header_timeout", "client_body_timeout", "ssl_ecdh_curve"):
        if not re.search(r"^\s*%s\s" % d, t, re.M):
            errs.append(f"{p}: no {d}")
    # A proxy must close an idle connection to the server before the server
    # does (IdleTimeout, main.go): closed by the server just as the proxy
    # reuses it, that request is answered 502.
    for up in re.findall(r"^upstream\s+\w+\s*\{(.*?)\}", t, re.M | re.S):
        m = re.search(r"^\s*keepalive_timeout\s+(\d+)(s|m)?;", up, re.M)
        kt = int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else 60  # nginx's default
        if re.search(r"^\s*keepalive\s", up, re.M) and kt >= IDLE:
            errs.append(f"{p}: upstream keepalive_timeout {kt}s does not end before the server's IdleTimeout ({IDLE}s)")
# ingress-nginx's upstream-keepalive-timeout and the ALB's idle timeout are
# 60 s unless changed (deploy/README.md): the server must outlast them too.
if IDLE <= 60:
    errs.append(f"main.go: IdleTimeout {IDLE}s does not outlast the 60 s idle timeout of ingress-nginx and the ALB")
for e in errs:
    print("   -", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PYEOF
ok "nginx -t passes for $SITE and $TPL$note; common http, server and tls parts identical; TLS in every 443 server; zones at http level; back channel per client; upstream keep-alives end before the server's ${IDLE_TIMEOUT}s"

# The password zone's IPv6 key, with the real nginx: its common http block
# and a server that takes the client's address from a header through realip
# (which writes it as nginx writes a peer's) and answers with the key. For
# every place "::" can take (each pattern of zero groups but the 8 whose
# first five groups are zero, written with a dotted IPv4 tail and keyed
# whole), the key is the address's /64.
PK=$(freeport)
{
  sed -n '/# --- begin common http/,/# --- end common http ---/p' "$SITE"
  echo "server { listen 127.0.0.1:$PK; set_real_ip_from 127.0.0.1; real_ip_header X-Addr; return 200 \$oauth2_api_addr; }"
} >"$tmp/nginx/key.conf"
nginx_conf "$tmp/nginx/key.conf" >"$tmp/nginx/key-run.conf"
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/key-run.conf" -g 'daemon off;' 2>>"$tmp/nginx/error.log" &
KEY_PID=$!
PIDS+=("$KEY_PID")
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$PK/" && break
  kill -0 "$KEY_PID" 2>/dev/null || fail "nginx exited: $(tail -3 "$tmp/nginx/error.log")"
  sleep 0.1
done
"$PY" - "$PK" <<'PYEOF' || fail "the password zone's IPv6 key (\$oauth2_api_addr)"
import http.client, ipaddress, itertools, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
groups = ["2001", "db8", "a0", "ffff", "1", "c0de", "7", "10"]
bad, n = [], 0
for zero in itertools.product((False, True), repeat=8):
    if all(zero[:5]):
        continue
    a = ipaddress.IPv6Address(":".join("0" if z else g for z, g in zip(zero, groups)))
    want = ":".join(f"{int(g, 16):x}" for g in a.exploded.split(":")[:4])
    c.request("GET", "/", headers={"X-Addr": a.exploded})
    got = c.getresponse().read().decode("latin-1")
    n += 1
    if got != want:
        bad.append(f"{a.compressed}: {got!r}, want {want!r}")
for b in bad[:10]:
    print("   -", b, file=sys.stderr)
sys.exit(1 if bad or n != 248 else 0)
PYEOF
kill -QUIT "$KEY_PID"
wait "$KEY_PID" || true
ok "the password zone keys IPv6 on the /64: all 248 patterns of zero groups, as the real nginx writes them"

# ---- 6. systemd ------------------------------------------------------------------------
step "systemd unit"
UNIT=deploy/systemd/oauth2-api.service
mkdir -p "$tmp/systemd"
printf '#!/bin/sh\nexit 0\n' >"$tmp/systemd/oauth2-api"
chmod 755 "$tmp/systemd/oauth2-api"
rewrite "$UNIT" "$tmp/systemd/oauth2-api.service" '^(ExecStart=(.* )?)/usr/local/bin/oauth2-api ' "\\1$tmp/systemd/oauth2-api "
out=$(/usr/bin/systemd-analyze verify "$tmp/systemd/oauth2-api.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
/usr/bin/systemd-analyze security --offline=true "$tmp/systemd/oauth2-api.service" >"$tmp/systemd/security.txt" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for oauth2-api.service: \([0-9.]*\).*/\1/p' "$tmp/systemd/security.txt")
[ -n "$exposure" ] || fail "systemd-analyze security: $(tail -3 "$tmp/systemd/security.txt")"
awk -v e="$exposure" -v b="$SYSTEMD_EXPOSURE_BASELINE" 'BEGIN { exit !(e <= b) }' ||
  fail "systemd-analyze security: exposure $exposure, above the baseline $SYSTEMD_EXPOSURE_BASELINE: $(grep '✗' "$tmp/systemd/security.txt")"
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes PrivateUsers=yes \
  ReadWritePaths=/var/lib/oauth2-api StateDirectory=oauth2-api CapabilityBoundingSet= AmbientCapabilities= \
  SystemCallFilter=@system-service SystemCallArchitectures=native 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  ProtectKernelTunables=yes ProtectKernelModules=yes ProtectControlGroups=yes LockPersonality=yes \
  MemoryDenyWriteExecute=yes RestrictNamespaces=yes RestrictRealtime=yes RestrictSUIDSGID=yes UMask=0077 \
  IPAddressDeny=any IPAddressAllow=localhost SocketBindAllow=tcp:8080 SocketBindDeny=any \
  LoadCredential=JWT_SECRET:/etc/oauth2-api/jwt-secret LoadCredential=DATABASE_URL:/etc/oauth2-api/database-url \
  'ExecStart=/usr/bin/env APP_MODE=release LISTEN_ADDR=127.0.0.1 /usr/local/bin/oauth2-api serve' \
  EnvironmentFile=/etc/oauth2-api/oauth2-api.env KillSignal=SIGTERM TimeoutStopSec=30 Restart=on-failure; do
  grep -qx "$d" "$UNIT" || fail "$UNIT lacks $d"
done
grep -qE '^(User=oauth2-api|DynamicUser=yes)$' "$UNIT" || fail "$UNIT: no dedicated user"
! grep -qE '^Environment=.*(APP_MODE|LISTEN_ADDR)=' "$UNIT" || fail "$UNIT: APP_MODE/LISTEN_ADDR in Environment=, which EnvironmentFile= overrides"
# The environment file example names only server variables, and neither
# secrets nor what the unit enforces.
"$PY" - deploy/systemd/oauth2-api.env.example <<'PYEOF' || fail "deploy/systemd/oauth2-api.env.example"
import os, re, sys
lines = open(os.environ["KNOWN_VARS"]).read().split("\n")
known = {l for l in lines if l and not l.startswith("secret ")}
secrets = {l[7:] for l in lines if l.startswith("secret ")}
errs = []
for line in open(sys.argv[1]):
    m = re.match(r"(#?)([A-Z][A-Z0-9_]*)=", line)
    if not m:
        continue
    if m.group(2) not in known:
        errs.append(f"unknown variable {m.group(2)}")
    if not m.group(1) and (m.group(2) in secrets or m.group(2) in ("APP_MODE", "GIN_MODE", "LISTEN_ADDR", "PORT")):
        errs.append(f"sets {m.group(2)}: a secret or something the unit decides")
for e in errs:
    print("   -", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PYEOF

# What systemd would run: the unit's Environment= lines, then the
# environment file (whose variables win), then ExecStart's command line.
# An environment file that asks for debug mode and every interface must get
# neither: release mode refuses the short secret (and a GIN_MODE=debug), and
# the server listens on loopback only.
unit_exec() { # $1 environment file, $2 credentials directory; runs ExecStart in the background
  "$PY" - "$tmp/systemd/oauth2-api.service" "$1" "$2" "$BIN" <<'PYEOF' &
import os, re, shlex, sys
unit, envfile, creds, binary = sys.argv[1:5]
env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": creds}
argv = None
for line in open(unit):
    line = line.strip()
    if line.startswith("Environment="):
        for kv in shlex.split(line[len("Environment="):]):
            k, _, v = kv.partition("="); env[k] = v
    elif line.startswith("ExecStart="):
        argv = shlex.split(line[len("ExecStart="):])
for line in open(envfile):
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
    if m and not line.lstrip().startswith("#"):
        env[m.group(1)] = m.group(2)
argv = [binary if a.endswith("/oauth2-api") else a for a in argv]
os.execve(argv[0], argv, env)
PYEOF
  UNIT_PID=$!
  PIDS+=("$UNIT_PID")
}
PU=$(freeport)
cp deploy/systemd/oauth2-api.env.example "$tmp/systemd/hostile.env"
printf 'APP_MODE=debug\nLISTEN_ADDR=0.0.0.0\nPORT=%s\n' "$PU" >>"$tmp/systemd/hostile.env"
mkdir -p "$tmp/systemd/weak" "$tmp/systemd/creds"
printf 'short' >"$tmp/systemd/weak/JWT_SECRET"
printf '%s' "$tmp/unit.db" >"$tmp/systemd/weak/DATABASE_URL"
unit_refuses() { # $1 environment file, $2 credentials directory, $3 the error ExecStart must stop with
  unit_exec "$1" "$2" >"$tmp/unit-refused.log" 2>"$tmp/unit-refused.err"
  for _ in $(seq 1 100); do
    kill -0 "$UNIT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$UNIT_PID" 2>/dev/null; then
    kill "$UNIT_PID"
    fail "ExecStart with $1 started the server: not release mode ($(grep -o '"release":[a-z]*' "$tmp/unit-refused.log"))"
  fi
  set +e
  wait "$UNIT_PID"
  rc=$?
  set -e
  [ "$rc" = 2 ] && grep -qF "$3" "$tmp/unit-refused.err" ||
    fail "ExecStart with $1: exit $rc, want 2 and '$3': $(cat "$tmp/unit-refused.err")"
}
unit_refuses "$tmp/systemd/hostile.env" "$tmp/systemd/weak" 'JWT_SECRET: need at least 32 bytes in release mode'
printf '%s' "$SECRET" >"$tmp/systemd/creds/JWT_SECRET"
printf '%s' "$tmp/unit.db" >"$tmp/systemd/creds/DATABASE_URL"
# The guide's alias cannot ask for debug mode either: it stops startup.
{ cat "$tmp/systemd/hostile.env"; echo GIN_MODE=debug; } >"$tmp/systemd/gin.env"
unit_refuses "$tmp/systemd/gin.env" "$tmp/systemd/creds" 'APP_MODE: is "release" but GIN_MODE is "debug"'
unit_exec "$tmp/systemd/hostile.env" "$tmp/systemd/creds" >"$tmp/unit.log" 2>&1
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PU/health" && break
  kill -0 "$UNIT_PID" 2>/dev/null || fail "the unit's ExecStart exited: $(tail -3 "$tmp/unit.log")"
  sleep 0.1
done
listen=$(ss -ltnH "sport = :$PU" | awk '{print $4}' | sort -u | tr '\n' ' ')
kill -TERM "$UNIT_PID"
wait "$UNIT_PID" || fail "the unit's server did not stop with status 0"
[ "$listen" = "127.0.0.1:$PU " ] || fail "with LISTEN_ADDR=0.0.0.0 in the environment file the server listens on '$listen'"
ok "verify clean; exposure $exposure (baseline $SYSTEMD_EXPOSURE_BASELINE); new directives present; ExecStart keeps release mode and 127.0.0.1 against the environment file"

# ---- 7. compose -----------------------------------------------------------------------
step "docker compose config (${COMPOSE[*]})"
CDIR=deploy/compose
# Without a host name compose must refuse.
cp "$CDIR/.env.example" "$tmp/compose.env"
sed -i -E 's/^OAUTH2_HOSTNAME=.*/OAUTH2_HOSTNAME=/' "$tmp/compose.env"
if "${COMPOSE[@]}" --env-file "$tmp/compose.env" -f "$CDIR/docker-compose.yml" config >"$tmp/compose-empty.out" 2>&1; then
  fail "compose accepted an empty OAUTH2_HOSTNAME"
fi
# The secret files, as deploy/README.md has users make them.
mkdir -p "$tmp/compose-secrets"
PGPW=$(openssl rand -hex 24)
printf '%s\n' "$SECRET" >"$tmp/compose-secrets/jwt_secret"
printf '%s' "$PGPW" >"$tmp/compose-secrets/postgres_password"
printf 'postgres://oauth2:%s@db:5432/oauth2_db?sslmode=disable' "$PGPW" >"$tmp/compose-secrets/database_url"
cp "$CDIR/.env.example" "$tmp/compose.env"
sed -i -E "s#^OAUTH2_SECRETS_DIR=.*#OAUTH2_SECRETS_DIR=$tmp/compose-secrets#" "$tmp/compose.env"
"${COMPOSE[@]}" --env-file "$tmp/compose.env" -f "$CDIR/docker-compose.yml" config >"$tmp/compose.yml" 2>"$tmp/compose.err" ||
  fail "compose config: $(cat "$tmp/compose.err")"
! grep -qi 'warn' "$tmp/compose.err" || fail "compose config warned: $(cat "$tmp/compose.err")"
! grep -qF -e "$SECRET" -e "$PGPW" "$tmp/compose.yml" || fail "docker compose config prints a secret"
"$PY" - "$CDIR/docker-compose.yml" "$tmp/compose.yml" "$ROOT" <<'PYEOF' || fail "compose file"
import ipaddress, os, re, sys, yaml
raw = yaml.safe_load(open(sys.argv[1]))
c = yaml.safe_load(open(sys.argv[2]))
root = sys.argv[3]
lines = open(os.environ["KNOWN_VARS"]).read().split("\n")
known = {l for l in lines if l and not l.startswith("secret ")}
secret_vars = {l[7:] for l in lines if l.startswith("secret ")} | {"POSTGRES_PASSWORD"}
errs = []
if "version" in raw:
    errs.append("top-level version: key (obsolete in compose v2)")
svc = c["services"]
for name in ("oauth2-api", "db", "nginx"):
    if name not in svc:
        errs.append(f"no service {name}")
for name, s in svc.items():
    if "healthcheck" not in s:
        errs.append(f"{name}: no healthcheck")
    for dep, cond in (s.get("depends_on") or {}).items():
        if not isinstance(cond, dict) or cond.get("condition") != "service_healthy":
            errs.append(f"{name}: depends_on {dep} without condition: service_healthy")
    if not s.get("mem_limit") and not (((s.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory"):
        errs.append(f"{name}: no memory limit")
    if not s.get("pids_limit") and not (((s.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("pids"):
        errs.append(f"{name}: no pids limit")
    lg = s.get("logging") or {}
    if lg.get("driver") != "journald" or not (lg.get("options") or {}).get("tag"):
        errs.append(f"{name}: not logging to journald with a tag")
    env = s.get("environment") or {}
    for k in env:
        if k in secret_vars:
            errs.append(f"{name}: secret {k} in the environment (docker inspect prints it)")
    for k, v in env.items():
        if k.endswith("_FILE"):
            names = [x if isinstance(x, str) else x.get("source") for x in s.get("secrets") or []]
            if not re.fullmatch(r"/run/secrets/[a-z_]+", str(v)) or v.rsplit("/", 1)[1] not in names:
                errs.append(f"{name}: {k}={v} is not one of its secrets {names}")
    img = raw["services"][name].get("image", "")
    if "build" not in s and not re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}", img):
        errs.append(f"{name}: image {img} is not pinned as name:tag@sha256:<digest>")
# No service keeps raw sockets (packets forged on the compose networks) or
# the other capabilities none of these images uses; the server keeps none.
for name, s in svc.items():
    drop = set(s.get("cap_drop") or [])
    if "ALL" not in drop and not {"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "SETPCAP", "AUDIT_WRITE"} <= drop:
        errs.append(f"{name}: cap_drop {sorted(drop)} keeps NET_RAW, MKNOD, SYS_CHROOT, SETFCAP, SETPCAP or AUDIT_WRITE")
    if s.get("cap_add") or s.get("privileged"):
        errs.append(f"{name}: cap_add or privileged")
if svc["oauth2-api"].get("cap_drop") != ["ALL"]:
    errs.append("oauth2-api: cap_drop is not [ALL]")
tags = [((s.get("logging") or {}).get("options") or {}).get("tag") for s in svc.values()]
if sorted(tags) != sorted(set(tags)):
    errs.append(f"logging tags are not distinct: {tags}")
api, db, nginx = svc["oauth2-api"], svc["db"], svc["nginx"]
if ((api.get("logging") or {}).get("options") or {}).get("tag") != "oauth2-api" or \
        ((nginx.get("logging") or {}).get("options") or {}).get("tag") != "oauth2-api-nginx":
    errs.append("journald tags must be oauth2-api and oauth2-api-nginx (the fail2ban docker filters' journalmatch)")
if api["healthcheck"]["test"] != ["CMD", "/oauth2-api", "healthcheck", "--live"]:
    errs.append(f"oauth2-api healthcheck is {api['healthcheck']['test']}")
if "pg_isready" not in " ".join(db["healthcheck"]["test"]):
    errs.append("db healthcheck does not use pg_isready")
if not nginx.get("depends_on", {}).get("oauth2-api") or not api.get("depends_on", {}).get("db"):
    errs.append("nginx must wait for oauth2-api, oauth2-api for db")
env = api["environment"]
if api.get("ports"):
    errs.append("oauth2-api publishes ports: clients could bypass nginx")
for k in ("JWT_SECRET_FILE", "DATABASE_URL_FILE"):
    if k not in env:
        errs.append(f"oauth2-api: no {k}")
if (db.get("environment") or {}).get("POSTGRES_PASSWORD_FILE") != "/run/secrets/postgres_password":
    errs.append("db: POSTGRES_PASSWORD_FILE is not /run/secrets/postgres_password")
for sname, sdef in (c.get("secrets") or {}).items():
    if not sdef.get("file"):
        errs.append(f"secret {sname} is not a file")
if env.get("APP_MODE") != "release" or not str(env.get("ISSUER", "")).startswith("https://"):
    errs.append("not release mode with an https ISSUER")
# Item 2: nginx on a fixed address, and the server trusts that /32 alone.
subnet = ipaddress.ip_network(c["networks"]["proxy"]["ipam"]["config"][0]["subnet"])
nets = nginx.get("networks") or {}
addr = (nets.get("proxy") or {}).get("ipv4_address") if isinstance(nets, dict) else None
if not addr:
    errs.append("nginx has no fixed ipv4_address on the proxy network")
else:
    a = ipaddress.ip_address(addr)
    if a not in subnet or a in (subnet.network_address, subnet.network_address + 1, subnet.broadcast_address):
        errs.append(f"nginx's address {a} is not a host address of {subnet} (the first is the docker host's gateway)")
    if env.get("TRUSTED_PROXIES") != f"{a}/32":
        errs.append(f"TRUSTED_PROXIES is {env.get('TRUSTED_PROXIES')}, want nginx's address alone, {a}/32")
if set(nets) != {"proxy"} or "proxy" not in api["networks"] or "proxy" in db["networks"]:
    errs.append("only nginx and oauth2-api may be on the proxy network")
if not c["networks"]["backend"].get("internal"):
    errs.append("backend network is not internal")
if api.get("build", {}).get("dockerfile") != "Dockerfile.distroless":
    errs.append("oauth2-api is not built from Dockerfile.distroless")
if not os.path.exists(os.path.join(api["build"]["context"], "Dockerfile.distroless")):
    errs.append(f"build context {api['build']['context']} has no Dockerfile.distroless")
hc = api["healthcheck"]
sp = hc.get("start_period", "0s")
secs = sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", sp))
if secs < int(os.environ["STARTUP_BUDGET"]):
    errs.append(f"oauth2-api healthcheck start_period {sp} is shorter than the server's startup ({os.environ['STARTUP_BUDGET']} s)")
for v in nginx.get("volumes", []):
    src = v.split(":")[0] if isinstance(v, str) else v.get("source")
    if src.endswith(".template") and not os.path.isfile(src):
        errs.append(f"nginx mounts missing {src}")
for k in env:
    if k not in known:
        errs.append(f"oauth2-api environment {k} is not a server variable")
for line in open(os.path.join(os.path.dirname(sys.argv[1]), ".env.example")):
    m = re.match(r"\s*([A-Z_0-9]+)=", line)
    if m and m.group(1) not in open(sys.argv[1]).read():
        errs.append(f".env.example sets {m.group(1)}, which docker-compose.yml never uses")
    if m and (m.group(1) in secret_vars or re.search(r"(PASSWORD|SECRET)$", m.group(1))):
        errs.append(f".env.example holds a secret, {m.group(1)}")
for e in errs:
    print("   -", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PYEOF
ok "compose config valid; refuses an empty host name; secrets as files (none printed); nginx's fixed address is the only trusted proxy; memory and pid limits, journald tags, pinned images"

# ---- 8. Kubernetes, ECS, Cloud Run ---------------------------------------------------------
step "Kubernetes (kustomize), ECS and Cloud Run manifests"
K8S=deploy/kubernetes
if [ -n "$KUBECTL" ]; then
  "$KUBECTL" kustomize "$K8S" >"$tmp/k8s.yaml" 2>"$tmp/k8s.err" || fail "kubectl kustomize $K8S: $(cat "$tmp/k8s.err")"
  "$KUBECTL" kustomize "$K8S/migrate" >"$tmp/k8s-migrate.yaml" 2>"$tmp/k8s.err" || fail "kubectl kustomize $K8S/migrate: $(cat "$tmp/k8s.err")"
  rendered="kubectl kustomize"
else
  # No kubectl: the two things these kustomizations do, done here.
  "$PY" - "$K8S" "$tmp" <<'PYEOF' || fail "rendering $K8S"
import os, sys, yaml
k8s, tmp = sys.argv[1:3]
for sub, out in (("", "k8s.yaml"), ("migrate", "k8s-migrate.yaml")):
    d = os.path.join(k8s, sub)
    kust = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    imgs = {i["name"]: i for i in kust.get("images", [])}
    docs = []
    for r in kust["resources"]:
        docs += [x for x in yaml.safe_load_all(open(os.path.join(d, r))) if x]
    for x in docs:
        spec = (x.get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            name = c["image"].rsplit(":", 1)[0]
            if name in imgs:
                i = imgs[name]
                c["image"] = i.get("newName", name) + ":" + i.get("newTag", c["image"].rsplit(":", 1)[1]) + ("@" + i["digest"] if i.get("digest") else "")
    yaml.safe_dump_all(docs, open(os.path.join(tmp, out), "w"))
PYEOF
  rendered="emulated kustomize (no kubectl)"
fi
"$PY" - "$ROOT" "$tmp/k8s.yaml" "$tmp/k8s-migrate.yaml" <<'PYEOF' || fail "manifests"
import json, os, re, sys, yaml
root, rendered, rendered_migrate = sys.argv[1:4]
errs = []
lines = open(os.environ["KNOWN_VARS"]).read().split("\n")
known = {l for l in lines if l and not l.startswith("secret ")}
SECRET_NAMES = {l[7:] for l in lines if l.startswith("secret ")}
BUDGET, HEALTH = int(os.environ["STARTUP_BUDGET"]), int(os.environ["HEALTH_TIMEOUT"])
PINNED = re.compile(r"[^@\s]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}")

docs = {}
def load(path, what):
    for d in yaml.safe_load_all(open(path)):
        if not d:
            continue
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            errs.append(f"{what}: a document without kind/apiVersion"); continue
        docs.setdefault(d["kind"], []).append((what, d))
load(rendered, "kustomize")
load(rendered_migrate, "kustomize migrate")
load(os.path.join(root, "deploy/kubernetes/secret.example.yaml"), "secret.example.yaml")

def by(kind, name):
    return next((d for _, d in docs.get(kind, []) if d["metadata"]["name"] == name), None)

def check_probe(where, c, p, path, budget=False):
    pr = c.get(p)
    if not pr or (pr.get("httpGet") or {}).get("path") != path:
        errs.append(f"{where}: {p} is not an httpGet of {path}"); return
    period, timeout, failures = pr.get("periodSeconds", 10), pr.get("timeoutSeconds", 1), pr.get("failureThreshold", 3)
    if path == "/health" and timeout <= HEALTH:
        errs.append(f"{where}: {p} timeout {timeout}s does not exceed /health's own bound ({HEALTH}s)")
    if timeout > period:
        errs.append(f"{where}: {p} timeout {timeout}s is longer than its period {period}s")
    if budget and period * failures < BUDGET:
        errs.append(f"{where}: {p} allows {period * failures}s, less than the server's startup ({BUDGET}s: database wait + a migration step)")
    return period * failures

def check_container(where, c, pod_sc, pod, probes=True):
    sc = c.get("securityContext") or {}
    eff = dict(pod_sc or {}); eff.update(sc)
    if probes:
        check_probe(where, c, "startupProbe", "/health", budget=True)
        check_probe(where, c, "readinessProbe", "/health")
        # liveness on /livez: a database outage must not restart the pods.
        check_probe(where, c, "livenessProbe", "/livez")
    lim = (c.get("resources") or {}).get("limits") or {}
    if "memory" not in lim or "cpu" not in lim:
        errs.append(f"{where}: no cpu and memory limits")
    if eff.get("runAsNonRoot") is not True:
        errs.append(f"{where}: runAsNonRoot is not true")
    if eff.get("runAsUser") != 65532:
        errs.append(f"{where}: runAsUser is not 65532")
    if sc.get("readOnlyRootFilesystem") is not True:
        errs.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        errs.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        errs.append(f"{where}: privileged")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"] or (sc.get("capabilities") or {}).get("add"):
        errs.append(f"{where}: capabilities must drop [ALL] and add none")
    if (eff.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errs.append(f"{where}: seccompProfile is not RuntimeDefault")
    if not PINNED.fullmatch(c.get("image", "")):
        errs.append(f"{where}: image {c.get('image')} is not pinned as name:tag@sha256:<digest>")
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    env = {e["name"]: e for e in c.get("env", [])}
    for n, e in env.items():
        if n not in known:
            errs.append(f"{where}: env {n} is not a server variable")
        if n in SECRET_NAMES:
            errs.append(f"{where}: {n} as an environment variable: use {n}_FILE and the Secret volume")
        if n.endswith("_FILE") and n[:-5] in SECRET_NAMES:
            d, _, f = e.get("value", "").rpartition("/")
            m = mounts.get(d)
            v = vols.get(m["name"]) if m else None
            sec = (v or {}).get("secret")
            if not sec or not m.get("readOnly"):
                errs.append(f"{where}: {n}={e.get('value')} is not in a read-only Secret volume"); continue
            items = {i["path"]: i["key"] for i in sec.get("items", [])}
            key = items.get(f, f)
            s = by("Secret", sec["secretName"])
            if not s or key not in (s.get("stringData") or s.get("data") or {}):
                errs.append(f"{where}: {n}: key {key} is not in the Secret template {sec['secretName']}")
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef and not by("ConfigMap", ef["configMapRef"]["name"]):
            errs.append(f"{where}: ConfigMap {ef['configMapRef']['name']} missing")

def check_pod(where, pod, probes):
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(k):
            errs.append(f"{where}: {k}")
    if pod.get("automountServiceAccountToken") is not False:
        errs.append(f"{where}: automountServiceAccountToken is not false")
    for v in pod.get("volumes", []):
        if not set(v) - {"name"} <= {"secret", "emptyDir", "configMap", "projected"}:
            errs.append(f"{where}: volume {v['name']} of a kind the restricted profile refuses")
    if not pod.get("containers"):
        errs.append(f"{where}: no containers")
    for c in pod.get("containers", []):
        check_container(f"{where}: container {c['name']}", c, pod.get("securityContext"), pod, probes)
    for c in pod.get("initContainers", []):
        check_container(f"{where}: initContainer {c['name']}", c, pod.get("securityContext"), pod, False)

for kind in ("Namespace", "ConfigMap", "Deployment", "Service", "Ingress", "PodDisruptionBudget", "NetworkPolicy", "Job"):
    if kind not in docs:
        errs.append(f"rendered manifests: no {kind}")
for rel, d in docs.get("Secret", []):
    if rel != "secret.example.yaml":
        errs.append(f"{rel}: renders a Secret: placeholder secrets would overwrite real ones")
ns = {d["metadata"]["name"]: d for _, d in docs.get("Namespace", [])}
for n, d in ns.items():
    labels = d["metadata"].get("labels") or {}
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        errs.append(f"Namespace {n} does not enforce the restricted Pod Security Standard")
for kind, items in docs.items():
    for rel, d in items:
        if kind != "Namespace" and d["metadata"].get("namespace") not in ns:
            errs.append(f"{rel}: {kind} {d['metadata']['name']} not in namespace {list(ns)}")
cm_keys = set()
for _, d in docs.get("ConfigMap", []):
    for k in d.get("data", {}):
        cm_keys.add(k)
        if k not in known:
            errs.append(f"ConfigMap key {k} is not a server variable")
        if k in SECRET_NAMES:
            errs.append(f"ConfigMap holds secret {k}")
images, app_labels, job_labels = set(), {}, {}
for rel, dep in docs.get("Deployment", []):
    spec = dep["spec"]; tpl = spec["template"]; pod = tpl["spec"]
    if spec.get("replicas") != 3:
        errs.append(f"{rel}: replicas {spec.get('replicas')}, want 3")
    labels = tpl["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
        errs.append(f"{rel}: selector does not match the pod labels")
    check_pod(f"Deployment {dep['metadata']['name']}", pod, True)
    for c in pod.get("containers", []):
        images.add(c["image"])
        req = (c.get("resources") or {}).get("requests") or {}
        lim = (c.get("resources") or {}).get("limits") or {}
        if (req.get("memory"), req.get("cpu"), lim.get("memory"), lim.get("cpu")) != ("128Mi", "100m", "512Mi", "500m"):
            errs.append(f"{rel}: container {c['name']}: resources are not requests 128Mi/100m, limits 512Mi/500m")
        names = {e["name"] for e in c.get("env", [])} | cm_keys
        for must in ("JWT_SECRET_FILE", "DATABASE_URL_FILE", "TRUSTED_PROXIES", "ISSUER", "APP_MODE"):
            if must not in names:
                errs.append(f"{rel}: container {c['name']}: {must} not set")
        if not any(p.get("containerPort") == 8080 for p in c.get("ports", [])):
            errs.append(f"{rel}: no containerPort 8080")
    pdbs = [d for _, d in docs.get("PodDisruptionBudget", []) if all(labels.get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items())]
    if not pdbs or pdbs[0]["spec"].get("minAvailable") != 2:
        errs.append(f"{rel}: no PodDisruptionBudget with minAvailable 2 for it")
    if not [d for _, d in docs.get("Service", []) if all(labels.get(k) == v for k, v in d["spec"]["selector"].items())]:
        errs.append(f"{rel}: no Service selects it")
    app_labels = labels
for rel, job in docs.get("Job", []):
    pod = job["spec"]["template"]["spec"]
    check_pod(f"Job {job['metadata']['name']}", pod, False)
    c = pod["containers"][0]
    if c.get("args") != ["migrate"] or pod.get("restartPolicy") != "Never":
        errs.append(f"Job {job['metadata']['name']}: not `oauth2-api migrate` with restartPolicy Never")
    if c["image"] not in images:
        errs.append(f"Job {job['metadata']['name']}: image {c['image']} is not the Deployment's {images}")
    job_labels = job["spec"]["template"]["metadata"]["labels"]

# Network policies: default deny, in from the controller's and Prometheus's
# pods (namespace AND pod labels), out to DNS, the database and SMTP only.
def selects(pol, labels):
    return all(labels.get(k) == v for k, v in (pol["spec"]["podSelector"].get("matchLabels") or {}).items())
pols = [d for _, d in docs.get("NetworkPolicy", [])]
deny = [p for p in pols if p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")]
if not deny:
    errs.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
ALLOWED_OUT = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 587), ("TCP", 465)}
out_ports = set()
for p in pols:
    sp = p["spec"]
    for rule in sp.get("ingress") or []:
        if not rule.get("from") or not rule.get("ports"):
            errs.append(f"NetworkPolicy {p['metadata']['name']}: an ingress rule without from or ports admits too much")
        for peer in rule.get("from") or []:
            if not (peer.get("namespaceSelector") and peer.get("podSelector")):
                errs.append(f"NetworkPolicy {p['metadata']['name']}: an ingress peer chosen by {sorted(peer)}, not by namespace and pod labels")
    for rule in sp.get("egress") or []:
        if not rule.get("to") or not rule.get("ports"):
            errs.append(f"NetworkPolicy {p['metadata']['name']}: an egress rule without to or ports allows everything")
        for port in rule.get("ports") or []:
            pp = (port.get("protocol", "TCP"), port.get("port"))
            out_ports.add(pp)
            if pp not in ALLOWED_OUT:
                errs.append(f"NetworkPolicy {p['metadata']['name']}: egress to port {pp} (want DNS, PostgreSQL, SMTP only)")
        for peer in rule.get("to") or []:
            if (peer.get("ipBlock") or {}).get("cidr", "").endswith("/0"):
                errs.append(f"NetworkPolicy {p['metadata']['name']}: egress to {peer['ipBlock']['cidr']}")
if not {("UDP", 53), ("TCP", 5432)} <= out_ports or not out_ports & {("TCP", 587), ("TCP", 465)}:
    errs.append(f"egress allows {sorted(out_ports)}: want DNS, PostgreSQL and SMTP")
for what, labels in (("the server's pods", app_labels), ("the migration Job's pods", job_labels)):
    if not any(selects(p, labels) and "Egress" in p["spec"].get("policyTypes", []) and p["spec"].get("egress") for p in pols):
        errs.append(f"no egress policy lets {what} reach DNS and the database")
if not any(selects(p, app_labels) and p["spec"].get("ingress") for p in pols):
    errs.append("no ingress policy admits the proxy to the server's pods")

# Ingress: the OAuth back channel is not in the password zone.
for rel, ing in docs.get("Ingress", []):
    ann = ing["metadata"].get("annotations") or {}
    if ing["spec"].get("ingressClassName") != "nginx":
        errs.append(f"Ingress {ing['metadata']['name']}: ingressClassName is not nginx")
    paths = [p["path"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
    if "nginx.ingress.kubernetes.io/limit-rpm" in ann and set(paths) & {"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/par"}:
        errs.append(f"Ingress {ing['metadata']['name']}: the token endpoint is in the per-IP password zone (limit-rpm)")
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            b = p["backend"]["service"]
            if p["path"] == "/metrics":  # closed: its backend must be no Service
                if by("Service", b["name"]):
                    errs.append(f"Ingress {ing['metadata']['name']}: /metrics reaches Service {b['name']}")
                continue
            svc = by("Service", b["name"])
            ports = {x.get("name") for x in svc["spec"]["ports"]} | {x["port"] for x in svc["spec"]["ports"]} if svc else set()
            if not svc or (b["port"].get("name") or b["port"].get("number")) not in ports:
                errs.append(f"Ingress {ing['metadata']['name']}: backend {b} does not exist")
# Every path the server serves only as a POST credential route
# (auth/routes.go) is in a limit-rpm Ingress (the controller cannot tell a
# page's POST from its GET, so pages a browser also GETs are the server's).
ROUTES = [tuple(l.split()) for l in open(os.environ["ROUTES"]) if l.strip()]
cred_only = {p for m, p, b in ROUTES if b == "creds" and m == "POST"} - {p for m, p, b in ROUTES if m != "POST" or b != "creds"}
limited = {p["path"] for _, ing in docs.get("Ingress", []) if "nginx.ingress.kubernetes.io/limit-rpm" in (ing["metadata"].get("annotations") or {})
           for rule in ing["spec"]["rules"] for p in rule["http"]["paths"] if p.get("pathType") == "Exact"}
for p in sorted(cred_only - limited):
    errs.append(f"Ingress: POST {p} (a credential route of the server) is in no limit-rpm Ingress")
# The mailed links' pages carry one-time tokens in the query string, which
# the controller's access log writes: they are in an Ingress that logs nothing.
unlogged = {p["path"] for _, ing in docs.get("Ingress", [])
            if (ing["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/enable-access-log") == "false"
            for rule in ing["spec"]["rules"] for p in rule["http"]["paths"] if p.get("pathType") == "Exact"}
for p in sorted({"/password/reset", "/email/verify", "/oauth2/logout", "/oauth2/device"} - unlogged):
    errs.append(f"Ingress: {p} (a token or code in its query string) is in no Ingress with enable-access-log false")
# /metrics has an Exact path of its own (else the site's / serves it),
# routed to no Service (checked above).
if not any(p["path"] == "/metrics" and p.get("pathType") == "Exact" for _, ing in docs.get("Ingress", [])
           for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]):
    errs.append("Ingress: /metrics has no Exact path of its own: the site's / serves it")
if not any("cert-manager.io/cluster-issuer" in (d["metadata"].get("annotations") or {}) and d["spec"].get("tls") for _, d in docs.get("Ingress", [])):
    errs.append("no Ingress with TLS and the cert-manager annotation")
kust = yaml.safe_load(open(os.path.join(root, "deploy/kubernetes/kustomization.yaml")))
kmig = yaml.safe_load(open(os.path.join(root, "deploy/kubernetes/migrate/kustomization.yaml")))
if kust.get("images") != kmig.get("images"):
    errs.append("migrate/kustomization.yaml pins another image than kustomization.yaml")

# ECS
ecs = json.load(open(os.path.join(root, "deploy/ecs/task-definition.json")))
if ecs.get("requiresCompatibilities") != ["FARGATE"] or ecs.get("networkMode") != "awsvpc":
    errs.append("ECS: not a Fargate awsvpc task")
if not ecs.get("cpu") or not ecs.get("memory"):
    errs.append("ECS: no task cpu/memory")
# The server calls no AWS API: a task role would only hand every container
# credentials (through the metadata endpoint) that it never needs, as a
# service-account token would in Kubernetes. The execution role (ECS's own:
# pulling the image, reading the secrets) is another thing.
if "taskRoleArn" in ecs:
    errs.append("ECS: taskRoleArn gives the server AWS credentials it never uses")
for c in ecs["containerDefinitions"]:
    where = f"ECS container {c['name']}"
    hc = c.get("healthCheck") or {}
    # ECS replaces a task whose healthCheck fails: on /livez, so that a
    # database outage does not replace every task (as Kubernetes' liveness).
    if hc.get("command") != ["CMD", "/oauth2-api", "healthcheck", "--live"]:
        errs.append(f"{where}: healthCheck is not [CMD, /oauth2-api, healthcheck, --live]")
    if hc.get("startPeriod", 0) < BUDGET or hc.get("timeout", 5) <= HEALTH:
        errs.append(f"{where}: healthCheck startPeriod {hc.get('startPeriod')}s under the startup budget {BUDGET}s, or timeout too short")
    if not PINNED.fullmatch(c.get("image", "")):
        errs.append(f"{where}: image is not pinned by digest")
    if c.get("readonlyRootFilesystem") is not True:
        errs.append(f"{where}: readonlyRootFilesystem is not true")
    if str(c.get("user", "")).split(":")[0] != "65532":
        errs.append(f"{where}: user is not 65532")
    if c.get("privileged"):
        errs.append(f"{where}: privileged")
    if (c.get("logConfiguration") or {}).get("logDriver") != "awslogs":
        errs.append(f"{where}: not logging to awslogs")
    secrets = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
    for s in ("JWT_SECRET", "DATABASE_URL"):
        if not secrets.get(s, "").startswith("arn:aws:secretsmanager:"):
            errs.append(f"{where}: {s} not from Secrets Manager")
        # arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX:JSON-KEY:VERSION-STAGE:VERSION-ID,
        # a version id: a task resolves the secret when it starts, so without
        # one the tasks of one revision could hold different JWT_SECRETs after
        # a rotation (as Cloud Run's "latest").
        elif not re.fullmatch(r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[^:]+:[^:]*::[0-9a-fA-F-]{36}", secrets[s]):
            errs.append(f"{where}: {s} from {secrets[s]}: pin a version id (NAME-SUFFIX:::VERSION-ID), never the current version")
    for e in c.get("environment", []) + c.get("secrets", []):
        if e["name"] not in known:
            errs.append(f"{where}: {e['name']} is not a server variable")
        if e["name"] in SECRET_NAMES and "value" in e:
            errs.append(f"{where}: {e['name']} in plain environment")
    if (c.get("stopTimeout") or 30) < 30:
        errs.append(f"{where}: stopTimeout under 30 s")
    if "TRUSTED_PROXIES" not in {e["name"] for e in c.get("environment", [])}:
        errs.append(f"{where}: no TRUSTED_PROXIES: every client would be the load balancer")

# Cloud Run
cr = yaml.safe_load(open(os.path.join(root, "deploy/cloudrun/service.yaml")))
if cr.get("apiVersion") != "serving.knative.dev/v1" or cr.get("kind") != "Service":
    errs.append("Cloud Run: not a serving.knative.dev/v1 Service")
for c in cr["spec"]["template"]["spec"]["containers"]:
    where = f"Cloud Run container {c['name']}"
    total = check_probe(where, c, "startupProbe", "/health", budget=True)
    if total and total > 240:
        errs.append(f"{where}: startupProbe allows {total}s; Cloud Run's limit is 240 s")
    check_probe(where, c, "livenessProbe", "/livez")
    if not PINNED.fullmatch(c.get("image", "")):
        errs.append(f"{where}: image is not pinned by digest")
    lim = (c.get("resources") or {}).get("limits") or {}
    if "memory" not in lim or "cpu" not in lim:
        errs.append(f"{where}: no cpu and memory limits")
    env = {e["name"]: e for e in c.get("env", [])}
    if "PORT" in env:
        errs.append(f"{where}: PORT is reserved on Cloud Run")
    if "TRUSTED_PROXIES" not in env:
        errs.append(f"{where}: no TRUSTED_PROXIES: every client would be Google's front end")
    for s in ("JWT_SECRET", "DATABASE_URL"):
        ref = ((env.get(s) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            errs.append(f"{where}: {s} not from a secretKeyRef")
        elif not re.fullmatch(r"[1-9][0-9]*", str(ref.get("key"))):
            errs.append(f"{where}: {s} reads secret version {ref.get('key')!r}: pin a version number, never latest")
    for n, e in env.items():
        if n not in known:
            errs.append(f"{where}: {n} is not a server variable")
        if n in SECRET_NAMES and "value" in e:
            errs.append(f"{where}: {n} as a plain value")

for e in errs:
    print("   -", e, file=sys.stderr)
n = sum(len(v) for v in docs.values())
if not errs:
    print(f"   ok: {n} Kubernetes objects ({', '.join(sorted(docs))}): restricted pods, default-deny + DNS/DB/SMTP egress, "
          f"proxy and Prometheus by pod labels, digests, probes >= {BUDGET}s start / > {HEALTH}s timeout, secrets as files, migration Job")
    print(f"   ok: ECS task and Cloud Run service: digests, start budgets, pinned secret versions, liveness on /livez (ECS: healthcheck --live)")
sys.exit(1 if errs else 0)
PYEOF
ok "manifests rendered by $rendered"

# ---- 9. Makefile, SBOM, CI -----------------------------------------------------------------
step "Makefile docker and release; the SBOM; go mod verify in CI"
mk=$(make -s -n docker release VERSION=v9.9.9 2>&1) || fail "make -n docker release: $mk"
for want in "docker build -f Dockerfile.distroless --build-arg VERSION=v9.9.9" "GOARCH=\$arch" \
  'CGO_ENABLED=0' '-trimpath' '-ldflags="-s -w -X main.version=v9.9.9"' 'for arch in amd64 arm64' 'SHA256SUMS' \
  './scripts/sbom.sh dist/oauth2-api-v9.9.9-linux-$arch v9.9.9' '> dist/oauth2-api-v9.9.9-linux-$arch.cdx.json' \
  'sha256sum oauth2-api-v9.9.9-linux-* > SHA256SUMS'; do
  grep -qF -- "$want" <<<"$mk" || fail "make docker/release lacks: $want"
done
# The SBOM of the binary built in step 1: CycloneDX 1.5, the binary's hash,
# and every module `go version -m` lists.
(cd "$tmp" && "$ROOT/scripts/sbom.sh" "$BIN" v9.9.9) >"$tmp/sbom.json" || fail "scripts/sbom.sh"
go version -m "$BIN" >"$tmp/buildinfo.txt"
"$PY" - "$tmp/sbom.json" "$tmp/buildinfo.txt" "$(sha256sum "$BIN" | cut -d' ' -f1)" <<'PYEOF' || fail "the SBOM"
import json, sys
bom = json.load(open(sys.argv[1]))
info = open(sys.argv[2]).read().splitlines()
errs = []
if bom.get("bomFormat") != "CycloneDX" or bom.get("specVersion") != "1.5":
    errs.append("not CycloneDX 1.5")
main = bom["metadata"]["component"]
if main.get("version") != "v9.9.9" or main.get("hashes") != [{"alg": "SHA-256", "content": sys.argv[3]}]:
    errs.append(f"the binary's component: {main.get('version')} {main.get('hashes')}")
purls = {c["purl"] for c in bom["components"]}
refs = {c["bom-ref"] for c in bom["components"]}
gover = info[0].split(": ", 1)[1]
if f"pkg:golang/stdlib@{gover[2:]}" not in purls:
    errs.append(f"no stdlib {gover}")
deps = [l.split("\t") for l in info if l.startswith("\tdep\t")]
for d in deps:
    if f"pkg:golang/{d[2]}@{d[3]}" not in purls:
        errs.append(f"module {d[2]} {d[3]} missing")
if len(bom["components"]) != len(deps) + 1:
    errs.append(f"{len(bom['components'])} components for {len(deps)} modules + stdlib")
dep = bom["dependencies"][0]
if dep["ref"] != main["bom-ref"] or set(dep["dependsOn"]) != refs:
    errs.append("dependencies do not tie the binary to every component")
for e in errs:
    print("   -", e, file=sys.stderr)
if not errs:
    print(f"   ok: CycloneDX 1.5 SBOM: the binary's SHA-256, {gover}, {len(deps)} modules")
sys.exit(1 if errs else 0)
PYEOF
grep -qx 'go mod verify' .ci/run || fail ".ci/run does not run go mod verify"
ok "make -n docker release (SBOM beside each binary, all in SHA256SUMS); .ci/run runs go mod verify"

echo "== deploy: all checks passed in $(($(date +%s) - T0))s"
