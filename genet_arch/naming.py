"""Names of every module and tensor in each checkpoint layout, derived from sites.

Layouts:
  official  the official PyTorch code (and `torch_ref`)
  paddle    the Paddle reproduction (and `paddle_genet`)
  timm      timm's gernet_s/m/l
  fused     the official code after `fuse_bn()` (BN folded into the conv)

This is the only place that knows how a layout spells a position.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

from genet_arch.nodes import (Architecture, BatchNorm, Conv, Linear, ReLU,
                              ResidualUnit, Site, SuperBlock)

LAYOUTS = ("official", "paddle", "timm", "fused")

BN_TENSORS = {
    "official": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "timm": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "paddle": ("weight", "bias", "_mean", "_variance"),
}
# Role of each BN tensor, in the order above; used to pair tensors across layouts.
BN_ROLES = ("weight", "bias", "mean", "variance", "num_batches_tracked")

# Names of the parameter-free modules this project adds so hooks can see a
# residual unit's output (the official code applies that ReLU functionally).
UNIT_RELU = "unit_relu"
POOL = {"official": "adptive_avg_pool", "paddle": "adptive_avg_pool", "timm": "head.global_pool"}
FC = {"official": "fc_linear", "paddle": "fc_linear", "timm": "head.fc", "fused": "fc_linear"}


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def _first_stage_top(arch: Architecture) -> int:
    return arch.super_blocks[0].site.top


def _timm_branch_name(kind: str, position: int) -> Tuple[str, int]:
    """(timm conv-norm-act module, index of the layer inside it: 0 conv, 1 bn, 2 act)."""
    names = ("conv1_kxk", "conv2_kxk") if kind == "KXKX" else ("conv1_1x1", "conv2_kxk", "conv3_1x1")
    return names[position // 3], position % 3


def _fused_top(arch: Architecture, top: int) -> int:
    return sum(1 for b in arch.body[:top] if not isinstance(b, BatchNorm))


def _fused_position(unit_layers, position: int) -> int:
    return sum(1 for layer in unit_layers[:position] if not isinstance(layer, BatchNorm))


def _unit_layers(arch: Architecture, site: Site):
    unit = arch.body[site.top].units[site.unit]
    return unit.branch if site.part == "branch" else unit.shortcut


_TIMM_PART = {0: "conv", 1: "bn", 2: "bn.act"}


def layer_path(arch: Architecture, layer: Union[Conv, BatchNorm, ReLU], layout: str) -> Optional[str]:
    """Module path of a conv/BN/ReLU; None where the layout has no such module
    (BN in the fused layout)."""
    _check_layout(layout)
    s = layer.site
    if layout == "fused" and isinstance(layer, BatchNorm):
        return None
    if s.stage is None:
        if layout == "timm":
            prefix = "stem" if s.top < _first_stage_top(arch) else "final_conv"
            index = {Conv: 0, BatchNorm: 1, ReLU: 2}[type(layer)]
            return f"{prefix}.{_TIMM_PART[index]}"
        top = _fused_top(arch, s.top) if layout == "fused" else s.top
        if isinstance(layer, ReLU) or (layout == "paddle" and isinstance(layer, BatchNorm)):
            return f"module_list.{top}"
        return f"module_list.{top}.netblock"
    if layout == "timm":
        base = f"stages.{s.stage}.{s.unit}"
        if s.part == "shortcut":
            return f"{base}.shortcut.{_TIMM_PART[s.position]}"
        module, index = _timm_branch_name(arch.body[s.top].kind, s.position)
        return f"{base}.{module}.{_TIMM_PART[index]}"
    top, position = s.top, s.position
    if layout == "fused":
        top = _fused_top(arch, s.top)
        position = _fused_position(_unit_layers(arch, s), s.position)
    container = "conv_list" if s.part == "branch" else "shortcut_list"
    return f"module_list.{top}.{container}.{s.unit}.{position}"


def unit_path(arch: Architecture, unit: ResidualUnit, layout: str) -> str:
    """Module whose output is the residual unit's output (after the add and ReLU)."""
    _check_layout(layout)
    if layout == "timm":
        return f"stages.{unit.stage}.{unit.index}"
    top = arch.super_blocks[unit.stage].site.top
    if layout == "fused":
        top = _fused_top(arch, top)
    return f"module_list.{top}.{UNIT_RELU}.{unit.index}"


def block_path(arch: Architecture, block: SuperBlock, layout: str) -> str:
    _check_layout(layout)
    if layout == "timm":
        return f"stages.{block.site.stage}"
    top = _fused_top(arch, block.site.top) if layout == "fused" else block.site.top
    return f"module_list.{top}"


def pool_path(layout: str) -> str:
    _check_layout(layout)
    return POOL.get(layout, POOL["official"])


def fc_path(layout: str) -> str:
    _check_layout(layout)
    return FC[layout]


def tensor_suffixes(layer, layout: str) -> List[Tuple[str, str]]:
    """(role, tensor name) pairs of one layer in one layout."""
    if isinstance(layer, Conv):
        out = [("weight", "weight")]
        if layer.bias or layout == "fused":
            out.append(("bias", "bias"))
        return out
    if isinstance(layer, BatchNorm):
        if layout == "fused":
            return []
        return list(zip(BN_ROLES, BN_TENSORS[layout]))
    if isinstance(layer, Linear):
        return [("weight", "weight"), ("bias", "bias")] if layer.bias else [("weight", "weight")]
    return []
