#!/usr/bin/env bash
# Can minilab drive CUTLASS's sm90 mixed-input GEMM without linking the CUDA runtime? Builds the host
# half (params.cu) as an object and the device half (kernel.cu) as a cubin, checks that the host half
# needs no CUDA symbol beyond those a caller can provide (fake_driver.cpp lists them), then links it
# with fake_driver.cpp alone (no CUDA library) and runs it on this machine, no GPU: CUTLASS's host code
# must build the Params from minilab's pointers and shapes, with the TMA descriptors the problem implies.
# Needs the toolchain of ../shared/cuda/setup-toolchain.sh and bench/kernels/fetch-cutlass.sh; about
# 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
: "${CUDA_ROOT:?run . /tmp/cuda-toolchain/env.sh first}"
cut=$(bash ../fetch-cutlass.sh)
out=${TMPDIR:-/tmp}/mixed_link
mkdir -p "$out"
flags=(-O3 -DNDEBUG -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -DCUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL=1
  -I"$cut/include" -I"$cut/tools/util/include")
nvcc -c "${flags[@]}" params.cu -o "$out/params.o"
nvcc -cubin "${flags[@]}" -Xptxas -v kernel.cu -o "$out/kernel.cubin" 2> "$out/kernel.ptxas.txt"
grep -E "Used|spill|C7510" "$out/kernel.ptxas.txt" || true
# the host half's undefined CUDA symbols (cu*, cuda*, __cuda*) must be those fake_driver.cpp defines
need=$(nm -u "$out/params.o" | awk '{print $2}' | grep -E '^(cu|__cuda)' | sort | tr '\n' ' ')
want="__cudaRegisterFatBinary __cudaRegisterFatBinaryEnd __cudaRegisterVar __cudaUnregisterFatBinary cuTensorMapEncodeTiled cudaDeviceGetAttribute cudaGetDevice "
echo "CUDA symbols the host half needs: $need"
[ "$need" = "$want" ] || { echo "link probe: FAIL: expected $want"; exit 1; }
g++ -O1 fake_driver.cpp "$out/params.o" -o "$out/probe"
echo "kernel cubin: $(stat -c %s "$out/kernel.cubin") bytes"
"$out/probe"
