#!/usr/bin/env bash
# Installs the foreign Kafka clients test/foreign uses (clients nobody on the
# ordo team wrote), from the lock files in this directory, into the cache:
#
#   python: confluent-kafka + AvroSerializer  -> $CACHE/foreign/venv
#           (pip --require-hashes -r python/requirements.txt, wheels only)
#   node:   kafkajs + @confluentinc/schemaregistry -> $CACHE/foreign/node
#           (npm ci from node/package-lock.json)
#
# CACHE is ${ORDO_CACHE_DIR:-$HOME/.cache/ordo}. Idempotent: each install is
# stamped with the sha256 of its lock file and skipped while that matches, so a
# cached run takes well under a second. Prints one line per toolchain saying
# what it did. Exit status: 0 both ready, 1 something could not be installed.
#
#   test/foreign/setup.sh [python|node ...]   # default: both
#   test/foreign/setup.sh --check             # only report, install nothing
#
# A missing python3 (with venv) or node/npm is installed from Debian when
# apt-get is available and we are root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ORDO_CACHE_DIR:-$HOME/.cache/ordo}/foreign
log() { printf '[foreign] %s\n' "$*" >&2; }

check=0
want=()
for a in "$@"; do
	case $a in
	--check) check=1 ;;
	python | node) want+=("$a") ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) log "unknown argument $a"; exit 2 ;;
	esac
done
((${#want[@]})) || want=(python node)

sha() { sha256sum "$@" | sha256sum | cut -c1-16; }

apt_install() {
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		log "need $* (not root or no apt-get: install it yourself)"
		return 1
	fi
	log "installing $* from Debian"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/dev/null
}

setup_python() {
	local venv=$CACHE/venv lock=$HERE/python/requirements.txt want_stamp
	want_stamp=$(sha "$lock")
	if [[ -x $venv/bin/python && $(cat "$venv/.ordo-lock" 2>/dev/null) == "$want_stamp" ]]; then
		log "python: ready ($venv, confluent-kafka $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("confluent-kafka"))'), cached)"
		return 0
	fi
	((check)) && { log "python: NOT installed ($venv)"; return 1; }
	local py=${FOREIGN_PYTHON:-python3}
	if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
		apt_install python3 python3-venv || return 1
		py=python3
	fi
	local t0=$SECONDS
	rm -rf "$venv"
	mkdir -p "$CACHE" || return 1
	"$py" -m venv "$venv" || return 1
	# wheels only: confluent-kafka's manylinux wheel bundles librdkafka, so no
	# compiler and no librdkafka-dev are needed.
	"$venv/bin/pip" install -q --disable-pip-version-check --no-input \
		--require-hashes --only-binary=:all: -r "$lock" || return 1
	"$venv/bin/python" -c 'from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer' || return 1
	echo "$want_stamp" >"$venv/.ordo-lock" || return 1
	log "python: installed $(grep -c '==' "$lock") pinned packages into $venv in $((SECONDS - t0))s"
}

setup_node() {
	local dir=$CACHE/node want_stamp
	want_stamp=$(sha "$HERE/node/package.json" "$HERE/node/package-lock.json")
	if [[ -d $dir/node_modules/kafkajs && $(cat "$dir/.ordo-lock" 2>/dev/null) == "$want_stamp" ]]; then
		log "node: ready ($dir, kafkajs $(node -p 'require(process.argv[1]).version' "$dir/node_modules/kafkajs/package.json"), cached)"
		return 0
	fi
	((check)) && { log "node: NOT installed ($dir)"; return 1; }
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		apt_install nodejs npm || return 1
	fi
	local t0=$SECONDS
	rm -rf "$dir"
	mkdir -p "$dir" || return 1
	cp "$HERE/node/package.json" "$HERE/node/package-lock.json" "$dir/" || return 1
	# --ignore-scripts: nothing here needs an install script (protobufjs'
	# postinstall only prints a version hint).
	(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) || return 1
	(cd "$dir" && node -e 'require("kafkajs"); require("@confluentinc/schemaregistry")') || return 1
	echo "$want_stamp" >"$dir/.ordo-lock" || return 1
	log "node: installed $(cd "$dir" && node -p 'Object.keys(require("./package-lock.json").packages).length - 1') locked packages into $dir in $((SECONDS - t0))s"
}

rc=0
for w in "${want[@]}"; do
	# (errexit is off inside a function called from a condition: each
	# step that matters ends in `|| return 1`)
	if ! case $w in python) setup_python ;; node) setup_node ;; esac then
		((check)) || log "$w: FAILED"
		rc=1
	fi
done
exit $rc
