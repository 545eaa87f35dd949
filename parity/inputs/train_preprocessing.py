"""The standard ImageNet training preprocessing, in PIL + numpy only.

torchvision's RandomResizedCrop(R) (scale (0.08, 1), ratio (3/4, 4/3),
bilinear), RandomHorizontalFlip(0.5), ToTensor and Normalize, with the mean,
std and R of the weights card. Each step follows torchvision's arithmetic
(the ten tries of `RandomResizedCrop.get_params`, its centre-crop fallback,
PIL crop then resize), so the distribution of crops is torchvision's; the
random numbers come from a numpy Generator instead of torch's global state,
so one seed gives the same bytes to both frameworks on any machine.

Draw order per image: area fraction and log aspect ratio (per try), then the
crop's top and left, then the flip.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from genet_arch import CARDS, canonical_arch

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
FLIP_P = 0.5
TRIES = 10


def crop_box(rng: np.random.Generator, width: int, height: int, scale=SCALE, ratio=RATIO) -> Tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop, as torchvision's RandomResizedCrop.get_params."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(TRIES):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the largest centred crop whose aspect ratio lies in range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_crop_uint8(image, arch: str, rng: np.random.Generator) -> np.ndarray:
    """RGB-convert, random-resized-crop to R x R (PIL bilinear) and randomly
    flip one PIL image: uint8 (R, R, 3)."""
    from PIL import Image

    size = CARDS[canonical_arch(arch)].resolution
    if image.mode != "RGB":
        image = image.convert("RGB")
    top, left, h, w = crop_box(rng, image.width, image.height)
    out = image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
    if rng.random() < FLIP_P:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8).reshape(size, size, 3)
