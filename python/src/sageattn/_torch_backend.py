"""sageattn on torch tensors: three custom ops (new output, out=, and the SDPA drop-in), CUDA on
the current stream, workspace from torch's caching allocator; CPU tensors run the library's CPU path.

The ops run no synchronisation and allocate only through torch, so CUDA-graph capture works, and
their fake implementations let torch.compile(fullgraph=True) trace through them.
"""

from typing import List, Optional, Tuple

import torch

from . import _call, _fallback, _layout
from ._capi import Causal, DType, Device, WORKSPACE_ALIGN
from ._problem import describe
from .errors import SageArgumentError, SageUnsupportedError
from .options import parse_options

DTYPES = {torch.float16: DType.FP16, torch.bfloat16: DType.BF16, torch.float32: DType.FP32}
DEVICE_DTYPES = {"cuda": (torch.float16, torch.bfloat16), "cpu": (torch.float16, torch.bfloat16, torch.float32)}
_DEFAULT_OPTIONS = list(parse_options({}))


def _lse_like(q, tensor_layout, return_lse):
    """fp32 [B, Hq, Nq] when return_lse, else an empty tensor (the op always returns two tensors)."""
    if not return_lse:
        return q.new_empty((0,), dtype=torch.float32)
    b, h, n, _ = _layout.bhnd("q", q.shape, q.stride(), tensor_layout)[0]
    return q.new_empty((b, h, n), dtype=torch.float32)


def _run(q, k, v, o, lse, tensor_layout, causal, sm_scale, options):
    """Fill o (and lse when it has elements) with one sage_forward."""
    device = Device.CUDA if q.device.type == "cuda" else Device.CPU
    ordinal = q.device.index if device == Device.CUDA else 0
    views = {name: (t.shape, t.stride()) for name, t in zip("qkv", (q, k, v))}
    p, strides = describe(views, tensor_layout, DTYPES[q.dtype], causal, sm_scale, tuple(options), device, ordinal)
    o_strides = _layout.bhnd("out", o.shape, o.stride(), tensor_layout)[1]
    args = _call.make_args(p, *((t.data_ptr(), strides[n]) for n, t in zip("qkv", (q, k, v))),
                           (o.data_ptr(), o_strides), lse.data_ptr() if lse.numel() else 0)
    size = _call.plan(args).workspace_size  # sage_supported: raises the reason why not
    ws = torch.empty(size + WORKSPACE_ALIGN, dtype=torch.uint8, device=q.device) if size else None
    ws_ptr = _call.aligned(ws.data_ptr()) if size else 0
    stream = torch.cuda.current_stream(q.device).cuda_stream if device == Device.CUDA else 0
    _call.forward(args, ws_ptr, size, stream)  # the library selects device_ordinal itself


@torch.library.custom_op("sageattn::attention", mutates_args=())
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tensor_layout: str, causal: int,
              sm_scale: float, options: List[int], return_lse: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(o, lse): o a new contiguous tensor shaped like q; lse empty unless return_lse."""
    o = q.new_empty(q.shape)
    lse = _lse_like(q, tensor_layout, return_lse)
    _run(q, k, v, o, lse, tensor_layout, causal, sm_scale, options)
    return o, lse


@attention.register_fake
def _attention_fake(q, k, v, tensor_layout, causal, sm_scale, options, return_lse):
    return q.new_empty(q.shape), _lse_like(q, tensor_layout, return_lse)


@torch.library.custom_op("sageattn::attention_out", mutates_args=("out",))
def attention_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, tensor_layout: str,
                  causal: int, sm_scale: float, options: List[int], return_lse: bool) -> torch.Tensor:
    """Write o into out (any strides with unit stride in D); return lse (empty unless return_lse)."""
    lse = _lse_like(q, tensor_layout, return_lse)
    _run(q, k, v, out, lse, tensor_layout, causal, sm_scale, options)
    return lse


@attention_out.register_fake
def _attention_out_fake(q, k, v, out, tensor_layout, causal, sm_scale, options, return_lse):
    return _lse_like(q, tensor_layout, return_lse)


@torch.library.custom_op("sageattn::sdpa", mutates_args=())
def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool, scale: Optional[float]) -> torch.Tensor:
    """torch SDPA semantics on [B, H, N, D] tensors (GQA allowed, is_causal top-left): sageattn, or
    torch's function when the library refuses the arguments (e.g. the head dim), decided when the op
    runs, so also inside a compiled graph."""
    o = q.new_empty(q.shape)
    causal = Causal.TOP_LEFT if is_causal else Causal.NONE
    try:
        _run(q, k, v, o, _lse_like(q, "HND", False), "HND", causal, scale or 0.0, _DEFAULT_OPTIONS)
    except (SageUnsupportedError, SageArgumentError) as e:
        _fallback.note(f"not supported: {e.message}")
        extra = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
        o.copy_(_fallback.torch_sdpa(q, k, v, is_causal=is_causal, scale=scale, **extra))
    return o


@sdpa.register_fake
def _sdpa_fake(q, k, v, is_causal, scale):
    return q.new_empty(q.shape)
