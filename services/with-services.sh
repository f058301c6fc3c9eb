#!/usr/bin/env bash
# Run a command with the services up; take them down afterwards, whatever happens.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
trap '"$here/down.sh"' EXIT
start=$SECONDS
"$here/up.sh" || exit 1
echo "[services] ready in $((SECONDS - start)) s" >&2
export PREDLOG_TEST_KAFKA="127.0.0.1:${KAFKA_PORT:-19092}"
export PREDLOG_TEST_JAEGER="http://127.0.0.1:16686"
export PREDLOG_TEST_POSTGRES="postgresql+psycopg2://postgres@127.0.0.1:${POSTGRES_PORT:-15432}/postgres"
export PREDLOG_TEST_OTLP="http://127.0.0.1:4318"
export PREDLOG_SPARK_JARS="$("$here/spark-jars.sh")"
"$@"
