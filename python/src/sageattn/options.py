"""Keyword options of sageattn() and their C enum values."""

from ._capi import PV, Algorithm, Causal, QKGroups, Toggle

_CHOICES = {
    "algorithm": {"quantized": Algorithm.QUANTIZED, "reference": Algorithm.REFERENCE},
    "qk_groups": {"auto": QKGroups.AUTO, "per_block": QKGroups.PER_BLOCK,
                  "per_warp": QKGroups.PER_WARP, "per_thread": QKGroups.PER_THREAD},
    "pv": {"auto": PV.AUTO, "fp8": PV.FP8, "16bit": PV.BIT16},
}
_TOGGLES = ("smooth_k", "smooth_q", "smooth_v")
OPTION_NAMES = tuple(_CHOICES) + _TOGGLES + ("cpu_threads",)

_CAUSAL = {False: Causal.NONE, True: Causal.BOTTOM_RIGHT,
           "none": Causal.NONE, "top_left": Causal.TOP_LEFT, "bottom_right": Causal.BOTTOM_RIGHT}


def _toggle(name, value):
    if value is None or value == "auto":
        return Toggle.AUTO
    if isinstance(value, bool):
        return Toggle.ON if value else Toggle.OFF
    raise ValueError(f"sageattn: option {name} must be True, False, None or 'auto', got {value!r}")


def parse_options(options):
    """Map keyword options to a tuple of ints in OPTION_NAMES order (hashable, custom-op friendly).

    algorithm: 'quantized' (default) or 'reference' (exact attention, for validation);
    qk_groups: 'auto', 'per_block', 'per_warp' or 'per_thread' (INT8 scale groups of Q and K);
    pv: 'auto', 'fp8' or '16bit' (precision of P and V);
    smooth_k, smooth_q, smooth_v: True, False or None/'auto';
    cpu_threads: worker threads of the CPU path, 0 = all cores.
    """
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"sageattn: unknown option(s) {sorted(unknown)}; valid: {list(OPTION_NAMES)}")
    values = []
    for name, table in _CHOICES.items():
        value = options.get(name, "quantized" if name == "algorithm" else "auto")
        if value not in table:
            raise ValueError(f"sageattn: option {name} must be one of {list(table)}, got {value!r}")
        values.append(int(table[value]))
    values += [int(_toggle(name, options.get(name))) for name in _TOGGLES]
    threads = options.get("cpu_threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"sageattn: option cpu_threads must be an int >= 0, got {threads!r}")
    values.append(threads)
    return tuple(values)


def parse_causal(is_causal):
    """Map is_causal to a Causal value.

    False: no mask. True or 'bottom_right': query i sees key j iff j <= i + (Nk - Nq)
    (FlashAttention's alignment, what decoding with a KV cache needs). 'top_left': j <= i
    (torch SDPA's is_causal). The two agree when Nq == Nk.
    """
    try:
        return _CAUSAL[is_causal]
    except (KeyError, TypeError):
        raise ValueError(
            f"sageattn: is_causal must be False, True, 'top_left' or 'bottom_right', got {is_causal!r}") from None
