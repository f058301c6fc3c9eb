#!/usr/bin/env bash
# Download and build everything the integration-test services need, once, into
# ~/.cache/predlog-ci (and Debian's packages): kcat, Chromium and PostgreSQL, Kafka's and
# Spark's jars from Maven Central, Jaeger from the Go module proxy and its UI.
# up.sh runs it before starting anything. `make test` also starts it in the background at
# once, so that on a fresh machine the first build overlaps the install, lint and type
# check. One lock: a run that finds another under way waits for it, then finds it done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

mkdir -p "$PREDLOG_CACHE"
log() { printf '[services] %s\n' "$*" >&2; }
exec 9>"$PREDLOG_CACHE/.prepare.lock"
if ! flock -w 1800 9; then
    log "another services/prepare.sh held $PREDLOG_CACHE/.prepare.lock for 30 minutes"
    exit 1
fi

# The steps run without the lock's descriptor: a daemon a package starts must not hold it.
{

# --- kcat, a Kafka client we did not write (Debian package) --------------------
if ! command -v kcat >/dev/null; then
    log "installing kcat"
    (apt-get install -y -q kcat >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q kcat >/dev/null)
fi

# --- Chromium, to render the HTML reports in tests (Debian package) -----------------
if ! command -v chromium >/dev/null; then
    log "installing chromium"
    (apt-get install -y -q chromium >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
fi

# --- Kafka ------------------------------------------------------------------------
if [[ ! -f "$KAFKA_HOME/.complete" ]]; then
    log "resolving Apache Kafka $KAFKA_VERSION from Maven Central"
    rm -rf "$KAFKA_HOME"
    mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
    touch "$KAFKA_HOME/.complete"
fi

# --- Spark's jars (tests/test_spark.py), PostgreSQL, Jaeger and its UI --------------
"$here/spark-jars.sh" >/dev/null
"$here/postgres.sh" install
"$here/jaeger-build.sh" >/dev/null
"$here/jaeger-ui-build.sh" >/dev/null
} 9>&-
