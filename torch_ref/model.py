"""GENet in PyTorch, built by walking the architecture description.

Module paths and state_dict order equal the official code's, so the official
checkpoints load with strict=True.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from converters.pretrained import HEAD_SEED
from genet_arch import Architecture, BatchNorm, Conv, ReLU, SuperBlock, get_arch


def _leaf(layer, fused: bool = False) -> nn.Module:
    if isinstance(layer, Conv):
        # Fused (BN folded in, converters.fuse): every conv carries a bias.
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, groups=layer.groups, bias=layer.bias or fused)
    if isinstance(layer, BatchNorm):
        return nn.BatchNorm2d(layer.channels, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    raise TypeError(f"not a leaf layer: {layer!r}")


class NetBlock(nn.Module):
    """The official ConvKX/BN wrapper: one layer stored as `netblock`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.netblock = layer

    def forward(self, x):
        return self.netblock(x)


def _seq(layers, fused: bool) -> nn.Sequential:
    # Fused: BN modules are removed, as the official fuse_bn() does, so indices shift.
    return nn.Sequential(*(_leaf(x, fused) for x in layers if not (fused and isinstance(x, BatchNorm))))


class SuperResBlock(nn.Module):
    def __init__(self, block: SuperBlock, fused: bool = False):
        super().__init__()
        # Registration order fixes state_dict order: shortcuts before branches.
        self.shortcut_list = nn.ModuleList(
            _seq(u.shortcut, fused) if u.shortcut else nn.Identity() for u in block.units)
        self.conv_list = nn.ModuleList(_seq(u.branch, fused) for u in block.units)
        # The official code applies this ReLU functionally; a parameter-free
        # module makes each unit's output hookable without changing any key.
        self.unit_relu = nn.ModuleList(nn.ReLU() for _ in block.units)

    def forward(self, x):
        for branch, shortcut, relu in zip(self.conv_list, self.shortcut_list, self.unit_relu):
            x = relu(branch(x) + shortcut(x))
        return x


class GENet(nn.Module):
    def __init__(self, arch: Architecture, fused: bool = False):
        super().__init__()
        self.arch = arch
        self.fused = fused
        self.module_list = nn.ModuleList(
            SuperResBlock(b, fused) if isinstance(b, SuperBlock)
            else _leaf(b) if isinstance(b, ReLU) else NetBlock(_leaf(b, fused))
            for b in arch.body if not (fused and isinstance(b, BatchNorm)))
        self.adptive_avg_pool = nn.AdaptiveAvgPool2d(arch.pool.output_size)  # sic: official name
        self.fc_linear = nn.Linear(arch.classifier.in_features, arch.classifier.out_features,
                                   bias=arch.classifier.bias)

    def forward(self, x):
        for block in self.module_list:
            x = block(x)
        x = self.adptive_avg_pool(x)
        return self.fc_linear(torch.flatten(x, 1))


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
