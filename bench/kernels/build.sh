#!/usr/bin/env bash
# Builds the GEMV harness for the GPU machine (sm_90) into .gpu/gemv_bench, with the compiler's
# register and spill report in .gpu/gemv_bench.ptxas.txt, and the prefill harness (cuBLAS) into
# .gpu/prefill_bench; first it builds and runs bench/kernels/stream_walk.cu and ahead_walk.cu here
# (the streaming GEMVs' walk over their steps, and the walk and bulk copies of gemv_bench --ahead,
# checked on the CPU: a failure stops the build). Needs the CUDA toolchain of
# ../shared/cuda/setup-toolchain.sh (nvcc on PATH after `. /tmp/cuda-toolchain/env.sh`).
# `build.sh mixed` builds only .gpu/mixed_bench (CUTLASS's sm90 mixed-input GEMM against cuBLAS, int8,
# int4 and NF4 through nf4_convert.cuh, whose lookups it first checks on the CPU; its headers from PyPI
# by bench/kernels/fetch-cutlass.sh; about 3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
if [ "${1:-}" = mixed ]; then
  # the NF4 codebook lookups that mixed_bench's NF4 ways use, checked on the CPU first (a miss stops the build)
  g++ -O2 -std=c++17 bench/kernels/nf4_convert_check.cpp -o /tmp/nf4_convert_check && /tmp/nf4_convert_check
  cut=$(bash bench/kernels/fetch-cutlass.sh)
  nvcc -c -O3 -DNDEBUG -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -I"$cut/include" -I"$cut/tools/util/include" \
    bench/kernels/mixed_bench.cu -o /tmp/mixed_bench.o
  g++ /tmp/mixed_bench.o -o .gpu/mixed_bench -L"$CUDA_ROOT/lib64" -lcublas -lcudart \
    -Wl,-rpath-link,"$(dirname "$(readlink -f "$CUDA_ROOT/lib64/libcublas.so")")" -Wl,-rpath,'$ORIGIN'
  echo "built .gpu/mixed_bench ($(stat -c %s .gpu/mixed_bench) bytes)"
  exit 0
fi
# The walks first (seconds, where the harness takes minutes). The runtime library is linked, never
# called: it comes from the toolchain's pip wheel.
for walk in stream_walk ahead_walk; do
  nvcc -c -O2 -std=c++17 -arch=sm_90 bench/kernels/$walk.cu -o /tmp/$walk.o
  g++ /tmp/$walk.o -o /tmp/$walk -L"$CUDA_ROOT/lib64" -lcudart
  LD_LIBRARY_PATH="$(dirname "$(find /tmp/cuda-toolchain -name 'libcudart.so.1*' | head -1)"):${LD_LIBRARY_PATH:-}" /tmp/$walk
done
# Compiled with nvcc, linked with g++ against the shared runtime (the toolchain has no static one).
nvcc -c -O3 -std=c++17 -arch=sm_90 -lineinfo -Xptxas -v bench/kernels/gemv_bench.cu -o /tmp/gemv_bench.o \
  2> .gpu/gemv_bench.ptxas.txt || { cat .gpu/gemv_bench.ptxas.txt; exit 1; }
g++ /tmp/gemv_bench.o -o .gpu/gemv_bench -L"$CUDA_ROOT/lib64" -lcudart -Wl,-rpath,'$ORIGIN'
# the harness's SASS (hundreds of MB) stays here, out of .gpu/ (bench/kernels/ahead_sass.py reads it;
# bench/kernels/sass.sh reads minilab's); cuobjdump comes from the toolchain's venv once sass.sh ran
bin=$(/tmp/cuda-toolchain/venv/bin/python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'bin'))" 2>/dev/null || true)
PATH="$bin:$PATH" cuobjdump -sass /tmp/gemv_bench.o > /tmp/gemv_bench.sass.txt 2>/dev/null || true
grep -E "error|warning" .gpu/gemv_bench.ptxas.txt || true
echo "built .gpu/gemv_bench ($(stat -c %s .gpu/gemv_bench) bytes)"
nvcc -c -O3 -std=c++17 -arch=sm_90 bench/kernels/prefill_bench.cu -o /tmp/prefill_bench.o
g++ /tmp/prefill_bench.o -o .gpu/prefill_bench -L"$CUDA_ROOT/lib64" -lcublas -lcudart -Wl,-rpath-link,"$(dirname "$(readlink -f "$CUDA_ROOT/lib64/libcublas.so")")" -Wl,-rpath,'$ORIGIN'
echo "built .gpu/prefill_bench ($(stat -c %s .gpu/prefill_bench) bytes)"
