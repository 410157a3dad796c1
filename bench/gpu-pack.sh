#!/usr/bin/env bash
# Packs what bench/gpu-issue11.sh needs into .gpu/ (gitignored), here on the development machine:
#   .gpu/minilab.xz, .gpu/device_check.xz   this checkout's CUDA build (release, stripped, xz);
#   .gpu/minilab-base.xz                    the CUDA build of BASE (default c51b1d4, the last build
#                                            measured on the H200), from a git worktree in /tmp;
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
CARGO_TARGET_DIR=target-cuda cargo build --release --locked --features cuda --bin minilab --example device_check
pack target-cuda/release/minilab minilab
pack target-cuda/release/examples/device_check device_check
# The base build shares this checkout's target folder (candle is built once); it overwrites
# target-cuda/release/minilab, which was packed above.
wt=/tmp/minilab-base-$BASE
[ -d "$wt" ] || git worktree add --detach "$wt" "$BASE"
(cd "$wt" && CARGO_TARGET_DIR="$OLDPWD/target-cuda" cargo build --release --locked --features cuda --bin minilab)
pack target-cuda/release/minilab minilab-base
bash bench/kernels/build.sh
ls -la .gpu
