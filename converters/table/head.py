"""The head size of a state: how many classes its classifier has.

A fine-tuned checkpoint keeps every tensor of GENet but the classifier, whose
rows are its number of classes. That number is a property of the file, read
here from the classifier's tensors, so the mapping table, the layout checks and
every model can be built for it; everything else about a layout stays strict.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Tuple

import numpy as np

from genet_arch import DEFAULT_NUM_CLASSES, get_arch, naming

# Layouts that store the classifier weight the Paddle way, [in, out]; the rest store it [out, in].
PADDLE_STORAGE = ("paddle", "paddle_fused")


def fc_keys(layout: str) -> Tuple[str, str]:
    """(weight key, bias key) of the classifier in `layout`."""
    path = naming.fc_path("fused" if layout == "paddle_fused" else layout)
    return f"{path}.weight", f"{path}.bias"


def head_classes(shapes: Mapping[str, Sequence[int]], arch: str, layout: str) -> int:
    """The number of classes of the head in `shapes` ({key: shape}) of
    `arch` in `layout`: the classifier weight's class dimension where its
    other dimension is the arch's feature width, else the bias length, else
    DEFAULT_NUM_CLASSES (no head: the layout check then names what is missing).
    Read this way, a head whose weight and bias disagree, or a weight stored
    transposed, still fails the layout check by name."""
    in_features = get_arch(arch).classifier.in_features
    weight_key, bias_key = fc_keys(layout)
    weight, bias = shapes.get(weight_key), shapes.get(bias_key)
    if weight is not None and len(weight) == 2:
        features, classes = (weight[0], weight[1]) if layout in PADDLE_STORAGE else (weight[1], weight[0])
        if features == in_features and classes >= 1:
            return int(classes)
    if bias is not None and len(bias) == 1 and bias[0] >= 1:
        return int(bias[0])
    return DEFAULT_NUM_CLASSES


def state_classes(tensors: Mapping[str, object], arch: str, layout: str) -> int:
    """`head_classes` of a state of arrays or tensors."""
    return head_classes({k: tuple(np.shape(tensors[k])) for k in fc_keys(layout) if k in tensors}, arch, layout)


__all__ = ["PADDLE_STORAGE", "fc_keys", "head_classes", "state_classes"]
