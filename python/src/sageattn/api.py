"""sageattn(): one entry point for numpy arrays and torch tensors."""

import sys

import numpy as np

from . import _numpy_backend
from ._library import lib
from .options import parse_causal, parse_options


def _is_torch_tensor(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, out=None, **options):
    """8-bit quantized attention softmax(sm_scale * q k^T) v.

    q: [B, Hq, Nq, D] ("HND") or [B, Nq, Hq, D] ("NHD"); k, v likewise with Hkv heads and Nk tokens,
    Hq a multiple of Hkv (GQA). Any strides with unit stride in D.
    torch CUDA tensors (float16, bfloat16) run on the current stream with workspace from torch's
    allocator; torch CPU tensors (float16, bfloat16, float32) and numpy arrays (float16, float32) run
    the library's CPU path.
    is_causal: False, True / 'bottom_right' (query i sees key j iff j <= i + Nk - Nq, FlashAttention)
    or 'top_left' (j <= i, torch SDPA); the same when Nq == Nk.
    sm_scale: None for 1/sqrt(D).
    return_lse: also return lse [B, Hq, Nq] float32, natural log of the softmax denominator.
    out: a tensor/array of q's shape, dtype and device to write o into (any strides, unit stride in D).
    options: see sageattn.options.parse_options (qk_groups, pv, smooth_k, smooth_q, smooth_v,
    algorithm, cpu_threads).
    Returns o (same shape and dtype as q), or (o, lse).
    Raises TypeError/ValueError for wrong inputs before any C call, SageError subclasses for errors
    the library reports (with its message).
    """
    opts = parse_options(options)
    causal = parse_causal(is_causal)
    if _is_torch_tensor(q):
        from . import _torch_api
        return _torch_api.sageattn(q, k, v, tensor_layout, causal, sm_scale, opts, return_lse, out)
    if isinstance(q, np.ndarray):
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, np.ndarray):
                raise TypeError(f"sageattn: {name} must be a numpy array like q, got {type(t).__name__}")
        return _numpy_backend.run(q, k, v, tensor_layout, causal, sm_scale, opts, return_lse, out)
    raise TypeError(f"sageattn: q must be a torch.Tensor or a numpy.ndarray, got {type(q).__name__}")


def plan(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, **options):
    """What sageattn() would run for these inputs: a Plan (kernel name, resolved qk_groups, pv,
    smoothing, workspace bytes). Raises SageUnsupportedError / SageArgumentError saying why not."""
    opts = parse_options(options)
    causal = parse_causal(is_causal)
    if _is_torch_tensor(q):
        from . import _torch_api
        return _torch_api.plan(q, k, v, tensor_layout, causal, sm_scale, opts)
    return _numpy_backend.plan(q, k, v, tensor_layout, causal, sm_scale, opts)


def version():
    """Version string of the loaded C library."""
    return lib().sage_version_string().decode()
