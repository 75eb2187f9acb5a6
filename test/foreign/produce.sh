#!/usr/bin/env bash
# Produces OrderPlaced events with a foreign client (run setup.sh first):
#
#   test/foreign/produce.sh <python|node> --brokers B --registry URL \
#       --topic T --count N --prefix P
#
# Event seq (0..N-1) has envelope.id = P-<seq>, key = order id = correlation
# id = P-ord-<seq%50> and valid business data (see events.go for the exact
# values). The producer is idempotent; the script exits 0 after all N are
# acknowledged and prints `produced N`.
#
#   python: confluent-kafka AvroSerializer, ordo's current OrderPlaced schema
#   node:   kafkajs + @confluentinc/schemaregistry, a NEWER compatible version
#           of OrderPlaced (adds `channel` and `referrer`, both with defaults)
#           registered under the same subject <topic>-value
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ORDO_CACHE_DIR:-$HOME/.cache/ordo}/foreign
lang=${1:-}
shift || true
case $lang in
python)
	py=$CACHE/venv/bin/python
	[[ -x $py ]] || { echo "produce.sh: $py missing (run test/foreign/setup.sh)" >&2; exit 1; }
	exec "$py" "$HERE/python/produce.py" "$@"
	;;
node)
	[[ -d $CACHE/node/node_modules/kafkajs ]] || { echo "produce.sh: $CACHE/node/node_modules missing (run test/foreign/setup.sh)" >&2; exit 1; }
	NODE_PATH=$CACHE/node/node_modules exec node "$HERE/node/produce.js" "$@"
	;;
*)
	echo "usage: $0 <python|node> --brokers B --registry URL --topic T --count N --prefix P" >&2
	exit 2
	;;
esac
