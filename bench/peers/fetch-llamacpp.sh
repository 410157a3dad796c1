#!/usr/bin/env bash
# Prepares the llama.cpp peer for the GPU machine (which has no network): the llama.cpp sources
# vendored in the PyPI sdist of llama-cpp-python, trimmed to what llama-bench and llama-quantize need
# (no docs, models, tests, examples, server or non-CUDA GPU backends), as .gpu/llamacpp.tar.xz
# (about 4 MB; the sdist is 77 MB, over the device tool's 64 MiB carry).
# Usage (here): bash bench/peers/fetch-llamacpp.sh [VERSION]   (default 0.3.36)
set -euo pipefail
VERSION=${1:-0.3.36}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# PyPI's JSON API (pip would build the sdist's metadata, which needs its build backend).
python3 - "$VERSION" <<'PY'
import json, sys, urllib.parse, urllib.request
v = sys.argv[1]
api = f"https://pypi.org/pypi/llama-cpp-python/{v}/json"
try:
    meta = json.load(urllib.request.urlopen(api))
except Exception:
    api = "https://pypi.org/pypi/llama-cpp-python/json"
    meta = json.load(urllib.request.urlopen(api))
    urls = meta["releases"].get(v) or []
    meta = {"urls": urls}
sdist = next((u for u in meta["urls"] if u["packagetype"] == "sdist"), None)
if sdist is None:
    sys.exit(f"no sdist of llama-cpp-python {v} on PyPI")
urllib.request.urlretrieve(urllib.parse.urljoin(api, sdist["url"]), sdist["filename"])
PY
tar xzf llama_cpp_python-"$VERSION".tar.gz
mv llama_cpp_python-"$VERSION"/vendor/llama.cpp lc
cd lc
rm -rf docs models tests examples benches media tools/ui tools/server .github pocs skills
(cd ggml/src && rm -rf ggml-et ggml-metal ggml-hexagon ggml-sycl ggml-vulkan ggml-opencl ggml-cann ggml-musa ggml-webgpu ggml-zdnn)
cd ..
mkdir -p "$ROOT/.gpu"
tar cJf "$ROOT/.gpu/llamacpp.tar.xz" lc
echo "wrote $ROOT/.gpu/llamacpp.tar.xz ($(stat -c %s "$ROOT/.gpu/llamacpp.tar.xz") bytes, llama-cpp-python $VERSION)"
