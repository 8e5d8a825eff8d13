#!/usr/bin/env bash
# Builds Prometheus's promtool (it unit-tests alerting rules and evaluates PromQL over given
# series: `promtool test rules`) from the Go module proxy into a cache keyed by its version:
#   ${BALLAST_PROMTOOL_CACHE:-$HOME/.cache/ballast/promtool}/<version>/promtool
# A second run finds it there and exits at once; BALLAST_PROMTOOL_REBUILD=1 forces a rebuild.
# Cold: ~5 min on 2 cores, an 88 MB static binary. Prints the binary's path on stdout.
set -euo pipefail
version=${PROMTOOL_VERSION:-v0.316.0}   # github.com/prometheus/prometheus (Prometheus 3.x)
cache=${BALLAST_PROMTOOL_CACHE:-$HOME/.cache/ballast/promtool}
out=$cache/$version
if [ -z "${BALLAST_PROMTOOL_REBUILD:-}" ] && [ -x "$out/promtool" ]; then
  echo "$out/promtool"; exit 0
fi
command -v go >/dev/null || { echo "promtool/build.sh: Go is required to build promtool" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "promtool/build.sh: building promtool $version (cold: ~5 min on 2 cores)" >&2
start=$SECONDS
# Static, like the upstream release; the toolchain on PATH, never a download.
CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN=$tmp \
  go install -trimpath -ldflags "-s -w" "github.com/prometheus/prometheus/cmd/promtool@$version"
[ -x "$tmp/promtool" ] || { echo "promtool/build.sh: promtool missing after build" >&2; exit 1; }
mkdir -p "$out"
mv -f "$tmp/promtool" "$out/promtool"
echo "promtool/build.sh: built in $((SECONDS - start))s into $out" >&2
echo "$out/promtool"
