"""The fused layouts' key list: which tensors a BN-folded checkpoint holds
('fused' as the official `fuse_bn()` writes it, 'paddle_fused' with the
classifier stored the Paddle way). Only the architecture (and the head's
number of classes) decides it, so the
mapping table and the folding algebra (converters.table.fuse) both read it from
here.
"""
from __future__ import annotations

from typing import List, Tuple

from genet_arch import DEFAULT_NUM_CLASSES, BatchNorm, Conv, get_arch, naming

FUSED, PADDLE_FUSED = "fused", "paddle_fused"
FUSED_LAYOUTS = (FUSED, PADDLE_FUSED)


def conv_bn_pairs(arch_name: str) -> List[Tuple[Conv, BatchNorm]]:
    """Every conv with the BN that follows it, in state_dict order."""
    leaves = list(get_arch(arch_name).leaves())
    pairs = []
    for i, layer in enumerate(leaves):
        if isinstance(layer, Conv):
            bn = leaves[i + 1] if i + 1 < len(leaves) else None
            if not isinstance(bn, BatchNorm) or bn.channels != layer.out_channels:
                raise AssertionError(f"GENet_{arch_name}: conv at {layer.site} is not followed by its BN")
            pairs.append((layer, bn))
    return pairs


def expected(arch_name: str, layout: str = FUSED,
             num_classes: int = DEFAULT_NUM_CLASSES) -> List[Tuple[str, Tuple[int, ...]]]:
    """(key, shape) of every tensor of a fused checkpoint with a
    `num_classes` head, in file order."""
    if layout not in FUSED_LAYOUTS:
        raise ValueError(f"unknown fused layout {layout!r}; expected one of {FUSED_LAYOUTS}")
    arch = get_arch(arch_name, num_classes)
    out = []
    for conv, _ in conv_bn_pairs(arch_name):
        path = naming.layer_path(arch, conv, "fused")
        out += [(f"{path}.weight", conv.weight_shape), (f"{path}.bias", (conv.out_channels,))]
    fc = arch.classifier
    fc_shape = fc.paddle_weight_shape if layout == PADDLE_FUSED else fc.torch_weight_shape
    out += [(f"{naming.fc_path('fused')}.weight", fc_shape), (f"{naming.fc_path('fused')}.bias", (fc.out_features,))]
    return out
