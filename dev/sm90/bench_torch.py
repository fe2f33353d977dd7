# torch SDPA (cuDNN, flash) at the benchmark grid, same run as our kernel; TOPS = 4*B*H*N^2*D (/2 causal).
import torch, sys
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F
def bench(fn, it=15):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(it):
        a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts)//2]
H = 32
for D in (128, 64):
    for causal in (False, True):
        for N in ([int(x) for x in sys.argv[1:]] or (1024, 2048, 4096, 8192, 16384, 32768)):
            B = max(1, 16384 // N)
            q, k, v = (torch.randn(B, H, N, D, device='cuda', dtype=torch.float16) for _ in range(3))
            ops = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
            row = []
            for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                try:
                    with sdpa_kernel([be]):
                        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    row.append("%s %.3f ms %.1f TOPS" % (name, ms, ops / ms / 1e9))
                except Exception as e:
                    row.append("%s n/a (%s)" % (name, str(e)[:40]))
            print("TORCH D=%d causal=%d B=%d N=%d: %s" % (D, int(causal), B, N, " | ".join(row)), flush=True)
            del q, k, v
