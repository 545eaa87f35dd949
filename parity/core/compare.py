"""Comparison statistics between two arrays (Polygraphy-style), computed in float64.

One function, used by the converter's verification, the demo, the layer
diff and the evaluation, so every report means the same thing by each number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

# A relative error is |a - b| / max(|b|, floor); the floor keeps elements near
# zero from producing meaningless huge ratios. It is a fraction of the
# reference's own scale, so it adapts to each tensor.
REL_FLOOR_FRACTION = 1e-3


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not BLAS: right after torch/Paddle ran, OpenBLAS threads contend
    # with their spinning OpenMP workers and a BLAS dot gets ~50x slower.
    return float(np.einsum("i,i->", a.ravel(), b.ravel()))


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(_dot(x, x)))


def rel_l2_cosine(actual, expected) -> Tuple[float, float]:
    """(||a - e|| / ||e||, cos(a, e)) in float64, the two statistics of
    `compare` that callers comparing millions of elements per check need."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    diff = a - e
    norm_e = _norm(e)
    norm_a = _norm(a)
    diff_norm = _norm(diff) if np.isfinite(_dot(diff, diff)) else float("inf")
    rel_l2 = diff_norm / norm_e if norm_e > 0 else (0.0 if diff_norm == 0 else float("inf"))
    if norm_a > 0 and norm_e > 0:
        cosine = float(_dot(a, e) / (norm_a * norm_e))
    else:
        cosine = 1.0 if norm_a == norm_e else 0.0
    return rel_l2, cosine


@dataclass
class Diff:
    name: str
    shape: Tuple[int, ...]
    numel: int
    max_abs: float
    max_abs_index: Tuple[int, ...]
    actual_at_max: float
    expected_at_max: float
    mean_abs: float
    median_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    ref_max_abs: float
    n_outside: int = 0
    frac_outside: float = 0.0
    atol: Optional[float] = None
    rtol: Optional[float] = None

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["max_abs_index"] = list(self.max_abs_index)
        return d


def compare(name: str, actual, expected, atol: Optional[float] = None, rtol: Optional[float] = None,
            median: bool = True) -> Diff:
    """Statistics of `actual` against the reference `expected` (same shape).

    With atol/rtol, elements with |a - e| > atol + rtol * |e| are counted as
    outside tolerance (the torch.testing.assert_close rule). median=False
    skips the median (NaN in the result), the costliest statistic, for callers
    that compare hundreds of large tensors and do not report it. NaN and Inf
    are handled explicitly (they never read as agreement), so numpy's
    warnings about them are silenced."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _compare(name, actual, expected, atol, rtol, median)


def _compare(name, actual, expected, atol, rtol, median) -> Diff:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"{name}: shapes differ, {a.shape} vs {e.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: empty tensors cannot be compared")
    d = np.abs(a - e)
    # NaN anywhere must never read as agreement.
    d = np.where(np.isnan(d), np.inf, d)
    flat = int(np.argmax(d))
    idx = tuple(int(i) for i in np.unravel_index(flat, d.shape))
    ref_scale = float(np.max(np.abs(e))) if np.all(np.isfinite(e)) else float("inf")
    floor = max(ref_scale * REL_FLOOR_FRACTION, np.finfo(np.float32).tiny)
    rel = d / np.maximum(np.abs(e), floor)
    rel_l2, cosine = rel_l2_cosine(a, e)
    out = Diff(name=name, shape=tuple(a.shape), numel=int(a.size), max_abs=float(d.ravel()[flat]),
               max_abs_index=idx, actual_at_max=float(a.ravel()[flat]), expected_at_max=float(e.ravel()[flat]),
               mean_abs=float(np.mean(d)), median_abs=float(np.median(d)) if median else float("nan"), max_rel=float(np.max(rel)),
               rel_l2=rel_l2, cosine=cosine, ref_max_abs=ref_scale)
    if atol is not None or rtol is not None:
        if atol is None or rtol is None:
            raise ValueError("give atol and rtol together, or neither")
        outside = d > atol + rtol * np.abs(e)
        out.n_outside = int(np.count_nonzero(outside))
        out.frac_outside = out.n_outside / a.size
        out.atol, out.rtol = atol, rtol
    return out


def top1_agreement(logits_a, logits_b) -> float:
    a = np.argmax(np.asarray(logits_a), axis=-1)
    b = np.argmax(np.asarray(logits_b), axis=-1)
    return float(np.mean(a == b))
