"""Replace torch.nn.functional.scaled_dot_product_attention by sageattn.sdpa, globally.

Code that looks the function up at call time (torch.nn.functional.scaled_dot_product_attention(...),
as transformers does) sees the patch; a name imported earlier with `from torch.nn.functional import
scaled_dot_product_attention` keeps torch's.
"""

import torch.nn.functional as F

from .sdpa import sdpa

_previous = None  # what patch_sdpa() replaced


class _Patch:
    """Returned by patch_sdpa(); as a context manager it undoes the patch it made on exit."""

    def __init__(self, made):
        self._made = made

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._made:
            unpatch_sdpa()
        return False


def patch_sdpa():
    """Make torch.nn.functional.scaled_dot_product_attention run sageattn.sdpa.

    Use as a call (undo with unpatch_sdpa()) or as `with sageattn.patch_sdpa(): ...`.
    """
    global _previous
    made = F.scaled_dot_product_attention is not sdpa
    if made:
        _previous = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = sdpa
    return _Patch(made)


def unpatch_sdpa():
    """Restore the function patch_sdpa() replaced (no-op when not patched)."""
    if F.scaled_dot_product_attention is sdpa:
        F.scaled_dot_product_attention = _previous


def is_patched():
    """True while patch_sdpa() is in effect."""
    return F.scaled_dot_product_attention is sdpa
