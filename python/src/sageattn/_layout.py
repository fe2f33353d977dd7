"""Shapes and element strides of q, k, v, o in the two layouts, checked before any C call."""

LAYOUTS = ("HND", "NHD")


def check_layout(tensor_layout):
    """Raise ValueError unless tensor_layout is 'HND' or 'NHD'."""
    if tensor_layout not in LAYOUTS:
        raise ValueError(f"sageattn: tensor_layout must be 'HND' ([B, H, N, D]) or 'NHD' ([B, N, H, D]), "
                         f"got {tensor_layout!r}")


def bhnd(name, shape, strides, tensor_layout):
    """(sizes, strides) of a 4-d tensor as (B, H, N, D) and (batch, head, token) element strides.

    shape and strides are in the tensor's own dimension order; strides in elements.
    """
    if len(shape) != 4:
        raise ValueError(f"sageattn: {name} must have 4 dimensions ({tensor_layout}), got shape {tuple(shape)}")
    if 0 in tuple(shape):
        raise ValueError(f"sageattn: {name} has an empty dimension, shape {tuple(shape)}")
    if tensor_layout == "HND":
        b, h, n, d = shape
        sb, sh, sn, sd = strides
    else:
        b, n, h, d = shape
        sb, sn, sh, sd = strides
    if d > 1 and sd != 1:
        raise ValueError(f"sageattn: {name} must have unit stride in the head dimension D "
                         f"(got strides {tuple(strides)}); call .contiguous() first")
    if min(sb, sh, sn) < 0:
        raise ValueError(f"sageattn: {name} has a negative stride {tuple(strides)}; copy it first")
    return (b, h, n, d), (sb, sh, sn)


def output_shape(b, h, n, d, tensor_layout):
    """Shape of a tensor with sizes (B, H, N, D) in tensor_layout."""
    return (b, h, n, d) if tensor_layout == "HND" else (b, n, h, d)


def check_qkv(q, k, v):
    """Check the (B, H, N, D) sizes of q, k, v against each other; return them."""
    (b, hq, nq, d), (bk, hk, nk, dk), vs = q, k, v
    if k != vs:
        raise ValueError(f"sageattn: k and v must have the same sizes, got (B, H, N, D) = {k} and {vs}")
    if bk != b:
        raise ValueError(f"sageattn: q and k must have the same batch size, got {b} and {bk}")
    if dk != d:
        raise ValueError(f"sageattn: q and k must have the same head dim, got {d} and {dk}")
    if hq % hk:
        raise ValueError(f"sageattn: query heads ({hq}) must be a multiple of key/value heads ({hk}) (GQA)")
    return b, hq, hk, nq, nk, d
