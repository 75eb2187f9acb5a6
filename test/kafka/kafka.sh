#!/usr/bin/env bash
# Run a real Apache Kafka (KRaft) broker or 3-node cluster on 127.0.0.1 from
# Maven Central jars, without Docker. Used by ordo's integration tests and CI.
#
#   test/kafka/kafka.sh fetch                      # download jars (skipped when cached)
#   test/kafka/kafka.sh start [--nodes 1|3] [--dir DIR]
#   test/kafka/kafka.sh status [--dir DIR]         # exit 0 only if every node answers metadata
#   test/kafka/kafka.sh env [--dir DIR]            # prints: export KAFKA_BROKERS=...
#   test/kafka/kafka.sh restart-node N [--dir DIR] # stop node N (SIGTERM) and start it again, data kept
#   test/kafka/kafka.sh stop-node N / start-node N # the two halves, for tests that run while a node is down
#   test/kafka/kafka.sh stop [--dir DIR]
#
# Environment:
#   ORDO_CACHE_DIR   cache root (default: test/kafka/.cache); jars go to
#                    $ORDO_CACHE_DIR/kafka-<version>/lib. CI can point it at ~/.cache/ordo.
#   KAFKA_RUN_DIR    run dir (configs, data, logs, pids); --dir wins (default: test/kafka/run)
#   KAFKA_PORT       first client port (default 9092). Node i (1-based) listens for
#                    clients on KAFKA_PORT+2(i-1) and for the controller on KAFKA_PORT+2(i-1)+1,
#                    i.e. 9092/9093 for one node, 9092..9097 for three.
#   KAFKA_HEAP_OPTS  default: -Xms256m -Xmx512m
#   KAFKA_JVM_OPTS   extra JVM flags appended to the defaults
#   KAFKA_READY_TIMEOUT  seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 20). Stopping a whole
#                        3-node cluster takes most of it: the last nodes lose the KRaft quorum.
#   KAFKA_EXTRA_PROPS    extra server properties, "k=v k2=v2" (override the defaults)
#   KAFKA_REQUEST_LOG_LEVEL  kafka.request.logger level (default WARN). DEBUG logs every completed
#                        request with its queue/local/remote/send times to server.log: a diagnostic
#                        (it slows the broker down under load).
#
# Security (one node only; test/security uses it). Unset, nothing changes:
#   KAFKA_SASL_SSL_PORT  also listen for clients with SASL over TLS on 127.0.0.1:PORT
#   KAFKA_TLS_DIR        its certificates, PEM: ca.pem (trust store: CA of client certificates)
#                        and broker.pem (unencrypted PKCS#8 key, then the certificate chain)
#   KAFKA_SSL_CLIENT_AUTH  none (default), requested or required (mTLS) on that listener
#   KAFKA_SASL_MECHANISMS  space separated, default SCRAM-SHA-512; OAUTHBEARER accepts
#                        unsecured (alg "none") JWTs: test only
#   KAFKA_SCRAM_USERS    "name=password ..." SCRAM-SHA-512 users written at format time
#   KAFKA_SUPER_USERS    "User:admin ...": turns on the KRaft StandardAuthorizer (ACLs,
#                        deny when no ACL matches) with these super users plus
#                        User:ANONYMOUS, the principal of the PLAINTEXT and controller
#                        listeners (so those stay unrestricted: test use only)
#
# `start` always formats fresh storage (a clean cluster per run); `restart-node`
# keeps the node's data. No Docker and no network other than 127.0.0.1 (and Maven
# Central for `fetch`) are used.
set -euo pipefail

KAFKA_VERSION=4.1.1
SCALA_VERSION=2.13
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${ORDO_CACHE_DIR:-$SCRIPT_DIR/.cache}
KAFKA_HOME=$CACHE_ROOT/kafka-$KAFKA_VERSION
LIB_DIR=$KAFKA_HOME/lib
RUN_DIR=${KAFKA_RUN_DIR:-$SCRIPT_DIR/run}
BASE_PORT=${KAFKA_PORT:-9092}
READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
REQUEST_LOG_LEVEL=${KAFKA_REQUEST_LOG_LEVEL:-WARN}

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

usage() {
	sed -n '2,42p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

# ---------------------------------------------------------------- fetch

jars_ok() {
	[[ -f $LIB_DIR/.complete ]] || return 1
	[[ -f $LIB_DIR/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar ]] || return 1
	return 0
}

check_lib() {
	local apis=("$LIB_DIR"/slf4j-api-*.jar) j
	[[ ${#apis[@]} == 1 && ${apis[0]} == "$LIB_DIR/slf4j-api-1.7.36.jar" ]] ||
		die "expected exactly slf4j-api-1.7.36.jar in $LIB_DIR, found: ${apis[*]##*/}"
	for j in "kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" "kafka-clients-${KAFKA_VERSION}.jar" \
		log4j-api-2.24.3.jar log4j-core-2.24.3.jar log4j-slf4j-impl-2.24.3.jar; do
		[[ -f $LIB_DIR/$j ]] || die "missing $LIB_DIR/$j"
	done
	for j in "$LIB_DIR"/{log4j-slf4j2-impl,slf4j-reload4j,slf4j-log4j12,logback-classic}-*.jar; do
		[[ -e $j ]] && die "a second SLF4J binding is in $LIB_DIR: ${j##*/}"
	done
	return 0
}

cmd_fetch() {
	if jars_ok; then
		log "jars already in $LIB_DIR (remove it to refetch)"
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
	local t0 tmp
	t0=$(now_ms)
	mkdir -p "$KAFKA_HOME"
	tmp=$(mktemp -d "$KAFKA_HOME/lib.tmp.XXXXXX")
	log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR ..."
	if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
		-DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/mvn.log" 2>&1; then
		tail -n 40 "$KAFKA_HOME/mvn.log" >&2
		rm -rf "$tmp"
		die "mvn dependency:copy-dependencies failed (log: $KAFKA_HOME/mvn.log)"
	fi
	rm -rf "$LIB_DIR"
	mv "$tmp" "$LIB_DIR"
	chmod 755 "$LIB_DIR"
	check_lib
	touch "$LIB_DIR/.complete"
	local jars=("$LIB_DIR"/*.jar)
	log "fetched ${#jars[@]} jars ($(du -sh "$LIB_DIR" | cut -f1)) in $(($(now_ms) - t0)) ms"
}

# ---------------------------------------------------------------- helpers

client_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$RUN_DIR/node$1"; }

# nodes recorded by the last start (0 if none)
recorded_nodes() {
	if [[ -f $RUN_DIR/cluster.env ]]; then
		# shellcheck disable=SC1091
		(source "$RUN_DIR/cluster.env" && echo "${NODES:-0}")
	else
		echo 0
	fi
}

load_cluster_env() {
	[[ -f $RUN_DIR/cluster.env ]] || die "no cluster in $RUN_DIR (run: $0 start)"
	# shellcheck disable=SC1091
	source "$RUN_DIR/cluster.env"
}

brokers_list() {
	local n=$1 i out=""
	for ((i = 1; i <= n; i++)); do
		out+="${out:+,}127.0.0.1:$(client_port "$i")"
	done
	echo "$out"
}

# pid of node N if its recorded process is alive and really is our broker
node_pid() {
	local pidf pid
	pidf=$(node_dir "$1")/kafka.pid
	[[ -f $pidf ]] || return 1
	pid=$(<"$pidf")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $(node_dir "$1")/server.properties" || return 1
	echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sends a Kafka Metadata v4 request (all topics) and prints the number of
# brokers in the answer; prints nothing if the broker does not answer.
#   request: size=19 | api_key=3 | api_version=4 | correlation_id=1 |
#            client_id="ordo" | topics=null(-1) | allow_auto_topic_creation=false
#   response: size | correlation_id | throttle_time_ms | brokers.length | ...
metadata_brokers() {
	local bytes
	# shellcheck disable=SC2016 # expanded by the inner bash
	bytes=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
		printf "\x00\x00\x00\x13\x00\x03\x00\x04\x00\x00\x00\x01\x00\x04ordo\xff\xff\xff\xff\x00" >&3
		head -c 16 <&3 | od -An -v -tu1
	' "$1" 2>/dev/null) || return 0
	# shellcheck disable=SC2206
	local b=($bytes)
	((${#b[@]} == 16)) || return 0
	# correlation id must echo 1
	((b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 1)) || return 0
	echo $(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]))
}

write_log4j() {
	local dir=$1
	cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by test/kafka/kafka.sh: INFO to server.log, WARN+ to the console (stdout.log) -->
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <ThresholdFilter level="WARN" onMatch="ACCEPT" onMismatch="DENY"/>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
    <RollingFile name="FILE" fileName="$dir/logs/server.log" filePattern="$dir/logs/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="$REQUEST_LOG_LEVEL"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO">
      <AppenderRef ref="STDOUT"/>
      <AppenderRef ref="FILE"/>
    </Root>
  </Loggers>
</Configuration>
EOF
}

write_properties() {
	local i=$1 n=$2 dir voters="" j rf min_isr
	dir=$(node_dir "$i")
	for ((j = 1; j <= n; j++)); do
		voters+="${voters:+,}$j@127.0.0.1:$(controller_port "$j")"
	done
	if ((n == 1)); then rf=1 min_isr=1; else rf=3 min_isr=2; fi
	cat >"$dir/server.properties" <<EOF
# generated by test/kafka/kafka.sh (node $i of $n)
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")${SASL_SSL_PORT:+,SASL_SSL://127.0.0.1:$SASL_SSL_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$i")${SASL_SSL_PORT:+,SASL_SSL://127.0.0.1:$SASL_SSL_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${SASL_SSL_PORT:+,SASL_SSL:SASL_SSL}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$min_isr
auto.create.topics.enable=false
delete.topic.enable=true

offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0

# keep a 2-core machine responsive
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
	write_security_properties "$dir/server.properties"
	# KAFKA_EXTRA_PROPS: extra or overriding server properties, "k=v" separated by
	# newlines or spaces (the last occurrence of a key wins in Java properties)
	if [[ -n ${KAFKA_EXTRA_PROPS:-} ]]; then
		printf '\n# KAFKA_EXTRA_PROPS\n' >>"$dir/server.properties"
		tr ' ' '\n' <<<"$KAFKA_EXTRA_PROPS" | sed '/^$/d' >>"$dir/server.properties"
	fi
}

# SASL_SSL listener and authorizer (see Security in the header)
write_security_properties() {
	local f=$1 m mechs=${KAFKA_SASL_MECHANISMS:-SCRAM-SHA-512} su
	if [[ -n $SASL_SSL_PORT ]]; then
		cat >>"$f" <<EOF

# SASL_SSL listener (KAFKA_SASL_SSL_PORT)
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.sasl_ssl.ssl.client.auth=${KAFKA_SSL_CLIENT_AUTH:-none}
sasl.enabled.mechanisms=${mechs// /,}
listener.name.sasl_ssl.sasl.enabled.mechanisms=${mechs// /,}
EOF
		for m in $mechs; do
			case $m in
			SCRAM-SHA-256 | SCRAM-SHA-512)
				echo "listener.name.sasl_ssl.${m,,}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" >>"$f" ;;
			OAUTHBEARER)
				# no server callback handler: Kafka's unsecured validator (unsigned JWTs)
				echo "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"broker\";" >>"$f" ;;
			*) die "KAFKA_SASL_MECHANISMS: $m is not supported here (use SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)" ;;
			esac
		done
	fi
	if [[ -n ${KAFKA_SUPER_USERS:-} ]]; then
		su="User:ANONYMOUS"
		for m in $KAFKA_SUPER_USERS; do su+=";$m"; done
		cat >>"$f" <<EOF

# ACLs (KAFKA_SUPER_USERS)
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=$su
EOF
	fi
}

# --add-scram arguments for the format tool, one per line (KAFKA_SCRAM_USERS)
scram_args() {
	local u
	for u in ${KAFKA_SCRAM_USERS:-}; do
		[[ $u == *=* ]] || die "KAFKA_SCRAM_USERS: an entry is not name=password"
		printf '%s\n' --add-scram "SCRAM-SHA-512=[name=${u%%=*},password=${u#*=}]"
	done
}

start_node() { # N: launch the JVM in its own session, pid written by the child itself
	local i=$1 dir
	dir=$(node_dir "$i")
	rm -f "$dir/kafka.pid"
	# shellcheck disable=SC2086
	# shellcheck disable=SC2016 # expanded by the inner bash
	setsid bash -c 'echo $$ >"$0/kafka.pid"; exec "$@"' "$dir" \
		java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.xml" \
		-Dkafka.logs.dir="$dir/logs" ${KAFKA_JVM_OPTS:-} \
		-cp "$LIB_DIR/*" kafka.Kafka "$dir/server.properties" \
		</dev/null >>"$dir/stdout.log" 2>&1 &
	local k
	for ((k = 0; k < 50; k++)); do
		[[ -s $dir/kafka.pid ]] && return 0
		sleep 0.1
	done
	die "node $i did not write its pid file"
}

show_log_tail() {
	local i=$1 dir
	dir=$(node_dir "$i")
	log "---- node $i: tail of $dir/logs/server.log"
	tail -n 40 "$dir/logs/server.log" >&2 2>/dev/null || true
	log "---- node $i: tail of $dir/stdout.log"
	tail -n 20 "$dir/stdout.log" >&2 2>/dev/null || true
}

# wait until every listed node's client port accepts connections and its
# Metadata answer lists `want` brokers
wait_ready() {
	local want=$1 t0 deadline i c pending
	shift
	t0=$(now_ms)
	deadline=$((t0 + READY_TIMEOUT * 1000))
	while :; do
		pending=()
		for i in "$@"; do
			if ! node_pid "$i" >/dev/null; then
				show_log_tail "$i"
				die "node $i exited during startup"
			fi
			c=""
			port_open "$(client_port "$i")" && c=$(metadata_brokers "$(client_port "$i")")
			[[ -n $c ]] && ((c >= want)) || pending+=("$i")
		done
		((${#pending[@]} == 0)) && break
		if (($(now_ms) > deadline)); then
			for i in "${pending[@]}"; do show_log_tail "$i"; done
			die "node(s) ${pending[*]} not ready after ${READY_TIMEOUT}s"
		fi
		sleep 0.2
	done
	echo $(($(now_ms) - t0))
}

# ---------------------------------------------------------------- commands

cmd_start() {
	local n=1
	while (($#)); do
		case $1 in
		--nodes) n=${2:?--nodes needs 1 or 3}; shift 2 ;;
		--nodes=*) n=${1#*=}; shift ;;
		*) die "start: unknown argument $1" ;;
		esac
	done
	[[ $n == 1 || $n == 3 ]] || die "--nodes must be 1 or 3"
	SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
	TLS_DIR=${KAFKA_TLS_DIR:-}
	if [[ -n $SASL_SSL_PORT ]]; then
		((n == 1)) || die "KAFKA_SASL_SSL_PORT needs --nodes 1"
		[[ -n $TLS_DIR && -f $TLS_DIR/ca.pem && -f $TLS_DIR/broker.pem ]] ||
			die "KAFKA_SASL_SSL_PORT needs KAFKA_TLS_DIR with ca.pem and broker.pem"
		TLS_DIR=$(cd "$TLS_DIR" && pwd)
		port_open "$SASL_SSL_PORT" && die "port $SASL_SSL_PORT (KAFKA_SASL_SSL_PORT) is already in use"
	fi
	command -v java >/dev/null || die "java not found"
	local i old
	old=$(recorded_nodes)
	for ((i = 1; i <= (old > n ? old : n); i++)); do
		if pid=$(node_pid "$i"); then
			die "node $i already running (pid $pid) in $RUN_DIR; run: $0 stop"
		fi
	done
	for ((i = 1; i <= n; i++)); do
		if port_open "$(client_port "$i")" || port_open "$(controller_port "$i")"; then
			die "port $(client_port "$i") or $(controller_port "$i") is already in use (set KAFKA_PORT)"
		fi
	done
	cmd_fetch

	local t0 cluster_id
	t0=$(now_ms)
	# remove only what an earlier start made (--dir may point at a shared folder)
	mkdir -p "$RUN_DIR"
	rm -rf "$RUN_DIR"/node[0-9] "$RUN_DIR/cluster.env"
	# a KRaft cluster id is a base64url (no padding) 16-byte UUID
	# A random KRaft cluster id (URL-safe base64 of 16 bytes). One starting with
	# '-' would be read as an option by the format tool: draw again.
	cluster_id=-
	while [[ $cluster_id == -* ]]; do
		cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	done
	cat >"$RUN_DIR/cluster.env" <<EOF
NODES=$n
BASE_PORT=$BASE_PORT
CLUSTER_ID=$cluster_id
KAFKA_BROKERS=$(brokers_list "$n")
SASL_SSL_PORT=$SASL_SSL_PORT
EOF
	local pids=()
	for ((i = 1; i <= n; i++)); do
		mkdir -p "$(node_dir "$i")/logs" "$(node_dir "$i")/data"
		write_properties "$i" "$n"
		write_log4j "$(node_dir "$i")"
		# format all nodes in parallel (one JVM start each)
		local scram=()
		mapfile -t scram < <(scram_args)
		java -Xmx256m -Dlog4j2.configurationFile="$(node_dir "$i")/log4j2.xml" -cp "$LIB_DIR/*" \
			kafka.tools.StorageTool format -t "$cluster_id" -c "$(node_dir "$i")/server.properties" "${scram[@]}" \
			>"$(node_dir "$i")/format.log" 2>&1 &
		pids+=($!)
	done
	for ((i = 1; i <= n; i++)); do
		wait "${pids[i - 1]}" || { cat "$(node_dir "$i")/format.log" >&2; die "format of node $i failed"; }
	done
	local t_fmt=$(($(now_ms) - t0))
	for ((i = 1; i <= n; i++)); do start_node "$i"; done
	local nodes=() waited
	for ((i = 1; i <= n; i++)); do nodes+=("$i"); done
	waited=$(wait_ready "$n" "${nodes[@]}")
	log "ready: $n node(s), cluster $cluster_id, brokers $(brokers_list "$n") (format ${t_fmt} ms, start->ready ${waited} ms, total $(($(now_ms) - t0)) ms)"
	log "run dir: $RUN_DIR  logs: $RUN_DIR/node*/logs/server.log"
	echo "export KAFKA_BROKERS=$(brokers_list "$n")"
}

stop_node() { # N
	local i=$1 pid k
	pid=$(node_pid "$i") || { rm -f "$(node_dir "$i")/kafka.pid"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((k = 0; k < STOP_TIMEOUT * 10; k++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "node $i (pid $pid) still alive after ${STOP_TIMEOUT}s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((k = 0; k < 50; k++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$(node_dir "$i")/kafka.pid"
	log "node $i stopped (pid $pid)"
}

cmd_stop() {
	local n i
	n=$(recorded_nodes)
	((n > 0)) || { log "nothing recorded in $RUN_DIR"; return 0; }
	# stop in reverse so the last controller leaving does not wait on the others forever
	for ((i = n; i >= 1; i--)); do stop_node "$i" & done
	wait
}

cmd_restart_node() {
	local i=${1:?restart-node needs a node number}
	load_cluster_env
	((i >= 1 && i <= NODES)) || die "node $i not in 1..$NODES"
	stop_node "$i"
	local t0
	t0=$(now_ms)
	start_node "$i"
	local waited
	waited=$(wait_ready "$NODES" "$i")
	log "node $i restarted, ready in ${waited} ms (total $(($(now_ms) - t0)) ms)"
}

cmd_stop_node() {
	local i=${1:?stop-node needs a node number}
	load_cluster_env
	((i >= 1 && i <= NODES)) || die "node $i not in 1..$NODES"
	stop_node "$i"
}

cmd_start_node() {
	local i=${1:?start-node needs a node number} pid waited
	load_cluster_env
	((i >= 1 && i <= NODES)) || die "node $i not in 1..$NODES"
	if pid=$(node_pid "$i"); then
		die "node $i already running (pid $pid)"
	fi
	start_node "$i"
	waited=$(wait_ready "$NODES" "$i")
	log "node $i started, ready in ${waited} ms"
}

cmd_status() {
	local n i pid c rc=0
	n=$(recorded_nodes)
	((n > 0)) || { echo "no cluster recorded in $RUN_DIR"; return 1; }
	load_cluster_env
	for ((i = 1; i <= n; i++)); do
		if pid=$(node_pid "$i"); then
			c=$(metadata_brokers "$(client_port "$i")")
			if [[ -n $c ]]; then
				echo "node $i: running pid $pid, 127.0.0.1:$(client_port "$i") answers metadata ($c broker(s) alive)"
			else
				echo "node $i: running pid $pid, 127.0.0.1:$(client_port "$i") NOT answering metadata"
				rc=1
			fi
		else
			echo "node $i: stopped"
			rc=1
		fi
	done
	return $rc
}

cmd_env() {
	local n
	n=$(recorded_nodes)
	if ((n > 0)); then
		load_cluster_env
	else
		n=1
	fi
	echo "export KAFKA_BROKERS=$(brokers_list "$n")"
}

main() {
	local cmd=${1:-}
	[[ -n $cmd ]] || usage
	shift
	local args=()
	while (($#)); do
		case $1 in
		--dir) RUN_DIR=$(mkdir -p "${2:?--dir needs a path}" && cd "$2" && pwd); shift 2 ;;
		--dir=*) RUN_DIR=$(mkdir -p "${1#*=}" && cd "${1#*=}" && pwd); shift ;;
		*) args+=("$1"); shift ;;
		esac
	done
	# a running cluster remembers its ports
	if [[ $cmd != start && -f $RUN_DIR/cluster.env ]]; then
		# shellcheck disable=SC1091
		BASE_PORT=$(source "$RUN_DIR/cluster.env" && echo "$BASE_PORT")
	fi
	case $cmd in
	fetch) cmd_fetch ;;
	start) cmd_start "${args[@]}" ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	env) cmd_env ;;
	restart-node) cmd_restart_node "${args[@]}" ;;
	stop-node) cmd_stop_node "${args[@]}" ;;
	start-node) cmd_start_node "${args[@]}" ;;
	-h | --help | help) usage 0 ;;
	*) log "unknown command: $cmd"; usage ;;
	esac
}

main "$@"
