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
from genet_arch import Architecture, BatchNorm, Conv, ReLU, SuperBlock, get_arch

from .batchnorm import BatchNorm2D


def _leaf(layer, fused: bool = False) -> nn.Layer:
    if isinstance(layer, Conv):
        # Fused (BN folded in, converters.fuse): every conv carries a bias.
        return nn.Conv2D(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, groups=layer.groups,
                         bias_attr=None if (layer.bias or fused) else False)
    if isinstance(layer, BatchNorm):
        # Paddle weights the running statistic, torch the new batch statistic.
        return BatchNorm2D(layer.channels, momentum=1.0 - layer.momentum, epsilon=layer.eps)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    raise TypeError(f"not a leaf layer: {layer!r}")


class NetBlock(nn.Layer):
    def __init__(self, layer: nn.Layer):
        super().__init__()
        self.netblock = layer

    def forward(self, x):
        return self.netblock(x)


def _seq(layers, fused: bool) -> nn.Sequential:
    # Fused: BN layers are removed, as the official fuse_bn() does, so indices shift.
    return nn.Sequential(*(_leaf(x, fused) for x in layers if not (fused and isinstance(x, BatchNorm))))


class SuperResBlock(nn.Layer):
    def __init__(self, block: SuperBlock, fused: bool = False):
        super().__init__()
        self.shortcut_list = nn.LayerList(
            [_seq(u.shortcut, fused) if u.shortcut else nn.Identity() for u in block.units])
        self.conv_list = nn.LayerList([_seq(u.branch, fused) for u in block.units])
        self.unit_relu = nn.LayerList([nn.ReLU() for _ in block.units])

    def forward(self, x):
        for branch, shortcut, relu in zip(self.conv_list, self.shortcut_list, self.unit_relu):
            x = relu(branch(x) + shortcut(x))
        return x


def _top(layer, fused: bool = False):
    if isinstance(layer, SuperBlock):
        return SuperResBlock(layer, fused)
    if isinstance(layer, Conv):
        return NetBlock(_leaf(layer, fused))
    return _leaf(layer)  # the reproduction stores BN and ReLU unwrapped


class GENet(nn.Layer):
    def __init__(self, arch: Architecture, fused: bool = False):
        super().__init__()
        self.arch = arch
        self.fused = fused
        # Fused: keys equal the official fused layout (converters.fuse), fc stays [in, out].
        self.module_list = nn.LayerList([_top(b, fused) for b in arch.body
                                         if not (fused and isinstance(b, BatchNorm))])
        self.adptive_avg_pool = nn.AdaptiveAvgPool2D(arch.pool.output_size)
        self.fc_linear = nn.Linear(arch.classifier.in_features, arch.classifier.out_features,
                                   bias_attr=None if arch.classifier.bias else False)

    def forward(self, x):
        for block in self.module_list:
            x = block(x)
        x = self.adptive_avg_pool(x)
        return self.fc_linear(paddle.flatten(x, 1))


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
