"""float64 numpy attention and the accuracy metrics of brief section 4, for the tests."""

import numpy as np


def to_bhnd(x, layout):
    """[B, H, N, D] view of an HND or NHD array."""
    return x if layout == "HND" else x.transpose(0, 2, 1, 3)


def attention(q, k, v, causal="none", sm_scale=None):
    """Exact attention in float64. q [B, Hq, Nq, D], k/v [B, Hkv, Nk, D] (HND).

    causal: 'none', 'top_left' (j <= i) or 'bottom_right' (j <= i + Nk - Nq).
    Returns (o [B, Hq, Nq, D], lse [B, Hq, Nq]); a row that sees no key gives o = 0, lse = -inf.
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    scale = 1.0 / np.sqrt(d) if sm_scale is None else sm_scale
    s = scale * (q @ k.transpose(0, 1, 3, 2))
    i, j = np.arange(nq)[:, None], np.arange(nk)[None, :]
    visible = {"none": np.ones((nq, nk), bool), "top_left": j <= i, "bottom_right": j <= i + (nk - nq)}[causal]
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m_safe)
    l = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.where(l > 0, (p @ v) / np.where(l > 0, l, 1.0), 0.0)
        lse = np.where(l[..., 0] > 0, np.log(l[..., 0]) + m_safe[..., 0], -np.inf)
    return o, lse


def rel_l1(x, ref):
    """sum|x - ref| / sum|ref|."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(x - ref).sum() / np.abs(ref).sum())


def cosine(x, ref):
    """Cosine similarity of the flattened arrays."""
    x, ref = np.asarray(x, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    return float(x @ ref / (np.linalg.norm(x) * np.linalg.norm(ref)))


# Brief section 4, 16-bit PV vs the exact reference.
BUDGET_16BIT = {"rel_l1": 0.015, "cos": 0.9999}


def assert_accurate(o, ref, budget=BUDGET_16BIT):
    """Fail with both metrics unless o is within budget of ref."""
    r, c = rel_l1(o, ref), cosine(o, ref)
    assert r <= budget["rel_l1"] and c >= budget["cos"], f"relL1 {r:.5f} (<= {budget['rel_l1']}), cos {c:.6f}"
