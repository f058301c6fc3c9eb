#!/usr/bin/env bash
# kafka.sh start|stop: the broker alone, so the outage test can stop and restart it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
kafka_dir="$PREDLOG_SERVICES_DIR/kafka"
case "${1:-}" in
start)
    nohup java -Xmx768m -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$kafka_dir/server.properties" \
        >>"$kafka_dir/broker.log" 2>&1 &
    echo $! >"$kafka_dir/pid"
    ;;
stop)
    if [[ -f "$kafka_dir/pid" ]]; then
        pid="$(cat "$kafka_dir/pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$kafka_dir/pid"
    fi
    ;;
*) echo "usage: kafka.sh start|stop" >&2; exit 2 ;;
esac
