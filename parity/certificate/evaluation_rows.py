"""The certificate's rows of one evaluation: its fast paths, its start-up
logit check and its accuracy checks.

Accuracy checks are judged on their 95% confidence intervals
(parity.accuracy.stats): PASS when the interval lies within the threshold, FAIL when
it lies wholly outside, INCONCLUSIVE (with the number of images that would
decide it) when the sample is too small to tell.
"""
from __future__ import annotations

from typing import List

from genet_arch import CARDS, DEFAULT_NUM_CLASSES

from parity.certificate.options import CertifyOptions
from parity.certificate.verdict import (CONFIDENCE, FAIL, INCONCLUSIVE, INFO, NOT_APPLICABLE, NOT_RUN, PASS, SKIPPED,
                                        CertificateCheck)

IMAGENET_VAL_SIZE = 50_000


def _undecided_reason(judged: dict, what: str) -> str:
    n = judged["n"]
    if judged["images_needed"] is None:
        return (f"the observed value lies on the threshold: no number of images would decide {what} "
                f"(on {n:,} images)")
    return (f"{n:,} images are too few to decide {what}: the {100 * judged['confidence']:.0f}% interval "
            f"straddles the threshold; about {judged['images_needed']:,} images would decide it at the "
            "observed rates")


def evaluation_checks(summary: dict, opts: CertifyOptions, arch: str, precision: str,
                      num_classes: int = DEFAULT_NUM_CLASSES) -> List[CertificateCheck]:
    """The accuracy checks of one evaluation. The published-figure check is
    exact: it applies only to the full validation set, the very sample the
    figure was measured on. The two paired checks are judged on their 95%
    intervals (parity.accuracy.stats): PASS inside the threshold, FAIL outside,
    INCONCLUSIVE across it."""
    from parity.accuracy.stats import paired_difference_check, proportion_check

    t = opts.thresholds
    card = CARDS[arch]
    top1_t, top1_p = summary["top1"]["torch"], summary["top1"]["paddle"]
    n = summary["n_evaluated"]
    suffix = f" ({precision})"
    checks = []
    full = (not opts.demo and opts.limit is None and summary["dataset"]["n_images"] == IMAGENET_VAL_SIZE
            and summary["complete"] and summary["n_bad"] == 0)
    measured = (f"torch top-1 {top1_t:.3f}% vs published {card.published_top1}%: "
                f"{top1_t - card.published_top1:+.3f} points")
    interval = ""
    if opts.demo:
        status, reason = SKIPPED, "demo: seeded weights and synthetic labels, no published figure applies"
    elif num_classes != DEFAULT_NUM_CLASSES:
        status, reason = NOT_APPLICABLE, (f"the published top-1 is for the {DEFAULT_NUM_CLASSES}-class ImageNet "
                                          f"head; this checkpoint has a {num_classes}-class head (fine-tuned)")
    elif not full:
        status, reason = NOT_APPLICABLE, (
            f"the published top-1 is for all {IMAGENET_VAL_SIZE:,} ImageNet-val images; this run evaluated "
            f"{summary['n_evaluated']:,} of a {summary['dataset']['n_images']:,}-image list"
            + (f" with {summary['n_bad']} undecodable" if summary["n_bad"] else ""))
    else:
        status, reason = (PASS if abs(top1_t - card.published_top1) <= t.torch_top1_points else FAIL), ""
        interval = "none: all 50,000 images, the sample the published figure itself was measured on"
    checks.append(CertificateCheck(
        f"torch_top1_vs_published_{precision}", "PyTorch top-1 matches the published figure" + suffix,
        status, f"|torch - {card.published_top1}| <= {t.torch_top1_points:g} points", measured,
        reason=reason, interval=interval))

    gap = top1_p - top1_t
    p = summary["paired"]
    # paired["a"] is torch: the interval of torch - paddle, turned into paddle - torch
    judged = paired_difference_check(p["a_only_correct"], p["b_only_correct"], n, t.paddle_top1_points, CONFIDENCE)
    lo, hi = judged["interval_points"]
    judged["interval_points"] = [-hi, -lo]
    judged["difference"] = "paddle - torch, points"
    checks.append(CertificateCheck(
        f"paddle_top1_vs_torch_{precision}", "Paddle top-1 equals PyTorch top-1 on the same inputs" + suffix,
        judged["status"], f"|paddle - torch| <= {t.paddle_top1_points:g} points, the whole 95% interval",
        f"paddle {top1_p:.3f}% vs torch {top1_t:.3f}%: {gap:+.3f} points on {n:,} images "
        f"({p['a_only_correct']} right only in torch, {p['b_only_correct']} only in Paddle; McNemar exact "
        f"p = {p['mcnemar_exact_p']:.3g})",
        interval=f"95% CI of paddle - torch [{-hi:+.3f}, {-lo:+.3f}] points (Agresti-Min, paired)",
        reason=_undecided_reason(judged, "a difference this small") if judged["status"] == INCONCLUSIVE else "",
        images_needed=judged["images_needed"], details=judged))

    agree = summary["agreement_top1"]
    judged = proportion_check(n - summary["n_disagree"], n, t.min_agreement_pct, CONFIDENCE)
    a_lo, a_hi = judged["interval_pct"]
    a_interval = f"95% CI [{a_lo:.3f}, {a_hi:.3f}]% (Wilson)"
    if precision == "float32":
        checks.append(CertificateCheck(
            "agreement_float32", "Top-1 prediction agreement, image by image (float32)",
            judged["status"], f">= {t.min_agreement_pct:g}%, the whole 95% interval",
            f"{agree:.3f}% ({summary['n_disagree']} of {n:,} images differ)", interval=a_interval,
            reason=(_undecided_reason(judged, f"agreement >= {t.min_agreement_pct:g}%")
                    if judged["status"] == INCONCLUSIVE else ""),
            images_needed=judged["images_needed"], details=judged))
    else:
        checks.append(CertificateCheck(f"agreement_{precision}", f"Top-1 prediction agreement ({precision})", INFO,
                            "none (reported)", f"{agree:.3f}% ({summary['n_disagree']} images differ)",
                            interval=a_interval, details=judged))
    return checks


def logit_check_row(summary: dict, precision: str) -> CertificateCheck:
    """The evaluation's start-up logit check (parity.accuracy.runners.logit_check) as a certificate row."""
    from parity.core.tolerances import RULE, is_reference

    runs = summary.get("logit_checks") or []
    if not runs:
        return CertificateCheck(f"logits_{precision}", f"Logits of every framework within the rule ({precision})",
                                NOT_RUN, RULE, "-", reason="no image was evaluated")
    parts = [f"{fw} reference (its own error {j['error']:.3g}, not judged)" if is_reference(j) else
             f"{fw} error {j['error']:.3g} <= bound {j['bound']:.3g}? margin {j['margin']:.3g}"
             for c in runs for fw, j in c["judgements"].items()]
    ok = summary["logit_checks_pass"]
    return CertificateCheck(f"logits_{precision}",
                 f"Logits of every framework on the first {runs[0]['n_images']} evaluation images, judged against "
                 f"a float64 recomputation ({precision})",
                 INFO if ok is None else PASS if ok else FAIL, RULE, "; ".join(parts),
                 reason="only the reference ran: nothing was compared" if ok is None else "", details={"checks": runs})


def fast_path_row(summary: dict, precision: str) -> CertificateCheck:
    """What became of each framework's fast path at start-up: a fast path that
    failed its check computes wrong logits, a finding (FAIL) even though the
    evaluation went on eager; one that could not run here is reported (INFO)."""
    from parity.accuracy.runners import FAST_FAILED, FAST_PASSED
    from parity.core.tolerances import RULE

    paths = {fw: f for fw, f in (summary.get("fast_paths") or {}).items() if f}
    parts = []
    for fw, f in paths.items():
        margin = f" (margin {f['margin']:.3g})" if f.get("margin") is not None else ""
        parts.append(f"{fw} {f['path']}: {f['status']}{margin}" + (f": {f['reason']}" if f.get("reason") and
                                                                   f["status"] != FAST_FAILED else ""))
    statuses = [f["status"] for f in paths.values()]
    failed = [fw for fw, f in paths.items() if f["status"] == FAST_FAILED]
    status = FAIL if failed else PASS if statuses and all(st == FAST_PASSED for st in statuses) else INFO
    return CertificateCheck(
        f"fast_paths_{precision}",
        f"The fast path of each framework, proven at start-up against a float64 recomputation ({precision})",
        status, RULE, "; ".join(parts) or "none recorded",
        reason="; ".join(f"{fw}: {paths[fw]['reason']}" for fw in failed), details={"fast_paths": paths})
