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
    Computed in exact integer arithmetic, so it holds for 50,000 images."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


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
