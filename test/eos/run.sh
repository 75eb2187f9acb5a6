#!/usr/bin/env bash
# ordo's exactly-once suite alone, against real Apache Kafka (see test/eos/README.md):
#
#   test/eos/run.sh                                  # default size (~220k events, 24 kills)
#   EOS_EVENTS=1000000 EOS_SOAK=1 test/eos/run.sh    # soak: ≥1M events, ≥100 kills
#   EOS_THREE_BROKERS=1 test/eos/run.sh              # also the 3-broker node-kill scenario
#   test/eos/run.sh -run 'SIGKILL|Poison'            # extra args go to `go test`
#
# It starts a single broker (KAFKA_PORT, default 9592) in its own run dir, and a
# 3-node cluster (EOS_KAFKA3_PORT, default 9692) when EOS_THREE_BROKERS=1, runs
# `go test ./test/eos/` with KAFKA_BROKERS (and KAFKA_BROKERS_3) set, and stops
# every broker on exit, even on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ORDO_CACHE_DIR=${ORDO_CACHE_DIR:-$HOME/.cache/ordo}
KAFKA=test/kafka/kafka.sh
PORT1=${KAFKA_PORT:-9592}
PORT3=${EOS_KAFKA3_PORT:-9692}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eos-run.XXXXXX")
RUN1=$WORK/kafka1
RUN3=$WORK/kafka3
log() { printf '[eos] %s\n' "$*" >&2; }
t0=$(date +%s)

cleanup() {
	local rc=$?
	KAFKA_RUN_DIR=$RUN1 "$KAFKA" stop >/dev/null 2>&1 || true
	[[ -f $RUN3/cluster.env ]] && { KAFKA_RUN_DIR=$RUN3 "$KAFKA" stop >/dev/null 2>&1 || true; }
	if ((rc == 0)) && [[ -z ${KEEP_KAFKA_RUN:-} ]]; then
		rm -rf "$WORK"
	else
		log "broker logs kept in $WORK"
	fi
	log "done in $(($(date +%s) - t0))s (exit $rc)"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_cluster PORT DIR NODES, retried: kafka.sh's random cluster id sometimes
# starts with '-', which kafka-storage format rejects (1 run in 64).
start_cluster() {
	local i
	for i in 1 2 3; do
		KAFKA_PORT=$1 KAFKA_RUN_DIR=$2 "$KAFKA" start --nodes "$3" >/dev/null && return 0
		KAFKA_RUN_DIR=$2 "$KAFKA" stop >/dev/null 2>&1 || true
		log "kafka.sh start failed (attempt $i)"
	done
	return 1
}
"$KAFKA" fetch
log "starting a single broker on 127.0.0.1:$PORT1"
start_cluster "$PORT1" "$RUN1" 1
export KAFKA_BROKERS=127.0.0.1:$PORT1 EOS_KAFKA_RUN_DIR=$RUN1
if [[ ${EOS_THREE_BROKERS:-} == 1 ]]; then
	log "starting a 3-node cluster on 127.0.0.1:$PORT3.."
	start_cluster "$PORT3" "$RUN3" 3
	export KAFKA_BROKERS_3=127.0.0.1:$PORT3,127.0.0.1:$((PORT3 + 2)),127.0.0.1:$((PORT3 + 4))
	export EOS_KAFKA3_RUN_DIR=$RUN3
fi
# the suite's logs (replica logs of failed scenarios) go under $WORK too
export EOS_WORK_DIR=$WORK
log "go test ./test/eos/ (EOS_EVENTS=${EOS_EVENTS:-default} EOS_SOAK=${EOS_SOAK:-0} EOS_KILLS=${EOS_KILLS:-default})"
timeout=40m
[[ ${EOS_SOAK:-} == 1 ]] && timeout=180m
go test ./test/eos/ -count=1 -timeout "$timeout" -v "$@"
