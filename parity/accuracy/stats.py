"""Paired statistics for two classifiers judged on the same images.

Only the discordant pairs carry information about a top-1 difference:
b = images torch gets right and Paddle wrong, c = the reverse.
"""
from __future__ import annotations

import math
from statistics import NormalDist


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar test: under H0 the b + c discordant images
    split Binomial(b + c, 1/2); p = min(1, 2 * P(X <= min(b, c))).

    Linear, and far less in practice: the tail is summed from its largest
    term, C(n, k) / 2^n, downwards, each term the previous one times
    i / (n - i + 1), until the rest cannot change the sum (terms fall at
    least geometrically, fast once they are far from the centre). The largest
    term is taken in log space, split into a power of two and a mantissa, so
    nothing overflows or underflows at 50,000 discordant images and p-values
    such as 2^-999 come out exact."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    total, term = 1.0, 1.0  # the tail in units of its largest term C(n, k) / 2^n
    for i in range(k, 0, -1):
        term *= i / (n - i + 1)
        total += term
        if term < total * 1e-17:
            break
    log2_largest = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
    whole = math.floor(log2_largest)
    return min(1.0, math.ldexp(total * 2.0 ** (log2_largest - whole), whole - n + 1))


def paired_difference_ci(b: int, c: int, n: int, confidence: float = 0.95):
    """Confidence interval for (accuracy A - accuracy B) = (b - c) / n on
    paired data, Agresti & Min (2005): a Wald interval after adding 1/2 to
    each of the four cells, which keeps its coverage when b = c = 0 (plain
    Wald would shrink to the single point 0). Returned as fractions."""
    if n <= 0:
        raise ValueError("need at least one image")
    if b + c > n:
        raise ValueError(f"discordant counts {b} + {c} exceed the {n} images")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n2, b2, c2 = n + 2.0, b + 0.5, c + 0.5
    diff = (b2 - c2) / n2
    se = math.sqrt(max(0.0, (b2 + c2) / n2 - diff ** 2) / n2)
    return max(-1.0, diff - z * se), min(1.0, diff + z * se)


def paired_summary(correct_a, correct_b, confidence: float = 0.95) -> dict:
    """Everything a report needs about two paired 0/1 vectors, in percent."""
    a = [bool(x) for x in correct_a]
    b_ = [bool(x) for x in correct_b]
    if len(a) != len(b_):
        raise ValueError("paired vectors differ in length")
    n = len(a)
    b = sum(1 for x, y in zip(a, b_) if x and not y)
    c = sum(1 for x, y in zip(a, b_) if y and not x)
    out = {"n": n, "a_only_correct": b, "b_only_correct": c, "mcnemar_exact_p": mcnemar_exact_p(b, c),
           "confidence": confidence}
    if n:
        lo, hi = paired_difference_ci(b, c, n, confidence)
        out.update(top1_difference_points=100.0 * (b - c) / n,
                   top1_difference_ci_points=[100.0 * lo, 100.0 * hi])
    else:
        out.update(top1_difference_points=None, top1_difference_ci_points=None)
    return out


# ---------------------------------------------------------------- one proportion
def wilson_interval(k: float, n: float, confidence: float = 0.95):
    """Wilson score interval for a proportion k / n (Wilson 1927; the choice
    of Brown, Cai & DasGupta 2001): it stays inside [0, 1] and keeps its
    coverage at k = 0 or k = n, where the Wald interval collapses to a point.
    Counts may be fractional (projections to other sample sizes). Fractions."""
    if n <= 0:
        raise ValueError("need at least one image")
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} is impossible")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------- honest verdicts
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
MAX_IMAGES = 10 ** 9  # beyond this a projection is reported as "cannot be decided"


def interval_verdict(interval, low: float = -math.inf, high: float = math.inf) -> str:
    """PASS when the whole interval lies within [low, high], FAIL when it lies
    wholly outside, INCONCLUSIVE when it straddles a bound: the sample is too
    small to tell."""
    lo, hi = interval
    if lo >= low and hi <= high:
        return PASS
    if hi < low or lo > high:
        return FAIL
    return INCONCLUSIVE


def images_needed(interval_at, n: int, low: float = -math.inf, high: float = math.inf):
    """The smallest sample size m >= n at which `interval_at(m)` (the
    interval projected at the observed rates) is decisive (PASS or FAIL), or
    None when no size up to MAX_IMAGES would be (an observed value on the bound)."""
    def decisive(m):
        return interval_verdict(interval_at(m), low, high) != INCONCLUSIVE

    if decisive(n):
        return n
    hi = max(2 * n, 2)
    while not decisive(hi):
        if hi >= MAX_IMAGES:
            return None
        hi *= 2
    lo = hi // 2  # not decisive (or n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decisive(mid):
            hi = mid
        else:
            lo = mid
    return hi


def paired_difference_check(b: int, c: int, n: int, threshold_points: float, confidence: float = 0.95) -> dict:
    """|accuracy A - accuracy B| <= threshold_points, judged on the paired
    interval (paired_difference_ci): verdict, interval in points, and the
    number of images that would decide it at the observed discordance rates."""
    lo, hi = paired_difference_ci(b, c, n, confidence)
    interval = [100.0 * lo, 100.0 * hi]
    t = float(threshold_points)

    def at(m):
        s = m / n
        lo_, hi_ = paired_difference_ci(b * s, c * s, m, confidence)
        return 100.0 * lo_, 100.0 * hi_

    status = interval_verdict(interval, -t, t)
    return {"status": status, "interval_points": interval, "confidence": confidence, "n": n,
            "images_needed": None if status != INCONCLUSIVE else images_needed(at, n, -t, t)}


def proportion_check(k: int, n: int, minimum_pct: float, confidence: float = 0.95) -> dict:
    """k / n >= minimum_pct percent, judged on the Wilson interval: verdict,
    interval in percent, and the images that would decide it at the observed rate."""
    lo, hi = wilson_interval(k, n, confidence)
    interval = [100.0 * lo, 100.0 * hi]

    def at(m):
        lo_, hi_ = wilson_interval(k * m / n, m, confidence)
        return 100.0 * lo_, 100.0 * hi_

    status = interval_verdict(interval, float(minimum_pct), math.inf)
    return {"status": status, "interval_pct": interval, "confidence": confidence, "n": n,
            "images_needed": None if status != INCONCLUSIVE else images_needed(at, n, float(minimum_pct))}
