"""Certification on ImageNet val: both frameworks on the same preprocessed
images (the pipeline of `genet-parity eval`).

    pytest parity/test_accuracy.py --genet-weights GENet_large.pth \\
        --imagenet-dir /data/val --imagenet-list val_list.txt [--imagenet-limit 2000]

Skipped, naming the option, without weights or images. On any subset the
frameworks must agree; only the full 50,000 images are held to the paper.
The per-image results are kept in pytest's temporary folder
(`genet-parity eval --resume` can continue them from the command line).
"""
from __future__ import annotations

import pytest

from parity.conftest import skip_without

MIN_AGREEMENT_PCT = 99.9
PADDLE_TOP1_POINTS = 0.05
TORCH_TOP1_POINTS = 0.1
IMAGENET_VAL_SIZE = 50_000


@pytest.fixture(scope="module")
def imagenet_summary(user_weights, imagenet_dir, imagenet_list, imagenet_limit, tmp_path_factory):
    from converters.load import to_layout

    from parity.data import open_dataset, select
    from parity.evaluate import build_runners, evaluate, logit_check, make_header
    from parity.runtime import default_threads

    skip_without(user_weights, "genet_weights", "the ImageNet accuracy check")
    skip_without(imagenet_dir, "imagenet_dir", "the ImageNet accuracy check")
    if user_weights.fused:
        pytest.skip(f"{user_weights.path} is BN-fused; evaluate the unfused checkpoint")
    arch = user_weights.arch
    dataset = open_dataset(imagenet_dir, imagenet_list)
    samples = select(dataset.samples, imagenet_limit)
    official = to_layout(user_weights, "official")
    runners = build_runners(arch, ["torch", "paddle"], official, to_layout(user_weights, "paddle"))
    header = make_header(arch, "float32", "cpu", runners, {"source": user_weights.path, "sha256": user_weights.sha256},
                         dataset, imagenet_limit, None, len(samples))
    results = tmp_path_factory.mktemp("imagenet") / f"eval_{arch}.jsonl"
    return evaluate(runners, dataset, samples, header, str(results), batch_size=32, workers=default_threads(),
                    check=logit_check(arch, official, runners))


def test_logits_within_the_rule_on_the_first_images(imagenet_summary):
    """Both frameworks' logits on the first evaluation images, judged against a
    float64 recomputation (parity.tolerances): the bar is torch float32's own error."""
    s = imagenet_summary
    failed = [f"{fw}: {j['error']:.3g} > {j['bound']:.3g} (margin {j['margin']:.3g})"
              for c in s["logit_checks"] for fw, j in c["judgements"].items() if not j["passed"]]
    assert s["logit_checks_pass"], f"GENet_{s['arch']}: logits out of the rule: {'; '.join(failed)}"


def test_frameworks_agree_image_by_image(imagenet_summary):
    s = imagenet_summary
    assert s["complete"] and s["n_bad"] == 0, f"{s['n_bad']} images failed to decode: {s['bad_images'][:5]}"
    shown = ", ".join(f"{d['path']} (torch {d['torch']}, paddle {d['paddle']})" for d in s["disagreements"][:10])
    assert s["agreement_top1"] >= MIN_AGREEMENT_PCT, (
        f"GENet_{s['arch']}: top-1 agreement {s['agreement_top1']:.3f}% < {MIN_AGREEMENT_PCT}% on "
        f"{s['n_evaluated']} images; first disagreements: {shown}")


def test_paddle_top1_equals_torch_top1(imagenet_summary):
    s = imagenet_summary
    gap = s["top1"]["paddle"] - s["top1"]["torch"]
    assert abs(gap) <= PADDLE_TOP1_POINTS, (
        f"GENet_{s['arch']}: Paddle top-1 {s['top1']['paddle']:.3f}% vs torch {s['top1']['torch']:.3f}% "
        f"({gap:+.3f} points, allowed {PADDLE_TOP1_POINTS}); McNemar p = {s['paired']['mcnemar_exact_p']:.3g}")


def test_torch_top1_matches_the_paper(imagenet_summary, imagenet_limit):
    from genet_arch import CARDS

    s = imagenet_summary
    if imagenet_limit is not None or s["dataset"]["n_images"] != IMAGENET_VAL_SIZE:
        pytest.skip(f"the published top-1 holds for all {IMAGENET_VAL_SIZE:,} ImageNet-val images; this run "
                    f"evaluated {s['n_evaluated']:,} (drop --imagenet-limit, use the full val set)")
    published = CARDS[s["arch"]].published_top1
    assert abs(s["top1"]["torch"] - published) <= TORCH_TOP1_POINTS, (
        f"GENet_{s['arch']}: torch top-1 {s['top1']['torch']:.3f}% vs published {published}% "
        f"(allowed {TORCH_TOP1_POINTS} points)")
