#!/usr/bin/env bash
# The demo of `make demo`: the benchmark CLI on the GPU when there is one (and the build has CUDA),
# else on the CPU path. Prints speed and accuracy against the reference.
#   scripts/demo.sh [BUILD_DIR=build]
set -eu
BUILD=${1:-build}
BENCH="$BUILD/tools/sageattn-bench"
if nvidia-smi -L > /dev/null 2>&1 && grep -q "SAGE_BUILT_WITH_CUDA:INTERNAL=ON" "$BUILD/CMakeCache.txt"; then
  echo "GPU found: sageattn-bench on CUDA (B4 H32 N4096 D128 fp16)"
  exec "$BENCH" --device cuda
fi
echo "no GPU (or no CUDA build): sageattn-bench on the CPU path (B1 H4 N512 D128 fp16)"
echo "-- PV in 16 bits (the CPU default)"
"$BENCH" --device cpu --pv 16
echo "-- PV in FP8 e4m3 (the GPU default on sm89/sm90)"
exec "$BENCH" --device cpu --pv fp8
