"""Certification on ImageNet val: both frameworks on the same preprocessed
images (the pipeline of `genet-parity eval`).

    pytest parity/test_accuracy.py --genet-weights GENet_large.pth \\
        --imagenet-dir /data/val --imagenet-list val_list.txt [--imagenet-limit 2000]

Skipped, naming the options, without weights or images. On any subset the
frameworks must agree, judged on 95% intervals as the certificate judges
them (parity.accuracy.stats): a check fails when its interval lies wholly outside the
threshold and is reported as INCONCLUSIVE (its own outcome in pytest's
summary, or a failure with --genet-inconclusive fail), with the number of
images that would decide it, when the sample is too small; only the full 50,000 images
are held to the paper.
The per-image results are kept in pytest's temporary folder
(`genet-parity eval --resume` can continue them from the command line).
"""
from __future__ import annotations

import pytest

from parity.conftest import Inconclusive, skip_unless_all

MIN_AGREEMENT_PCT = 99.9
PADDLE_TOP1_POINTS = 0.05
TORCH_TOP1_POINTS = 0.1
IMAGENET_VAL_SIZE = 50_000


@pytest.fixture(scope="module")
def imagenet_summary(user_weights, imagenet_dir, imagenet_list, imagenet_limit, tmp_path_factory):
    from converters.files.load import to_layout

    from parity.inputs.data import open_dataset, select
    from parity.accuracy.evaluate import evaluate
    from parity.accuracy.runners import build_runners, logit_check
    from parity.accuracy.summary import make_header
    from parity.core.runtime import default_threads

    skip_unless_all("the ImageNet accuracy check", genet_weights=user_weights, imagenet_dir=imagenet_dir)
    if user_weights.fused:
        pytest.skip(f"{user_weights.path} is BN-fused; evaluate the unfused checkpoint")
    arch = user_weights.arch
    dataset = open_dataset(imagenet_dir, imagenet_list, user_weights.num_classes)
    samples = select(dataset.samples, imagenet_limit)
    official = to_layout(user_weights, "official")
    runners = build_runners(arch, ["torch", "paddle"], official, to_layout(user_weights, "paddle"))
    header = make_header(arch, "float32", "cpu", runners, {"source": user_weights.path, "sha256": user_weights.sha256,
                                                           "num_classes": user_weights.num_classes},
                         dataset, imagenet_limit, None, len(samples))
    results = tmp_path_factory.mktemp("imagenet") / f"eval_{arch}.jsonl"
    return evaluate(runners, dataset, samples, header, str(results), batch_size=32, workers=default_threads(),
                    check=logit_check(arch, official, runners))


def test_logits_within_the_rule_on_the_first_images(imagenet_summary):
    """Both frameworks' logits on the first evaluation images, judged against a
    float64 recomputation (parity.core.tolerances): the bar is torch float32's own error."""
    from parity.core.tolerances import failed as out_of_rule

    s = imagenet_summary
    # torch eager is the bar itself: its row is the reference, reported, not judged
    failed = [f"{fw}: {j['error']:.3g} > {j['bound']:.3g} (margin {j['margin']:.3g})"
              for c in s["logit_checks"] for fw, j in c["judgements"].items() if out_of_rule(j)]
    assert s["logit_checks_pass"], f"GENet_{s['arch']}: logits out of the rule: {'; '.join(failed)}"


def _decide(judged: dict, what: str, interval: str):
    """FAIL fails; INCONCLUSIVE raises Inconclusive naming the sample that
    would decide it (reported as its own outcome, or a failure with
    --genet-inconclusive fail; see parity/conftest.py)."""
    from parity.accuracy.stats import FAIL, INCONCLUSIVE

    if judged["status"] == INCONCLUSIVE:
        need = judged["images_needed"]
        raise Inconclusive(f"{what} on {judged['n']:,} images, 95% interval {interval} straddles the threshold; "
                           + (f"about {need:,} images would decide it (--imagenet-limit {need} or more, or the "
                              "full val set)" if need else "no sample size decides it"))
    assert judged["status"] != FAIL, f"{what}: 95% interval {interval} lies outside the threshold"


def test_frameworks_agree_image_by_image(imagenet_summary):
    from parity.accuracy.stats import proportion_check

    s = imagenet_summary
    assert s["complete"] and s["n_bad"] == 0, f"{s['n_bad']} images failed to decode: {s['bad_images'][:5]}"
    shown = ", ".join(f"{d['path']} (torch {d['torch']}, paddle {d['paddle']})" for d in s["disagreements"][:10])
    judged = proportion_check(s["n_evaluated"] - s["n_disagree"], s["n_evaluated"], MIN_AGREEMENT_PCT)
    lo, hi = judged["interval_pct"]
    _decide(judged, f"GENet_{s['arch']}: top-1 agreement {s['agreement_top1']:.3f}% (>= {MIN_AGREEMENT_PCT}% "
                    f"required; first disagreements: {shown or 'none'})", f"[{lo:.3f}, {hi:.3f}]%")


def test_paddle_top1_equals_torch_top1(imagenet_summary):
    from parity.accuracy.stats import paired_difference_check

    s = imagenet_summary
    gap = s["top1"]["paddle"] - s["top1"]["torch"]
    p = s["paired"]
    judged = paired_difference_check(p["a_only_correct"], p["b_only_correct"], s["n_evaluated"], PADDLE_TOP1_POINTS)
    lo, hi = judged["interval_points"]  # torch - paddle
    _decide(judged, f"GENet_{s['arch']}: Paddle top-1 {s['top1']['paddle']:.3f}% vs torch {s['top1']['torch']:.3f}% "
                    f"({gap:+.3f} points, allowed +/-{PADDLE_TOP1_POINTS}; McNemar p = {p['mcnemar_exact_p']:.3g})",
            f"[{-hi:+.3f}, {-lo:+.3f}] points (Paddle - torch)")


def test_torch_top1_matches_the_paper(imagenet_summary, imagenet_limit):
    from genet_arch import CARDS, DEFAULT_NUM_CLASSES

    s = imagenet_summary
    if s["num_classes"] != DEFAULT_NUM_CLASSES:
        pytest.skip(f"the published top-1 is for the {DEFAULT_NUM_CLASSES}-class ImageNet head; these weights have "
                    f"a {s['num_classes']}-class head")
    if imagenet_limit is not None or s["dataset"]["n_images"] != IMAGENET_VAL_SIZE:
        pytest.skip(f"the published top-1 holds for all {IMAGENET_VAL_SIZE:,} ImageNet-val images; this run "
                    f"evaluated {s['n_evaluated']:,} (drop --imagenet-limit, use the full val set)")
    published = CARDS[s["arch"]].published_top1
    assert abs(s["top1"]["torch"] - published) <= TORCH_TOP1_POINTS, (
        f"GENet_{s['arch']}: torch top-1 {s['top1']['torch']:.3f}% vs published {published}% "
        f"(allowed {TORCH_TOP1_POINTS} points)")
