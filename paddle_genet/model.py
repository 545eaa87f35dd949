"""GENet in PaddlePaddle, built by walking the architecture description.

state_dict keys and order equal the existing Paddle reproduction's
`.pdparams` layout: top-level BN layers sit directly in `module_list` (no
`netblock`), BN statistics are `_mean`/`_variance`, the fc weight is [in, out].
"""
from __future__ import annotations

import logging

import paddle
from paddle import nn

from converters.pretrained import HEAD_SEED
from genet_arch import Architecture, get_arch, walk

from .batchnorm import BatchNorm2D


class NetBlock(walk.NetBlockBody, nn.Layer):
    """The official ConvKX wrapper: one layer stored as `netblock`."""


class SuperResBlock(walk.SuperBlockBody, nn.Layer):
    pass


LEAVES = walk.Leaves(
    conv=lambda c, bias: nn.Conv2D(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride,
                                   padding=c.padding, groups=c.groups, bias_attr=None if bias else False),
    # Paddle weights the running statistic, torch the new batch statistic.
    batchnorm=lambda b: BatchNorm2D(b.channels, momentum=1.0 - b.momentum, epsilon=b.eps),
    relu=nn.ReLU, identity=nn.Identity, sequential=lambda m: nn.Sequential(*m), module_list=nn.LayerList,
    net_block=NetBlock, super_block=SuperResBlock,
    pool=lambda p: nn.AdaptiveAvgPool2D(p.output_size),
    linear=lambda fc: nn.Linear(fc.in_features, fc.out_features, bias_attr=None if fc.bias else False))


class GENet(walk.GENetBody, nn.Layer):
    """The reproduction stores top-level BN and ReLU unwrapped (layout
    'paddle'); folded: the official fused keys (converters.fuse), the fc
    weight stays [in, out]."""

    def __init__(self, arch: Architecture, fused: bool = False):
        super().__init__(arch, LEAVES, "paddle", fused)


def build(arch: str = "large", num_classes: int = 1000, fused: bool = False, pretrained=None,
          head_seed: int = HEAD_SEED) -> GENet:
    """An eval-mode GENet; `arch` is small|normal|large or GENet_small|... .
    `fused=True`: BN folded into the convs (layout 'paddle_fused' of converters.fuse).

    `pretrained`: a checkpoint path (the official .pth, timm's weights or a
    .pdparams; read without running pickle code), loaded strictly; only a head
    of another size than `num_classes` is replaced, by a fresh one drawn from
    `head_seed` (the same numbers `torch_ref.build` draws).
    `model.load_report` names what was replaced."""
    if pretrained is None:
        model = GENet(get_arch(arch, num_classes), fused)
    else:
        from converters.pretrained import pretrained_state

        from .load import load_state

        if fused:
            raise ValueError("pretrained= builds the unfused model (fine-tuning trains the BN layers); fold BN "
                             "afterwards with converters.fuse")
        tensors, report = pretrained_state(str(pretrained), arch, num_classes, "paddle", head_seed)
        with paddle.LazyGuard():  # no random initialisation: load_state overwrites every tensor
            model = GENet(get_arch(arch, num_classes), fused)
        load_state(model, tensors, source=str(pretrained))
        model.load_report = report
        logging.getLogger(__name__).info("%s", report)
    model.eval()
    return model
