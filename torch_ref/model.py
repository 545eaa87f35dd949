"""GENet in PyTorch, built by walking the architecture description.

Module paths and state_dict order equal the official code's, so the official
checkpoints load with strict=True.
"""
from __future__ import annotations

from torch import nn

from genet_arch import Architecture, walk


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
