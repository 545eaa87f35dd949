"""Paired statistics against hand-computed values (and SciPy where installed)."""
from __future__ import annotations

import math

import pytest

from parity.accuracy.stats import mcnemar_exact_p, paired_difference_ci, paired_summary


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
    from scipy import stats as scipy_stats  # the test extra names SciPy

    for b, c in [(40, 80), (123, 150), (7, 30)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(scipy_stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 999, 5_000, 10_000, 50_000])
def test_mcnemar_equals_scipy_at_every_size(n):
    """Against SciPy's exact binomial test, across the split: balanced, a few
    points apart, far apart, all on one side."""
    from scipy import stats as scipy_stats

    for k in sorted({0, 1, n // 10, n // 2 - 3 * int(n ** 0.5) // 2, n // 2 - int(n ** 0.5) // 4, n // 2} - {-1}):
        if not 0 <= k <= n:
            continue
        want = scipy_stats.binomtest(k, n, 0.5).pvalue
        got = mcnemar_exact_p(k, n - k)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (k, n)
        assert mcnemar_exact_p(n - k, k) == got


def test_mcnemar_is_fast_at_50000_discordant_pairs():
    import time

    for b in (25_000, 24_800, 20_000, 0):  # the slowest case is the balanced one: the most terms count
        start = time.perf_counter()
        mcnemar_exact_p(b, 50_000 - b)
        assert time.perf_counter() - start < 0.1, b


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


def test_wilson_interval_hand_values_and_scipy():
    from parity.accuracy.stats import wilson_interval

    z = 1.959963984540054
    lo, hi = wilson_interval(18, 18)  # all right: [n / (n + z^2), 1]
    assert lo == pytest.approx(18 / (18 + z * z), rel=1e-12) and hi == pytest.approx(1.0, rel=1e-15)
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-15) and hi == pytest.approx(z * z / (10 + z * z), rel=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(7, 30), (49_950, 50_000), (812, 1000)]:
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), rel=1e-9)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_interval_verdict_is_pass_inside_fail_outside_inconclusive_across():
    from parity.accuracy.stats import FAIL, INCONCLUSIVE, PASS, interval_verdict

    assert interval_verdict((-0.01, 0.02), -0.05, 0.05) == PASS
    assert interval_verdict((0.06, 0.09), -0.05, 0.05) == FAIL
    assert interval_verdict((-0.2, -0.06), -0.05, 0.05) == FAIL
    assert interval_verdict((-9.8, 9.8), -0.05, 0.05) == INCONCLUSIVE
    assert interval_verdict((0.04, 0.06), -0.05, 0.05) == INCONCLUSIVE
    assert interval_verdict((99.95, 100.0), 99.9) == PASS and interval_verdict((82.4, 100.0), 99.9) == INCONCLUSIVE


def test_images_needed_is_the_smallest_deciding_sample():
    from parity.accuracy.stats import INCONCLUSIVE, PASS, paired_difference_check, proportion_check

    z = 1.959963984540054
    # no discordant image: the Agresti-Min half-width is z / (n + 2), within 0.0005 from n = z / 0.0005 - 2
    demo = paired_difference_check(0, 0, 18, 0.05)
    assert demo["status"] == INCONCLUSIVE and demo["interval_points"] == pytest.approx([-100 * z / 20, 100 * z / 20])
    need = demo["images_needed"]
    assert need == math.ceil(z / 0.0005 - 2)
    assert paired_difference_check(0, 0, need, 0.05)["status"] == PASS
    assert paired_difference_check(0, 0, need - 1, 0.05)["status"] == INCONCLUSIVE
    # 100% agreement: the Wilson lower bound n / (n + z^2) reaches 99.9% at n = 999 z^2
    agree = proportion_check(18, 18, 99.9)
    assert agree["images_needed"] == math.ceil(0.999 * z * z / 0.001)
    assert proportion_check(agree["images_needed"], agree["images_needed"], 99.9)["status"] == PASS
    # an observed rate exactly on the threshold is never decided
    assert proportion_check(999, 1000, 99.9)["images_needed"] is None
