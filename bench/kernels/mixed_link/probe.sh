#!/usr/bin/env bash
# The `cutlass` feature's host half on this machine, no GPU: builds src/kernels/cuda/cutlass/params.cu
# and driver.cpp as build.rs does (nvcc with CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL; the object's CUDA
# references renamed to driver.cpp's forwarders), checks that params.cu needs no CUDA symbol beyond
# the seven that driver.cpp stands in for, then links it with fake_driver.cpp alone (no CUDA library)
# and runs it: CUTLASS's host code must build each GEMM's Params from minilab's pointers and shapes,
# with the TMA descriptors the problem implies. Needs the toolchain of ../shared/cuda/setup-toolchain.sh
# and bench/kernels/fetch-cutlass.sh; about 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
: "${CUDA_ROOT:?run . /tmp/cuda-toolchain/env.sh first}"
cut=$(bash bench/kernels/fetch-cutlass.sh)
src=src/kernels/cuda/cutlass
out=${TMPDIR:-/tmp}/mixed_link
mkdir -p "$out"
nvcc -c -Xcompiler -fPIC -DCUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL=1 -O3 -DNDEBUG -std=c++17 -arch=sm_90a \
  --expt-relaxed-constexpr -I"$cut/include" -I"$cut/tools/util/include" "$src/params.cu" -o "$out/params.o"
# params.cu's undefined CUDA symbols (cu*, cuda*, __cuda*) must be the ones build.rs renames,
need=$(nm -u "$out/params.o" | awk '{print $2}' | grep -E '^(cu|__cuda)' | sort | tr '\n' ' ')
# build.rs's RENAMED list, read from it: the probe renames exactly what the build renames
want=$(sed -n '/^const RENAMED/,/^];/p' build.rs | grep -o '"[^"]*"' | tr -d '"' | sort | tr '\n' ' ')
echo "CUDA symbols the host half needs: $need"
[ "$need" = "$want" ] || { echo "link probe: FAIL: expected $want"; exit 1; }
renames=()
for name in $want; do renames+=("--redefine-sym=$name=minilab_$name"); done
objcopy "${renames[@]}" "$out/params.o"
g++ -c -O2 -fPIC "$src/driver.cpp" -o "$out/driver.o"
g++ -O1 bench/kernels/mixed_link/fake_driver.cpp "$out/params.o" "$out/driver.o" -o "$out/probe"
"$out/probe"
