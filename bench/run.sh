#!/usr/bin/env bash
# ordo's benchmark: builds the contenders, then bench/cmd/ordobench starts a
# real Kafka 4.1.1 (test/kafka/kafka.sh, port $KAFKA_PORT, default 9792) and
# the schema registry, preloads the events, runs every contender (incl. (f),
# the order saga of examples/orders/ordo.yaml), measures ordo's latency,
# profiles ordo, runs the in-memory BenchmarkPipeline (allocs and ns per event
# per stage, -count 3 medians, plus a -memprofile of the full stage), runs the
# state-restore step (internal/state BenchmarkRestore against the same broker:
# BENCH_RESTORE=1000000 instances by default, 0 skips it) and rewrites the
# whole of docs/benchmarks.md (hand-written notes come from bench/findings.md).
#
#   make bench                     # full: 300k events x 3 runs (BENCH_SLOW_RUNS=1 for fewer runs of (d)-(f)),
#                                  # latency 2 levels x 2 contenders x 3 runs; see the timing below
#   make bench-quick               # BENCH_EVENTS=50000 BENCH_RUNS=1, 10 s x 1 latency run per level,
#                                  # writes /tmp/ordo-bench-quick.md (never the doc)
#   BENCH_CONTENDERS=passthrough,ordo make bench-quick
#   BENCH_CONTENDERS=passthrough,ordo,saga BENCH_LATENCY=0 BENCH_PROFILE=0 BENCH_MICRO=0 make bench-quick
#       (saga vs stateless vs pass-through in one run, plus the 1M-instance restore)
#   KAFKA_PORT=9660 KAFKA_RUN_DIR=/tmp/bench-wt-kafka make bench-quick   (another broker port/run dir)
#   BENCH_CONTENDERS=passthrough,ordo,ordo-alt BENCH_ALT_LABEL="linger 5ms" make bench
#   BENCH_CONTENDERS=saga,saga-alt ...   (the same for the stateful saga)
#       (A/B: put another ordo build at $BENCH_BIN/ordo-alt, default bin/bench/ordo-alt; run.sh
#        rebuilds ordo from this tree but never touches ordo-alt)
#   BENCH_REPORT_FROM=/tmp/ordobench.X/results.json bin/bench/ordobench   # rewrite the doc only
#
# See bench/cmd/ordobench/main.go for every BENCH_* variable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ORDO_CACHE_DIR=${ORDO_CACHE_DIR:-$HOME/.cache/ordo}
export KAFKA_PORT=${KAFKA_PORT:-9792}
export KAFKA_RUN_DIR=${KAFKA_RUN_DIR:-/tmp/bench-kafka}
# The broker gets Kafka's own default heap (1 GiB, fixed), not the test
# suite's 256-512 MiB: after the preload its live set (~190 MB) sat above
# G1's marking threshold in a 330-380 MB heap, and it ran concurrent mark
# cycles back to back for ~30 s (170 of them, 12:14), which tripled its CPU
# per event in every contender's first runs. With 1 GiB: 3 cycles.
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}
BIN=${BENCH_BIN:-bin/bench}
export BENCH_BIN=$BIN
mkdir -p "$BIN"

log() { printf '[bench/run.sh] %s\n' "$*" >&2; }

log "building ordo, ordo-codec, passthrough, ordobench"
CGO_ENABLED=0 go build -trimpath -o "$BIN/ordo" ./cmd/ordo
CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./bench/cmd/ordo-codec ./bench/cmd/passthrough ./bench/cmd/ordobench
log "building the Watermill peer (bench/peers/watermill)"
(cd bench/peers/watermill && CGO_ENABLED=0 go build -trimpath -o "../../../$BIN/watermill-peer" .)
if [[ ${BENCH_CONTENDERS:-kstreams} == *kstreams* ]]; then
	log "building the Kafka Streams peer (bench/peers/kstreams, Maven)"
	command -v mvn >/dev/null || { log "mvn not found (apt-get install maven)"; exit 1; }
	(cd bench/peers/kstreams && mvn -q -B package -DskipTests)
	test/kafka/kafka.sh fetch
fi
exec "$BIN/ordobench"
