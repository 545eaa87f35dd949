"""The three official GENet variants: structure strings (verbatim from the
official code, commit 392ebb3) and the weights card every tool reads.

These strings are the single source of the architectures: models, mapping
tables and layer pairing are all derived from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Tuple

from genet_arch.nodes import Architecture
from genet_arch.parse import DEFAULT_NUM_CLASSES, parse_structure

STRUCTURES: Dict[str, str] = {
    "small": "ConvKX(3,13,3,2) BN(13) RELU(13) SuperResKXKX(13,48,3,2,1.0,1) SuperResKXKX(48,48,3,2,1.0,3) "
             "SuperResK1KXK1(48,384,3,2,0.25,7) SuperResK1DWK1(384,560,3,2,3.0,2) SuperResK1DWK1(560,256,3,1,3.0,1) "
             "ConvKX(256,1920,1,1) BN(1920) RELU(1920) AdaptiveAvgPool(1920,1)",
    "normal": "ConvKX(3,32,3,2) BN(32) RELU(32) SuperResKXKX(32,128,3,2,1.0,1) SuperResKXKX(128,192,3,2,1.0,2) "
              "SuperResK1KXK1(192,640,3,2,0.25,6) SuperResK1DWK1(640,640,3,2,3.0,4) SuperResK1DWK1(640,640,3,1,3.0,1) "
              "ConvKX(640,2560,1,1) BN(2560) RELU(2560) AdaptiveAvgPool(2560,1)",
    "large": "ConvKX(3,32,3,2) BN(32) RELU(32) SuperResKXKX(32,128,3,2,1.0,1) SuperResKXKX(128,192,3,2,1.0,2) "
             "SuperResK1KXK1(192,640,3,2,0.25,6) SuperResK1DWK1(640,640,3,2,3.0,5) SuperResK1DWK1(640,640,3,1,3.0,4) "
             "ConvKX(640,2560,1,1) BN(2560) RELU(2560) AdaptiveAvgPool(2560,1)",
}


@dataclass(frozen=True)
class WeightsCard:
    """Evaluation and published facts of one variant (official code and paper)."""

    arch: str
    resolution: int
    crop_pct: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    num_params: int
    macs_g: float
    published_top1: float
    published_latency_ms_v100_fp16_b64: float
    timm_name: str
    timm_top1: float = None
    timm_top5: float = None


_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

CARDS: Dict[str, WeightsCard] = {
    "small": WeightsCard("small", 192, 0.875, _MEAN, _STD, 8_173_761, 0.547, 75.7, 0.10, "gernet_s"),
    "normal": WeightsCard("normal", 192, 0.875, _MEAN, _STD, 21_142_920, 2.208, 80.0, 0.20, "gernet_m"),
    "large": WeightsCard("large", 256, 0.875, _MEAN, _STD, 31_078_280, 4.557, 81.3, 0.34, "gernet_l",
                         timm_top1=81.354, timm_top5=95.558),
}

ARCH_NAMES = tuple(STRUCTURES)
_ALIASES = {**{a: a for a in ARCH_NAMES}, **{f"genet_{a}": a for a in ARCH_NAMES},
            **{CARDS[a].timm_name: a for a in ARCH_NAMES}}


class UnknownArchError(ValueError):
    pass


def canonical_arch(name: str) -> str:
    """'large', 'GENet_large' and timm's 'gernet_l' all name the same variant."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise UnknownArchError(f"unknown GENet arch {name!r}; expected one of "
                         f"{', '.join(ARCH_NAMES)} (or GENet_small/GENet_normal/GENet_large, gernet_s/m/l)")
    return _ALIASES[key]


@lru_cache(maxsize=None)
def get_arch(name: str, num_classes: int = DEFAULT_NUM_CLASSES) -> Architecture:
    arch = canonical_arch(name)
    return parse_structure(STRUCTURES[arch], arch, CARDS[arch].resolution, num_classes)
