# oauth2-api: make targets. `make run` and `make test` are all a newcomer needs.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# The same bytes from the same commit wherever it is built: no build paths, and
# no VCS stamp (Go adds one by default in a git checkout, never in a tarball or
# the Docker build context), so a laptop, CI and the image agree (SHA256SUMS).
BUILDFLAGS := -trimpath -buildvcs=false
GO ?= go
TEST_POSTGRES_URL ?=
TEST_MYSQL_URL ?=
FUZZTIME ?= 10s

.PHONY: deps run build build-postgres build-sqlite build-mysql lines test test-mysql test-short interop fuzz lint bench bench-load docker release clean

deps: ## download modules
	$(GO) mod download
	cd interop && $(GO) mod download
	cd mysql && $(GO) mod download

run: ## run the server on embedded SQLite (./oauth.db), debug mode
	$(GO) run .

build: ## static binary ./oauth2-api
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags="$(LDFLAGS)" -o oauth2-api .

build-postgres: ## lean static binary ./oauth2-api-postgres: PostgreSQL only, no SQLite module linked
	CGO_ENABLED=0 $(GO) build -tags nosqlite $(BUILDFLAGS) -ldflags="$(LDFLAGS)" -o oauth2-api-postgres .

build-sqlite: ## lean static binary ./oauth2-api-sqlite: SQLite only, no pgx linked
	CGO_ENABLED=0 $(GO) build -tags nopostgres $(BUILDFLAGS) -ldflags="$(LDFLAGS)" -o oauth2-api-sqlite .

build-mysql: ## static binary ./oauth2-api-mysql: oauth2-api with MySQL/MariaDB, built from the nested module mysql/ (its driver is not in the root module)
	cd mysql && CGO_ENABLED=0 $(GO) build -overlay=overlay.json $(BUILDFLAGS) -ldflags="$(LDFLAGS)" -o ../oauth2-api-mysql oauth2-api

lines: ## the line budget: non-test Go of the server, mysql/ included, without blank and comment lines (interop/, e2e/, bench/ and test-support files excluded)
	@find . -name '*.go' ! -name '*_test.go' ! -path './interop/*' ! -path './e2e/*' ! -path './bench/*' \
		! -path './store/storetest/*' ! -path './auth/smtptest/*' ! -path './mysql/_overlay/mysql_storetest.go' -print0 | xargs -0 cat | \
		grep -v -E '^[[:space:]]*$$' | grep -v -E '^[[:space:]]*//' | wc -l

test: ## unit, handler and store tests (PostgreSQL too when TEST_POSTGRES_URL is set), with the race detector
	$(GO) test -race -count=1 -timeout 30m ./...

test-mysql: ## the store, handler and shared-database e2e suites on MySQL/MariaDB (TEST_MYSQL_URL), and mysql/'s own tests
	TEST_MYSQL_URL=$(TEST_MYSQL_URL) ./mysql/test.sh

interop: build ## interop and browser tests against the real binary (needs chromium for the browser test)
	cd interop && OAUTH2_API_BIN=$(CURDIR)/oauth2-api $(GO) test -count=1 ./...

fuzz: ## run every fuzz target for FUZZTIME each
	./scripts/fuzz-all.sh $(FUZZTIME)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed" && exit 1)
	$(GO) vet ./...
	cd interop && $(GO) vet ./...
	cd mysql && $(GO) vet ./... && $(GO) vet -overlay=overlay.json oauth2-api

bench: ## Go micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-load: ## load harness: the real binary under wrk, against a bare net/http floor (see BENCHMARKS.md)
	$(GO) run ./bench/load $(BENCH_FLAGS)

docker: ## container image $(IMAGE):$(VERSION) (default oauth2-api) from Dockerfile.distroless
	docker build -f Dockerfile.distroless --build-arg VERSION=$(VERSION) \
		-t $(if $(IMAGE),$(IMAGE),oauth2-api):$(VERSION) .

release: ## static binaries for linux/amd64 and linux/arm64 in dist/, each with a CycloneDX SBOM (.cdx.json), and SHA256SUMS of all
	rm -rf dist && mkdir -p dist
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build $(BUILDFLAGS) -ldflags="$(LDFLAGS)" \
			-o dist/oauth2-api-$(VERSION)-linux-$$arch . || exit 1; \
		GO=$(GO) ./scripts/sbom.sh dist/oauth2-api-$(VERSION)-linux-$$arch $(VERSION) \
			> dist/oauth2-api-$(VERSION)-linux-$$arch.cdx.json || exit 1; \
	done
	cd dist && sha256sum oauth2-api-$(VERSION)-linux-* > SHA256SUMS

clean:
	rm -f oauth2-api oauth2-api-postgres oauth2-api-sqlite oauth2-api-mysql
	rm -rf dist
