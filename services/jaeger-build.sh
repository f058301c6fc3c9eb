#!/usr/bin/env bash
# Build Jaeger (cmd/jaeger, the v2 binary) from the Go module proxy into $JAEGER_BIN, once:
# a cached binary is kept. Used by up.sh and by `make demo`. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

if [[ ! -x "$JAEGER_BIN" ]]; then
    printf '[services] %s\n' "building Jaeger $JAEGER_VERSION (cmd/jaeger, the v2 binary) from the Go module proxy" >&2
    mkdir -p "$PREDLOG_CACHE" "$(dirname "$JAEGER_BIN")"
    # `go install ...@version` refuses modules whose go.mod has replace directives, as
    # Jaeger's does: download the module and build inside a writable copy instead.
    src="$(cd "$PREDLOG_CACHE" && go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    build="$PREDLOG_CACHE/jaeger-src-$JAEGER_VERSION"
    rm -rf "$build" && cp -r "$src" "$build" && chmod -R u+w "$build"
    (cd "$build" && go build -o "$JAEGER_BIN.tmp" ./cmd/jaeger)
    mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
    rm -rf "$build"
fi
echo "$JAEGER_BIN"
