#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the program inside the ghcr.io/ggml-org/llama.cpp:server
# image the llamacpp engine runs) from the llama.cpp sources vendored by the llama-cpp-python
# sdist on PyPI, CPU only, into a cache directory keyed by the sdist version:
#   ${BALLAST_LLAMA_CACHE:-$HOME/.cache/ballast/llama}/<llama-cpp-python version>/bin/llama-server
# A second run finds the binary there and exits at once; BALLAST_LLAMA_REBUILD=1 forces a
# rebuild. Prints the binary's path on stdout, everything else goes to stderr.
#
# Pinned: llama-cpp-python 0.3.16, whose CHANGELOG says it vendors ggml-org/llama.cpp@4227c9be4
# (August 2025). The sdist carries no git history, so llama.cpp's build number (the `bNNNN` of
# its release tags) cannot be computed here: `llama-server --version` prints the commit we pass
# in and build number 0. See docs/verification.md for how this relates to the image tag.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=0.3.16
sha256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
commit=4227c9be4
cache=${BALLAST_LLAMA_CACHE:-$HOME/.cache/ballast/llama}
out=$cache/$version
bin=$out/bin/llama-server
py=${PYTHON:-python3}

if [ -z "${BALLAST_LLAMA_REBUILD:-}" ] && [ -x "$bin" ]; then
  echo "$bin"; exit 0
fi

for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "llama/build.sh: $tool is required to build llama-server" >&2; exit 1; }
done
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
jobs=${BALLAST_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "llama/build.sh: fetching the llama-cpp-python $version sdist from PyPI (~50 MB)" >&2
# --no-binary for this package only: pip prepares the sdist's metadata in an isolated build
# environment, and `:all:` would build every build dependency from source too (minutes).
"$py" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$version" >&2
sdist=$tmp/llama_cpp_python-$version.tar.gz
echo "$sha256  $sdist" | sha256sum -c --quiet - >&2 || { echo "llama/build.sh: sdist checksum mismatch" >&2; exit 1; }
tar -xzf "$sdist" -C "$tmp"
src=$tmp/llama_cpp_python-$version/vendor/llama.cpp
[ -f "$src/tools/server/server.cpp" ] || { echo "llama/build.sh: no tools/server in the sdist's vendor/llama.cpp" >&2; exit 1; }

echo "llama/build.sh: building llama-server (llama.cpp@$commit, CPU, $jobs jobs; cold: 3.5-4 min on 2 cores)" >&2
# Only what llama-server needs: no tests, examples, other tools, curl (models are local files)
# or shared libraries (one self-contained binary to cache).
cmake -S "$src" -B "$tmp/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_COMMIT="$commit" \
  -DGGML_NATIVE=ON \
  -DGGML_CCACHE=OFF >&2
cmake --build "$tmp/build" --target llama-server -j "$jobs" >&2
built=$tmp/build/bin/llama-server
[ -x "$built" ] || { echo "llama/build.sh: llama-server missing after build" >&2; exit 1; }
"$built" --version >&2 || { echo "llama/build.sh: the built llama-server does not run" >&2; exit 1; }
mkdir -p "$out/bin"
mv -f "$built" "$bin"
echo "llama/build.sh: built in $((SECONDS - start))s into $out" >&2
echo "$bin"
