#!/usr/bin/env bash
# Start the integration-test services on loopback, without Docker:
#   Apache Kafka (KRaft, single node), jars resolved from Maven Central;
#   Jaeger v2 (in-memory storage, OTLP 4317/4318, query API and UI 16686), built from the Go
#   module proxy, its UI from the vendored source of the same release (jaeger-ui-build.sh).
# Downloads and builds are cached under ~/.cache/predlog-ci; state lives under $PREDLOG_SERVICES_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

mkdir -p "$PREDLOG_CACHE" "$PREDLOG_SERVICES_DIR"
log() { printf '[services] %s\n' "$*" >&2; }

wait_port() {  # host port seconds what
    local deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        if ((SECONDS > deadline)); then log "$4 did not open $1:$2 within $3 s"; return 1; fi
        sleep 0.5
    done
}

# Everything downloaded or built, once (a prepare.sh already running is waited for).
"$here/prepare.sh"

kafka_dir="$PREDLOG_SERVICES_DIR/kafka"
rm -rf "$kafka_dir" && mkdir -p "$kafka_dir"
cat >"$kafka_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$kafka_dir/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
cluster_id="$(java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$kafka_dir/server.properties" >"$kafka_dir/format.log" 2>&1
"$here/kafka.sh" start
wait_port 127.0.0.1 "$KAFKA_PORT" 90 "Kafka"
log "Kafka $KAFKA_VERSION up on 127.0.0.1:$KAFKA_PORT"

# --- PostgreSQL (Debian's packages; the Iceberg SQL catalog's multi-writer case) ---
pg_start=$SECONDS
"$here/postgres.sh" start
log "PostgreSQL up on 127.0.0.1:$POSTGRES_PORT in $((SECONDS - pg_start)) s"

# --- Jaeger ------------------------------------------------------------------------
JAEGER_UI_ASSETS="$("$here/jaeger-ui-build.sh")"  # cached by prepare.sh: prints its path
export JAEGER_UI_ASSETS
jaeger_dir="$PREDLOG_SERVICES_DIR/jaeger"
mkdir -p "$jaeger_dir"
nohup "$JAEGER_BIN" --config "$here/jaeger.yaml" >"$jaeger_dir/jaeger.log" 2>&1 &
echo $! >"$jaeger_dir/pid"
wait_port 127.0.0.1 16686 90 "Jaeger query"
wait_port 127.0.0.1 4318 30 "Jaeger OTLP/HTTP"
log "Jaeger $JAEGER_VERSION up: OTLP 127.0.0.1:4317/4318, query API and UI http://127.0.0.1:16686"
