"""Load weights into `paddle_genet` models: strict, all-or-nothing, no pickle code run."""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import paddle

from converters.io import read_pdparams
from converters.mapping import check_state

from .model import GENet, build


def load_state(model: GENet, tensors: Mapping[str, object], source: Optional[str] = None) -> GENet:
    """Copy a Paddle-layout state dict (numpy arrays or tensors) into `model`
    (the 'paddle_fused' layout into a model built with fused=True).

    Checked key by key before anything is copied; `set_state_dict` alone
    would skip missing keys with a warning.
    """
    arrays = {k: v.numpy() if isinstance(v, paddle.Tensor) else np.asarray(v) for k, v in tensors.items()}
    check_state(arrays, model.arch.name, "paddle_fused" if model.fused else "paddle", source,
                num_classes=model.arch.classifier.out_features)
    own = model.state_dict()
    for k, v in arrays.items():
        own[k].set_value(v.astype(own[k].numpy().dtype, copy=False))
    return model


def load_pdparams(path: str, arch: str, num_classes: int = 1000) -> GENet:
    """An eval-mode model with the `.pdparams` at `path` (read safely, not with paddle.load)."""
    return load_state(build(arch, num_classes), read_pdparams(path), source=path)
