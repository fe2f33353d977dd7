"""The ctypes mirror of include/sageattn.h agrees with the loaded library."""

import ctypes

import sageattn
from sageattn import _capi
from sageattn._library import lib


def _init_args():
    a = _capi.SageArgs()
    lib().sage_args_init(ctypes.byref(a))
    return a


def test_struct_size_matches_library():
    # sage_args_init writes the library's sizeof(sage_args).
    assert _init_args().struct_size == ctypes.sizeof(_capi.SageArgs)


def test_defaults_of_args_init():
    a = _init_args()
    assert (a.device, a.causal, a.sm_scale, a.lse) == (_capi.Device.CPU, _capi.Causal.NONE, 0.0, None)
    o = a.options
    assert (o.algorithm, o.qk_groups, o.pv, o.smooth_k, o.smooth_q, o.smooth_v) == (0, 0, 0, 0, 0, 0)


def test_field_offsets_through_set_contiguous_bhnd():
    # The C function reads the sizes and writes the strides: wrong offsets give wrong strides.
    a = _init_args()
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_kv, a.head_dim = 2, 6, 3, 5, 7, 11
    lib().sage_set_contiguous_bhnd(ctypes.byref(a))
    for t, (h, n) in {"q": (6, 5), "k": (3, 7), "v": (3, 7), "o": (6, 5)}.items():
        got = tuple(getattr(a, f"{t}_stride_{s}") for s in "bhn")
        assert got == (h * n * 11, n * 11, 11), t
    assert a.cpu_threads == 0 and a.device_ordinal == 0  # the tail of the struct is untouched


def test_version_matches_package():
    assert lib().sage_version_number() == 100
    assert sageattn.version() == sageattn.__version__


def test_every_status_has_a_distinct_string():
    strings = {lib().sage_status_string(s).decode() for s in _capi.Status}
    assert len(strings) == len(_capi.Status) and all(strings)


def test_plan_reads_back_resolved_options():
    import numpy as np

    q = np.zeros((1, 2, 8, 64), np.float16)
    p = sageattn.plan(q, q, q, qk_groups="per_block", smooth_k=False)
    assert p.kernel and p.qk_groups == "per_block" and p.smooth_k is False and p.pv in ("16bit", "fp8")
    assert p.workspace_size >= 0


def test_plan_workspace_equals_workspace_size_query():
    import numpy as np

    from sageattn import _call
    from sageattn._numpy_backend import _describe

    q = np.zeros((2, 4, 100, 64), np.float16)
    p, strides = _describe(q, q[:, :2], q[:, :2], "HND", 0, None, sageattn.options.parse_options({}))
    args = _call.make_args(p, *((1 << 40, strides[n]) for n in "qkv"), (4 << 40, (4 * 100 * 64, 100 * 64, 64)), 0)
    size, msg = ctypes.c_size_t(), ctypes.create_string_buffer(256)
    assert lib().sage_workspace_size(ctypes.byref(args), ctypes.byref(size), msg, len(msg)) == 0, msg.value
    assert size.value == _call.plan(args).workspace_size
