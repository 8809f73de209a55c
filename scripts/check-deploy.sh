#!/usr/bin/env bash
# Checks the deployment files (deploy/, Dockerfile.distroless, .dockerignore)
# against real tools and the real server. Called by .ci/run; runs alone too:
#   ./scripts/check-deploy.sh
# Installs the Debian packages it needs when they are missing (apt-get update
# only if an install fails). Works in a temporary directory, leaves nothing
# behind, and exits non-zero on the first failure.
#
# What it does (each step prints a line):
#  1. Dockerfile.distroless and .dockerignore: stages, COPY sources, the
#     final image, exec-form HEALTHCHECK, non-root USER, build flags, Go
#     version; then builds the binary from exactly the files .dockerignore
#     lets into the build context, with the Dockerfile's flags, and checks it
#     is static (no dynamic section).
#  2. The real server behind the real nginx site (deploy/nginx): failed and
#     successful logins, forged X-Forwarded-For, redirect, security headers,
#     body limit, rate limit by method, /metrics closed; `oauth2-api
#     healthcheck` exits 0 against it, 1 against a 404 and against nothing;
#     SIGTERM stops it with status 0.
#  3. fail2ban-regex on the server's own stdout: the plain filter on the
#     lines, read from a journal file too (backend systemd, journalmatch), and
#     the docker filter on the lines wrapped as docker's json-file log; each
#     must match exactly the failed logins. fail2ban-client parses the jails.
#  4. nginx -t on both site files; their common part is identical.
#  5. systemd-analyze verify and security on the unit.
#  6. docker compose config (compose v2 plugin, else docker-compose).
#  7. Kubernetes, ECS and Cloud Run manifests: well-formed, and every
#     container has probes, limits and a non-root security context.
#  8. The Makefile's docker and release targets.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="/usr/local/go/bin:$PATH"
PY=/usr/bin/python3 # Debian's python3 (yaml, systemd), not a pyenv one
T0=$(date +%s)

step() { echo "== deploy: $*"; }
ok() { echo "   ok: $*"; }
fail() {
  echo "check-deploy: FAIL: $*" >&2
  exit 1
}

tmp=$(mktemp -d)
SERVER_PID=
NGINX_PID=
FAKE_PID=
cleanup() {
  local p
  for p in "$SERVER_PID" "$NGINX_PID" "$FAKE_PID"; do
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
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')
ok "nginx $NGINX_VERSION, $(fail2ban-regex --version 2>&1 | head -1), ${COMPOSE[*]}, $(/usr/bin/systemd-analyze --version | head -1)"

# ---- 1. Dockerfile and build context -------------------------------------------
step "Dockerfile.distroless and .dockerignore"
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
for path in files:
    top = path.split("/")[0]
    if top in (".git", "interop", "deploy", "dist") or re.search(r"(^|/)(\.env(\..*)?|[^/]*\.pem|[^/]*\.key|[^/]*\.db)$", path):
        err(f"build context would include {path}")

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
if not re.fullmatch(r"gcr\.io/distroless/static-debian12:nonroot(@sha256:[0-9a-f]{64})?", final["image"]):
    err(f"final image is {final['image']}, want gcr.io/distroless/static-debian12:nonroot")

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
    have = (int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else 999)
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
if not hcm or json.loads(hcm.group(1)) != ["/oauth2-api", "healthcheck"]:
    err(f"HEALTHCHECK must be exec form CMD [\"/oauth2-api\", \"healthcheck\"], is {hc}")
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

# The binary, built from the build context alone with the Dockerfile's flags.
BIN=$tmp/oauth2-api
(cd "$tmp/ctx" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=check-deploy" -o "$BIN" .) ||
  fail "go build in the .dockerignore'd build context"
readelf -d "$BIN" 2>&1 | grep -q "There is no dynamic section" || fail "binary has a dynamic section (not static)"
file "$BIN" | grep -q "statically linked" || fail "file(1) does not call the binary statically linked: $(file "$BIN")"
[ "$("$BIN" version)" = "oauth2-api check-deploy" ] || fail "version not stamped: $("$BIN" version)"
ok "CGO_ENABLED=0 binary from the build context: static, version stamped"

# ---- 2. the server behind nginx --------------------------------------------------
step "server behind the nginx site: logins, proxy headers, limits; healthcheck"
# Ports below the kernel's ephemeral range, so that no outgoing connection
# (curl, the server's database client) can take one between here and bind.
freeport() { "$PY" -c '
import random, socket
while True:
    p = random.randrange(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'; }
PS=$(freeport)
P80=$(freeport)
P443=$(freeport)
PFAKE=$(freeport)
HOST=oauth.example.com

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || fail "openssl: self-signed certificate"
mkdir -p "$tmp/nginx"
# nginx.conf around a site file: http context, all paths in the temp dir.
nginx_conf() { # $1 = site file
  {
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
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
EOF
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

SITE=deploy/nginx/oauth2-api.conf
rewrite "$SITE" "$tmp/nginx/site-run.conf" \
  '/etc/letsencrypt/live/oauth\.example\.com/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/letsencrypt/live/oauth\.example\.com/privkey\.pem' "$tmp/key.pem" \
  '^( *)listen 80;' "\\1listen 127.0.0.1:$P80;" \
  '^( *)listen \[::\]:80;' '\1' \
  '^( *)listen 443 ssl http2;' "\\1listen 127.0.0.1:$P443 ssl http2;" \
  '^( *)listen \[::\]:443 ssl http2;' '\1' \
  'server 127\.0\.0\.1:8080;' "server 127.0.0.1:$PS;"
nginx_conf "$tmp/nginx/site-run.conf" >"$tmp/nginx/run.conf"

export PORT=$PS DATABASE_URL=$tmp/oauth.db APP_MODE=release ISSUER=https://$HOST \
  JWT_SECRET=$(openssl rand -hex 32) TRUSTED_PROXIES=127.0.0.1/32 LOGIN_RATE_BURST=100 LOG_LEVEL=info
echo 'correct horse battery staple' | "$BIN" user create --email ann@example.com --username ann >/dev/null ||
  fail "oauth2-api user create"
"$BIN" serve >"$tmp/server.log" 2>"$tmp/server.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PS/health" && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited: $(cat "$tmp/server.err")"
  sleep 0.1
done
"$BIN" healthcheck || fail "oauth2-api healthcheck exited $? against a running server"
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/run.conf" -g 'daemon off;' 2>>"$tmp/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 1 50); do
  curl -sk -o /dev/null --resolve "$HOST:$P443:127.0.0.1" "https://$HOST:$P443/health" && break
  kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$tmp/nginx/error.log")"
  sleep 0.1
done

# All requests go through nginx from 127.0.0.2 (nginx -> server from 127.0.0.1).
via() { # curl through nginx's HTTPS port from 127.0.0.2; extra args follow
  curl -sk --max-time 10 --interface 127.0.0.2 --resolve "$HOST:$P443:127.0.0.1" "$@"
}
login() { # $1 password; prints the status
  via -o /dev/null -w '%{http_code}' -X POST "https://$HOST:$P443/api/v1/auth/login" \
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
# A failed OAuth client authentication (matched only by mode=aggressive).
code=$(via -o /dev/null -w '%{http_code}' -u nobody:wrong -d grant_type=client_credentials "https://$HOST:$P443/oauth2/token")
[ "$code" = 401 ] || fail "client authentication failure answered $code, want 401"

# HTTP -> HTTPS.
loc=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $HOST" "http://127.0.0.1:$P80/api/v1/profile?x=1")
[ "$loc" = "301 https://$HOST/api/v1/profile?x=1" ] || fail "HTTP redirect: got '$loc'"
# Security headers: each exactly once (nginx replaces the server's copies).
via -D "$tmp/h.txt" -o /dev/null "https://$HOST:$P443/health"
for h in 'Strict-Transport-Security: max-age=63072000; includeSubDomains' 'X-Frame-Options: DENY' \
  'X-Content-Type-Options: nosniff' 'Referrer-Policy: no-referrer' 'Content-Security-Policy: '; do
  n=$(grep -ci "^${h}" "$tmp/h.txt" || true)
  [ "$n" = 1 ] || fail "header '$h' appears $n times on a proxied response"
done
! grep -qi '^X-XSS-Protection' "$tmp/h.txt" || fail "X-XSS-Protection is sent"
# A body over 1 MiB: refused by nginx, whose own page carries the headers and
# a strict CSP. (curl may see the connection close while it still sends.)
head -c 1100000 /dev/zero | tr '\0' 'a' >"$tmp/big.json"
via -D "$tmp/h3.txt" -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/big.json" "https://$HOST:$P443/api/v1/profile" || true
grep -q '^HTTP/[0-9.]* 413' "$tmp/h3.txt" || fail "a 1.1 MB body was not refused with 413 by nginx: $(head -1 "$tmp/h3.txt")"
grep -qi "^Content-Security-Policy: default-src 'none'; frame-ancestors 'none'" "$tmp/h3.txt" || fail "nginx's 413 page lacks the CSP"
grep -qi '^Strict-Transport-Security:' "$tmp/h3.txt" || fail "nginx's 413 page lacks HSTS"
# /metrics is closed to the public.
code=$(via -o /dev/null -w '%{http_code}' "https://$HOST:$P443/metrics")
[ "$code" = 403 ] || fail "/metrics through nginx answered $code, want 403"
# Rate limit: GETs of /oauth2/authorize are free, POSTs to credential paths
# are 5r/m with burst 10 (the server's own burst is raised to 100 here).
for i in $(seq 1 12); do
  code=$(curl -sk --max-time 10 --interface 127.0.0.3 --resolve "$HOST:$P443:127.0.0.1" -o /dev/null -w '%{http_code}' \
    "https://$HOST:$P443/oauth2/authorize?response_type=code")
  [ "$code" != 429 ] || fail "GET /oauth2/authorize was rate-limited by nginx (request $i)"
done
codes=""
for i in $(seq 1 12); do
  codes="$codes $(curl -sk --max-time 10 --interface 127.0.0.3 --resolve "$HOST:$P443:127.0.0.1" -o "$tmp/rl.txt" -D "$tmp/rlh.txt" \
    -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "https://$HOST:$P443/api/v1/auth/register")"
done
case "$codes" in
*" 429") ;;
*) fail "POST /api/v1/auth/register x12 from one IP: statuses$codes; want the 12th to be 429" ;;
esac
case "$codes" in *429*" 429") fail "rate limit hit too early:$codes" ;; esac
grep -q '"error":"rate_limited"' "$tmp/rl.txt" || fail "nginx 429 body: $(cat "$tmp/rl.txt")"
grep -qi '^Retry-After: 12' "$tmp/rlh.txt" || fail "nginx 429 has no Retry-After"
ok "nginx site: 3 failed + 1 good login, forged XFF ignored, 301, headers once, 413, /metrics 403, POST-only limit (11 pass, 12th 429)"

# healthcheck against a non-200 answer (a server without /health) and against nothing.
"$PY" -m http.server "$PFAKE" --bind 127.0.0.1 --directory "$tmp/nginx" >/dev/null 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$PFAKE/" && break; sleep 0.1; done
set +e
PORT=$PFAKE "$BIN" healthcheck 2>/dev/null
rc_404=$?
set -e
kill "$FAKE_PID" && wait "$FAKE_PID" 2>/dev/null || true
FAKE_PID=
[ "$rc_404" = 1 ] || fail "oauth2-api healthcheck exited $rc_404 on a 404, want 1"

kill -QUIT "$NGINX_PID"
wait "$NGINX_PID" || true
NGINX_PID=
kill -TERM "$SERVER_PID"
set +e
wait "$SERVER_PID"
rc_srv=$?
set -e
SERVER_PID=
[ "$rc_srv" = 0 ] || fail "server exited $rc_srv after SIGTERM, want 0: $(tail -3 "$tmp/server.err")"
grep -q '"msg":"stopped"' "$tmp/server.log" || fail "server log has no graceful stop"
set +e
"$BIN" healthcheck 2>/dev/null
rc_none=$?
set -e
[ "$rc_none" = 1 ] || fail "oauth2-api healthcheck exited $rc_none with no server, want 1"
[ -z "$(grep -v '^{' "$tmp/server.log" || true)" ] || fail "server stdout has non-JSON lines"
[ "$(grep -c '"msg":"login failed","client_ip":"127.0.0.2"' "$tmp/server.log")" = 3 ] ||
  fail "server did not log 3 failed logins from 127.0.0.2: $(grep 'login failed' "$tmp/server.log")"
grep -q '"route":"/api/v1/auth/login".*"status":200,.*"client_ip":"127.0.0.2"' "$tmp/server.log" ||
  fail "server did not log the successful login"
ok "healthcheck: 0 running, 1 on 404, 1 with no server; SIGTERM -> exit 0; log: 3 failures from 127.0.0.2"

# ---- 3. fail2ban ---------------------------------------------------------------------
step "fail2ban filters against the server's own log"
F2B=deploy/fail2ban
# $1 log source, $2 filter, $3 expected number of matches (all from 127.0.0.2)
f2b() {
  local out
  out=$(fail2ban-regex -o ip "$1" "$2" 2>&1) || fail "fail2ban-regex $1 $2: $out"
  local n bad
  n=$(printf '%s\n' "$out" | grep -cE '^[0-9a-f.:]+$' || true)
  bad=$(printf '%s\n' "$out" | grep -E '^[0-9a-f.:]+$' | grep -vx '127.0.0.2' || true)
  [ "$n" = "$3" ] || fail "fail2ban-regex $2 on $1: $n matches, want $3: $out"
  [ -z "$bad" ] || fail "fail2ban-regex $2 on $1 matched other addresses: $bad"
  # The summary must agree (and no line lacked a date it could parse).
  fail2ban-regex "$1" "$2" >"$tmp/f2b-sum.txt" 2>&1 || true
  grep -qE "^Lines: [0-9]+ lines, 0 ignored, $3 matched" "$tmp/f2b-sum.txt" ||
    fail "fail2ban-regex summary for $2 on $1: $(grep '^Lines' "$tmp/f2b-sum.txt")"
}
f2b "$tmp/server.log" "$F2B/filter.d/oauth2-api.conf" 3
f2b "$tmp/server.log" "$F2B/filter.d/oauth2-api.conf[mode=aggressive]" 4
ok "plain stdout: 3 failures matched (4 with mode=aggressive), success line and forged user agent not matched"

# The same lines in a journal file, as the systemd backend reads them, plus a
# forged failed-login line from another unit (journalmatch must drop it).
"$PY" - "$tmp/server.log" >"$tmp/journal.export" <<'PYEOF'
import sys, time
lines = open(sys.argv[1]).read().splitlines()
now = int(time.time() * 1e6) - len(lines) - 10
def entry(i, unit, ident, msg):
    return (f"__REALTIME_TIMESTAMP={now + i}\n__MONOTONIC_TIMESTAMP={1000000 + i}\n"
            f"_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=web1\n_PID=4242\n"
            f"SYSLOG_IDENTIFIER={ident}\n_SYSTEMD_UNIT={unit}\nPRIORITY=6\nMESSAGE={msg}\n\n")
out = [entry(i, "oauth2-api.service", "oauth2-api", l) for i, l in enumerate(lines)]
forged = next(l for l in lines if '"msg":"login failed"' in l).replace("127.0.0.2", "192.0.2.66")
out.append(entry(len(lines), "evil.service", "evil", forged))
sys.stdout.write("".join(out))
PYEOF
"$JOURNAL_REMOTE" -o "$tmp/oauth2-api.journal" - <"$tmp/journal.export" >/dev/null 2>&1 ||
  fail "systemd-journal-remote could not write a journal file"
f2b "systemd-journal[journalfiles=\"$tmp/oauth2-api.journal\"]" "$F2B/filter.d/oauth2-api.conf" 3
ok "journal (backend systemd, journalmatch _SYSTEMD_UNIT=oauth2-api.service): 3 matched, other unit ignored"

# Docker's json-file log: every stdout line wrapped and escaped, plus lines
# from another container (an nginx access line quoting the failed-login text).
"$PY" - "$tmp/server.log" >"$tmp/container-json.log" <<'PYEOF'
import json, sys, time
def docker(line, stream="stdout"):
    t = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)
    log = json.dumps(line + "\n")
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):  # as Go's encoder
        log = log.replace(a, b)
    return '{"log":%s,"stream":"%s","time":"%s"}' % (log, stream, ts)
lines = open(sys.argv[1]).read().splitlines()
out = [docker(l) for l in lines]
out.append(docker('192.0.2.66 - - [26/Nov/2026:00:29:31 +0000] "GET /?{\\x22time\\x22:\\x22\\x22,\\x22level\\x22:\\x22WARN\\x22,\\x22msg\\x22:\\x22login failed\\x22,\\x22client_ip\\x22:\\x22192.0.2.66\\x22} HTTP/1.1" 404 153 "-" "curl"'))
# The server logs to stdout only: a look-alike line on a stderr stream must not count.
out.append(docker('{"time":"2026-11-26T00:29:31Z","level":"WARN","msg":"login failed","client_ip":"192.0.2.67"}', "stderr"))
print("\n".join(out))
PYEOF
f2b "$tmp/container-json.log" "$F2B/filter.d/oauth2-api-docker.conf" 3
f2b "$tmp/container-json.log" "$F2B/filter.d/oauth2-api.conf" 0
f2b "$tmp/server.log" "$F2B/filter.d/oauth2-api-docker.conf" 0
ok "docker json-file: 3 matched by oauth2-api-docker.conf, other container and stderr ignored; filters don't cross-match"

# The jails parse, with the intended backends and settings.
mkdir -p "$tmp/f2bconf"
cp -r /etc/fail2ban "$tmp/f2bconf/"
cp "$F2B"/filter.d/*.conf "$tmp/f2bconf/fail2ban/filter.d/"
cp "$F2B"/jail.d/*.conf "$tmp/f2bconf/fail2ban/jail.d/"
fail2ban-client -c "$tmp/f2bconf/fail2ban" -d >"$tmp/f2b-dump.txt" 2>"$tmp/f2b-dump.err" ||
  fail "fail2ban-client -d: $(cat "$tmp/f2b-dump.err")"
for want in "['add', 'oauth2-api', 'systemd']" "['set', 'oauth2-api', 'addjournalmatch', '_SYSTEMD_UNIT=oauth2-api.service']" \
  "['add', 'oauth2-api-docker', 'auto']" "['chain', 'DOCKER-USER']" "['start', 'oauth2-api']" "['start', 'oauth2-api-docker']"; do
  grep -qF "$want" "$tmp/f2b-dump.txt" || fail "fail2ban-client -d lacks $want"
done
grep -qF "/var/lib/docker/containers/*/*-json.log" "$F2B/jail.d/oauth2-api-docker.conf" || fail "docker jail logpath"
ok "fail2ban-client parses both jails (systemd + journalmatch; file + DOCKER-USER chain)"

# ---- 4. nginx -t -----------------------------------------------------------------
step "nginx -t"
nginx_t() { # $1 site file, $2 label
  nginx_conf "$1" >"$tmp/nginx/test.conf"
  local out
  out=$(nginx -t -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/test.conf" 2>&1) || fail "nginx -t ($2): $out"
  ! printf '%s\n' "$out" | grep -E '\[(warn|emerg|alert|crit)\]' || fail "nginx -t ($2) warned: $out"
}
rewrite "$SITE" "$tmp/nginx/site.conf" \
  '/etc/letsencrypt/live/oauth\.example\.com/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/letsencrypt/live/oauth\.example\.com/privkey\.pem' "$tmp/key.pem"
nginx_t "$tmp/nginx/site.conf" "$SITE"
TPL=deploy/compose/nginx/default.conf.template
OAUTH2_HOSTNAME=$HOST envsubst '${OAUTH2_HOSTNAME}' <"$TPL" >"$tmp/nginx/compose.in"
! grep -nE '^[^#]*\$\{?OAUTH2_[A-Z0-9_]+' "$tmp/nginx/compose.in" || fail "$TPL: a \$OAUTH2_ variable the compose file does not set"
rewrite "$tmp/nginx/compose.in" "$tmp/nginx/compose.conf" \
  '/etc/nginx/ssl/fullchain\.pem' "$tmp/cert.pem" \
  '/etc/nginx/ssl/privkey\.pem' "$tmp/key.pem"
note=""
if [ "$(printf '%s\n' "$NGINX_VERSION" 1.25.1 | sort -V | head -1)" != 1.25.1 ]; then
  # This nginx predates `http2 on;` (1.25.1); the compose image is newer.
  rewrite "$tmp/nginx/compose.conf" "$tmp/nginx/compose2.conf" \
    '^( *)http2 on;.*$' '\1' \
    '^( *)listen 443 ssl;' '\1listen 443 ssl http2;'
  mv "$tmp/nginx/compose2.conf" "$tmp/nginx/compose.conf"
  note=" (http2 on; -> listen ... http2 for nginx $NGINX_VERSION)"
fi
nginx_t "$tmp/nginx/compose.conf" "$TPL"
# The part both files share must not drift apart.
common() { sed -n '/# --- begin common/,/# --- end common ---/p' "$1" | sed 1d; }
diff <(common "$SITE") <(common "$TPL") >"$tmp/common.diff" || fail "common part of $SITE and $TPL differ: $(cat "$tmp/common.diff")"
[ "$(common "$SITE" | wc -l)" -gt 50 ] || fail "common part markers missing in $SITE"
# limit_req_zone must be in http context, never inside server { }.
for f in "$SITE" "$TPL"; do
  "$PY" - "$f" <<'PYEOF' || fail "$f: limit_req_zone/map/upstream inside a block"
import re, sys
depth = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    code = line.split("#", 1)[0]
    if re.match(r"\s*(limit_req_zone|map|upstream|resolver)\b", code) and depth != 0:
        print(f"   line {n}: {line.strip()} is not at http level", file=sys.stderr); sys.exit(1)
    depth += code.count("{") - code.count("}")
PYEOF
done
ok "nginx -t passes for $SITE and $TPL$note; common part identical; zones at http level"

# ---- 5. systemd ------------------------------------------------------------------------
step "systemd unit"
UNIT=deploy/systemd/oauth2-api.service
mkdir -p "$tmp/systemd"
printf '#!/bin/sh\nexit 0\n' >"$tmp/systemd/oauth2-api"
chmod 755 "$tmp/systemd/oauth2-api"
rewrite "$UNIT" "$tmp/systemd/oauth2-api.service" '^ExecStart=/usr/local/bin/oauth2-api ' "ExecStart=$tmp/systemd/oauth2-api "
out=$(/usr/bin/systemd-analyze verify "$tmp/systemd/oauth2-api.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
/usr/bin/systemd-analyze security --offline=true --threshold=20 "$tmp/systemd/oauth2-api.service" >"$tmp/systemd/security.txt" 2>&1 ||
  fail "systemd-analyze security: exposure above 2.0: $(tail -1 "$tmp/systemd/security.txt")"
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
  ReadWritePaths=/var/lib/oauth2-api StateDirectory=oauth2-api CapabilityBoundingSet= AmbientCapabilities= \
  SystemCallFilter=@system-service SystemCallArchitectures=native 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  ProtectKernelTunables=yes ProtectKernelModules=yes ProtectControlGroups=yes LockPersonality=yes \
  MemoryDenyWriteExecute=yes RestrictNamespaces=yes RestrictRealtime=yes RestrictSUIDSGID=yes UMask=0077 \
  EnvironmentFile=/etc/oauth2-api/oauth2-api.env KillSignal=SIGTERM TimeoutStopSec=30 Restart=on-failure; do
  grep -qx "$d" "$UNIT" || fail "$UNIT lacks $d"
done
grep -qE '^(User=oauth2-api|DynamicUser=yes)$' "$UNIT" || fail "$UNIT: no dedicated user"
ok "systemd-analyze verify clean; $(grep -o 'Overall exposure level.*' "$tmp/systemd/security.txt" | sed 's/ *$//')"

# ---- 6. compose -----------------------------------------------------------------------
step "docker compose config (${COMPOSE[*]})"
CDIR=deploy/compose
# As shipped, .env.example leaves the secrets empty: compose must refuse.
cp "$CDIR/.env.example" "$tmp/compose.env"
if "${COMPOSE[@]}" --env-file "$tmp/compose.env" -f "$CDIR/docker-compose.yml" config >"$tmp/compose-empty.out" 2>&1; then
  fail "compose accepted empty JWT_SECRET/POSTGRES_PASSWORD"
fi
sed -i -E "s/^JWT_SECRET=.*/JWT_SECRET=$(openssl rand -hex 32)/; s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(openssl rand -hex 24)/" "$tmp/compose.env"
"${COMPOSE[@]}" --env-file "$tmp/compose.env" -f "$CDIR/docker-compose.yml" config >"$tmp/compose.yml" 2>"$tmp/compose.err" ||
  fail "compose config: $(cat "$tmp/compose.err")"
! grep -qi 'warn' "$tmp/compose.err" || fail "compose config warned: $(cat "$tmp/compose.err")"
"$PY" - "$CDIR/docker-compose.yml" "$tmp/compose.yml" "$ROOT" <<'PYEOF' || fail "compose file"
import os, re, sys, yaml
raw = yaml.safe_load(open(sys.argv[1]))
c = yaml.safe_load(open(sys.argv[2]))
root = sys.argv[3]
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
api = svc["oauth2-api"]
if api["healthcheck"]["test"] != ["CMD", "/oauth2-api", "healthcheck"]:
    errs.append(f"oauth2-api healthcheck is {api['healthcheck']['test']}")
if "pg_isready" not in " ".join(svc["db"]["healthcheck"]["test"]):
    errs.append("db healthcheck does not use pg_isready")
if not svc["nginx"].get("depends_on", {}).get("oauth2-api") or not api.get("depends_on", {}).get("db"):
    errs.append("nginx must wait for oauth2-api, oauth2-api for db")
env = api["environment"]
if api.get("ports"):
    errs.append("oauth2-api publishes ports: clients could bypass nginx")
if not str(env.get("DATABASE_URL", "")).startswith("postgres://"):
    errs.append("DATABASE_URL is not PostgreSQL")
if env.get("APP_MODE") != "release" or not str(env.get("ISSUER", "")).startswith("https://"):
    errs.append("not release mode with an https ISSUER")
subnets = [cfg["subnet"] for cfg in c["networks"]["proxy"]["ipam"]["config"]]
if env.get("TRUSTED_PROXIES") not in subnets:
    errs.append(f"TRUSTED_PROXIES {env.get('TRUSTED_PROXIES')} is not the proxy network {subnets}")
if set(svc["nginx"]["networks"]) != {"proxy"} or "proxy" not in api["networks"] or "proxy" in svc["db"]["networks"]:
    errs.append("only nginx and oauth2-api may be on the proxy network")
if not c["networks"]["backend"].get("internal"):
    errs.append("backend network is not internal")
if api.get("build", {}).get("dockerfile") != "Dockerfile.distroless":
    errs.append("oauth2-api is not built from Dockerfile.distroless")
ctxdir = api["build"]["context"]
if not os.path.exists(os.path.join(ctxdir, "Dockerfile.distroless")):
    errs.append(f"build context {ctxdir} has no Dockerfile.distroless")
for v in svc["nginx"].get("volumes", []):
    src = v.split(":")[0] if isinstance(v, str) else v.get("source")
    if src.endswith(".template") and not os.path.isfile(src):
        errs.append(f"nginx mounts missing {src}")
known = set(re.findall(r'\b(?:str|int|dur|bool|list|getenv)\("([A-Z][A-Z0-9_]*)"', open(os.path.join(root, "config.go")).read()))
for k in env:
    if k not in known:
        errs.append(f"oauth2-api environment {k} is not a server variable")
for line in open(os.path.join(os.path.dirname(sys.argv[1]), ".env.example")):
    m = re.match(r"\s*([A-Z_]+)=", line)
    if m and m.group(1) not in open(sys.argv[1]).read():
        errs.append(f".env.example sets {m.group(1)}, which docker-compose.yml never uses")
for e in errs:
    print("   -", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PYEOF
ok "compose config valid; refuses empty secrets; healthchecks, service_healthy, TRUSTED_PROXIES = proxy subnet"

# ---- 7. Kubernetes, ECS, Cloud Run ---------------------------------------------------------
step "Kubernetes, ECS and Cloud Run manifests"
"$PY" - "$ROOT" <<'PYEOF' || fail "manifests"
import glob, json, os, re, sys, yaml
root = sys.argv[1]
errs = []
known = set(re.findall(r'\b(?:str|int|dur|bool|list|getenv)\("([A-Z][A-Z0-9_]*)"', open(os.path.join(root, "config.go")).read()))
known |= {"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "TZ"}
SECRET_NAMES = {"JWT_SECRET", "JWT_SECRET_PREVIOUS", "DATABASE_URL", "SMTP_PASSWORD"}

docs = {}
for path in sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))):
    rel = os.path.relpath(path, root)
    try:
        items = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        errs.append(f"{rel}: {e}"); continue
    for d in items:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            errs.append(f"{rel}: a document without kind/apiVersion"); continue
        if d["kind"] == "Kustomization":
            continue
        docs.setdefault(d["kind"], []).append((rel, d))

def by(kind, name):
    return next((d for _, d in docs.get(kind, []) if d["metadata"]["name"] == name), None)

def check_container(where, c, pod_sc, need_probes=("livenessProbe", "readinessProbe")):
    sc = c.get("securityContext") or {}
    eff = dict(pod_sc or {}); eff.update(sc)
    for p in need_probes:
        pr = c.get(p)
        # liveness may use /livez (no database); readiness and startup use /health
        ok_paths = ("/health", "/livez") if p == "livenessProbe" else ("/health",)
        if not pr or (pr.get("httpGet") or {}).get("path") not in ok_paths:
            errs.append(f"{where}: {p} is not an httpGet of {' or '.join(ok_paths)}")
    lim = (c.get("resources") or {}).get("limits") or {}
    if "memory" not in lim or "cpu" not in lim:
        errs.append(f"{where}: no cpu and memory limits")
    if eff.get("runAsNonRoot") is not True:
        errs.append(f"{where}: runAsNonRoot is not true")
    if not eff.get("runAsUser") or eff.get("runAsUser") == 0:
        errs.append(f"{where}: runAsUser missing or 0")
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
    for e in c.get("env", []):
        if e["name"] not in known:
            errs.append(f"{where}: env {e['name']} is not a server variable")
        if e["name"] in SECRET_NAMES and "value" in e:
            errs.append(f"{where}: {e['name']} given as a plain value, not from a Secret")

# Kubernetes
for kind in ("Namespace", "ConfigMap", "Deployment", "Service", "Ingress", "PodDisruptionBudget", "Secret"):
    if kind not in docs:
        errs.append(f"deploy/kubernetes: no {kind}")
ns = {d["metadata"]["name"] for _, d in docs.get("Namespace", [])}
for kind, items in docs.items():
    for rel, d in items:
        if kind != "Namespace" and d["metadata"].get("namespace") not in ns:
            errs.append(f"{rel}: {kind} {d['metadata']['name']} not in namespace {ns}")
cm_keys = set()
for _, d in docs.get("ConfigMap", []):
    for k in d.get("data", {}):
        cm_keys.add(k)
        if k not in known:
            errs.append(f"ConfigMap key {k} is not a server variable")
        if k in SECRET_NAMES:
            errs.append(f"ConfigMap holds secret {k}")
for rel, dep in docs.get("Deployment", []):
    spec = dep["spec"]; tpl = spec["template"]; pod = tpl["spec"]
    name = dep["metadata"]["name"]
    if spec.get("replicas") != 3:
        errs.append(f"{rel}: replicas {spec.get('replicas')}, want 3")
    labels = tpl["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
        errs.append(f"{rel}: selector does not match the pod labels")
    if not pod.get("containers"):
        errs.append(f"{rel}: no containers")
    for c in pod.get("containers", []):
        where = f"{rel}: container {c['name']}"
        check_container(where, c, pod.get("securityContext"))
        req = (c.get("resources") or {}).get("requests") or {}
        lim = (c.get("resources") or {}).get("limits") or {}
        if (req.get("memory"), req.get("cpu"), lim.get("memory"), lim.get("cpu")) != ("128Mi", "100m", "512Mi", "500m"):
            errs.append(f"{where}: resources are not requests 128Mi/100m, limits 512Mi/500m")
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                sec = by("Secret", ref["name"])
                if not sec or ref["key"] not in (sec.get("stringData") or sec.get("data") or {}):
                    errs.append(f"{where}: secretKeyRef {ref['name']}/{ref['key']} not in the Secret template")
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef and not by("ConfigMap", ef["configMapRef"]["name"]):
                errs.append(f"{where}: ConfigMap {ef['configMapRef']['name']} missing")
        names = {e["name"] for e in c.get("env", [])} | cm_keys
        for must in ("JWT_SECRET", "DATABASE_URL", "TRUSTED_PROXIES", "ISSUER", "APP_MODE"):
            if must not in names:
                errs.append(f"{where}: {must} not set")
        if not any(p.get("containerPort") == 8080 for p in c.get("ports", [])):
            errs.append(f"{where}: no containerPort 8080")
    for c in pod.get("initContainers", []):
        check_container(f"{rel}: initContainer {c['name']}", c, pod.get("securityContext"), need_probes=())
    pdbs = [d for _, d in docs.get("PodDisruptionBudget", []) if all(labels.get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items())]
    if not pdbs or pdbs[0]["spec"].get("minAvailable") != 2:
        errs.append(f"{rel}: no PodDisruptionBudget with minAvailable 2 for it")
    svcs = [d for _, d in docs.get("Service", []) if all(labels.get(k) == v for k, v in d["spec"]["selector"].items())]
    if not svcs:
        errs.append(f"{rel}: no Service selects it")
for rel, ing in docs.get("Ingress", []):
    if ing["spec"].get("ingressClassName") != "nginx":
        errs.append(f"{rel}: {ing['metadata']['name']}: ingressClassName is not nginx")
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            b = p["backend"]["service"]
            svc = by("Service", b["name"])
            ports = {x.get("name") for x in svc["spec"]["ports"]} | {x["port"] for x in svc["spec"]["ports"]} if svc else set()
            if not svc or (b["port"].get("name") or b["port"].get("number")) not in ports:
                errs.append(f"{rel}: backend {b} does not exist")
if not any("cert-manager.io/cluster-issuer" in (d["metadata"].get("annotations") or {}) and d["spec"].get("tls") for _, d in docs.get("Ingress", [])):
    errs.append("no Ingress with TLS and the cert-manager annotation")
kust = yaml.safe_load(open(os.path.join(root, "deploy/kubernetes/kustomization.yaml")))
for r in kust["resources"]:
    if not os.path.isfile(os.path.join(root, "deploy/kubernetes", r)):
        errs.append(f"kustomization.yaml lists missing {r}")
    if "secret" in r:
        errs.append(f"kustomization.yaml applies {r}: placeholder secrets would overwrite real ones")

# ECS
ecs = json.load(open(os.path.join(root, "deploy/ecs/task-definition.json")))
if ecs.get("requiresCompatibilities") != ["FARGATE"] or ecs.get("networkMode") != "awsvpc":
    errs.append("ECS: not a Fargate awsvpc task")
if not ecs.get("cpu") or not ecs.get("memory"):
    errs.append("ECS: no task cpu/memory")
for c in ecs["containerDefinitions"]:
    where = f"ECS container {c['name']}"
    if (c.get("healthCheck") or {}).get("command") != ["CMD", "/oauth2-api", "healthcheck"]:
        errs.append(f"{where}: healthCheck is not [CMD, /oauth2-api, healthcheck]")
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
    for e in c.get("environment", []) + c.get("secrets", []):
        if e["name"] not in known:
            errs.append(f"{where}: {e['name']} is not a server variable")
        if e["name"] in SECRET_NAMES and "value" in e:
            errs.append(f"{where}: {e['name']} in plain environment")
    if (c.get("stopTimeout") or 30) < 30:
        errs.append(f"{where}: stopTimeout under 30 s")

# Cloud Run
cr = yaml.safe_load(open(os.path.join(root, "deploy/cloudrun/service.yaml")))
if cr.get("apiVersion") != "serving.knative.dev/v1" or cr.get("kind") != "Service":
    errs.append("Cloud Run: not a serving.knative.dev/v1 Service")
for c in cr["spec"]["template"]["spec"]["containers"]:
    where = f"Cloud Run container {c['name']}"
    for p in ("startupProbe", "livenessProbe"):
        if ((c.get(p) or {}).get("httpGet") or {}).get("path") != "/health":
            errs.append(f"{where}: {p} is not an httpGet of /health")
    lim = (c.get("resources") or {}).get("limits") or {}
    if "memory" not in lim or "cpu" not in lim:
        errs.append(f"{where}: no cpu and memory limits")
    env = {e["name"]: e for e in c.get("env", [])}
    if "PORT" in env:
        errs.append(f"{where}: PORT is reserved on Cloud Run")
    for s in ("JWT_SECRET", "DATABASE_URL"):
        if not ((env.get(s) or {}).get("valueFrom") or {}).get("secretKeyRef"):
            errs.append(f"{where}: {s} not from a secretKeyRef")
    for n, e in env.items():
        if n not in known:
            errs.append(f"{where}: {n} is not a server variable")
        if n in SECRET_NAMES and "value" in e:
            errs.append(f"{where}: {n} as a plain value")

for e in errs:
    print("   -", e, file=sys.stderr)
n = sum(len(v) for v in docs.values())
if not errs:
    print(f"   ok: {n} Kubernetes objects ({', '.join(sorted(docs))}), ECS task, Cloud Run service")
sys.exit(1 if errs else 0)
PYEOF
# The systemd env example names only server variables too.
"$PY" - "$ROOT" <<'PYEOF' || fail "deploy/systemd/oauth2-api.env.example"
import os, re, sys
root = sys.argv[1]
known = set(re.findall(r'\b(?:str|int|dur|bool|list|getenv)\("([A-Z][A-Z0-9_]*)"', open(os.path.join(root, "config.go")).read()))
bad = [m.group(1) for line in open(os.path.join(root, "deploy/systemd/oauth2-api.env.example"))
       for m in [re.match(r"#?([A-Z][A-Z0-9_]*)=", line)] if m and m.group(1) not in known]
if bad:
    print("   - unknown variables:", bad, file=sys.stderr); sys.exit(1)
PYEOF

# ---- 8. Makefile -----------------------------------------------------------------------------
step "Makefile docker and release"
mk=$(make -s -n docker release VERSION=v9.9.9 2>&1) || fail "make -n docker release: $mk"
for want in "docker build -f Dockerfile.distroless --build-arg VERSION=v9.9.9" "GOARCH=\$arch" \
  'CGO_ENABLED=0' '-trimpath' '-ldflags="-s -w -X main.version=v9.9.9"' 'for arch in amd64 arm64' 'SHA256SUMS'; do
  printf '%s\n' "$mk" | grep -qF -- "$want" || fail "make docker/release lacks: $want"
done
ok "make -n docker release"

echo "== deploy: all checks passed in $(($(date +%s) - T0))s"
