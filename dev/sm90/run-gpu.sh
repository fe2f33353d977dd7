#!/usr/bin/env bash
# Everything the Hopper kernel needs checked on an H100/H200, in one device call:
#   run: dev/sm90/run-gpu.sh   (carry build-sm90; the command writes logs under $OUT)
# Build here first:
#   cmake -S . -B build-sm90 -DSAGE_CUDA_PORTABLE_ARCHS=90-real && cmake --build build-sm90 -j2
#   nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -DSAGE_SM90_EXPERIMENTS -I include -I src \
#     dev/sm90/probe_attn.cu src/cuda/sm90/attn_qk_int8_pv_fp8_sm90.cu build-sm90/libsageattn.a \
#     -o build-sm90/probe_attn
# XP=1 adds the experiment variants (checks of the numerically valid ones + timings).
# Prints a short summary last; full logs: buildcheck.log tests.log probe.log torch.log.
set -o pipefail
B=${B:-build-sm90}
OUT=${OUT:-/tmp/sm90-out}
mkdir -p "$OUT"
export PATH=$PATH:/usr/local/cuda/bin
scripts/sm90-build-check.sh > "$OUT/buildcheck.log" 2>&1
echo "build check rc=$?"
timeout 300 "$B/tests/sageattn-tests" gpu_ > "$OUT/tests.log" 2>&1
echo "gpu tests rc=$? ($(tail -1 "$OUT/tests.log"))"
grep -E "^\[ FAIL|out of tolerance" "$OUT/tests.log" | head -20
timeout 240 "$B/probe_attn" check time api ${XP:+xp} > "$OUT/probe.log" 2>&1
echo "probe rc=$?"
grep -E "FAIL|CHECKS" "$OUT/probe.log"
grep -E "^TIME kernel v1 flags=[1-9]" "$OUT/probe.log"
PYTHONUNBUFFERED=1 timeout 150 python3 dev/sm90/bench_torch.py > "$OUT/torch.log" 2>&1
grep -h -E "^TIME (kernel v1|api)|^TORCH" "$OUT/probe.log" "$OUT/torch.log" | grep -E "N=(8192|16384)"
