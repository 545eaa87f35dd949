"""The official evaluation preprocessing, pinned with hand-computed sizes,
offsets and values, on generated images and on real photos."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from parity import preprocess as preprocess_from_package
from parity.inputs.decode import Decoder, decode_one
from parity.inputs.preprocessing import crop_offsets, crop_uint8, eval_sizes, normalize_batch, preprocess, resized_size
from parity.inputs.sample_images import bundled_photos

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def reference(image, resize_to, box):
    """Independent restatement: literal sizes and box, float64 arithmetic."""
    rgb = image.convert("RGB").resize(resize_to, Image.BILINEAR).crop(box)
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def gradient(width, height, mode="RGB"):
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([(xx * 7 + yy * 3) % 256, (xx * 2 + yy * 11) % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def test_sizes_from_the_weights_card():
    # ceil(192 / 0.875) = ceil(219.43) = 220; ceil(256 / 0.875) = ceil(292.57) = 293
    assert eval_sizes("small") == (220, 192)
    assert eval_sizes("GENet_normal") == (220, 192)
    assert eval_sizes("gernet_l") == (293, 256)


@pytest.mark.parametrize("size, short, expected", [
    ((500, 375), 220, (293, 220)),  # landscape: 220 * 500 / 375 = 293.33 -> 293
    ((375, 500), 220, (220, 293)),  # portrait
    ((300, 300), 293, (293, 293)),  # square
    ((333, 217), 293, (449, 293)),  # odd: 293 * 333 / 217 = 449.64, truncated not rounded
    ((100, 50), 220, (440, 220)),  # already smaller than the crop: upscaled
    ((220, 999), 220, (220, 999)),  # short side already S: 220 * 999 / 220 = 999
])
def test_resized_size(size, short, expected):
    assert resized_size(*size, short) == expected


@pytest.mark.parametrize("size, crop, expected", [
    ((449, 293), 256, (18, 96)),  # (293-256)/2 = 18.5 -> 18 and (449-256)/2 = 96.5 -> 96: halves round to even
    ((259, 259), 256, (2, 2)),  # 1.5 -> 2
    ((261, 257), 256, (0, 2)),  # 0.5 -> 0, 2.5 -> 2
    ((256, 256), 256, (0, 0)),
])
def test_crop_offsets_round_half_to_even(size, crop, expected):
    assert crop_offsets(*size, crop) == expected


@pytest.mark.parametrize("arch, size, resize_to, box", [
    ("small", (333, 217), (337, 220), (72, 14, 264, 206)),  # 220*333/217 = 337.6; left round(72.5) = 72
    ("small", (217, 333), (220, 337), (14, 72, 206, 264)),  # portrait: offsets swap
    ("large", (101, 77), (384, 293), (64, 18, 320, 274)),  # tiny image upscaled; 293*101/77 = 384.3
    ("large", (293, 293), (293, 293), (18, 18, 274, 274)),  # already S x S: resize is the identity
])
def test_pipeline_matches_hand_computed_reference(arch, size, resize_to, box):
    image = gradient(*size)
    out = preprocess(image, arch)
    expected = reference(image, resize_to, box)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_constant_colour_normalises_to_hand_values():
    out = preprocess(Image.new("RGB", (640, 480), (255, 0, 128)), "small")
    want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for c in range(3):
        np.testing.assert_allclose(out[c], want[c], rtol=0, atol=1e-6)


def test_package_level_name_is_the_same_function():
    assert preprocess_from_package is preprocess


def _jpeg(image, mode):
    buf = io.BytesIO()
    image.convert(mode).save(buf, "JPEG", quality=95)
    buf.seek(0)
    return Image.open(buf)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_follow_pil_convert_rgb(mode):
    jpeg = _jpeg(gradient(301, 245), mode)
    assert jpeg.mode == mode
    out = preprocess(jpeg, "small")
    # 301x245 -> (int(220*301/245) = 270, 220), crop left round(39) = 39, top 14
    expected = reference(jpeg, (270, 220), (39, 14, 231, 206))
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    if mode == "L":  # a gray image gives equal channels before normalisation
        raw = out * STD[:, None, None].astype(np.float32) + MEAN[:, None, None].astype(np.float32)
        np.testing.assert_allclose(raw[0], raw[1], atol=1e-6)


@pytest.mark.parametrize("name, resize_to, box", [
    ("chelsea.png", (330, 220), (69, 14, 261, 206)),  # RGB 451x300 photo: int(220*451/300) = 330
    ("camera.png", (220, 220), (14, 14, 206, 206)),  # grayscale 512x512
    ("horse.png", (268, 220), (38, 14, 230, 206)),  # RGBA 400x328: int(220*400/328) = 268
    ("rocket.jpg", (329, 220), (68, 14, 260, 206)),  # JPEG 640x427: int(220*640/427) = 329, round(68.5) = 68
])
def test_real_photos(name, resize_to, box):
    path = next(p for p in bundled_photos() if os.path.basename(p) == name)
    with Image.open(path) as image:
        out = preprocess(image, "small")
        expected = reference(image, resize_to, box)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_uint8_workers_plus_batch_normalisation_equal_the_per_image_pipeline():
    from parity.inputs.data import Sample

    paths = bundled_photos()[:5]
    samples = [Sample(i, p, 0) for i, p in enumerate(paths)]
    with Decoder("small", lambda s: s.path, workers=2, batch_size=3) as decoder:
        batches = list(decoder.batches(samples))
    assert [len(b.samples) for b in batches] == [3, 2]
    got = np.concatenate([b.inputs for b in batches])
    for i, p in enumerate(paths):
        with Image.open(p) as image:
            assert np.array_equal(got[i], preprocess(image, "small")), p
    crops = [decode_one(p, "small").crop for p in paths]
    assert all(c.dtype == np.uint8 and c.shape == (192, 192, 3) for c in crops)


def test_crop_is_uint8_hwc_and_normalize_rejects_floats():
    crop = crop_uint8(gradient(300, 200), "small")
    assert crop.dtype == np.uint8 and crop.shape == (192, 192, 3)
    with pytest.raises(ValueError, match="uint8"):
        normalize_batch(crop[None].astype(np.float32), "small")


def _half_of_a_real_jpeg():
    with open(next(p for p in bundled_photos() if p.endswith("rocket.jpg")), "rb") as f:
        data = f.read()
    return data[: len(data) // 2]


@pytest.mark.parametrize("content, error", [
    (b"this is not an image", "UnidentifiedImageError: cannot identify image file"),
    (_half_of_a_real_jpeg(), "OSError: image file is truncated"),
])
def test_decoder_reports_the_decoders_error(tmp_path, content, error):
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(content)
    got = decode_one(str(bad), "small")
    assert got.crop is None and got.error.startswith(error), got.error
    assert got.size == len(content)  # the bytes were read and digested before decoding failed
