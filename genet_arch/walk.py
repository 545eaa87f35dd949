"""The one walk over the architecture description that builds a model.

Both `torch_ref` and `paddle_genet` define their model classes as these
bodies (`NetBlockBody`, `SuperBlockBody`, `GENetBody`) mixed into their
framework's module class, with their own `Leaves` table: how that framework
makes a conv, a BN, a ReLU, the containers, the pool and the classifier.
Everything else (which layers exist, in which order, which are wrapped, which
BN layers a folded model drops, how the forward pass runs) is stated here
once, from the description and the layout's names in `genet_arch.naming`. So
the model files hold only what differs between the frameworks.

The bodies use only what torch's and Paddle's modules and tensors share
(attribute registration in order, calling submodules, `Tensor.flatten(1)`),
so Paddle's dynamic-to-static export traces them like any layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Sequence

from genet_arch import naming
from genet_arch.nodes import AdaptiveAvgPool, Architecture, BatchNorm, Conv, Linear, ReLU, SuperBlock

FUSED = "fused"  # the official fused layout; both frameworks name folded models by it


@dataclass(frozen=True)
class Leaves:
    """How one framework makes each piece of a GENet."""

    conv: Callable[[Conv, bool], Any]  # (layer, with a bias)
    batchnorm: Callable[[BatchNorm], Any]
    relu: Callable[[], Any]
    identity: Callable[[], Any]
    sequential: Callable[[Sequence[Any]], Any]
    module_list: Callable[[Sequence[Any]], Any]
    net_block: Callable[[Any], Any]  # the official ConvKX/BN wrapper: the layer stored as `netblock`
    super_block: Callable[[Any, Any, Any], Any]  # (shortcut_list, conv_list, unit_relu) module lists
    pool: Callable[[AdaptiveAvgPool], Any]
    linear: Callable[[Linear], Any]


def _leaf(layer, leaves: Leaves, fused: bool):
    if isinstance(layer, Conv):
        # Folded (converters.table.fuse): every conv carries the bias its BN left behind.
        return leaves.conv(layer, layer.bias or fused)
    if isinstance(layer, BatchNorm):
        return leaves.batchnorm(layer)
    if isinstance(layer, ReLU):
        return leaves.relu()
    raise TypeError(f"not a leaf layer: {layer!r}")


def _sequence(layers, leaves: Leaves, fused: bool):
    # Folded: BN layers are removed, as the official fuse_bn() does, so indices shift.
    return leaves.sequential([_leaf(x, leaves, fused) for x in layers if not (fused and isinstance(x, BatchNorm))])


def _super_block(block: SuperBlock, leaves: Leaves, fused: bool):
    # The official code registers every shortcut before every branch (state_dict
    # order), and applies each unit's ReLU functionally: a parameter-free module
    # per unit makes the unit's output hookable without changing any key.
    return leaves.super_block(
        leaves.module_list([_sequence(u.shortcut, leaves, fused) if u.shortcut else leaves.identity()
                            for u in block.units]),
        leaves.module_list([_sequence(u.branch, leaves, fused) for u in block.units]),
        leaves.module_list([leaves.relu() for _ in block.units]))


def top_level(arch: Architecture, leaves: Leaves, layout: str, fused: bool = False) -> List[Any]:
    """The `module_list` entries of a model of `arch` in `layout` ('official'
    or 'paddle'; folded models follow the official fused layout)."""
    names = FUSED if fused else layout
    out = []
    for block in arch.body:
        if isinstance(block, SuperBlock):
            out.append(_super_block(block, leaves, fused))
            continue
        path = naming.layer_path(arch, block, names)
        if path is None:  # a BN the folded layout no longer has
            continue
        layer = _leaf(block, leaves, fused)
        out.append(leaves.net_block(layer) if path.endswith(".netblock") else layer)
    return out


# ---------------------------------------------------------------- the model bodies
# Mixed in before the framework's module class: `class NetBlock(NetBlockBody, nn.Module)`.

class NetBlockBody:
    """The official ConvKX/BN wrapper: one layer stored as `netblock`."""

    def __init__(self, layer):
        super().__init__()
        self.netblock = layer

    def forward(self, x):
        return self.netblock(x)


class SuperBlockBody:
    """A super block: unit u computes ReLU(conv_list[u](x) + shortcut_list[u](x))."""

    def __init__(self, shortcut_list, conv_list, unit_relu):
        super().__init__()
        # Registration order fixes state_dict order: shortcuts before branches.
        self.shortcut_list = shortcut_list
        self.conv_list = conv_list
        self.unit_relu = unit_relu

    def forward(self, x):
        for branch, shortcut, relu in zip(self.conv_list, self.shortcut_list, self.unit_relu):
            x = relu(branch(x) + shortcut(x))
        return x


class GENetBody:
    """The whole network: `module_list`, the pool (`adptive_avg_pool`, sic:
    the official name), flatten, `fc_linear`."""

    def __init__(self, arch: Architecture, leaves: Leaves, layout: str, fused: bool = False):
        super().__init__()
        self.arch = arch
        self.fused = fused
        self.module_list = leaves.module_list(top_level(arch, leaves, layout, fused))
        self.adptive_avg_pool = leaves.pool(arch.pool)
        self.fc_linear = leaves.linear(arch.classifier)

    def forward(self, x):
        for block in self.module_list:
            x = block(x)
        return self.fc_linear(self.adptive_avg_pool(x).flatten(1))
