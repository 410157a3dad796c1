#!/usr/bin/env bash
# The compiler's view of minilab's decode GEMVs: builds src/kernels/cuda/linear.cu for sm_90 as
# build.rs's PTX would be assembled on the GPU, with ptxas' resource report, disassembles it, and
# writes bench/results/gpu-issue11/sass/{linear.ptxas.txt,table.md} (bench/kernels/sass_table.py:
# registers, spills, the hot loop's loads and their schedule, instructions a weight, static ceilings).
# Needs the CUDA toolchain of ../shared/cuda/setup-toolchain.sh; cuobjdump and the nvdisasm it runs
# come from PyPI (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm), installed into the toolchain's venv
# when missing. No GPU needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CUDA_ROOT:?run . /tmp/cuda-toolchain/env.sh first}"
venv=/tmp/cuda-toolchain/venv
bin=$("$venv/bin/python3" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'bin'))" 2>/dev/null || true)
if [ ! -x "$bin/cuobjdump" ] || [ ! -x "$bin/nvdisasm" ]; then
  "$venv/bin/pip" install -q 'nvidia-cuda-cuobjdump>=13,<14' 'nvidia-cuda-nvdisasm>=13,<14'
  bin=$("$venv/bin/python3" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'bin'))")
fi
out=bench/results/gpu-issue11/sass
mkdir -p "$out"
nvcc -cubin -O3 -arch=sm_90 -Xptxas -v src/kernels/cuda/linear.cu -o /tmp/linear.cubin 2>&1 | grep -v "Compile time" > "$out/linear.ptxas.txt"
# cuobjdump -sass runs nvdisasm, which it looks for on PATH
PATH="$bin:$PATH" "$bin/cuobjdump" -sass /tmp/linear.cubin > /tmp/linear.sass
{
  echo "# The decode GEMVs as compiled (sm_90, nvcc $(nvcc --version | grep -o 'release [0-9.]*'), $(git rev-parse --short HEAD))"
  echo
  python3 bench/kernels/sass_table.py /tmp/linear.sass "$out/linear.ptxas.txt" --filter '_(f16|bf16)_'
} > "$out/table.md"
cat "$out/table.md"
