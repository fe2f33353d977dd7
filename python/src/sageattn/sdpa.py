"""sdpa(): drop-in for torch.nn.functional.scaled_dot_product_attention.

Runs sageattn when it can, with torch's semantics (is_causal is top-left aligned when Nq != Nk,
scale None = 1/sqrt(E), GQA only with enable_gqa=True); otherwise calls torch's own function and
warns once per reason. Decided from the arguments: attn_mask, dropout, grad (no backward), nested,
device, dtype, rank, scale (<= 0 or not finite), shape. Decided by sage_supported when the kernel is
called: what it refuses, e.g. the head dim ("not supported: <its message>").
Inside torch.compile the argument checks are part of the trace (a fallback there is compiled as
torch's function and neither warned about nor counted); the library's refusals are handled at run
time in both modes.
"""

import math

import torch

from . import _fallback
from ._torch_backend import DEVICE_DTYPES


def _fallback_reason(q, k, v, attn_mask, dropout_p, scale, enable_gqa):
    """Why torch's function must run instead of ours, or None."""
    tensors = (q, k, v)
    if attn_mask is not None:
        return "attn_mask"
    if dropout_p != 0.0:
        return "dropout"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "grad"
    if any(t.is_nested for t in tensors):
        return "nested"
    if q.device.type not in DEVICE_DTYPES or k.device != q.device or v.device != q.device:
        return "device"
    if q.dtype not in DEVICE_DTYPES[q.device.type] or k.dtype != q.dtype or v.dtype != q.dtype:
        return "dtype"
    if q.dim() not in (3, 4) or k.dim() != q.dim() or v.dim() != q.dim():
        return "rank"
    if scale is not None and not (scale > 0.0 and math.isfinite(scale)):
        return "scale"
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        return "shape"
    hq, hkv = (q.shape[-3], k.shape[-3]) if q.dim() == 4 else (1, 1)
    if (hq != hkv and not enable_gqa) or hq % hkv or 0 in q.shape or 0 in k.shape:
        return "shape"
    return None


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention, by sageattn where supported.

    query [..., Hq, L, E], key/value [..., Hkv, S, E] (3-d or 4-d). Falls back to torch's function,
    with a warning once per reason, for what sageattn does not do (see the module docstring).
    """
    reason = _fallback_reason(query, key, value, attn_mask, dropout_p, scale, enable_gqa)
    if reason is None:
        q, k, v = (t if t.dim() == 4 else t.unsqueeze(1) for t in (query, key, value))
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        o = torch.ops.sageattn.sdpa(q, k, v, bool(is_causal), scale)
        return o if query.dim() == 4 else o.squeeze(1)
    if not torch.compiler.is_compiling():
        _fallback.note(reason)
    extra = {"enable_gqa": True} if enable_gqa else {}
    return _fallback.torch_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                scale=scale, **extra)
