"""Speed of sageattn through Python, the call as a user makes it (quantization and the Python
binding included), next to torch's SDPA (its default choice, and cuDNN) on the same inputs.

    python3 python/examples/bench_attention.py [--seqlens 1024 4096 16384] [--head-dim 128] [--causal]

Shapes follow the design brief: fp16, H = 32 heads, B * N = 16K tokens. TOPS = 4 * B * H * N^2 * D
(halved when causal) / time. Needs a CUDA device.
"""

import argparse

import torch

import sageattn


def _time_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / iters


def _torch_cudnn(q, k, v, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def main():
    """Print one row per sequence length: TOPS of each implementation and our ratio to cuDNN."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seqlens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16384, help="B * N")
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_attention: needs a CUDA device")

    print(f"{torch.cuda.get_device_name()}, fp16, H {args.heads}, D {args.head_dim}, causal {args.causal}")
    print(f"{'N':>6} {'B':>3} {'kernel':>16} {'sageattn':>9} {'torch':>9} {'cuDNN':>9} {'vs cuDNN':>9}  (TOPS)")
    for n in args.seqlens:
        b = max(1, args.tokens // n)
        q, k, v = (torch.randn(b, args.heads, n, args.head_dim, dtype=torch.float16, device="cuda") for _ in range(3))
        ops = 4 * b * args.heads * n * n * args.head_dim / (2 if args.causal else 1)
        tops = {}
        with torch.inference_mode():
            runs = {"sageattn": lambda: sageattn.sageattn(q, k, v, is_causal=args.causal),
                    "torch": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=args.causal),
                    "cuDNN": lambda: _torch_cudnn(q, k, v, args.causal)}
            for name, fn in runs.items():
                try:
                    tops[name] = ops / _time_ms(fn) / 1e9
                except RuntimeError as e:  # e.g. no cuDNN attention for this shape
                    print(f"  {name}: {str(e).splitlines()[0]}")
                    tops[name] = float("nan")
        kernel = sageattn.plan(q, k, v).kernel
        print(f"{n:>6} {b:>3} {kernel:>16} {tops['sageattn']:>9.0f} {tops['torch']:>9.0f} {tops['cuDNN']:>9.0f} "
              f"{tops['sageattn'] / tops['cuDNN']:>8.2f}x")


if __name__ == "__main__":
    main()
