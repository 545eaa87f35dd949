"""The official GENet evaluation preprocessing, in PIL + numpy only.

The official code composes torchvision's Resize(ceil(R / 0.875)),
CenterCrop(R), ToTensor() and Normalize(mean, std). Each step is restated
here with the exact arithmetic torchvision uses, so no torchvision is needed
and both frameworks receive bit-identical inputs.

The work is split in two halves on purpose: `crop_uint8` (decode-side, runs in
worker processes, ships 3 bytes per pixel) and `normalize_batch` (main
process, whole batches). `preprocess` is simply the two halves for one image.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from genet_arch import CARDS, canonical_arch

CROP_FRACTION = 0.875


def eval_sizes(arch: str) -> Tuple[int, int]:
    """(resize short side S, crop R) of a variant: R from the weights card."""
    card = CARDS[canonical_arch(arch)]
    crop = card.resolution
    return int(math.ceil(crop / card.crop_pct)), crop


def describe(arch: str) -> dict:
    """The evaluation preprocessing of a variant as results files record it:
    two runs with the same description fed their models the same inputs."""
    card = CARDS[canonical_arch(arch)]
    short, crop = eval_sizes(arch)
    return {"resize_short_side": short, "center_crop": crop, "interpolation": "PIL bilinear", "scale": "1/255",
            "mean": [float(v) for v in card.mean], "std": [float(v) for v in card.std]}


def resized_size(width: int, height: int, short: int) -> Tuple[int, int]:
    """torchvision Resize(int) on a PIL image: the short side becomes `short`,
    the long side int(short * long / short_side) (truncated, not rounded)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def crop_offsets(width: int, height: int, crop: int) -> Tuple[int, int]:
    """torchvision CenterCrop: (top, left) = int(round((h - R) / 2.0)), ...
    Python's round() halves to even, so an odd surplus of 5 gives 2, of 3 gives 2."""
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def crop_uint8(image, arch: str) -> np.ndarray:
    """RGB-convert, resize (PIL bilinear) and center-crop one PIL image:
    a uint8 array (R, R, 3), height x width x channel."""
    from PIL import Image

    short, crop = eval_sizes(arch)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize(resized_size(image.width, image.height, short), Image.BILINEAR)
    top, left = crop_offsets(image.width, image.height, crop)
    # PIL pads with black when a crop box leaves the image; the resized short
    # side is always >= R, so the box never does.
    image = image.crop((left, top, left + crop, top + crop))
    return np.asarray(image, dtype=np.uint8).reshape(crop, crop, 3)


def normalize_batch(crops: np.ndarray, arch: str) -> np.ndarray:
    """uint8 (N, R, R, 3) crops -> float32 (N, 3, R, R) network input.

    Same float32 operations, same order as ToTensor + Normalize: x / 255,
    then (x - mean) / std per channel."""
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 crops (N, R, R, 3), got {crops.dtype} {crops.shape}")
    card = CARDS[canonical_arch(arch)]
    mean = np.asarray(card.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(card.std, dtype=np.float32).reshape(1, 3, 1, 1)
    x = crops.transpose(0, 3, 1, 2).astype(np.float32)
    x /= np.float32(255)
    x -= mean
    x /= std
    return np.ascontiguousarray(x)


def preprocess(image, arch: str) -> np.ndarray:
    """One PIL image -> float32 (3, R, R), exactly as the official evaluation."""
    return normalize_batch(crop_uint8(image, arch)[None], arch)[0]
