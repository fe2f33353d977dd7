#!/usr/bin/env bash
# Python package checks for a GPU machine with PyTorch and no network: the whole pytest set of
# python/tests (GPU tests included) and the MiniLM example, then (for information, not in the exit
# status) the attention benchmark. Builds nothing, installs nothing: the package is used from
# python/src with an already-built library.
#
#   SAGEATTN_LIBRARY  the library to load      (default: build-gpu/libsageattn.so or .so.X.Y.Z)
#   MINILM_MODEL      the model folder         (default: .whl/minilm-l6-v2-fp16, made here by
#                     python3 python/examples/minilm_fp16_copy.py .whl/minilm-l6-v2-fp16)
#   OUT               folder for the logs      (default: /tmp/python-check-logs)
#
# Exit status: 0 when pytest and the example pass; at most 9 minutes (pytest 5, example 2, bench 2x1).
# Logs: $OUT/pytest.log, $OUT/minilm.log, $OUT/bench.log, $OUT/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/python-check-logs}
mkdir -p "$OUT"
lib=${SAGEATTN_LIBRARY:-$(ls build-gpu/libsageattn.so* 2>/dev/null | head -n 1)}
model=${MINILM_MODEL:-.whl/minilm-l6-v2-fp16}
summary="$OUT/summary.txt"
: >"$summary"

if [ -z "$lib" ] || [ ! -f "$lib" ]; then
  echo "python-check: no library at ${lib:-build-gpu/libsageattn.so*} (build it with CMake, or set SAGEATTN_LIBRARY)" | tee -a "$summary"
  exit 2
fi
export SAGEATTN_LIBRARY="$(realpath "$lib")"
export PYTHONPATH="$PWD/python/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

{
  echo "library: $SAGEATTN_LIBRARY"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
} 2>&1 | tee -a "$summary"

# The packaging test (a CMake build through pip) is CI's; here the library is the carried one.
timeout 300 python3 -m pytest python/tests -v --ignore=python/tests/test_packaging.py 2>&1 | tee "$OUT/pytest.log"
pytest_rc=${PIPESTATUS[0]}
[ "$pytest_rc" -eq 5 ] && echo "pytest collected no tests" | tee -a "$summary"
echo "pytest: exit $pytest_rc, $(tail -n 1 "$OUT/pytest.log")" | tee -a "$summary"

if [ -d "$model" ]; then
  timeout 120 python3 python/examples/minilm_sdpa.py --model "$model" 2>&1 | tee "$OUT/minilm.log"
  minilm_rc=${PIPESTATUS[0]}
else
  echo "no model folder at $model (see MINILM_MODEL above)" | tee "$OUT/minilm.log"
  minilm_rc=2
fi
echo "minilm example: exit $minilm_rc" | tee -a "$summary"

timeout 60 python3 python/examples/bench_attention.py --seqlens 1024 4096 16384 2>&1 | tee "$OUT/bench.log"
timeout 60 python3 python/examples/bench_attention.py --seqlens 16384 --causal 2>&1 | tee -a "$OUT/bench.log"
echo "bench (information only): see bench.log" | tee -a "$summary"

[ "$pytest_rc" -eq 0 ] && [ "$minilm_rc" -eq 0 ]
