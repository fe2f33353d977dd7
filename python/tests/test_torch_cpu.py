"""sageattn() on torch CPU tensors, the custom ops, and torch.compile tracing (CPU)."""

import pytest

from torch_util import assert_accurate, exact, randn, torch  # skips this file without torch

import sageattn


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_accuracy(dtype, layout):
    shape_q, shape_kv = ((2, 4, 160, 64), (2, 2, 224, 64)) if layout == "HND" else ((2, 160, 4, 64), (2, 224, 2, 64))
    q, k, v = randn(*shape_q, dtype=dtype), randn(*shape_kv, dtype=dtype, seed=1), randn(*shape_kv, dtype=dtype, seed=2)
    o = sageattn.sageattn(q, k, v, tensor_layout=layout)
    assert o.shape == q.shape and o.dtype == dtype and o.is_contiguous()
    assert_accurate(o, exact(q, k, v, layout)[0])


def test_transposed_views_lse_causal():
    # [B, N, H, D] storage read as HND views (what attention modules pass): no copy needed.
    q, k, v = (randn(2, n, 4, 64, seed=s).transpose(1, 2) for s, n in ((0, 96), (1, 128), (2, 128)))
    o, lse = sageattn.sageattn(q, k, v, is_causal="top_left", return_lse=True)
    ref, ref_lse = exact(q, k, v, causal="top_left")
    assert_accurate(o, ref)
    assert lse.shape == (2, 4, 96) and lse.dtype == torch.float32
    assert abs(lse.numpy() - ref_lse).max() < 0.05


def test_out_argument():
    q, k, v = randn(1, 2, 64, 64), randn(1, 2, 64, 64, seed=1), randn(1, 2, 64, 64, seed=2)
    big = torch.full((1, 2, 64, 128), 5.0, dtype=torch.float16)
    out = big[..., :64]
    o, lse = sageattn.sageattn(q, k, v, out=out, return_lse=True)
    assert o is out and lse.shape == (1, 2, 64)
    assert torch.all(big[..., 64:] == 5.0)
    assert_accurate(out, exact(q, k, v)[0])


def test_prechecks():
    q = randn(1, 2, 16, 64)
    with pytest.raises(TypeError, match="dtype torch.float64 is not supported on cpu"):
        sageattn.sageattn(q.double(), q.double(), q.double())
    with pytest.raises(TypeError, match="k has dtype"):
        sageattn.sageattn(q, q.float(), q)
    with pytest.raises(TypeError, match="v must be a torch.Tensor"):
        sageattn.sageattn(q, q, q.numpy())
    with pytest.raises(ValueError, match="out must have the shape of q"):
        sageattn.sageattn(q, q, q, out=q[:, :1].clone())
    with pytest.raises(RuntimeError, match="no backward"):
        sageattn.sageattn(q.clone().requires_grad_(), q, q)
    with torch.no_grad():
        sageattn.sageattn(q.clone().requires_grad_(), q, q)


def test_opcheck_custom_ops():
    q, k, v = randn(1, 2, 16, 64), randn(1, 2, 16, 64, seed=1), randn(1, 2, 16, 64, seed=2)
    opts = [0] * 7
    torch.library.opcheck(torch.ops.sageattn.attention.default, (q, k, v, "HND", 0, 0.0, opts, True))
    torch.library.opcheck(torch.ops.sageattn.attention_out.default,
                          (q, k, v, torch.empty_like(q), "HND", 1, 0.0, opts, False))


def test_compile_fullgraph_traces_the_op():
    q, k, v = randn(1, 2, 32, 64), randn(1, 2, 32, 64, seed=1), randn(1, 2, 32, 64, seed=2)

    def f(q, k, v):
        return sageattn.sageattn(q * 2.0, k, v, is_causal=True, tensor_layout="HND") + 1.0

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(q, k, v), f(q, k, v))
