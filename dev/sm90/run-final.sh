#!/usr/bin/env bash
# One device call (session 2's call 9): GPU tests, probe checks, the whole grid (kernel, API) and
# torch SDPA cuDNN / flash in the same call. Build here first, then carry carry-sm90 (git-ignored):
#   cmake -S . -B build-sm90 -DSAGE_CUDA_PORTABLE_ARCHS=90-real && cmake --build build-sm90 -j16
#   nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -DSAGE_SM90_EXPERIMENTS --expt-relaxed-constexpr \
#     -I include -I src dev/sm90/probe_attn.cu src/cuda/sm90/attn_qk_int8_pv_fp8_sm90.cu build-sm90/libsageattn.a \
#     -o carry-sm90/probe_H
#   cp build-sm90/tests/sageattn-tests carry-sm90/tests_H; cp build-sm90/tools/sageattn-bench carry-sm90/
#   run: bash dev/sm90/run-final.sh   (carry: carry-sm90)
C=${C:-carry-sm90}
OUT=${OUT:-/tmp/sm90-out}; mkdir -p "$OUT"
timeout 150 $C/tests_H gpu_ > "$OUT/tests.log" 2>&1; echo "gpu tests rc=$? ($(tail -1 $OUT/tests.log))"; grep -E "^\[ FAIL|out of tol" "$OUT/tests.log" | head
timeout 100 $C/probe_H check > "$OUT/probe.log" 2>&1; echo "probe check rc=$?"; grep -E "FAIL|CHECKS" "$OUT/probe.log" | head
timeout 120 $C/probe_H time 2>&1 | grep ^TIME > "$OUT/time.log"
timeout 120 $C/probe_H api 2>&1 | grep ^TIME > "$OUT/api.log"
PYTHONUNBUFFERED=1 timeout 150 python3 dev/sm90/bench_torch.py 2>&1 | grep ^TORCH > "$OUT/torch.log"
timeout 30 $C/sageattn-bench --device cuda -b 2 -H 32 -n 8192 -d 128 --iters 20 > "$OUT/bench.log" 2>&1; tail -3 "$OUT/bench.log"
awk '{print $3, $5, $6, $9, $12}' "$OUT/time.log"; awk '{print $2, $3, $4, $7, $10}' "$OUT/api.log"
sed 's/TORCH //' "$OUT/torch.log"
