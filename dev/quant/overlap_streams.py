#!/usr/bin/env python3
"""How much of the K/V quantization pass could hide under attention (a measurement for the lead
"quantization overlapped with attention in one launch", docs/perf-log.md, session 6).

Two independent calls of sage_forward (own inputs, outputs, workspaces), timed as a pair:
  seq:  both on one stream (what a user gets today: quantize, attend, quantize, attend);
  conc: one per stream, so the block scheduler can run one call's quantization kernels beside the
        other's attention kernel.
(seq - conc) / 2 is the time per call that overlapping hid; compared with the quantization time
per call (sageattn-bench --quant-only, or the split it prints) it says how much of the pass a
fused design could hide at best with today's kernels.

    python3 dev/quant/overlap_streams.py --lib build-gpu/libsageattn.so
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from compare import Sage  # noqa: E402


def pair_ms(run, iters=20, warmup=3):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        run()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build-gpu/libsageattn.so")
    args = ap.parse_args()
    sage = Sage(args.lib)
    H = 32
    shapes = [(16, 1024, 128, False), (16, 1024, 128, True), (4, 4096, 128, False), (2, 8192, 128, False),
              (16, 1024, 64, False), (16, 1024, 256, False)]
    print("  B     N   D causal | one call ms | pair seq ms | pair conc ms | hidden per call ms")
    for B, N, D, causal in shapes:
        calls = []
        for _ in range(2):
            q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.float16) for _ in range(3))
            o = torch.empty_like(q)
            a, ws, _ = sage.prepare(q, k, v, o, causal)
            calls.append((a, ws, q, k, v, o))
        streams = [torch.cuda.Stream(), torch.cuda.Stream()]

        def one():
            sage.forward(*calls[0])

        def seq():
            for c in calls:
                sage.forward(*c)

        def conc():
            cur = torch.cuda.current_stream()
            for s, c in zip(streams, calls):
                s.wait_stream(cur)
                with torch.cuda.stream(s):
                    sage.forward(*c)
            for s in streams:
                cur.wait_stream(s)

        best = {}
        for _ in range(2):  # alternate, keep the best median of each
            for name, fn in (("one", one), ("seq", seq), ("conc", conc)):
                t = pair_ms(fn)
                best[name] = min(best.get(name, t), t)
        print(f"{B:3d} {N:5d} {D:3d} {int(causal):6d} | {best['one']:11.3f} | {best['seq']:11.3f} | "
              f"{best['conc']:12.3f} | {(best['seq'] - best['conc']) / 2:18.3f}", flush=True)
        del calls
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
