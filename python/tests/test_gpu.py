"""sageattn on CUDA tensors: accuracy vs an fp32 reference, layouts, GQA, lse, out=, streams,
torch.compile(fullgraph=True) with inductor, CUDA-graph capture, no synchronisation."""

import pytest

from torch_util import CUDA, assert_accurate, budget_for, fp32_reference, randn, torch  # skips without torch

import sageattn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device: the GPU tests are skipped")]


def _qkv(b=2, hq=8, hkv=8, nq=1024, nk=1024, d=128, dtype=torch.float16, layout="HND"):
    def make(h, n, seed):
        x = randn(b, h, n, d, dtype=dtype, device="cuda", seed=seed)
        return x if layout == "HND" else x.transpose(1, 2).contiguous()
    return make(hq, nq, 0), make(hkv, nk, 1), make(hkv, nk, 2)


def _hnd(t, layout):
    return t if layout == "HND" else t.transpose(1, 2)


def _check(q, k, v, layout="HND", causal="none", sm_scale=None, **options):
    o, lse = sageattn.sageattn(q, k, v, tensor_layout=layout, is_causal=False if causal == "none" else causal,
                               sm_scale=sm_scale, return_lse=True, **options)
    assert o.shape == q.shape and o.dtype == q.dtype and o.device == q.device
    assert torch.isfinite(o).all()
    ref, ref_lse = fp32_reference(*(_hnd(t, layout) for t in (q, k, v)), causal=causal, sm_scale=sm_scale)
    plan = sageattn.plan(q, k, v, tensor_layout=layout, **options)
    assert_accurate(_hnd(o, layout), ref.cpu().double().numpy(), budget_for(plan))
    seen = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), seen)
    assert (lse[seen] - ref_lse[seen]).abs().max().item() < 0.05


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["HND", "NHD"])
@pytest.mark.parametrize("d", [64, 128])
def test_accuracy(dtype, layout, d):
    _check(*_qkv(dtype=dtype, layout=layout, d=d), layout=layout)


@pytest.mark.parametrize("causal", ["top_left", "bottom_right"])
@pytest.mark.parametrize("nq,nk", [(1024, 1024), (512, 1536), (1536, 512)])
def test_causal(causal, nq, nk):
    _check(*_qkv(nq=nq, nk=nk), causal=causal)


@pytest.mark.parametrize("hkv", [1, 2])
def test_gqa(hkv):
    _check(*_qkv(hkv=hkv))


@pytest.mark.parametrize("options", [dict(pv="16bit"), dict(qk_groups="per_block"), dict(qk_groups="per_warp"),
                                     dict(smooth_v=True), dict(smooth_q=True)])
def test_options(options):
    _check(*_qkv(), **options)


def test_odd_sizes_and_views():
    # N not a multiple of any tile, [B, N, H, D] storage read through HND views.
    q, k, v = (randn(3, n, 4, 64, device="cuda", seed=s).transpose(1, 2) for s, n in ((0, 77), (1, 301), (2, 301)))
    _check(q, k, v, sm_scale=0.1)


def test_long_kv():
    # Nk >= 8K: what a missing two-level FP8 accumulation would show.
    q, k, v = _qkv(b=1, hq=4, hkv=4, nq=256, nk=8192)
    o = sageattn.sageattn(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    budget = budget_for(sageattn.plan(q, k, v))
    budget = dict(budget, rel_l1=max(budget["rel_l1"], 0.041))  # the e4m3 floor grows a little with Nk
    assert_accurate(o, ref.cpu().double().numpy(), budget)


def test_out_and_side_stream():
    q, k, v = _qkv(b=1)
    want = sageattn.sageattn(q, k, v)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = torch.empty_like(q)
        got = sageattn.sageattn(q, k, v, out=out)
    torch.cuda.current_stream().wait_stream(side)
    assert got is out and torch.equal(out, want)  # deterministic: same bytes


def test_no_synchronisation():
    q, k, v = _qkv(b=1)
    sageattn.sageattn(q, k, v)  # first call: device properties are cached once
    torch.cuda.set_sync_debug_mode("error")
    try:
        sageattn.sageattn(q, k, v, return_lse=True)
        sageattn.sdpa(q, k, v, is_causal=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graph_capture_and_replay():
    q, k, v = _qkv(b=1)
    static = [t.clone() for t in (q, k, v)]
    sageattn.sageattn(*static, is_causal=True)  # warm-up outside capture: the same kernels get loaded
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o_static = sageattn.sageattn(*static, is_causal=True)
    fresh = _qkv(b=1)
    for dst, src in zip(static, fresh):
        dst.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(o_static, sageattn.sageattn(*fresh, is_causal=True))


def test_compile_fullgraph_inductor():
    q, k, v = _qkv(b=1)

    def f(q, k, v):
        return sageattn.sageattn(q * 0.5, k, v, is_causal=True).float().sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), f(q, k, v), rtol=1e-3, atol=1e-3)  # sum order may differ


def test_compile_reduce_overhead_patched_sdpa():
    # torch.compile's CUDA graphs around a model that calls the patched SDPA.
    q, k, v = _qkv(b=1)

    def block(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) + 1.0

    torch._dynamo.reset()
    with sageattn.patch_sdpa():
        compiled = torch.compile(block, fullgraph=True, mode="reduce-overhead")
        for _ in range(3):
            got = compiled(q, k, v)
        want = block(q, k, v)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


def test_fp32_cuda_is_refused_before_c():
    q = randn(1, 2, 64, 64, dtype=torch.float32, device="cuda")
    with pytest.raises(TypeError, match="not supported on cuda"):
        sageattn.sageattn(q, q, q)


def test_opcheck_custom_ops_cuda():
    q, k, v = _qkv(b=1, hq=2, hkv=2, nq=64, nk=64, d=64)
    opts = [0] * 7
    torch.library.opcheck(torch.ops.sageattn.attention.default, (q, k, v, "HND", 1, 0.0, opts, True))
    torch.library.opcheck(torch.ops.sageattn.attention_out.default,
                          (q, k, v, torch.empty_like(q), "HND", 0, 0.0, opts, False))
