"""Certification: every layer of the Paddle GENet matches the PyTorch one.

Default: each variant on seeded random weights (converted through the mapping
table). With --genet-weights: your checkpoint, in both frameworks. With
--imagenet-dir: also on real images through the evaluation preprocessing.
A failure names the first divergent layer; `genet-parity layers` gives the full report.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from parity.conftest import skip_without

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
DEFAULT_IMAGES = 2


@pytest.fixture
def weights_under_test(certified_arch, user_weights):
    """(arch, official tensors or None, Paddle tensors or None, description)."""
    from converters.files.load import to_layout
    from genet_arch import canonical_arch
    from parity.core.seeded import seeded_state

    if user_weights is None:
        arch = canonical_arch(certified_arch)
        return arch, seeded_state(arch), None, "seeded random weights (numpy seed 2020)"
    if user_weights.fused:
        pytest.skip(f"{user_weights.path} is BN-fused ({user_weights.layout}); the layer diff compares the "
                    "unfused models")
    if user_weights.framework == "paddle":
        return user_weights.arch, None, to_layout(user_weights, "paddle"), user_weights.path
    return user_weights.arch, to_layout(user_weights, "official"), None, user_weights.path


def _assert_parity(result, what):
    first = result.first_divergent
    detail = "\n  ".join(result.failures[:10])
    assert result.passed, (f"{what}: layer parity FAILED; first divergent layer: "
                           f"{first.torch_name if first else 'none'}\n  {detail}\n"
                           f"(run `genet-parity layers` with the same weights for the full report)")
    assert result.coverage == 1.0


def test_every_layer_matches(weights_under_test):
    from parity.layers.diff import run_layer_diff

    arch, official, paddle, what = weights_under_test
    result = run_layer_diff(arch, official, paddle, batch_size=1 if arch == "large" else 2)
    _assert_parity(result, f"GENet_{arch}, {what}")


def test_every_layer_matches_in_emulated_float16(weights_under_test, user_weights):
    """float16 emulated on CPU (weights and every layer output rounded to
    float16 on both sides); native float16 needs `genet-parity layers --device gpu`."""
    from parity.layers.diff import run_layer_diff

    arch, official, paddle, what = weights_under_test
    if user_weights is None and arch != "small":
        pytest.skip("emulated float16 runs on GENet_small by default (give --genet-weights for yours)")
    result = run_layer_diff(arch, official, paddle, batch_size=1, dtype="float16")
    assert result.emulated
    _assert_parity(result, f"GENet_{arch}, {what}, emulated float16")


def test_conversion_round_trip_is_exact(user_weights):
    """Your checkpoint -> the other framework's layout -> back: every tensor bit-identical."""
    from converters.files.load import to_layout
    from converters.table.mapping import mapping_table

    w = skip_without(user_weights, "genet_weights", "the round trip of your checkpoint")
    if w.fused:
        pytest.skip(f"{w.path} is BN-fused; the round trip covers the unfused layouts")
    table = mapping_table(w.arch, w.num_classes)
    other = "official" if w.framework == "paddle" else "paddle"
    there = to_layout(w, other)
    back = table.convert(there, other, w.layout, source=w.path)
    for key, value in w.tensors.items():
        if key.endswith("num_batches_tracked"):
            continue  # no Paddle counterpart; recreated as 0 (documented in the mapping table)
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key


def _images(imagenet_dir, imagenet_list, limit):
    if imagenet_list:
        with open(imagenet_list) as f:
            names = [line.split()[0] for line in f if line.strip()]
    else:
        names = sorted(n for n in os.listdir(imagenet_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    names = names[:limit]
    if not names:
        pytest.fail(f"no images found in {imagenet_list or imagenet_dir}")
    return [os.path.join(imagenet_dir, n) for n in names]


def test_every_layer_matches_on_real_images(weights_under_test, imagenet_dir, imagenet_list, imagenet_limit):
    from PIL import Image

    from parity.layers.diff import run_layer_diff
    from parity.inputs.preprocessing import preprocess

    skip_without(imagenet_dir, "imagenet_dir", "the layer diff on real images")
    arch, official, paddle, what = weights_under_test
    paths = _images(imagenet_dir, imagenet_list, min(imagenet_limit or DEFAULT_IMAGES, DEFAULT_IMAGES))
    batch = []
    for p in paths:
        with Image.open(p) as im:
            batch.append(preprocess(im.convert("RGB"), arch))
    result = run_layer_diff(arch, official, paddle, inputs=np.stack(batch),
                            input_info={"source": "images", "images": paths})
    _assert_parity(result, f"GENet_{arch}, {what}, images {', '.join(map(os.path.basename, paths))}")
