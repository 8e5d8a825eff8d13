#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager) from
# Go modules, pinned by hack/cluster/go.mod and go.sum, into a cache directory keyed
# by the Kubernetes version:
#   ${BALLAST_CLUSTER_CACHE:-$HOME/.cache/ballast/cluster}/<version>/
# A second run finds the binaries there and exits at once; BALLAST_CLUSTER_REBUILD=1
# forces a rebuild. Prints the directory on stdout, everything else goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in $here/go.mod" >&2; exit 1; }
cache=${BALLAST_CLUSTER_CACHE:-$HOME/.cache/ballast/cluster}
out=$cache/$version
bins=(etcd kube-apiserver kube-controller-manager)

have_all() {
  local b
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if [ -z "${BALLAST_CLUSTER_REBUILD:-}" ] && have_all; then
  echo "$out"; exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane" >&2; exit 1; }
major=${version#v}; major=${major%%.*}
minor=${version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building ${bins[*]} for Kubernetes $version (cold: ~11 min on 2 cores)" >&2
start=$SECONDS
(
  cd "$here"
  # Static binaries like the upstream release; the toolchain on PATH, never a download.
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags "$ldflags" -o "$tmp/" ./cmd/...
)
for b in "${bins[@]}"; do [ -x "$tmp/$b" ] || { echo "build.sh: $b missing after build" >&2; exit 1; }; done
mkdir -p "$out"
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
echo "build.sh: built in $((SECONDS - start))s into $out" >&2
echo "$out"
