"""Chunked statistics of the layer diff: Paddle's output against torch's, and
the side verdicts judged by the project's rule (parity.core.tolerances).

The layer diff compares every activation of the network a few times over,
so its statistics are computed chunk by chunk (cache-sized pieces, no
whole-tensor float64 copies). Paddle vs torch: float32 differences (exact
where the two are within a factor 2 of each other) with float64 sums.
Anything against the float64 recomputation: in float64. A tensor holding NaN
or Inf goes to parity.core.compare.compare, which defines those cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from parity.core import tolerances
from parity.core.compare import REL_FLOOR_FRACTION, Diff, compare

_CHUNK = 1 << 18  # elements per piece


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1)


def stats_of_expected(e: np.ndarray):
    """(max |e|, sum e^2) of torch's output, shared by both of its comparisons;
    the scale is inf when e holds NaN or Inf (as in parity.core.compare)."""
    e = _flat(e)
    buf = np.empty(max(1, min(_CHUNK, e.size)), np.float32)
    scale, sq = 0.0, 0.0
    for s in range(0, e.size, _CHUNK):
        ec = e[s:s + _CHUNK]
        b = buf[:ec.size]
        np.abs(ec, out=b)
        v = float(b.max())
        if not np.isfinite(v):
            return float("inf"), float("inf")
        scale = max(scale, v)
        np.multiply(ec, ec, out=b)
        sq += float(np.sum(b, dtype=np.float64))
    return scale, sq


def compare32(name: str, actual: np.ndarray, expected: np.ndarray, expected_stats=None,
              atol: Optional[float] = None, rtol: Optional[float] = None):
    """parity.core.compare.compare(name, actual, expected, atol, rtol, median=False)
    for two finite float32 tensors, in one chunked pass; any other input is
    handed to compare itself."""
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: shapes differ, {actual.shape} vs {expected.shape}")
    if (atol is None) != (rtol is None):
        raise ValueError("give atol and rtol together, or neither")
    ref_scale, sum_ee = expected_stats if expected_stats is not None else stats_of_expected(expected)
    slow = lambda: compare(name, actual, expected, atol=atol, rtol=rtol, median=False)  # noqa: E731
    if actual.dtype != np.float32 or expected.dtype != np.float32 or actual.size == 0 or not np.isfinite(ref_scale):
        return slow()
    a, e = _flat(actual), _flat(expected)
    n = a.size
    floor = np.float32(max(ref_scale * REL_FLOOR_FRACTION, np.finfo(np.float32).tiny))
    d_buf = np.empty(min(_CHUNK, n), np.float32)
    q_buf = np.empty(min(_CHUNK, n), np.float32)
    worst, worst_at = -1.0, 0
    sum_d = sum_dd = sum_aa = 0.0
    max_rel = 0.0
    n_outside = 0
    for s in range(0, n, _CHUNK):
        ac, ec = a[s:s + _CHUNK], e[s:s + _CHUNK]
        d, q = d_buf[:ac.size], q_buf[:ac.size]
        np.subtract(ac, ec, out=d)
        np.abs(d, out=d)
        k = int(np.argmax(d))
        v = float(d[k])
        if not np.isfinite(v):
            return slow()
        if v > worst:
            worst, worst_at = v, s + k
        sum_d += float(np.sum(d, dtype=np.float64))
        np.multiply(d, d, out=q)
        sum_dd += float(np.sum(q, dtype=np.float64))
        np.multiply(ac, ac, out=q)
        sum_aa += float(np.sum(q, dtype=np.float64))
        np.abs(ec, out=q)
        if atol is not None:
            np.multiply(q, np.float32(rtol), out=q)
            np.add(q, np.float32(atol), out=q)
            n_outside += int(np.count_nonzero(d > q))
            np.abs(ec, out=q)
        np.maximum(q, floor, out=q)
        np.divide(d, q, out=q)
        max_rel = max(max_rel, float(q.max()))
    if not (np.isfinite(sum_dd) and np.isfinite(sum_aa)):
        return slow()
    norm_a, norm_e, norm_d = np.sqrt(sum_aa), np.sqrt(sum_ee), np.sqrt(sum_dd)
    rel_l2 = norm_d / norm_e if norm_e > 0 else (0.0 if norm_d == 0 else float("inf"))
    if norm_a > 0 and norm_e > 0:
        # 1 - cos = (|a-e|^2 - (|a|-|e|)^2) / (2|a||e|): the small difference
        # computed from the small quantities, not as 1 minus a rounded dot.
        cosine = 1.0 - (sum_dd - (norm_a - norm_e) ** 2) / (2.0 * norm_a * norm_e)
        cosine = float(min(1.0, max(-1.0, cosine)))
    else:
        cosine = 1.0 if norm_a == norm_e else 0.0
    out = Diff(name=name, shape=tuple(actual.shape), numel=n, max_abs=worst,
               max_abs_index=tuple(int(i) for i in np.unravel_index(worst_at, actual.shape)),
               actual_at_max=float(a[worst_at]), expected_at_max=float(e[worst_at]), mean_abs=sum_d / n,
               median_abs=float("nan"), max_rel=max_rel, rel_l2=float(rel_l2), cosine=cosine, ref_max_abs=ref_scale)
    if atol is not None:
        out.n_outside = n_outside
        out.frac_outside = n_outside / n
        out.atol, out.rtol = atol, rtol
    return out


@dataclass
class SideVerdict:
    """One side of a row's verdict (accumulated or isolated)."""

    diff: Diff  # Paddle vs torch
    torch_error: Optional[float]  # vs float64 (None with atol/rtol)
    paddle_error: Optional[float]
    tolerance: Optional[float]
    passed: bool


def check_side(name: str, p: np.ndarray, t: np.ndarray, t_stats, r: Optional[np.ndarray], dtype: str,
               atol: Optional[float], rtol: Optional[float], count_outside: bool) -> SideVerdict:
    """Paddle output `p` against torch's `t`, judged by the project's rule
    (`parity.core.tolerances.decide`) against the float64 `r` (or by
    atol/rtol element by element when r is None).
    count_outside: also count the elements beyond the bound (accumulated
    only); it measures |paddle - torch|, so the bound is the rule's bound for
    that difference (`tolerances.difference_bound`), not the one for |paddle - f64|."""
    if r is not None:
        if p.shape != r.shape or t.shape != r.shape:
            raise ValueError(f"{name}: shapes differ: paddle {p.shape}, torch {t.shape}, float64 {r.shape}")
        scale = tolerances.max_abs(r)
        e_t, e_p = tolerances.max_abs_error(t, r), tolerances.max_abs_error(p, r)
        ok, tol, _ = tolerances.decide(e_p, e_t, scale, dtype)
        diff = compare32(name, p, t, t_stats, atol=tolerances.difference_bound(e_t, scale, dtype), rtol=0.0) \
            if count_outside else compare32(name, p, t, t_stats)
    else:
        e_t = e_p = None
        tol = atol
        diff = compare32(name, p, t, t_stats, atol=atol, rtol=rtol)
        ok = diff.n_outside == 0
    # NaN/inf in Paddle's output must never pass.
    return SideVerdict(diff=diff, torch_error=e_t, paddle_error=e_p, tolerance=tol,
                       passed=bool(ok and np.isfinite(diff.max_abs)))
