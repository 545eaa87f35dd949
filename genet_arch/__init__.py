"""Framework-free description of the three GENet architectures.

Imports neither torch nor paddle. `get_arch('large')` parses the official
structure string into typed nodes that both model packages, the mapping table
and the layer-diff tool walk.
"""
from genet_arch.nodes import (AdaptiveAvgPool, Architecture, BatchNorm, Conv, Linear, ReLU,
                              ResidualUnit, Site, SuperBlock)
from genet_arch.parse import DEFAULT_NUM_CLASSES, StructureError, check_num_classes, parse_structure
from genet_arch.variants import ARCH_NAMES, CARDS, STRUCTURES, UnknownArchError, WeightsCard, canonical_arch, get_arch

__all__ = [
    "AdaptiveAvgPool", "Architecture", "BatchNorm", "Conv", "Linear", "ReLU", "ResidualUnit",
    "Site", "SuperBlock", "DEFAULT_NUM_CLASSES", "StructureError", "check_num_classes", "parse_structure",
    "ARCH_NAMES", "CARDS", "STRUCTURES", "UnknownArchError", "WeightsCard", "canonical_arch", "get_arch",
]
