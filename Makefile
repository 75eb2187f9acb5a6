# ordo's make targets. The two that matter:
#   make test   - everything the tests need, then all tests (what CI runs)
#   make dev    - go run ./cmd/ordo dev
.PHONY: test eos dev build vet clean bench bench-quick

test:
	bash test/run.sh

dev:
	go run ./cmd/ordo dev

# Only the EOS chaos suite on real Kafka (EOS_EVENTS / EOS_SOAK=1 size it).
eos:
	bash test/eos/run.sh

# Benchmarks (bench/run.sh): rewrites docs/benchmarks.md. bench-quick is for
# iteration (50k events, 1 run, 10 s x 1 latency run per level) and writes to
# /tmp/ordo-bench-quick.md, never to the doc.
bench:
	bash bench/run.sh

bench-quick:
	BENCH_EVENTS=$${BENCH_EVENTS:-50000} BENCH_RUNS=$${BENCH_RUNS:-1} BENCH_LAT_SECONDS=$${BENCH_LAT_SECONDS:-10} BENCH_LAT_RUNS=$${BENCH_LAT_RUNS:-1} \
	BENCH_OUT=$${BENCH_OUT:-/tmp/ordo-bench-quick.md} bash bench/run.sh

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# The same flags as the Dockerfile (test/compose checks they agree).
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/ordo-dev/ordo/internal/app.Version=$(VERSION)" -o bin/ordo ./cmd/ordo

# Fails on unformatted files (gofmt -l alone exits 0) and on a go.mod/go.sum
# that `go mod tidy` would change.
vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go mod tidy -diff

clean:
	rm -rf bin .ordo
