"""The batches both frameworks train on: the same bytes, from one seed.

Sources: the photos bundled with scikit-image (`parity.inputs.sample_images`) or
your images, through the training preprocessing (`parity.inputs.train_preprocessing`:
random resized crop and flip) or the evaluation one (`parity.inputs.preprocessing`),
or seeded Gaussian input. Labels are synthetic: drawn uniformly from the
classes by the same seed (a training step needs labels, not true ones).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from genet_arch import canonical_arch, get_arch

DATA_SEED = 2023
SOURCES = ("photos", "random")
PREPROCESSING = ("train", "eval")


@dataclass
class Batches:
    inputs: List[np.ndarray]  # one float32 (B, 3, R, R) per step
    labels: List[np.ndarray]  # one int64 (B,) per step
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.inputs)


def _open_images(paths: Sequence[str]):
    from PIL import Image, UnidentifiedImageError

    from parity.inputs.data import DataError

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(path, f"cannot read the image: {e}") from None
    return images


def make_batches(arch: str, steps: int, batch_size: int, num_classes: int, source: str = "photos",
                 images: Optional[Sequence[str]] = None, preprocess: str = "train",
                 seed: int = DATA_SEED) -> Batches:
    """`steps` batches of `batch_size`. Images are used in turn (again from
    the first when the list runs out; each use gets its own random crop)."""
    from parity.inputs.preprocessing import crop_uint8, normalize_batch
    from parity.inputs.train_preprocessing import train_crop_uint8

    arch = canonical_arch(arch)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch size must be >= 1, got {steps} and {batch_size}")
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}, got {preprocess!r}")
    if images:
        source = "images"
    elif source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)} (or give images), got {source!r}")
    crops_rng, labels_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    labels = [labels_rng.integers(0, num_classes, batch_size).astype(np.int64) for _ in range(steps)]
    info = {"source": source, "seed": seed, "steps": steps, "batch_size": batch_size,
            "labels": "synthetic, uniform over the classes"}
    if source == "random":
        r = get_arch(arch).resolution
        inputs = [crops_rng.standard_normal((batch_size, 3, r, r)).astype(np.float32) for _ in range(steps)]
        info["preprocess"] = "no"
        info["preprocessing"] = "none (seeded standard normal input)"
    else:
        if source == "photos":
            from parity.inputs.sample_images import bundled_photos

            paths = bundled_photos()
            info["images"] = "scikit-image's bundled photos"
        else:
            paths = list(images)
        decoded = _open_images(paths)
        inputs, used = [], []
        for s in range(steps):
            picks = [(s * batch_size + b) % len(paths) for b in range(batch_size)]
            if preprocess == "train":
                crops = [train_crop_uint8(decoded[i], arch, crops_rng) for i in picks]
            else:
                crops = [crop_uint8(decoded[i], arch) for i in picks]
            inputs.append(normalize_batch(np.stack(crops), arch))
            used.append([os.path.basename(paths[i]) for i in picks])
        info["preprocess"] = preprocess
        info["preprocessing"] = ("training: RandomResizedCrop + horizontal flip (seeded), normalised"
                                 if preprocess == "train" else "evaluation: resize, centre crop, normalise")
        info["per_step"] = used
    h = hashlib.sha256()
    for x, y in zip(inputs, labels):
        h.update(x.tobytes())
        h.update(y.tobytes())
    info["sha256"] = h.hexdigest()
    info["shape"] = list(inputs[0].shape)
    return Batches(inputs, labels, info)
