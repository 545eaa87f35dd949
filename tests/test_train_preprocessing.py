"""The training preprocessing (`parity.inputs.train_preprocessing`) and the batches
both frameworks train on (`parity.training.make_batches`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from parity.inputs.sample_images import PHOTOS
from parity.inputs.train_preprocessing import RATIO, SCALE, crop_box, train_crop_uint8
from parity.training import make_batches


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(500, 375), (256, 256), (120, 640)])
def test_crop_boxes_lie_inside_with_torchvision_ranges(size):
    w, h = size
    rng = np.random.default_rng(1)
    for _ in range(300):
        top, left, ch, cw = crop_box(rng, w, h)
        assert 0 <= top and 0 <= left and top + ch <= h and left + cw <= w and ch > 0 and cw > 0
        if (ch, cw) != (h, w):  # not the fallback: area and aspect ratio drawn within range (up to rounding)
            assert SCALE[0] * w * h * 0.9 <= ch * cw <= SCALE[1] * w * h
            assert RATIO[0] * 0.9 <= cw / ch <= RATIO[1] * 1.1


def test_fallback_is_the_centred_crop_of_torchvision():
    rng = np.random.default_rng(0)
    # An impossible scale leaves only the fallback: the full height, width clamped to the ratio 4/3.
    top, left, h, w = crop_box(rng, 400, 100, scale=(2.0, 3.0))
    assert (h, w) == (100, int(round(100 * 4 / 3))) and top == 0 and left == (400 - w) // 2
    assert crop_box(rng, 100, 90, scale=(2.0, 3.0)) == (0, 0, 90, 100)  # ratio in range: the whole image


class _Fixed:
    """A stand-in Generator: whole-image crop, then the given flip draw."""

    def __init__(self, flip_draw):
        self.flip_draw = flip_draw

    def uniform(self, lo, hi):
        return hi  # area fraction 1, then log aspect ratio of the upper bound

    def integers(self, lo, hi):
        return lo

    def random(self):
        return self.flip_draw


def test_whole_image_crop_is_a_plain_resize_and_flip_mirrors_it(monkeypatch):
    import parity.inputs.train_preprocessing as tp

    monkeypatch.setattr(tp, "RATIO", (1.0, 1.0))
    img = _image(300, 300)
    kept = train_crop_uint8(img, "small", _Fixed(0.9))
    flipped = train_crop_uint8(img, "small", _Fixed(0.1))
    assert np.array_equal(kept, np.asarray(img.resize((192, 192), Image.BILINEAR)))
    assert np.array_equal(flipped, kept[:, ::-1])


def test_seeded_batches_are_reproducible_and_well_formed():
    a = make_batches("small", 2, 3, 10, seed=5)
    b = make_batches("small", 2, 3, 10, seed=5)
    c = make_batches("small", 2, 3, 10, seed=6)
    assert a.info["sha256"] == b.info["sha256"] != c.info["sha256"]
    assert all(np.array_equal(x, y) for x, y in zip(a.inputs, b.inputs))
    assert a.inputs[0].shape == (3, 3, 192, 192) and a.inputs[0].dtype == np.float32
    assert all(y.dtype == np.int64 and y.min() >= 0 and y.max() < 10 for y in a.labels)
    assert a.info["per_step"] == [list(PHOTOS[0:3]), list(PHOTOS[3:6])]  # the bundled photos in turn
    ev = make_batches("large", 1, 2, 1000, preprocess="eval")
    assert ev.inputs[0].shape == (2, 3, 256, 256) and ev.info["preprocess"] == "eval"
    rnd = make_batches("small", 1, 2, 1000, source="random")
    assert rnd.info["preprocess"] == "no" and math.isfinite(float(rnd.inputs[0].std()))


def test_unreadable_image_is_bad_input(tmp_path):
    from parity.inputs.data import DataError

    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read the image"):
        make_batches("small", 1, 1, 10, images=[str(bad)])
