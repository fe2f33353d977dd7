#!/usr/bin/env bash
# One device call (session 2's call 6): GPU tests, probe checks, old-vs-new kernel timings (probe_old =
# the probe linked with HEAD's kernel), experiments (xq), torch SDPA, API. See run-final.sh for the build.
# Binaries built here and carried in carry-sm90/ (git-ignored): sageattn-tests, probe_attn,
# probe_old (the kernel of HEAD, same probe), sageattn-bench.
C=${C:-carry-sm90}
OUT=${OUT:-/tmp/sm90-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 240 $C/sageattn-tests gpu_ > "$OUT/tests.log" 2>&1; echo "gpu tests rc=$? ($(tail -1 $OUT/tests.log))"
grep -E "^\[ FAIL|out of tol|FAIL" "$OUT/tests.log" | head -20
timeout 100 $C/probe_attn check > "$OUT/probe.log" 2>&1; echo "probe check rc=$?"; grep -E "FAIL|CHECKS" "$OUT/probe.log" | head
for i in 1 2; do
  timeout 60 $C/probe_old tq > "$OUT/old$i.log" 2>&1; timeout 60 $C/probe_attn tq > "$OUT/new$i.log" 2>&1
done
timeout 90 $C/probe_attn xq > "$OUT/xq.log" 2>&1; echo "xq rc=$?"; grep -E "FAIL|CHECKS|^TIME" "$OUT/xq.log"
PYTHONUNBUFFERED=1 timeout 100 python3 dev/sm90/bench_torch.py 1024 8192 16384 > "$OUT/torch.log" 2>&1
timeout 60 $C/probe_attn aq > "$OUT/api.log" 2>&1
timeout 30 $C/sageattn-bench --device cuda -b 2 -H 32 -n 8192 -d 128 --iters 20 > "$OUT/bench.log" 2>&1
echo "== old vs new (kernel)"; paste -d'\n' <(grep ^TIME $OUT/old1.log | sed 's/^/OLD1 /') <(grep ^TIME $OUT/new1.log | sed 's/^/NEW1 /') <(grep ^TIME $OUT/old2.log | sed 's/^/OLD2 /') <(grep ^TIME $OUT/new2.log | sed 's/^/NEW2 /')
grep -h ^TORCH "$OUT/torch.log"; grep -h ^TIME "$OUT/api.log"; tail -3 "$OUT/bench.log"
