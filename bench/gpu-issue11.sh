#!/usr/bin/env bash
# Issue 11 (decode at the memory roofline) on the lent GPU machine.
# One mode per call; each group of modes lives in bench/gpu-issue11/GROUP.sh, with its docs:
#   decode.sh: decode, minilab, final, regress, resident, groups
#   switches.sh: pdl, rope, norm, prefetch, chunk, staged, grid, plainprefill, qgemm, alternate, stack,
#                wide, flash, foldab
#   prefill.sh: prefill-ways, prefill-overlap, mixed, cutlass, qgemm-rows, prefill-graph, coldstart
#   kernels.sh: kernels, launches, barriers, ahead
#   profile.sh: step, prefill, profile, qgemm-profile, flash-profile
#   peers.sh: llamacpp, peers, allpeers
# Usage there: bash bench/gpu-issue11.sh MODE. Writes everything under $OUT, prints a short table.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/bin
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
here=$(dirname "$0")/gpu-issue11
source "$here/lib.sh"
mode=${1:-kernels}
case "$mode" in
  decode|minilab|final|regress|resident|groups) source "$here/decode.sh" "$mode" "${@:2}" ;;
  pdl|rope|norm|prefetch|chunk|staged|grid|plainprefill|qgemm|alternate|stack|wide|flash|foldab) source "$here/switches.sh" "$mode" "${@:2}" ;;
  prefill-ways|prefill-overlap|mixed|cutlass|qgemm-rows|prefill-graph|coldstart) source "$here/prefill.sh" "$mode" "${@:2}" ;;
  kernels|launches|barriers|ahead) source "$here/kernels.sh" "$mode" "${@:2}" ;;
  step|prefill|profile|qgemm-profile|flash-profile) source "$here/profile.sh" "$mode" "${@:2}" ;;
  llamacpp|peers|allpeers) source "$here/peers.sh" "$mode" "${@:2}" ;;
  *) echo "gpu-issue11.sh: unknown mode $mode; the modes are listed at the top of $0" >&2; exit 2 ;;
esac
