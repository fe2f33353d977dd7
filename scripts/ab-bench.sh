#!/usr/bin/env bash
# A/B timing of two sageattn-bench binaries in one device call (the same GPU, clocks and
# neighbours for both): the shapes below, old and new alternating, R rounds, the best
# (lowest) whole-call time of each kept. Prints one line per shape and writes $OUT/ab.csv.
#   scripts/ab-bench.sh OLD_BENCH NEW_BENCH [R=2]
# SHAPES overrides the list: "B:N:D:causal ..." (causal none|tl). fp16, H = 32, no validation.
# OLD_ARGS / NEW_ARGS: extra arguments of each side (e.g. OLD_ARGS="--kernel NAME": one binary,
# two kernels). ITERS: timed launches per run (default 20: mostly at boost clock; 200 keeps an H100
# at its 700 W cap, where the SM clock falls to ~1.5-1.8 GHz: docs/perf-log.md, session 9).
set -u -o pipefail
OLD=$1 NEW=$2 R=${3:-2}
OUT=${OUT:-ab-out}
OLD_ARGS=${OLD_ARGS:-} NEW_ARGS=${NEW_ARGS:-} ITERS=${ITERS:-20}
mkdir -p "$OUT"
SHAPES=${SHAPES:-"16:1024:128:none 4:4096:128:none 2:8192:128:none 1:16384:128:none 16:1024:128:tl 1:16384:128:tl \
16:1024:64:none 2:8192:64:none 1:16384:64:tl 16:1024:256:none 2:8192:256:none"}
echo "B,N,D,causal,old_ms,new_ms,old_quant_ms,new_quant_ms,new_over_old_speed" > "$OUT/ab.csv"
best() { sort -g | head -n 1; }
for s in $SHAPES; do
  IFS=: read -r B N D C <<< "$s"
  : > "$OUT/old.tmp"; : > "$OUT/new.tmp"
  for _ in $(seq "$R"); do
    for which in old new; do
      bin=$OLD args=$OLD_ARGS; [ $which = new ] && bin=$NEW args=$NEW_ARGS
      # shellcheck disable=SC2086
      "$bin" $args -b "$B" -H 32 -n "$N" -d "$D" --causal "$C" --iters "$ITERS" --no-validate --csv 2>> "$OUT/ab.err" \
        | tail -n 1 >> "$OUT/$which.tmp"
    done
  done
  # csv: kernel,B,H,Nq,Nk,D,dtype,causal,ms,quant_ms,TOPS,...
  om=$(cut -d, -f9 "$OUT/old.tmp" | best); nm=$(cut -d, -f9 "$OUT/new.tmp" | best)
  oq=$(cut -d, -f10 "$OUT/old.tmp" | best); nq=$(cut -d, -f10 "$OUT/new.tmp" | best)
  ratio=$(awk -v o="$om" -v n="$nm" 'BEGIN { if (n > 0) printf "%.3f", o / n; else print "nan" }')
  echo "$B,$N,$D,$C,$om,$nm,$oq,$nq,$ratio" | tee -a "$OUT/ab.csv"
done
rm -f "$OUT/old.tmp" "$OUT/new.tmp"
