"""GENet in PaddlePaddle, built by walking the architecture description.

state_dict keys and order equal the existing Paddle reproduction's
`.pdparams` layout: top-level BN layers sit directly in `module_list` (no
`netblock`), BN statistics are `_mean`/`_variance`, the fc weight is [in, out].
"""
from __future__ import annotations

from paddle import nn

from genet_arch import Architecture, walk

from paddle_genet.batchnorm import BatchNorm2D


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
    'paddle'); folded: the official fused keys (converters.table.fuse), the fc
    weight stays [in, out]."""

    def __init__(self, arch: Architecture, fused: bool = False):
        super().__init__(arch, LEAVES, "paddle", fused)
