"""Load weights into `paddle_genet` models: strict, all-or-nothing, no pickle code run."""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import numpy as np
import paddle

from converters.files.pdparams import read_pdparams
from converters.files.pretrained import HEAD_SEED, pretrained_state
from converters.table.head import state_classes
from converters.table.mapping import check_state
from genet_arch import DEFAULT_NUM_CLASSES, get_arch

from paddle_genet.model import GENet


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


def load_pdparams(path: str, arch: str, num_classes: Optional[int] = None) -> GENet:
    """An eval-mode model with the `.pdparams` at `path` (read safely, not
    with paddle.load). The head has the file's own size unless `num_classes`
    says otherwise (then a file of another size is refused, naming both)."""
    tensors = read_pdparams(path)
    if num_classes is None:
        num_classes = state_classes(tensors, arch, "paddle")
    return load_state(build(arch, num_classes), tensors, source=path)


def build(arch: str = "large", num_classes: Optional[int] = None, fused: bool = False, pretrained=None,
          head_seed: int = HEAD_SEED, weights_key: Optional[str] = None) -> GENet:
    """An eval-mode GENet; `arch` is small|normal|large or GENet_small|... .
    `fused=True`: BN folded into the convs (layout 'paddle_fused' of converters.table.fuse).
    `num_classes`: the head's size; by default the `pretrained` checkpoint's
    own (a fine-tuned one's too), else 1000.

    `pretrained`: a checkpoint path (the official .pth, timm's weights or a
    .pdparams; read without running pickle code; `weights_key` picks the
    state dict of a PyTorch training checkpoint), loaded strictly; only a
    head of another size than `num_classes` is replaced, by a fresh one drawn
    from `head_seed` (the same numbers `torch_ref.build` draws).
    `model.load_report` names what was replaced."""
    if pretrained is None:
        model = GENet(get_arch(arch, DEFAULT_NUM_CLASSES if num_classes is None else num_classes), fused)
    else:
        if fused:
            raise ValueError("pretrained= builds the unfused model (fine-tuning trains the BN layers); fold BN "
                             "afterwards with converters.table.fuse")
        tensors, report = pretrained_state(str(pretrained), arch, num_classes, "paddle", head_seed,
                                           weights_key=weights_key)
        with paddle.LazyGuard():  # no random initialisation: load_state overwrites every tensor
            model = GENet(get_arch(arch, report.num_classes), fused)
        load_state(model, tensors, source=str(pretrained))
        model.load_report = report
        logging.getLogger(__name__).info("%s", report)
    model.eval()
    return model
