"""Typed, framework-free nodes of a GENet architecture.

Every node carries its *site*: where it sits in the network, independent of
any framework's naming. Layout-specific names are derived from sites in
`genet_arch.naming`, so a layer's position is stated once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Site:
    """Position of a layer in the network.

    top: index into the official `module_list`.
    stage: index among the super blocks (timm's `stages.N`), None outside them.
    unit: residual unit inside a super block.
    part: 'branch' or 'shortcut' inside a unit; None elsewhere.
    position: index inside the unit's nn.Sequential (official numbering,
      conv/BN/ReLU all counted), None for top-level layers.
    """

    top: int
    stage: Optional[int] = None
    unit: Optional[int] = None
    part: Optional[str] = None
    position: Optional[int] = None


@dataclass(frozen=True)
class Conv:
    site: Site
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    groups: int = 1
    bias: bool = False

    @property
    def padding(self) -> int:
        return (self.kernel_size - 1) // 2

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size, self.kernel_size)


@dataclass(frozen=True)
class BatchNorm:
    site: Site
    channels: int
    eps: float = 1e-5
    # torch convention: running = (1 - momentum) * running + momentum * batch.
    momentum: float = 0.1


@dataclass(frozen=True)
class ReLU:
    site: Site
    channels: int


Layer = Union[Conv, BatchNorm, ReLU]


@dataclass(frozen=True)
class ResidualUnit:
    """output = ReLU(branch(x) + shortcut(x)); shortcut is identity when None."""

    stage: int
    index: int
    in_channels: int
    out_channels: int
    stride: int
    branch: Tuple[Layer, ...]
    shortcut: Optional[Tuple[Conv, BatchNorm]]


@dataclass(frozen=True)
class SuperBlock:
    site: Site
    kind: str  # 'KXKX', 'K1KXK1' or 'K1DWK1'
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expansion: float
    depth: int
    units: Tuple[ResidualUnit, ...]


def units_mid(out_channels: int, expansion: float) -> int:
    # Relative to the OUTPUT channels, as the official code does.
    return int(round(out_channels * expansion))


@dataclass(frozen=True)
class AdaptiveAvgPool:
    channels: int
    output_size: int


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = True

    @property
    def torch_weight_shape(self) -> Tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def paddle_weight_shape(self) -> Tuple[int, int]:
        return (self.in_features, self.out_features)


TopLevel = Union[Conv, BatchNorm, ReLU, SuperBlock]


@dataclass(frozen=True)
class Architecture:
    name: str  # 'small' | 'normal' | 'large'
    structure: str
    body: Tuple[TopLevel, ...]
    pool: AdaptiveAvgPool
    classifier: Linear
    resolution: int

    @property
    def super_blocks(self) -> Tuple[SuperBlock, ...]:
        return tuple(b for b in self.body if isinstance(b, SuperBlock))

    def leaves(self):
        """Every Conv/BN/ReLU in forward order (shortcut before branch within a unit,
        the order the official state_dict uses)."""
        for block in self.body:
            if isinstance(block, SuperBlock):
                for unit in block.units:
                    if unit.shortcut is not None:
                        yield from unit.shortcut
                    yield from unit.branch
            else:
                yield block
