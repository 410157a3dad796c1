#!/usr/bin/env bash
# Builds llama.cpp tools from the PyPI sdist of llama-cpp-python (which vendors llama.cpp: no git,
# no hub), native CPU, no GPU backends, and copies them to $PEER_DIR/bin. Cached: tools already in
# $PEER_DIR/bin are not rebuilt.
#
# Usage: PEER_DIR=target/peers bash bench/peers/llamacpp-build.sh VERSION TOOL...
#   e.g. bash bench/peers/llamacpp-build.sh 0.3.36 llama-quantize llama-perplexity
set -euo pipefail
VERSION=$1
shift
PEER_DIR=${PEER_DIR:-target/peers}
log() { echo "llamacpp-build.sh: $*" >&2; }
missing=()
for t in "$@"; do [[ -x $PEER_DIR/bin/$t ]] || missing+=("$t"); done
[[ ${#missing[@]} == 0 ]] && exit 0
mkdir -p "$PEER_DIR/bin"
src="$PEER_DIR/llama-cpp-python-$VERSION/vendor/llama.cpp"
command -v cmake >/dev/null || python3 -m pip install --quiet --user cmake
export PATH="$HOME/.local/bin:$PATH"
if [[ ! -d $src ]]; then
  log "downloading the llama-cpp-python $VERSION sdist from PyPI"
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$PEER_DIR"
  tar -xzf "$PEER_DIR/llama_cpp_python-$VERSION.tar.gz" -C "$PEER_DIR"
  mv "$PEER_DIR/llama_cpp_python-$VERSION" "$PEER_DIR/llama-cpp-python-$VERSION"
fi
log "building ${missing[*]} from llama-cpp-python $VERSION (takes a while on few cores)"
cmake -S "$src" -B "$PEER_DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$PEER_DIR/build" --target "${missing[@]}" -j "$(nproc)" >/dev/null
for t in "${missing[@]}"; do cp "$PEER_DIR/build/bin/$t" "$PEER_DIR/bin/"; done
