# Production image for oauth2-api: a static Go binary on distroless.
#
#   make docker                      # = docker build -f Dockerfile.distroless --build-arg VERSION=... .
#   docker buildx build -f Dockerfile.distroless --platform linux/amd64,linux/arm64 \
#       --build-arg VERSION=v1.2.3 -t registry.example.com/oauth2-api:v1.2.3 --push .
#   docker build -f Dockerfile.distroless --build-arg DATABASE=mysql .   # oauth2-api-mysql, as /oauth2-api
#
# The build context is the repository root. It needs go.mod, go.sum and the Go
# sources of the main module (with their embedded files: auth/pages,
# store/migrations): .dockerignore is an allow-list of exactly those, so
# nothing else (interop/, deploy/, .git, a local oauth.db, keys) is sent. scripts/check-deploy.sh rebuilds the binary from exactly
# the files .dockerignore lets through, so a missing package fails there.

# Base images are pinned by digest, with the tag beside it for people: the
# digest (of the multi-platform index) is what is pulled, so a rebuild gets
# the same bytes whatever the tag points to today. How to bump both:
# deploy/README.md, "Pinned images". Go must be at least go.mod's `go` line
# (the official images set GOTOOLCHAIN=local, so an older Go stops instead of
# downloading a newer one; scripts/check-deploy.sh compares them).

# ---- build: runs on the builder's own platform and cross-compiles ---------
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
# TARGETOS/TARGETARCH are set by BuildKit (the default builder since Docker 23,
# and needed anyway for the cache mounts below).
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# DATABASE=mysql builds oauth2-api-mysql (MySQL and MariaDB too) from the
# nested module mysql/, as `make build-mysql` does; empty, oauth2-api.
ARG DATABASE=
WORKDIR /src

# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
COPY mysql/go.mod mysql/go.sum mysql/
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download && go mod verify && \
    if [ "$DATABASE" = mysql ]; then cd mysql && go mod download; fi

COPY . .
# CGO_ENABLED=0: pure Go (modernc.org/sqlite, pgx), no libc, so the result
# runs on distroless/static. -trimpath drops build paths, -buildvcs=false
# the VCS stamp (the bytes of `make build`: see the Makefile); -s -w drops symbol
# and DWARF tables; the version is stamped into main.version.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    if [ "$DATABASE" = mysql ]; then cd mysql && set -- -overlay=overlay.json oauth2-api; else set -- .; fi && \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/oauth2-api "$@"

# ---- runtime ---------------------------------------------------------------
# distroless/static (Debian 12), :nonroot tag: user 65532 "nonroot", no shell,
# no package manager. It already carries /etc/ssl/certs/ca-certificates.crt
# (for PostgreSQL TLS and SMTP) and /usr/share/zoneinfo, /etc/passwd with the
# nonroot user, and /tmp: so copying only the binary is enough.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
LABEL org.opencontainers.image.title="oauth2-api" \
      org.opencontainers.image.description="Hardened OAuth 2.0 authorization server and OpenID Connect provider" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /out/oauth2-api /oauth2-api

# The mode is not baked in: deployments set APP_MODE=release (or the guide's
# GIN_MODE=release), and `docker run -e GIN_MODE=debug` keeps working for a
# try-out (APP_MODE, if set here, would refuse any other GIN_MODE). In release
# mode the server refuses to start without a JWT_SECRET of 32+ bytes and an
# https ISSUER; pass secrets at run time, never in the image.
ENV PORT=8080
# The nonroot user's home (mode 0700, owned by 65532): the default SQLite file
# oauth.db of a debug try-out lands here. Production uses PostgreSQL and can
# run with a read-only root filesystem: the server writes no files.
WORKDIR /home/nonroot

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080

# Exec form: distroless has no shell and no wget/curl; the binary's own
# `healthcheck --live` GETs http://127.0.0.1:$PORT/livez and exits 0 on 200,
# 1 otherwise. /livez, not /health: Swarm and autoheal replace an unhealthy
# container, and a database outage must not replace them all (/health pings
# the database). The start period covers the server's wait for its database
# (up to 2 minutes) and its migrations before it listens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=200s --retries=3 \
    CMD ["/oauth2-api", "healthcheck", "--live"]

# The server stops gracefully on SIGTERM (up to 25 s for in-flight requests):
# give `docker stop` at least 30 s (`docker stop -t 30`, compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/oauth2-api"]
CMD ["serve"]
