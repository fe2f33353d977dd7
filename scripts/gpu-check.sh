#!/usr/bin/env bash
# GPU check of the CUDA paths, run on the device machine from a build carried there:
#   scripts/gpu-check.sh [BUILD_DIR=build-gpu]
# 1. the GPU tests (gpu_* cases of the test runner)  2. compute-sanitizer memcheck of one tiny case
# 3. sageattn-bench over the brief's grid  4. bench/compare.py vs torch SDPA (and GQA 32/8 at D 128)
# 5. a short table last.
# Logs go to $OUT (or ./gpu-check-out). QUICK=1 trims the bench grid and compare.py.
set -u -o pipefail
BUILD=${1:-build-gpu}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
T=$BUILD/tests/sageattn-tests
BENCH=$BUILD/tools/sageattn-bench
status=0
nvidia-smi -L

echo "== GPU tests"
start=$(date +%s)
if ! "$T" gpu_ > "$OUT/tests.log" 2>&1; then status=1; fi
grep -E "FAIL|passed|relL1" "$OUT/tests.log" | tail -n 60
echo "tests took $(( $(date +%s) - start )) s"

echo "== compute-sanitizer memcheck (tiny case)"
if command -v compute-sanitizer > /dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 9 "$T" gpu_attn_deterministic > "$OUT/memcheck.log" 2>&1
  rc=$?; tail -n 3 "$OUT/memcheck.log"; [ $rc -eq 0 ] || status=1
else
  echo "compute-sanitizer not found"
fi

echo "== sageattn-bench grid (H 32, B*N 16K)"; start=$(date +%s)
echo "kernel,B,H,Nq,Nk,D,dtype,causal,ms,quant_ms,TOPS,cos,relL1" > "$OUT/bench.csv"
if [ "${QUICK:-0}" = 1 ]; then NS="1024 4096 16384"; DS="128"; else NS="1024 2048 4096 8192 16384 32768"; DS="64 128"; fi
for D in $DS; do for C in none tl; do for N in $NS; do
  B=$(( 16384 / N )); [ $B -ge 1 ] || B=1
  "$BENCH" -b $B -H 32 -n $N -d $D --causal $C --iters 20 --csv >> "$OUT/bench.csv" 2>> "$OUT/bench.err" || status=1
done; done; done
# The portable CTA heights forced (64 rows: cuda_sm80_mma, 128 rows: _q128), FP8 and 16-bit PV
for N in 4096 16384; do
  for KP in cuda_sm80_mma:fp8 cuda_sm80_mma:16 cuda_sm80_mma_q128:fp8 cuda_sm80_mma_q128:16; do
    "$BENCH" -b $(( 16384 / N )) -H 32 -n $N -d 128 --kernel ${KP%%:*} --pv ${KP##*:} --iters 20 --csv \
      >> "$OUT/bench.csv" 2>> "$OUT/bench.err" || status=1
  done
done
"$BENCH" -b 4 -H 32 -n 4096 -d 128 --iters 30 | tee "$OUT/bench_one.txt"

echo "bench took $(( $(date +%s) - start )) s"
echo "== compare.py vs torch SDPA"; start=$(date +%s)
if python3 -c "import torch" 2> /dev/null; then
  Q=""; [ "${QUICK:-0}" = 1 ] && Q="--quick"
  PYTHONUNBUFFERED=1 python3 bench/compare.py --lib "$BUILD/libsageattn.so" --out "$OUT" $Q > "$OUT/compare.log" 2>&1 || status=1
  # GQA as LLMs run it: 32 query heads on 8 K/V heads, D 128
  PYTHONUNBUFFERED=1 python3 bench/compare.py --lib "$BUILD/libsageattn.so" --out "$OUT/gqa" --dims 128 --hkv 8 $Q \
    > "$OUT/compare_gqa.log" 2>&1 || status=1
else
  echo "no torch: compare.py skipped"
fi

echo "compare took $(( $(date +%s) - start )) s"
echo "== summary"
grep -E "passed|FAIL" "$OUT/tests.log" | tail -n 5
grep -E "ERROR SUMMARY" "$OUT/memcheck.log" 2> /dev/null
cat "$OUT/bench.csv"
tail -n 38 "$OUT/compare.log" 2> /dev/null
tail -n 14 "$OUT/compare_gqa.log" 2> /dev/null
exit $status
