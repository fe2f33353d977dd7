"""ctypes mirror of include/sageattn.h: enums, structs and function prototypes.

Field order and types follow the header exactly; sage_args_init() writes sizeof(sage_args) into
struct_size, which tests compare with ctypes.sizeof(SageArgs).
"""

import ctypes
import enum

c_enum = ctypes.c_int  # C enums with small non-negative values are int-sized on every supported ABI


class Status(enum.IntEnum):
    """sage_status."""

    OK = 0
    ERR_NULL_POINTER = 1
    ERR_STRUCT_SIZE = 2
    ERR_INVALID_SIZE = 3
    ERR_HEADS_MISMATCH = 4
    ERR_HEAD_DIM = 5
    ERR_INVALID_STRIDE = 6
    ERR_OVERLAP = 7
    ERR_INVALID_ENUM = 8
    ERR_INVALID_SCALE = 9
    ERR_WORKSPACE_TOO_SMALL = 10
    ERR_WORKSPACE_ALIGNMENT = 11
    ERR_UNSUPPORTED = 12
    ERR_NO_CUDA = 13
    ERR_NO_DEVICE = 14
    ERR_CUDA = 15


class DType(enum.IntEnum):
    """sage_dtype."""

    FP16 = 0
    BF16 = 1
    FP32 = 2


class Causal(enum.IntEnum):
    """sage_causal."""

    NONE = 0
    TOP_LEFT = 1
    BOTTOM_RIGHT = 2


class Algorithm(enum.IntEnum):
    """sage_algorithm."""

    QUANTIZED = 0
    REFERENCE = 1


class QKGroups(enum.IntEnum):
    """sage_qk_groups."""

    AUTO = 0
    PER_BLOCK = 1
    PER_WARP = 2
    PER_THREAD = 3


class PV(enum.IntEnum):
    """sage_pv_type."""

    AUTO = 0
    FP8 = 1
    BIT16 = 2


class Toggle(enum.IntEnum):
    """sage_toggle."""

    AUTO = 0
    OFF = 1
    ON = 2


class Device(enum.IntEnum):
    """sage_device."""

    CPU = 0
    CUDA = 1


WORKSPACE_ALIGN = 256
MSG_SIZE = 512


class SageOptions(ctypes.Structure):
    """sage_options."""

    _fields_ = [
        ("algorithm", c_enum),
        ("qk_groups", c_enum),
        ("pv", c_enum),
        ("smooth_k", c_enum),
        ("smooth_q", c_enum),
        ("smooth_v", c_enum),
    ]


def _tensor_fields(name, pointer_type):
    return [(name, pointer_type)] + [(f"{name}_stride_{s}", ctypes.c_int64) for s in "bhn"]


class SageArgs(ctypes.Structure):
    """sage_args."""

    _fields_ = (
        [
            ("struct_size", ctypes.c_size_t),
            ("dtype", c_enum),
            ("batch", ctypes.c_int64),
            ("heads_q", ctypes.c_int64),
            ("heads_kv", ctypes.c_int64),
            ("seqlen_q", ctypes.c_int64),
            ("seqlen_kv", ctypes.c_int64),
            ("head_dim", ctypes.c_int64),
        ]
        + _tensor_fields("q", ctypes.c_void_p)
        + _tensor_fields("k", ctypes.c_void_p)
        + _tensor_fields("v", ctypes.c_void_p)
        + _tensor_fields("o", ctypes.c_void_p)
        + [
            ("lse", ctypes.c_void_p),
            ("sm_scale", ctypes.c_float),
            ("causal", c_enum),
            ("options", SageOptions),
            ("device", c_enum),
            ("device_ordinal", ctypes.c_int),
            ("cpu_threads", ctypes.c_int),
        ]
    )


class SagePlan(ctypes.Structure):
    """sage_plan."""

    _fields_ = [
        ("kernel", ctypes.c_char_p),
        ("qk_groups", c_enum),
        ("pv", c_enum),
        ("smooth_k", ctypes.c_int),
        ("smooth_q", ctypes.c_int),
        ("smooth_v", ctypes.c_int),
        ("workspace_size", ctypes.c_size_t),
    ]


def declare(lib):
    """Set argtypes/restype of every public function of the loaded library."""
    args_p = ctypes.POINTER(SageArgs)
    msg = [ctypes.POINTER(ctypes.c_char), ctypes.c_size_t]  # caller-owned message buffer
    protos = {
        "sage_version_number": (ctypes.c_int, []),
        "sage_version_string": (ctypes.c_char_p, []),
        "sage_status_string": (ctypes.c_char_p, [c_enum]),
        "sage_args_init": (None, [args_p]),
        "sage_set_contiguous_bhnd": (None, [args_p]),
        "sage_supported": (c_enum, [args_p, ctypes.POINTER(SagePlan)] + msg),
        "sage_workspace_size": (c_enum, [args_p, ctypes.POINTER(ctypes.c_size_t)] + msg),
        "sage_forward": (c_enum, [args_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p] + msg),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
