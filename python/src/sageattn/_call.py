"""The C entry points behind one description of a call: build sage_args, ask sage_supported (the
reason why not, or the plan with its workspace size), run sage_forward."""

import ctypes
import dataclasses

from . import _capi, _counters
from ._capi import QKGroups, PV
from ._library import lib
from .errors import error_for


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything of a call but the pointers: sizes, dtype, mask, scale, options, device."""

    dtype: int              # _capi.DType
    sizes: tuple            # (B, Hq, Hkv, Nq, Nk, D)
    causal: int             # _capi.Causal
    sm_scale: float         # 0 = 1/sqrt(D)
    options: tuple          # options.parse_options()
    device: int             # _capi.Device
    device_ordinal: int = 0


@dataclasses.dataclass(frozen=True)
class Plan:
    """What sage_forward runs for a call (sage_plan)."""

    kernel: str
    qk_groups: str
    pv: str
    smooth_k: bool
    smooth_q: bool
    smooth_v: bool
    workspace_size: int


def make_args(p, q, k, v, o, lse):
    """sage_args for problem p; q, k, v, o are (pointer, (sb, sh, sn)); lse a pointer or 0."""
    a = _capi.SageArgs()
    lib().sage_args_init(ctypes.byref(a))
    a.dtype = p.dtype
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_kv, a.head_dim = p.sizes
    for name, (ptr, strides) in zip("qkvo", (q, k, v, o)):
        setattr(a, name, ptr)
        for s, value in zip("bhn", strides):
            setattr(a, f"{name}_stride_{s}", value)
    a.lse = lse or None
    a.sm_scale = p.sm_scale
    a.causal = p.causal
    opt = a.options
    (opt.algorithm, opt.qk_groups, opt.pv, opt.smooth_k, opt.smooth_q, opt.smooth_v, a.cpu_threads) = p.options
    a.device = p.device
    a.device_ordinal = p.device_ordinal
    return a


def _check(status, msg):
    if status != _capi.Status.OK:
        raise error_for(status, msg.value.decode(errors="replace"))


def plan(args):
    """The Plan of sage_supported(); raises the SageError that says why not."""
    msg = ctypes.create_string_buffer(_capi.MSG_SIZE)
    out = _capi.SagePlan()
    _check(lib().sage_supported(ctypes.byref(args), ctypes.byref(out), msg, len(msg)), msg)
    return Plan(kernel=out.kernel.decode(), qk_groups=QKGroups(out.qk_groups).name.lower(),
                pv="fp8" if out.pv == PV.FP8 else "16bit", smooth_k=bool(out.smooth_k),
                smooth_q=bool(out.smooth_q), smooth_v=bool(out.smooth_v),
                workspace_size=int(out.workspace_size))


# sage_supported validates pointers (non-NULL, o apart from the inputs) but reads no data: a query
# made before any output exists uses these placeholder addresses, 1 TiB apart.
_PLACEHOLDER_SPACING = 1 << 40


def plan_for(p, strides):
    """Plan of problem p for q, k, v with strides ({'q': (sb, sh, sn), ...}) and a contiguous o, at
    placeholder addresses. Raises the SageError that says why not."""
    _, hq, _, nq, _, d = p.sizes
    operands = [((i + 1) * _PLACEHOLDER_SPACING, strides[name]) for i, name in enumerate("qkv")]
    operands.append((4 * _PLACEHOLDER_SPACING, (hq * nq * d, nq * d, d)))
    return plan(make_args(p, *operands, 0))


def aligned(address):
    """address rounded up to the workspace alignment (allocate size + WORKSPACE_ALIGN bytes)."""
    a = _capi.WORKSPACE_ALIGN
    return (address + a - 1) // a * a


def forward(args, workspace, size, stream=0):
    """sage_forward (raises SageError); counts the call (sageattn.stats())."""
    msg = ctypes.create_string_buffer(_capi.MSG_SIZE)
    _check(lib().sage_forward(ctypes.byref(args), workspace or None, size, stream or None, msg, len(msg)), msg)
    _counters.count_kernel_call()
