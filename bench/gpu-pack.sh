#!/usr/bin/env bash
# Packs what bench/gpu-issue11.sh needs into .gpu/ (gitignored), here on the development machine:
#   .gpu/minilab.xz, .gpu/device_check.xz   this checkout's CUDA build (release, stripped, xz), with the
#                                            `cutlass` feature (CUTLASS's headers fetched from PyPI);
#   .gpu/minilab-base.xz                    the CUDA build of BASE (default c51b1d4, the last build
#                                            measured on the H200), from a git worktree in /tmp, under
#                                            a profile of its own and checked to embed its own kernels;
#   .gpu/gemv_bench, .gpu/prefill_bench     the standalone harnesses (bench/kernels/build.sh).
# A device call carries at most 64 MiB: name the files a mode needs in `carry`, not the folder.
# Needs the CUDA toolchain of ../shared/cuda/setup-toolchain.sh. Usage: BASE=REV bash bench/gpu-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-c51b1d4}
[ -f /tmp/cuda-toolchain/env.sh ] || { echo "no CUDA toolchain: bash ../shared/cuda/setup-toolchain.sh" >&2; exit 1; }
. /tmp/cuda-toolchain/env.sh
mkdir -p .gpu
pack() {  # pack BINARY NAME: stripped and xz-compressed into .gpu/NAME.xz
  cp "$1" ".gpu/$2" && strip ".gpu/$2" && xz -T2 -6 -f ".gpu/$2"
  echo "packed .gpu/$2.xz ($(stat -c %s ".gpu/$2.xz") bytes)"
}
CUTLASS_DIR=$(bash bench/kernels/fetch-cutlass.sh) CARGO_TARGET_DIR=target-cuda \
  cargo build --release --locked --features cutlass --bin minilab --example device_check
pack target-cuda/release/minilab minilab
pack target-cuda/release/examples/device_check device_check
# The base build shares this checkout's target folder under a profile of its own. With the release
# profile it shared the build script's output folder too (cargo gives a path package the same one in
# any checkout), and the script reruns only when its inputs are newer than its last run: the base
# then embedded this checkout's PTX (seen 2026-12-05, by the check below). The first base build
# under the profile compiles candle's kernels once more (10-30 minutes).
wt=/tmp/minilab-base-$BASE
[ -d "$wt" ] || git worktree add --detach "$wt" "$BASE"
(cd "$wt" && CARGO_TARGET_DIR="$OLDPWD/target-cuda" cargo build --config 'profile.base.inherits="release"' \
  --profile base --locked --features cuda --bin minilab)
pack target-cuda/base/minilab minilab-base
# The base must carry its own kernels: the entries of the PTX its binary embeds must be those of
# its own linear.cu.
nvcc --ptx -w -O3 -arch=sm_90 "$wt/src/kernels/cuda/linear.cu" -o /tmp/minilab-base-linear.ptx
python3 - <<'PY'
import lzma, re
entries = lambda text: set(re.findall(rb"\.entry (\w+)\(", text))
embedded = entries(lzma.open(".gpu/minilab-base.xz").read())
own = entries(open("/tmp/minilab-base-linear.ptx", "rb").read())
if not own or not own <= embedded or {e for e in embedded - own if e.startswith(b"gemv_")}:
    raise SystemExit(f"minilab-base.xz does not embed its own linear.cu: {len(own)} entries there, {len(embedded)} embedded")
print(f"minilab-base.xz embeds its own linear.cu ({len(own)} kernels)")
PY
bash bench/kernels/build.sh
ls -la .gpu
