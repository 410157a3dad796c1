#!/usr/bin/env bash
# CUTLASS's headers for bench/kernels/mixed_bench.cu: the `nvidia-cutlass` wheel from PyPI (it ships
# the C++ include trees), unpacked into ${CUTLASS_DIR:-/tmp/cutlass}. Prints the include directory.
set -euo pipefail
dir=${CUTLASS_DIR:-/tmp/cutlass}
if [ ! -f "$dir/cutlass_library/source/include/cutlass/cutlass.h" ]; then
  rm -rf "$dir.whl" && mkdir -p "$dir.whl" "$dir"
  pip download --quiet --no-deps nvidia-cutlass==4.2.0.0 -d "$dir.whl" >&2
  python3 -c "import zipfile, glob, sys; zipfile.ZipFile(glob.glob(sys.argv[1] + '/*.whl')[0]).extractall(sys.argv[2])" "$dir.whl" "$dir"
fi
echo "$dir/cutlass_library/source"
