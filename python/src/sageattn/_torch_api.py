"""Checks and dispatch of sageattn() for torch tensors (runs before the custom op, traceable)."""

import torch

from . import _call, _layout
from ._capi import Device
from ._problem import describe
from ._torch_backend import DEVICE_DTYPES, DTYPES


def check_tensors(q, k, v, out=None):
    """Raise TypeError/ValueError/RuntimeError with a clear message unless q, k, v (and out) fit."""
    named = [("q", q), ("k", k), ("v", v)] + ([("out", out)] if out is not None else [])
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"sageattn: {name} must be a torch.Tensor like q, got {type(t).__name__}")
    for name, t in named[1:]:
        if t.device != q.device:
            raise ValueError(f"sageattn: {name} is on {t.device} but q is on {q.device}")
        if t.dtype != q.dtype:
            raise TypeError(f"sageattn: {name} has dtype {t.dtype} but q has {q.dtype}")
    allowed = DEVICE_DTYPES.get(q.device.type)
    if allowed is None:
        raise TypeError(f"sageattn: tensors on {q.device.type} are not supported (cuda or cpu)")
    if q.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"sageattn: dtype {q.dtype} is not supported on {q.device.type} ({names})")
    if torch.is_grad_enabled() and any(t.requires_grad for _, t in named[:3]):
        raise RuntimeError("sageattn: no backward pass; call it under torch.no_grad() / torch.inference_mode() "
                           "or on detached tensors (sageattn.sdpa falls back to torch when gradients are needed)")


def sageattn(q, k, v, tensor_layout, causal, sm_scale, options, return_lse, out):
    """Attention of torch tensors through the custom ops; returns o or (o, lse)."""
    check_tensors(q, k, v, out)
    _layout.check_layout(tensor_layout)
    sizes = [_layout.bhnd(name, t.shape, t.stride(), tensor_layout)[0] for name, t in zip("qkv", (q, k, v))]
    _layout.check_qkv(*sizes)
    scale = 0.0 if sm_scale is None else float(sm_scale)
    if out is None:
        o, lse = torch.ops.sageattn.attention(q, k, v, tensor_layout, int(causal), scale, list(options), return_lse)
    else:
        if tuple(out.shape) != tuple(q.shape):
            raise ValueError(f"sageattn: out must have the shape of q {tuple(q.shape)}, got {tuple(out.shape)}")
        _layout.bhnd("out", out.shape, out.stride(), tensor_layout)
        lse = torch.ops.sageattn.attention_out(q, k, v, out, tensor_layout, int(causal), scale, list(options),
                                               return_lse)
        o = out
    return (o, lse) if return_lse else o


def plan(q, k, v, tensor_layout, causal, sm_scale, options):
    """_call.Plan for torch tensors (raises the SageError that says why not)."""
    check_tensors(q, k, v)
    device = Device.CUDA if q.device.type == "cuda" else Device.CPU
    views = {name: (t.shape, t.stride()) for name, t in zip("qkv", (q, k, v))}
    p, strides = describe(views, tensor_layout, DTYPES[q.dtype], causal, sm_scale, options, device,
                          q.device.index if device == Device.CUDA else 0)
    return _call.plan_for(p, strides)
