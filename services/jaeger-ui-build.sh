#!/usr/bin/env bash
# Build the Jaeger UI (the React app Jaeger serves at /) from the vendored source of the
# release that matches $JAEGER_VERSION, once: the built assets are cached under
# $PREDLOG_CACHE, keyed by the archive's pinned checksum ($JAEGER_UI_SHA256), so a cached
# build serves a checkout that has no archive beside it. Used by up.sh and by `make demo`.
# Prints the assets directory (the one holding index.html).
#
# The Go module of Jaeger carries no UI assets: without this, its page at / is a placeholder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

archive="$JAEGER_UI_ARCHIVE"
assets="$PREDLOG_CACHE/jaeger-ui-${JAEGER_UI_SHA256:0:16}"
if [[ ! -f "$assets/index.html" ]]; then
    if [[ ! -f "$archive" ]]; then
        echo "[services] the Jaeger UI source is not at $archive (set JAEGER_UI_ARCHIVE)" >&2
        exit 1
    fi
    sum="$(sha256sum "$archive" | cut -d' ' -f1)"
    if [[ "$sum" != "$JAEGER_UI_SHA256" ]]; then
        echo "[services] $archive has sha256 $sum, not the pinned $JAEGER_UI_SHA256" >&2
        exit 1
    fi
    command -v npm >/dev/null || { echo "[services] npm is needed to build the Jaeger UI" >&2; exit 1; }
    printf '[services] %s\n' "building the Jaeger UI from $(basename "$archive") (about 1-2 min once)" >&2
    work="$PREDLOG_CACHE/jaeger-ui-src-${sum:0:16}"
    rm -rf "$work" && mkdir -p "$work"
    tar xzf "$archive" -C "$work" --strip-components=1
    # Its .npmrc asks for a newer Node than Debian's; the build does not need one.
    (cd "$work" && npm ci --engine-strict=false --no-audit --no-fund --loglevel=error >&2)
    (cd "$work/packages/jaeger-ui" && npm run build >&2)
    rm -rf "$assets.tmp" && cp -r "$work/packages/jaeger-ui/build" "$assets.tmp"
    mv "$assets.tmp" "$assets"
    rm -rf "$work"
fi
echo "$assets"
