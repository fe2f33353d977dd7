"""sdpa's fallbacks to torch: torch's original function, counted, and warned about once per reason."""

import threading
import warnings

import torch

from . import _counters

torch_sdpa = torch.nn.functional.scaled_dot_product_attention  # the original, captured at import
_warned = set()
_lock = threading.Lock()


def note(reason):
    """Count a fallback and warn the first time this reason is seen."""
    _counters.count_fallback(reason)
    with _lock:
        first = reason not in _warned
        _warned.add(reason)
    if first:
        warnings.warn(f"sageattn.sdpa: falling back to torch's scaled_dot_product_attention ({reason}); "
                      "this warning is shown once per reason", stacklevel=4)
