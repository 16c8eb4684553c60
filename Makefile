# servcraftd: `make run` starts everything on one machine, `make test` runs every test.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin
GO ?= go
STATE ?= $(CURDIR)/.servcraft
export SERVCRAFT_STATE := $(STATE)
ARCHIVE := $(STATE)/image/node20.tar
TOOLCHAIN := $(STATE)/toolchain
LISTEN ?= 127.0.0.1:8080
# staticcheck 2026.2.2, the first line that knows Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

# CONTAINERD=2: test, bench and run against containerd 2.x with runc 1.5, built from their Go
# modules (scripts/build-containerd2.sh) and started project-local; empty: the host's (Debian's).
CONTAINERD ?=
# The packages `make test` runs (CI runs the container suites again on containerd 2.x).
TEST_PKGS ?= ./...
ifeq ($(CONTAINERD),2)
export SERVCRAFT_CONTAINERD_FLAVOR := 2
export PATH := $(STATE)/containerd2/bin:$(PATH)
CONTAINERD_DEPS := containerd2
else ifneq ($(CONTAINERD),)
$(error CONTAINERD=$(CONTAINERD): want 2 (containerd 2.x with runc 1.5) or empty (the host's))
endif

.PHONY: test-cgroup2 containerd2 all deps deps-serve containerd image build run test unit-test race-test web lint config-doc check-config bench stop-containerd clean check-deploy install-service upgrade-service

all: build

deps-serve: ## install what serving needs when missing: containerd, runc, tini, busybox-static, e2fsprogs
	@scripts/deps.sh

deps: deps-serve ## also what the tests and the bench need: chromium (the page's test), etcd-server and haproxy (the cluster test)
	@scripts/deps-browser.sh
	@scripts/deps-cluster.sh

test-cgroup2: build image ## boot a Debian 12 guest on cgroup v2 and run the API checks and the runtime tests there (about an hour)
	@scripts/test-cgroup2.sh

containerd2: ## build containerd 2.x and runc 1.5 from their Go modules into .servcraft/containerd2 (cached)
	@scripts/build-containerd2.sh >/dev/null

image: deps-serve ## build the offline Node 20 image archive and the TypeScript toolchain (cached)
	@scripts/build-image.sh >/dev/null
	@scripts/build-toolchain.sh >/dev/null

WEB_SOURCES := $(wildcard web/src/*) web/build.mjs web/tsconfig.json

web: web/dist/index.html ## build the playground page (npm ci, esbuild) into web/dist when its sources changed

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "make web: npm not found on the host (Node.js 20 and npm build the page)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && node build.mjs

build: web ## build bin/servcraftd (with the page), bin/servcraft-spawner (each container's run starter) and bin/servcraft-image
	$(GO) build -o bin/servcraftd ./cmd/servcraftd
	CGO_ENABLED=0 $(GO) build -o bin/servcraft-spawner ./cmd/servcraft-spawner
	$(GO) build -o bin/servcraft-image ./cmd/servcraft-image
	$(GO) build -o bin/servcraft-bench ./cmd/servcraft-bench

# make run keeps the workspaces in a btrfs pool file of this size (allocated once): a session takes what it writes.
WORKSPACE_POOL ?= 8GiB

run: deps-serve $(CONTAINERD_DEPS) image build ## start containerd if needed and serve on $(LISTEN) (installs nothing only the tests use)
	@addr=$$(scripts/containerd-address.sh) && \
	exec bin/servcraftd --listen $(LISTEN) --state-dir $(STATE)/daemon \
		--containerd-address "$$addr" --fallback-archive $(ARCHIVE) --toolchain-dir $(TOOLCHAIN) \
		--workspace-pool $(WORKSPACE_POOL) $(ARGS)

test: deps $(CONTAINERD_DEPS) image web ## every test: unit and integration, against a real containerd
	@addr=$$(scripts/containerd-address.sh) && \
	SERVCRAFT_TEST_CONTAINERD="$$addr" SERVCRAFT_TEST_IMAGE_ARCHIVE=$(ARCHIVE) SERVCRAFT_TEST_TOOLCHAIN=$(TOOLCHAIN) \
		$(GO) test -count=1 -p 1 -timeout 20m $(TEST_PKGS)

bench: deps $(CONTAINERD_DEPS) image build ## benchmark a private daemon on loopback (BENCH_ARGS=--quick|--json)
	@scripts/bench.sh $(BENCH_ARGS)

unit-test: ## only the tests that need neither root nor containerd
	$(GO) test -count=1 -short ./...

# The runtime's -short coverage (no root, no containerd) may not fall below this.
RUNTIME_MIN_COVERAGE := 40

race-test: ## the -short tests under the race detector, and the runtime's -short coverage (fails below RUNTIME_MIN_COVERAGE%)
	$(GO) test -count=1 -race -short ./...
	@out="$$($(GO) test -count=1 -short -cover ./runtime/)" || { echo "$$out"; exit 1; }; echo "$$out"; \
	pct=$$(sed -n 's/.*coverage: \([0-9.]*\)% of statements.*/\1/p' <<<"$$out"); \
	if [ -z "$$pct" ]; then echo "race-test: no coverage figure for ./runtime/" >&2; exit 1; fi; \
	if awk -v p="$$pct" -v min=$(RUNTIME_MIN_COVERAGE) 'BEGIN { exit !(p < min) }'; then \
		echo "race-test: runtime -short coverage $$pct% is below $(RUNTIME_MIN_COVERAGE)%" >&2; exit 1; fi; \
	echo "runtime -short coverage: $$pct% (minimum $(RUNTIME_MIN_COVERAGE)%)"

lint: ## go vet, staticcheck, gofmt and go mod tidy: all must be clean
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@out="$$(gofmt -l $$($(GO) list -f '{{.Dir}}' ./...))"; \
	if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff

config-doc: ## write docs/configuration.md and deploy/servcraftd.env.example from the daemon's flags
	$(GO) run ./cmd/servcraftd config-doc >docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md
	$(GO) run ./cmd/servcraftd env-example >deploy/servcraftd.env.example.tmp
	mv deploy/servcraftd.env.example.tmp deploy/servcraftd.env.example

check-config: ## docs/configuration.md and deploy/servcraftd.env.example agree with the flags
	$(GO) test -count=1 -run 'TestConfigDocIsCurrent|TestEnvExampleIsCurrent|TestEnvExampleMatchesFlags|TestSettingGroupsHoldEveryFlagOnce' ./cmd/servcraftd/

stop-containerd: ## stop the project-local containerd
	@scripts/dev-containerd.sh stop

check-deploy: ## static checks of deploy/ and the Vagrantfile (no systemd or VM needed)
	@scripts/check-deploy.sh

install-service: build ## install as a systemd service on this host (root): deploy/install.sh
	deploy/install.sh --binary bin/servcraftd

upgrade-service: build ## replace the installed binary and restart; sessions survive
	deploy/upgrade.sh --binary bin/servcraftd

clean: ## remove built binaries (not the state folder)
	rm -rf bin
