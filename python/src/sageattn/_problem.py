"""Turn checked tensor geometry into a _call.Problem plus the (pointer, strides) operands."""

from . import _layout
from ._call import Problem


def describe(views, tensor_layout, dtype, causal, sm_scale, options, device, ordinal=0):
    """Problem and operand strides from views = {'q': (shape, element strides), 'k': ..., 'v': ...}.

    Returns (problem, {'q': (sb, sh, sn), 'k': ..., 'v': ...}).
    """
    _layout.check_layout(tensor_layout)
    sizes, strides = {}, {}
    for name in "qkv":
        sizes[name], strides[name] = _layout.bhnd(name, *views[name], tensor_layout)
    dims = _layout.check_qkv(sizes["q"], sizes["k"], sizes["v"])
    scale = 0.0 if sm_scale is None else float(sm_scale)
    return Problem(dtype=int(dtype), sizes=dims, causal=int(causal), sm_scale=scale, options=options,
                   device=int(device), device_ordinal=ordinal), strides


def check_out(shape, strides, dtype_ok, expected_shape, tensor_layout):
    """(sb, sh, sn) of a caller's out= tensor after checking its shape and dtype."""
    if tuple(shape) != tuple(expected_shape):
        raise ValueError(f"sageattn: out must have shape {tuple(expected_shape)} ({tensor_layout}), "
                         f"got {tuple(shape)}")
    if not dtype_ok:
        raise ValueError("sageattn: out must have the dtype of q")
    return _layout.bhnd("out", shape, strides, tensor_layout)[1]
