"""Load weights into `torch_ref` models: strict, all-or-nothing."""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import numpy as np
import torch

from converters.files.io import read_torch
from converters.table.mapping import check_state
from converters.files.pretrained import HEAD_SEED, pretrained_state
from genet_arch import get_arch

from torch_ref.model import GENet


def load_state(model: GENet, tensors: Mapping[str, object], source: Optional[str] = None) -> GENet:
    """Copy an official-layout state dict (numpy arrays or tensors) into `model`
    (the official fused layout into a model built with fused=True).

    Every key and shape is checked before anything is copied, so a bad
    checkpoint never leaves the model half-loaded.
    """
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
              for k, v in tensors.items()}
    check_state(arrays, model.arch.name, "fused" if model.fused else "official", source,
                num_classes=model.arch.classifier.out_features)
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in arrays.items()},
                          strict=True)
    return model


def load_checkpoint(path: str, arch: str, num_classes: int = 1000) -> GENet:
    """An eval-mode model with the official-layout checkpoint at `path`
    (`{'state_dict': ...}`, a bare state dict, or with a `module.` prefix)."""
    return load_state(build(arch, num_classes), read_torch(path), source=path)

def build(arch: str = "large", num_classes: int = 1000, fused: bool = False, pretrained=None,
          head_seed: int = HEAD_SEED) -> GENet:
    """An eval-mode GENet; `arch` is small|normal|large or GENet_small|... .
    `fused=True`: BN folded into the convs, state_dict = the official fused layout.

    `pretrained`: a checkpoint path (official, timm or Paddle layout, read
    safely), loaded strictly; only a head of another size than `num_classes`
    is replaced, by a fresh one drawn from `head_seed` (the same numbers
    `paddle_genet.build` draws). `model.load_report` names what was replaced."""
    model = GENet(get_arch(arch, num_classes), fused).eval()
    if pretrained is not None:
        if fused:
            raise ValueError("pretrained= builds the unfused model (fine-tuning trains the BN layers); fold BN "
                             "afterwards with converters.table.fuse")
        tensors, model.load_report = pretrained_state(str(pretrained), arch, num_classes, "official", head_seed)
        load_state(model, tensors, source=str(pretrained))
        logging.getLogger(__name__).info("%s", model.load_report)
    return model
