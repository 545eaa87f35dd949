"""GENet in PyTorch, built by walking the architecture description.

Module paths and state_dict order equal the official code's, so the official
checkpoints load with strict=True.
"""
from __future__ import annotations

import logging

from torch import nn

from converters.pretrained import HEAD_SEED
from genet_arch import Architecture, get_arch, walk


class NetBlock(walk.NetBlockBody, nn.Module):
    """The official ConvKX/BN wrapper: one layer stored as `netblock`."""


class SuperResBlock(walk.SuperBlockBody, nn.Module):
    pass


LEAVES = walk.Leaves(
    conv=lambda c, bias: nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride,
                                   padding=c.padding, groups=c.groups, bias=bias),
    batchnorm=lambda b: nn.BatchNorm2d(b.channels, eps=b.eps, momentum=b.momentum),
    relu=nn.ReLU, identity=nn.Identity, sequential=lambda m: nn.Sequential(*m), module_list=nn.ModuleList,
    net_block=NetBlock, super_block=SuperResBlock,
    pool=lambda p: nn.AdaptiveAvgPool2d(p.output_size),
    linear=lambda fc: nn.Linear(fc.in_features, fc.out_features, bias=fc.bias))


class GENet(walk.GENetBody, nn.Module):
    def __init__(self, arch: Architecture, fused: bool = False):
        super().__init__(arch, LEAVES, "official", fused)


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
        from converters.pretrained import pretrained_state

        from .load import load_state

        if fused:
            raise ValueError("pretrained= builds the unfused model (fine-tuning trains the BN layers); fold BN "
                             "afterwards with converters.fuse")
        tensors, model.load_report = pretrained_state(str(pretrained), arch, num_classes, "official", head_seed)
        load_state(model, tensors, source=str(pretrained))
        logging.getLogger(__name__).info("%s", model.load_report)
    return model
