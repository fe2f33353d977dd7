"""sageattn on numpy arrays: the library's CPU path."""

import numpy as np

from . import _call, _layout
from ._capi import DType, Device, WORKSPACE_ALIGN
from ._problem import check_out, describe

_DTYPES = {np.dtype(np.float16): DType.FP16, np.dtype(np.float32): DType.FP32}


def _view(name, a):
    """(shape, element strides) of an ndarray."""
    if a.dtype not in _DTYPES:
        raise TypeError(f"sageattn: {name} must be float16 or float32 on the CPU path, got {a.dtype}")
    if any(s % a.itemsize for s in a.strides):
        raise ValueError(f"sageattn: {name} has byte strides {a.strides} that are not a multiple of its item size")
    return a.shape, tuple(s // a.itemsize for s in a.strides)


def _describe(q, k, v, tensor_layout, causal, sm_scale, options):
    views = {name: _view(name, a) for name, a in zip("qkv", (q, k, v))}
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"sageattn: q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return describe(views, tensor_layout, _DTYPES[q.dtype], causal, sm_scale, options, Device.CPU)


def run(q, k, v, tensor_layout, causal, sm_scale, options, return_lse, out):
    """Attention of numpy arrays; returns o, or (o, lse) when return_lse."""
    p, strides = _describe(q, k, v, tensor_layout, causal, sm_scale, options)
    b, hq, _, nq, _, d = p.sizes
    shape = _layout.output_shape(b, hq, nq, d, tensor_layout)
    if out is None:
        out = np.empty(shape, dtype=q.dtype)
    elif not isinstance(out, np.ndarray):
        raise TypeError(f"sageattn: out must be a numpy array like q, got {type(out).__name__}")
    o_strides = check_out(out.shape, _view("out", out)[1], out.dtype == q.dtype, shape, tensor_layout)
    if not out.flags.writeable:
        raise ValueError("sageattn: out is read-only")
    lse = np.empty((b, hq, nq), dtype=np.float32) if return_lse else None
    args = _call.make_args(
        p, *((a.ctypes.data, strides[n]) for n, a in zip("qkv", (q, k, v))), (out.ctypes.data, o_strides),
        lse.ctypes.data if lse is not None else 0)
    size = _call.plan(args).workspace_size  # sage_supported: raises the reason why not
    ws = np.empty(size + WORKSPACE_ALIGN, dtype=np.uint8) if size else None
    _call.forward(args, _call.aligned(ws.ctypes.data) if size else 0, size)
    return (out, lse) if return_lse else out


def plan(q, k, v, tensor_layout, causal, sm_scale, options):
    """_call.Plan for numpy arrays (no output is allocated; sage_supported reads no data)."""
    return _call.plan_for(*_describe(q, k, v, tensor_layout, causal, sm_scale, options))
