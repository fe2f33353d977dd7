"""Wrong inputs raise before the C call with a clear message; C errors carry the C message."""

import numpy as np
import pytest

import sageattn
from sageattn._capi import Status


def _qkv(d=64, hq=2, hkv=2, n=8, dtype=np.float16):
    z = np.zeros
    return z((1, hq, n, d), dtype), z((1, hkv, n, d), dtype), z((1, hkv, n, d), dtype)


@pytest.mark.parametrize("change,exc,words", [
    (dict(tensor_layout="BHSD"), ValueError, "tensor_layout"),
    (dict(is_causal="diagonal"), ValueError, "is_causal"),
    (dict(pv="fp4"), ValueError, "option pv"),
    (dict(smooth_k="yes"), ValueError, "smooth_k"),
    (dict(cpu_threads=-1), ValueError, "cpu_threads"),
    (dict(block_size=64), TypeError, "unknown option"),
])
def test_bad_arguments(change, exc, words):
    q, k, v = _qkv()
    with pytest.raises(exc, match=words):
        sageattn.sageattn(q, k, v, **change)


def test_bad_tensors():
    q, k, v = _qkv()
    cases = [
        ((q[0], k, v), ValueError, "q must have 4 dimensions"),
        ((q, k, v[:, :, :4]), ValueError, "k and v must have the same sizes"),
        ((q, k[..., :32], v[..., :32]), ValueError, "same head dim"),
        ((np.zeros((1, 3, 8, 64), np.float16), k, v), ValueError, r"multiple of key/value heads"),
        ((q, k.astype(np.float32), v), TypeError, "one dtype"),
        ((q.astype(np.float64),) * 3, TypeError, "float16 or float32"),
        ((q, k, v.tolist()), TypeError, "v must be a numpy array"),
        (([1.0], k, v), TypeError, "torch.Tensor or a numpy.ndarray"),
        ((np.zeros((1, 2, 8, 128), np.float16)[..., ::2], k, v), ValueError, "unit stride in the head dimension"),
        ((q[:, :, ::-1], k, v), ValueError, "negative stride"),
        ((q[:, :, :0], k, v), ValueError, "empty dimension"),
    ]
    for args, exc, words in cases:
        with pytest.raises(exc, match=words):
            sageattn.sageattn(*args)


def test_bad_out():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="out must have shape"):
        sageattn.sageattn(q, k, v, out=np.zeros((1, 2, 8, 32), np.float16))
    with pytest.raises(ValueError, match="dtype of q"):
        sageattn.sageattn(q, k, v, out=np.zeros(q.shape, np.float32))
    ro = np.zeros(q.shape, np.float16)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        sageattn.sageattn(q, k, v, out=ro)


@pytest.mark.parametrize("sm_scale", [-1.0, float("nan"), float("inf")])
def test_c_error_invalid_scale(sm_scale):
    q, k, v = _qkv()
    with pytest.raises(sageattn.SageArgumentError, match="sm_scale") as e:
        sageattn.sageattn(q, k, v, sm_scale=sm_scale)
    assert e.value.status == Status.ERR_INVALID_SCALE and e.value.message


def test_c_error_overlap():
    q, k, v = _qkv()
    with pytest.raises(sageattn.SageArgumentError, match="overlap") as e:
        sageattn.sageattn(q, k, v, out=q)
    assert e.value.status == Status.ERR_OVERLAP


def test_c_error_head_dim_unsupported():
    q, k, v = _qkv(d=300)
    with pytest.raises(sageattn.SageUnsupportedError, match="300") as e:
        sageattn.sageattn(q, k, v)
    assert e.value.status == Status.ERR_HEAD_DIM
    with pytest.raises(sageattn.SageUnsupportedError):
        sageattn.plan(q, k, v)


def test_nothing_written_on_error():
    q, k, v = _qkv()
    out = np.full(q.shape, 3.0, np.float16)
    with pytest.raises(sageattn.SageError):
        sageattn.sageattn(q, k, v, out=out, sm_scale=-1.0)
    assert np.all(out == 3.0)


def test_library_not_found(monkeypatch, tmp_path):
    from sageattn import _library

    monkeypatch.setenv("SAGEATTN_LIBRARY", str(tmp_path / "missing.so"))
    _library.lib.cache_clear()
    try:
        with pytest.raises(sageattn.LibraryNotFoundError, match="SAGEATTN_LIBRARY"):
            _library.lib()
    finally:
        monkeypatch.undo()
        _library.lib.cache_clear()
