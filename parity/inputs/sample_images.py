"""Real photographs that ship inside an installed package (scikit-image's
`skimage/data`, present in its wheel, never fetched), for the tests and the
demo certificate. Nothing is downloaded.

The files are located with importlib without importing scikit-image (whose
import pulls in SciPy), and read with PIL like any ImageNet JPEG.
"""
from __future__ import annotations

import importlib.util
import os
from typing import List

from parity.inputs.data import DataError

# Photographs and scans in several modes: RGB, grayscale ('L'), RGBA, JPEG and PNG.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg",
          "motorcycle_left.png", "camera.png", "moon.png", "coins.png", "horse.png", "page.png", "grass.png",
          "ihc.png", "clock_motion.png", "cell.png")


def photo_dir() -> str:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(None, "the built-in photos come from scikit-image's bundled data, and scikit-image is not "
                              "installed: pip install scikit-image")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def bundled_photos(names=PHOTOS) -> List[str]:
    """Absolute paths of the bundled photos, all of which must be present."""
    root = photo_dir()
    paths = [os.path.join(root, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(root, f"lacks bundled photos {', '.join(os.path.basename(p) for p in missing)} "
                              f"(an unusual scikit-image build?)")
    return paths
