"""Paired statistics against hand-computed values (and SciPy where installed)."""
from __future__ import annotations

import math

import pytest

from parity.stats import mcnemar_exact_p, paired_difference_ci, paired_summary


@pytest.mark.parametrize("b, c, p", [
    (0, 0, 1.0),
    (1, 5, 2 * (1 + 6) / 64),  # n = 6: 2 * (C(6,0) + C(6,1)) / 2^6 = 0.21875
    (5, 1, 2 * (1 + 6) / 64),  # symmetric
    (0, 10, 2 / 1024),
    (3, 3, 1.0),  # 2 * 42/64 > 1 is capped
    (2, 9, 2 * (1 + 11 + 55) / 2048),
])
def test_mcnemar_exact_hand_values(b, c, p):
    assert mcnemar_exact_p(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_for_imagenet_sized_counts():
    # 2 * 2^-1000: tiny but exact, where summing float binomial terms would lose it
    assert mcnemar_exact_p(0, 1000) == 2.0 ** -999
    assert mcnemar_exact_p(2000, 2000) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")  # scikit-image (test extra) brings SciPy
    for b, c in [(40, 80), (123, 150), (7, 30)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(scipy_stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_ci_hand_values():
    z = 1.959963984540054
    lo, hi = paired_difference_ci(0, 0, 100)  # cells +1/2: diff 0, se = sqrt((1/102) / 102) = 1/102
    assert (lo, hi) == pytest.approx((-z / 102, z / 102), rel=1e-12)
    lo, hi = paired_difference_ci(10, 2, 1000)
    d = (10.5 - 2.5) / 1002
    se = math.sqrt(((13 / 1002) - d * d) / 1002)
    assert (lo, hi) == pytest.approx((d - z * se, d + z * se), rel=1e-12)
    assert lo < 8 / 1000 < hi


def test_ci_rejects_impossible_counts():
    with pytest.raises(ValueError):
        paired_difference_ci(6, 5, 10)
    with pytest.raises(ValueError):
        paired_difference_ci(0, 0, 0)


def test_paired_summary_counts():
    a = [1, 1, 1, 0, 0, 1]
    b = [1, 0, 0, 1, 0, 1]
    s = paired_summary(a, b)
    assert (s["n"], s["a_only_correct"], s["b_only_correct"]) == (6, 2, 1)
    assert s["top1_difference_points"] == pytest.approx(100 / 6)
    assert s["mcnemar_exact_p"] == 1.0
    lo, hi = s["top1_difference_ci_points"]
    assert lo < 100 / 6 < hi
