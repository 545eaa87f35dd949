"""Load weights into `torch_ref` models: strict, all-or-nothing."""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import numpy as np
import torch

from converters.files.checkpoint import read_torch
from converters.files.pretrained import HEAD_SEED, pretrained_state
from converters.table.head import state_classes
from converters.table.mapping import check_state
from genet_arch import DEFAULT_NUM_CLASSES, get_arch

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


def load_checkpoint(path: str, arch: str, num_classes: Optional[int] = None,
                    weights_key: Optional[str] = None) -> GENet:
    """An eval-mode model with the official-layout checkpoint at `path`
    (`{'state_dict': ...}`, a bare state dict, or with a `module.` prefix;
    `weights_key` picks another entry of a training checkpoint). The head
    has the checkpoint's own size unless `num_classes` says otherwise (then
    a checkpoint of another size is refused, naming both)."""
    tensors = read_torch(path, weights_key=weights_key)
    if num_classes is None:
        num_classes = state_classes(tensors, arch, "official")
    return load_state(build(arch, num_classes), tensors, source=path)


def build(arch: str = "large", num_classes: Optional[int] = None, fused: bool = False, pretrained=None,
          head_seed: int = HEAD_SEED, weights_key: Optional[str] = None) -> GENet:
    """An eval-mode GENet; `arch` is small|normal|large or GENet_small|... .
    `fused=True`: BN folded into the convs, state_dict = the official fused layout.
    `num_classes`: the head's size; by default the `pretrained` checkpoint's
    own (a fine-tuned one's too), else 1000.

    `pretrained`: a checkpoint path (official, timm or Paddle layout, read
    safely; `weights_key` picks the state dict of a training checkpoint),
    loaded strictly; only a head of another size than `num_classes` is
    replaced, by a fresh one drawn from `head_seed` (the same numbers
    `paddle_genet.build` draws). `model.load_report` names what was replaced."""
    if pretrained is None:
        return GENet(get_arch(arch, DEFAULT_NUM_CLASSES if num_classes is None else num_classes), fused).eval()
    if fused:
        raise ValueError("pretrained= builds the unfused model (fine-tuning trains the BN layers); fold BN "
                         "afterwards with converters.table.fuse")
    tensors, report = pretrained_state(str(pretrained), arch, num_classes, "official", head_seed,
                                       weights_key=weights_key)
    model = GENet(get_arch(arch, report.num_classes), fused).eval()
    load_state(model, tensors, source=str(pretrained))
    model.load_report = report
    logging.getLogger(__name__).info("%s", report)
    return model
