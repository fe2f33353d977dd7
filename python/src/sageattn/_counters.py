"""Counters of the calls that reached the C kernel and of sdpa's fallbacks (per reason).

Calls replayed from a captured CUDA graph run no Python and are not counted.
"""

import collections
import threading

_lock = threading.Lock()
_kernel_calls = 0
_fallbacks = collections.Counter()


def count_kernel_call():
    """Record one successful sage_forward."""
    global _kernel_calls
    with _lock:
        _kernel_calls += 1


def count_fallback(reason):
    """Record one sdpa call that went to torch's own function, with the reason."""
    with _lock:
        _fallbacks[reason] += 1


def stats():
    """{'kernel_calls': int, 'fallbacks': {reason: int}} since import or the last reset_stats()."""
    with _lock:
        return {"kernel_calls": _kernel_calls, "fallbacks": dict(_fallbacks)}


def reset_stats():
    """Set every counter to zero."""
    global _kernel_calls
    with _lock:
        _kernel_calls = 0
        _fallbacks.clear()
