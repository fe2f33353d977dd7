"""sageattn: 8-bit quantized attention (SageAttention) for PyTorch and numpy.

    from sageattn import sageattn
    o = sageattn(q, k, v, tensor_layout="HND", is_causal=False)

    import sageattn
    with sageattn.patch_sdpa():      # torch.nn.functional.scaled_dot_product_attention -> sageattn.sdpa
        model(...)

torch is optional: without it, numpy arrays run on the library's CPU path, and sdpa/patch_sdpa
raise ImportError.
"""

__version__ = "0.1.0"

from ._counters import reset_stats, stats
from ._library import LibraryNotFoundError, library_path
from .api import plan, sageattn, version
from .errors import SageArgumentError, SageCudaError, SageError, SageUnsupportedError

try:
    import torch  # optional

    if not hasattr(torch.library, "custom_op"):
        raise ImportError(f"torch {torch.__version__} is too old, sageattn needs torch >= 2.4")
except ImportError as _e:
    _TORCH_MISSING = f"sageattn: this function needs torch ({_e})"

    def _needs_torch(*args, **kwargs):
        raise ImportError(_TORCH_MISSING)

    sdpa = patch_sdpa = unpatch_sdpa = is_patched = _needs_torch
else:
    from .patch import is_patched, patch_sdpa, unpatch_sdpa
    from .sdpa import sdpa

__all__ = [
    "sageattn", "sdpa", "patch_sdpa", "unpatch_sdpa", "is_patched", "plan", "version", "stats", "reset_stats",
    "library_path", "SageError", "SageArgumentError", "SageUnsupportedError", "SageCudaError",
    "LibraryNotFoundError",
]
