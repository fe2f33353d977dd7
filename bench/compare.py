#!/usr/bin/env python3
"""sageattn vs torch SDPA (flash and cuDNN backends), same GPU, same run, same inputs.

    python3 bench/compare.py --lib build-gpu/libsageattn.so [--out DIR] [--quick]
                             [--extra-lib LABEL=PATH ...] [--ns 1024,8192]

Grid of the brief: fp16, H = 32, B * N = 16K tokens, D in --dims (64, 128, 256), causal or not, N = 1K .. 32K.
Each method is timed with CUDA events around the call as a user makes it (our quantization
included), median of --iters runs, inputs rotated over two sets so L2 does not hold them; the three
methods take turns for --rounds rounds and each keeps its best median (a window in which the GPU
runs slow, seen as 10-20 % on single shapes, then hits all three or none).
TOPS = 4 B H N^2 D / t, halved when causal. Prints a table of TOPS and ratios, writes
compare.csv and compare.png (if matplotlib is there) to --out (default $OUT or .).
--extra-lib times other builds of the library (an older commit, an experiment build) in the same
rounds, so every version meets the peers in the same state of the GPU (clock, power cap).
"""
import argparse
import ctypes as C
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

# ---- the C API through ctypes (mirrors include/sageattn.h) --------------------------------------
SAGE_DTYPE_FP16, SAGE_DTYPE_BF16 = 0, 1
SAGE_CAUSAL_NONE, SAGE_CAUSAL_TOP_LEFT = 0, 1
SAGE_DEVICE_CUDA = 1


class SageOptions(C.Structure):
    _fields_ = [("algorithm", C.c_int), ("qk_groups", C.c_int), ("pv", C.c_int),
                ("smooth_k", C.c_int), ("smooth_q", C.c_int), ("smooth_v", C.c_int)]


class SageArgs(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("dtype", C.c_int),
                ("batch", C.c_int64), ("heads_q", C.c_int64), ("heads_kv", C.c_int64),
                ("seqlen_q", C.c_int64), ("seqlen_kv", C.c_int64), ("head_dim", C.c_int64),
                ("q", C.c_void_p), ("q_stride_b", C.c_int64), ("q_stride_h", C.c_int64), ("q_stride_n", C.c_int64),
                ("k", C.c_void_p), ("k_stride_b", C.c_int64), ("k_stride_h", C.c_int64), ("k_stride_n", C.c_int64),
                ("v", C.c_void_p), ("v_stride_b", C.c_int64), ("v_stride_h", C.c_int64), ("v_stride_n", C.c_int64),
                ("o", C.c_void_p), ("o_stride_b", C.c_int64), ("o_stride_h", C.c_int64), ("o_stride_n", C.c_int64),
                ("lse", C.c_void_p), ("sm_scale", C.c_float), ("causal", C.c_int), ("options", SageOptions),
                ("device", C.c_int), ("device_ordinal", C.c_int), ("cpu_threads", C.c_int)]


class SagePlan(C.Structure):
    _fields_ = [("kernel", C.c_char_p), ("qk_groups", C.c_int), ("pv", C.c_int),
                ("smooth_k", C.c_int), ("smooth_q", C.c_int), ("smooth_v", C.c_int), ("workspace_size", C.c_size_t)]


class Sage:
    def __init__(self, path):
        self.lib = C.CDLL(path)
        self.lib.sage_args_init.argtypes = [C.POINTER(SageArgs)]
        self.lib.sage_supported.argtypes = [C.POINTER(SageArgs), C.POINTER(SagePlan), C.c_char_p, C.c_size_t]
        self.lib.sage_forward.argtypes = [C.POINTER(SageArgs), C.c_void_p, C.c_size_t, C.c_void_p, C.c_char_p, C.c_size_t]
        self.msg = C.create_string_buffer(256)

    def prepare(self, q, k, v, o, causal, pv=0):
        a = SageArgs()
        self.lib.sage_args_init(C.byref(a))
        assert a.struct_size == C.sizeof(SageArgs), "ctypes mirror of sage_args is out of date"
        a.dtype = SAGE_DTYPE_FP16 if q.dtype == torch.float16 else SAGE_DTYPE_BF16
        a.batch, a.heads_q, a.seqlen_q, a.head_dim = q.shape
        a.heads_kv, a.seqlen_kv = k.shape[1], k.shape[2]
        for name, t in (("q", q), ("k", k), ("v", v), ("o", o)):
            setattr(a, name, t.data_ptr())
            sb, sh, sn, _ = t.stride()
            setattr(a, name + "_stride_b", sb); setattr(a, name + "_stride_h", sh); setattr(a, name + "_stride_n", sn)
        a.causal = SAGE_CAUSAL_TOP_LEFT if causal else SAGE_CAUSAL_NONE
        a.options.pv = pv
        a.device = SAGE_DEVICE_CUDA
        a.device_ordinal = q.device.index or 0
        plan = SagePlan()
        if self.lib.sage_supported(C.byref(a), C.byref(plan), self.msg, 256) != 0:
            raise RuntimeError(self.msg.value.decode())
        ws = torch.empty(max(plan.workspace_size, 256), dtype=torch.uint8, device=q.device)
        return a, ws, plan.kernel.decode()

    def forward(self, a, ws, q, k, v, o):
        a.q, a.k, a.v, a.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()
        st = torch.cuda.current_stream().cuda_stream
        if self.lib.sage_forward(C.byref(a), ws.data_ptr(), ws.numel(), C.c_void_p(st), self.msg, 256) != 0:
            raise RuntimeError(self.msg.value.decode())


def fp8_floor(q, k, v, causal, rows=2048):
    """The FP8 format's floor (brief section 4): attention with only P and V rounded to e4m3, the
    rest exact (fp32, no TF32), in chunks of query rows. P is scaled so the row max maps to 448;
    V per channel to max |v| = 448; the row sum is the unrounded one. Top-left causal mask."""
    q, k, v = q.float(), k.float(), v.float()
    vs = v.abs().amax(-2, keepdim=True).clamp_min(1e-30) / 448
    v8 = (v / vs).to(torch.float8_e4m3fn).float() * vs
    out = torch.empty_like(q)
    cols = torch.arange(k.shape[-2], device=q.device)
    for r0 in range(0, q.shape[-2], rows):
        s = (q[..., r0:r0 + rows, :] @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if causal:
            r = torch.arange(r0, r0 + s.shape[-2], device=q.device)
            s = s.masked_fill(cols[None, :] > r[:, None], float("-inf"))
        p = torch.exp(s - s.amax(-1, keepdim=True))
        p8 = (p * 448).to(torch.float8_e4m3fn).float() / 448
        out[..., r0:r0 + rows, :] = (p8 @ v8) / p.sum(-1, keepdim=True)
    return out


def time_ms(fn, sets, iters, warmup=3):
    for i in range(warmup):
        fn(*sets[i % len(sets)])
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn(*sets[i % len(sets)])
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build-gpu/libsageattn.so")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="turns of the three methods; best median kept")
    ap.add_argument("--quick", action="store_true", help="D 128 only, N 1K/4K/16K")
    ap.add_argument("--pv", type=int, default=0, help="0 auto, 1 fp8, 2 16-bit")
    ap.add_argument("--dims", default="64,128,256", help="head dims, comma-separated")
    ap.add_argument("--ns", default="", help="sequence lengths, comma-separated (default 1K..32K)")
    ap.add_argument("--extra-lib", action="append", default=[], metavar="LABEL=PATH",
                    help="another build of the library, timed in the same rounds (repeatable)")
    ap.add_argument("--hkv", type=int, default=32,
                    help="key/value heads (32 query heads; fewer = GQA: the torch peers then run on K and V "
                         "expanded to 32 heads beforehand, outside the timing, the same FLOPs)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False   # fp32 matmuls of the floor stay fp32
    sage = Sage(args.lib)
    extras = []
    for spec in args.extra_lib:
        label, sep, path = spec.partition("=")
        if not sep or not label.isidentifier() or label in ("sage", "flash", "cudnn"):
            ap.error(f"--extra-lib wants LABEL=PATH with a new identifier as LABEL: {spec}")
        extras.append((label, Sage(path)))
    labels = [label for label, _ in extras]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    Ns = [1024, 4096, 16384] if args.quick else [1024, 2048, 4096, 8192, 16384, 32768]
    if args.ns:
        Ns = [int(n) for n in args.ns.split(",")]
    Ds = [128] if args.quick else [int(d) for d in args.dims.split(",")]
    H, tokens = 32, 16384
    if args.hkv < 1 or H % args.hkv:
        ap.error(f"--hkv must divide {H}")
    rows = []
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  heads {H} q / {args.hkv} kv")
    for D in Ds:
        for causal in (False, True):
            for N in Ns:
                B = max(1, tokens // N)
                sets = []
                for _ in range(2):
                    q = torch.randn(B, H, N, D, device="cuda", dtype=torch.float16)
                    k, v = (torch.randn(B, args.hkv, N, D, device="cuda", dtype=torch.float16) for _ in range(2))
                    sets.append((q, k, v, torch.empty_like(q)))
                # the peers' K and V, expanded to the query heads (GQA)
                peer_sets = [(q, k.repeat_interleave(H // args.hkv, dim=1), v.repeat_interleave(H // args.hkv, dim=1), o)
                             for q, k, v, o in sets]
                a, ws, kname = sage.prepare(*sets[0], causal, args.pv)
                # each extra build gets its own args and workspace (its layout may differ)
                extra_calls = []
                for label, lib in extras:
                    xa, xws, _ = lib.prepare(*sets[0], causal, args.pv)
                    extra_calls.append((label, lambda q, k, v, o, lib=lib, xa=xa, xws=xws: lib.forward(xa, xws, q, k, v, o)))
                fl = 4 * B * H * N * N * D / (2 if causal else 1)
                res = {"D": D, "causal": int(causal), "N": N, "B": B, "Hkv": args.hkv, "kernel": kname}

                def ours(q, k, v, o):
                    sage.forward(a, ws, q, k, v, o)

                for _ in range(args.rounds):
                    t = time_ms(ours, sets, args.iters)
                    res["sage_ms"] = min(res.get("sage_ms", t), t)
                    for label, call in extra_calls:
                        t = time_ms(call, sets, args.iters)
                        res[label + "_ms"] = min(res.get(label + "_ms", t), t)
                    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                        try:
                            with sdpa_kernel(be):
                                t = time_ms(
                                    lambda q, k, v, o: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                    peer_sets, args.iters)
                        except Exception as e:  # backend missing for this shape
                            print(f"  {name} failed: {e}", file=sys.stderr)
                            t = float("nan")
                        res[name + "_ms"] = min(res.get(name + "_ms", t), t)
                # accuracy of ours vs fp32 math on one head of the first set
                q, k, v, o = sets[0]
                ours(q, k, v, o)
                pk, pv = peer_sets[0][1], peer_sets[0][2]
                ref = F.scaled_dot_product_attention(q[:1, :2].float(), pk[:1, :2].float(), pv[:1, :2].float(),
                                                     is_causal=causal)
                got = o[:1, :2].float()
                res["cos"] = F.cosine_similarity(got.flatten(), ref.flatten(), dim=0).item()
                res["relL1"] = ((got - ref).abs().sum() / ref.abs().sum()).item()
                # the budget is relative to the floor of the same inputs (brief: relL1 <= 1.05 x floor)
                flo = fp8_floor(q[:1, :2], pk[:1, :2], pv[:1, :2], causal)
                res["floor_relL1"] = ((flo - ref).abs().sum() / ref.abs().sum()).item()
                for m in ["sage", "flash", "cudnn"] + labels:
                    res[m + "_tops"] = fl / (res[m + "_ms"] * 1e-3) * 1e-12
                rows.append(res)
                more = "".join(f"  {x} {res[x + '_tops']:6.1f}" for x in labels)
                print(f"D{D} causal{int(causal)} N{N:6d} B{B:2d}: sage {res['sage_tops']:6.1f}  flash {res['flash_tops']:6.1f}"
                      f"  cudnn {res['cudnn_tops']:6.1f}{more} TOPS  ({kname}, cos {res['cos']:.5f}, relL1 {res['relL1']:.4f}"
                      f" = {res['relL1'] / res['floor_relL1']:.3f} x floor)",
                      flush=True)
                del sets, peer_sets, a, ws, extra_calls
                torch.cuda.empty_cache()

    os.makedirs(args.out, exist_ok=True)
    keys = ["D", "causal", "N", "B", "Hkv", "kernel", "sage_ms", "flash_ms", "cudnn_ms", "sage_tops", "flash_tops",
            "cudnn_tops", "cos", "relL1", "floor_relL1"] + [x + s for x in labels for s in ("_ms", "_tops")]
    with open(os.path.join(args.out, "compare.csv"), "w") as f:
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        combos = sorted({(r["D"], r["causal"]) for r in rows})
        fig, axes = plt.subplots(1, len(combos), figsize=(5 * len(combos), 4), squeeze=False)
        for ax, (D, cz) in zip(axes[0], combos):
            sel = [r for r in rows if r["D"] == D and r["causal"] == cz]
            xs = [r["N"] for r in sel]
            for m in ("sage", "flash", "cudnn"):
                ax.plot(xs, [r[m + "_tops"] for r in sel], marker="o", label=m)
            ax.set_xscale("log", base=2)
            ax.set_title(f"D={D} {'causal' if cz else 'non-causal'}, H=32/{args.hkv}, B*N=16K")
            ax.set_xlabel("N")
            ax.set_ylabel("TOPS")
            ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "compare.png"), dpi=100)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)

    print("\n  D causal      N   sage  flash  cudnn  sage/flash  sage/cudnn  relL1/floor"
          + "".join(f"  {x}/cudnn" for x in labels))
    for r in rows:
        more = "".join(f"  {r[x + '_tops'] / r['cudnn_tops']:{len(x) + 6}.2f}" for x in labels)
        print(f"{r['D']:3d} {r['causal']:6d} {r['N']:6d} {r['sage_tops']:6.1f} {r['flash_tops']:6.1f} {r['cudnn_tops']:6.1f}"
              f"  {r['sage_tops'] / r['flash_tops']:10.2f}  {r['sage_tops'] / r['cudnn_tops']:10.2f}"
              f"  {r['relL1'] / r['floor_relL1']:11.3f}{more}")


if __name__ == "__main__":
    main()
