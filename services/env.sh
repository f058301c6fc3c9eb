# Shared settings of the integration-test services; sourced by the scripts here.
export PREDLOG_CACHE="${PREDLOG_CACHE:-$HOME/.cache/predlog-ci}"
export PREDLOG_SERVICES_DIR="${PREDLOG_SERVICES_DIR:-/tmp/predlog-services}"
export KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
export KAFKA_HOME="$PREDLOG_CACHE/kafka-$KAFKA_VERSION"
export KAFKA_PORT="${KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
export POSTGRES_PORT="${POSTGRES_PORT:-15432}"
# The v1.x tags of the Jaeger module carry the v2 binary in cmd/jaeger; the proxy
# resolves them, while the v2.y tags are not a Go module version.
export JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
export JAEGER_BIN="$PREDLOG_CACHE/bin/jaeger-$JAEGER_VERSION"
# The Jaeger UI's source at the same release, vendored beside the project (shared/vendor),
# and its checksum (shared/vendor/README.md); an archive with another is refused.
export JAEGER_UI_SHA256="${JAEGER_UI_SHA256:-94b74b0e1515305bc575649131649daa8e57780958a310e16f5aada1d8aad306}"
export JAEGER_UI_ARCHIVE="${JAEGER_UI_ARCHIVE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/vendor/jaeger-ui-$JAEGER_VERSION.tar.gz}"
