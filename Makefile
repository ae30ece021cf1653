# strata build plumbing. Everything runs as root on Debian bookworm; see README.md.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Go lives at /usr/local/go on a fresh machine and is not always on PATH.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
endif

BIN := bin/strata

# Build tags, exported, so that the binaries the tests and benchmarks
# build are built the same way:
# - urfave_cli_no_docs: urfave/cli's markdown and man-page generators
#   (which strata does not use) cost every strata process 2 ms of package
#   init: 23.5 -> 21.5 ms for `strata --help`, 689 -> 531 page faults.
# - netgo, osusergo: Go's own DNS resolver and user lookups instead of
#   libc's, so that strata links statically and its start skips the
#   dynamic loader: `strata --help` 18.8 -> 17.1 ms (hyperfine, 200 runs).
#   (strata-snapshotter stays dynamic: containerd's plugin package needs
#   cgo.)
export GOFLAGS := $(strip $(GOFLAGS) -tags=urfave_cli_no_docs,netgo,osusergo)
BENCH_ARGS ?=

.PHONY: all build deps test demo bench bench-quick bench-union clean

all: build

build:
	go build -o $(BIN) ./cmd/strata
	go build -o bin/strata-snapshotter ./cmd/strata-snapshotter

deps:
	scripts/deps.sh

# gofmt and vet stop the run at once; the race detector (on the packages
# that need no mount, where it is cheap) runs even when go test failed, so
# one run shows every failure. Any failure makes the target fail.
test: deps
	@echo "== gofmt"
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l); \
	if [[ -n $$files ]]; then echo "gofmt: these files need formatting:"; echo "$$files"; exit 1; fi
	@echo "== go vet"
	go vet ./...
	@rc=0; \
	echo "== go test -count=1 -timeout 20m ./..."; \
	go test -count=1 -timeout 20m ./... || rc=$$?; \
	echo "== go test -race -count=1 ./layer/... ./lazy/... ./unionfs/... ./cache/... ./status/..."; \
	go test -race -count=1 ./layer/... ./lazy/... ./unionfs/... ./cache/... ./status/... || rc=$$?; \
	if ((rc)); then echo "== make test: FAILED (see above)"; else echo "== make test: all passed"; fi; \
	exit $$rc

demo: deps build
	scripts/demo.sh

# The benchmark suite: every scenario against its peers, over loopback and
# shaped links (bench/suite's doc); an hour or more, images built once
# (~10 min) in /var/cache/strata-bench. bench-quick is its few-minute form,
# which make test also runs once as a smoke test (tests/bench_smoke_test.go).
bench: deps
	go run ./bench/cmd/suite $(BENCH_ARGS)

bench-quick: deps
	go run ./bench/cmd/suite -quick -out bench/results/quick $(BENCH_ARGS)

bench-union: deps build
	go run ./bench/cmd/unionbench $(BENCH_ARGS)

clean:
	rm -rf bin
	go clean -testcache
