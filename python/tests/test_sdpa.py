"""sageattn.sdpa: torch's semantics, fallbacks (warned once per reason), patching. CPU, and CUDA
when there is one."""

import warnings

import pytest

from torch_util import DEVICES, assert_accurate, budget_for, exact, randn, reset_warnings, torch  # skips without torch

import sageattn

torch_sdpa = torch.nn.functional.scaled_dot_product_attention


@pytest.fixture(autouse=True)
def _fresh():
    sageattn.unpatch_sdpa()
    reset_warnings()
    sageattn.reset_stats()
    yield
    sageattn.unpatch_sdpa()


def _qkv(device, b=2, hq=4, hkv=4, nq=96, nk=96, d=64, dtype=torch.float16):
    return (randn(b, hq, nq, d, dtype=dtype, device=device), randn(b, hkv, nk, d, dtype=dtype, device=device, seed=1),
            randn(b, hkv, nk, d, dtype=dtype, device=device, seed=2))


def _assert_ours_accurate(o, q, k, v, ref):
    """o within the budget of the PV precision the library picks for these inputs (FP8 on sm89+)."""
    assert_accurate(o, ref, budget_for(sageattn.plan(q, k, v)))


def _ran_ours(calls=1):
    s = sageattn.stats()
    return s["kernel_calls"] == calls and not s["fallbacks"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nq,nk", [(96, 96), (64, 128), (128, 64)])
def test_is_causal_is_top_left(device, nq, nk):
    q, k, v = _qkv(device, nq=nq, nk=nk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = sageattn.sdpa(q, k, v, is_causal=True)
    assert _ran_ours()
    _assert_ours_accurate(o, q, k, v, exact(q, k, v, causal="top_left")[0])


@pytest.mark.parametrize("device", DEVICES)
def test_scale_gqa_and_3d(device):
    q, k, v = _qkv(device, hq=8, hkv=2)
    _assert_ours_accurate(sageattn.sdpa(q, k, v, scale=0.1, enable_gqa=True), q, k, v, exact(q, k, v, sm_scale=0.1)[0])
    q3, k3, v3 = q[:, 0], k[:, 0], v[:, 0]
    o3 = sageattn.sdpa(q3, k3, v3)
    assert o3.shape == q3.shape
    _assert_ours_accurate(o3, q, k, v, exact(q3[:, None], k3[:, None], v3[:, None])[0][:, 0])
    assert _ran_ours(2)


@pytest.mark.parametrize("device", DEVICES)
def test_non_unit_stride_in_d_is_copied(device):
    q, k, v = _qkv(device)
    qs = torch.cat([q, q], dim=-1)[..., ::2]
    _assert_ours_accurate(sageattn.sdpa(qs, k, v), q, k, v, exact(qs, k, v)[0])
    assert _ran_ours()


def _fallback_cases(device):
    q, k, v = _qkv(device)
    mask = torch.ones(96, 96, dtype=torch.bool, device=device).tril()
    return {
        "attn_mask": ((q, k, v), dict(attn_mask=mask)),
        "dropout": ((q, k, v), dict(dropout_p=0.5)),  # compared on shape only (random)
        "grad": ((q.clone().requires_grad_(), k, v), {}),
        "dtype": ((q.double(), k.double(), v.double()), {}),
        "rank": ((q[None], k[None], v[None]), {}),
        "scale": ((q, k, v), dict(scale=0.0)),
        "shape": ((q, k, v[..., :32]), {}),
        "not supported": (_qkv(device, d=288), {}),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reason", ["attn_mask", "dropout", "grad", "dtype", "rank", "scale", "shape", "not supported"])
def test_fallback_matches_torch_and_warns_once(device, reason):
    args, kwargs = _fallback_cases(device)[reason]
    with pytest.warns(UserWarning, match=f"falling back.*{reason}"):
        o = sageattn.sdpa(*args, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sageattn.sdpa(*args, **kwargs)  # the same reason again: no warning
    torch.manual_seed(0)
    want = torch_sdpa(*args, **kwargs)
    assert o.shape == want.shape and o.dtype == want.dtype
    if reason != "dropout":  # bit-identical to torch, NaN included (scale=0 gives NaN on CUDA)
        torch.testing.assert_close(o, want, rtol=0, atol=0, equal_nan=True)
    fallbacks = sageattn.stats()["fallbacks"]
    assert sageattn.stats()["kernel_calls"] == 0 and sum(fallbacks.values()) == 2
    assert all(r.startswith(reason) for r in fallbacks)


@pytest.mark.parametrize("device", DEVICES)
def test_gqa_needs_enable_gqa_like_torch(device):
    q, k, v = _qkv(device, hq=8, hkv=2)
    with pytest.warns(UserWarning, match="shape"), pytest.raises(RuntimeError):
        sageattn.sdpa(q, k, v)


def test_patch_unpatch_and_context_manager():
    assert torch.nn.functional.scaled_dot_product_attention is torch_sdpa
    sageattn.patch_sdpa()
    assert sageattn.is_patched() and torch.nn.functional.scaled_dot_product_attention is sageattn.sdpa
    sageattn.unpatch_sdpa()
    assert torch.nn.functional.scaled_dot_product_attention is torch_sdpa
    with sageattn.patch_sdpa():
        q, k, v = _qkv("cpu")
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
        with sageattn.patch_sdpa():  # nested: the inner one made no change and undoes none
            pass
        assert sageattn.is_patched()
    assert not sageattn.is_patched()
    assert _ran_ours()


@pytest.mark.parametrize("device", DEVICES)
def test_patched_model_compiles_fullgraph(device):
    q, k, v = _qkv(device)

    def block(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) * 2.0

    torch._dynamo.reset()
    with sageattn.patch_sdpa():
        compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
        got = compiled(q, k, v)
        assert torch.equal(got, block(q, k, v))
    assert sageattn.stats()["kernel_calls"] == 2 and not sageattn.stats()["fallbacks"]


def test_dynamic_shapes_and_refusal_inside_compiled_graph():
    # Symbolic sizes trace; the library's refusal (head dim 288 > 256 on the CPU) is handled when the
    # op runs, inside the compiled graph, and counted.
    def block(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v) + 1.0

    torch._dynamo.reset()
    with sageattn.patch_sdpa():
        compiled = torch.compile(block, fullgraph=True, backend="aot_eager", dynamic=True)
        for n in (32, 48):
            q, k, v = _qkv("cpu", nq=n, nk=n)
            assert torch.equal(compiled(q, k, v), block(q, k, v))
        q, k, v = _qkv("cpu", d=288)
        with pytest.warns(UserWarning, match="not supported"):
            got = compiled(q, k, v)
    assert torch.equal(got, torch_sdpa(q, k, v) + 1.0)
    assert sageattn.stats()["kernel_calls"] == 4 and sum(sageattn.stats()["fallbacks"].values()) == 1
