#!/usr/bin/env bash
# Installs what the observability tests need and prints export lines:
#
#   eval "$(test/observability/setup.sh)"
#
#   - Jaeger v2 (v1.76.0), built from tools/jaeger (a separate Go module that
#     pins it with `go get -tool`; `go install` cannot build it because of its
#     replace directives) into $ORDO_CACHE_DIR/jaeger/ unless already there.
#     The build takes ~5 minutes on 2 cores; later runs reuse the binary.
#   - Prometheus and promtool, from Debian's `prometheus` package.
#
# Idempotent. Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
JAEGER_VERSION=v1.76.0
CACHE=${ORDO_CACHE_DIR:-$HOME/.cache/ordo}
log() { printf '[observability] %s\n' "$*" >&2; }

jaeger=$CACHE/jaeger/jaeger-$JAEGER_VERSION
if [[ ! -x $jaeger ]]; then
	log "building Jaeger $JAEGER_VERSION into $jaeger (takes a few minutes)"
	mkdir -p "$CACHE/jaeger"
	t0=$(date +%s)
	(cd "$ROOT/tools/jaeger" && go build -trimpath -o "$jaeger.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger)
	mv "$jaeger.tmp.$$" "$jaeger"
	log "built Jaeger in $(($(date +%s) - t0))s"
fi

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
	log "installing prometheus (prometheus + promtool) from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	# Debian starts the service on install; the tests run their own.
	if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
		systemctl stop prometheus || true
	fi
fi

echo "export JAEGER_BIN=$jaeger"
echo "export JAEGER_CONFIG=$ROOT/test/observability/jaeger.yaml"
echo "export PROMETHEUS_BIN=$(command -v prometheus)"
echo "export PROMTOOL_BIN=$(command -v promtool)"
