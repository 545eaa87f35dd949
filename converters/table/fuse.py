"""Folding BatchNorm into the preceding convolution: the one implementation of
the algebra, in numpy, shared by the converter and both frameworks' fast paths.

For a conv (weight W, bias b or 0) followed by an eval-mode BN (gamma, beta,
running mean m, running variance v, eps):

    scale = gamma / sqrt(v + eps)
    W' = W * scale[:, None, None, None]        b' = beta + (b - m) * scale

computed in float64 and rounded once to float32. The result is the layout the
official `fuse_bn()` produces (`tests/data/spec/official_*_fused.tsv`): BN
modules removed, every conv gains a bias, module indices shift
(`genet_arch.naming`, layout 'fused'). 'paddle_fused' is the same keys with
the classifier stored the Paddle way ([in, out]).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from genet_arch import get_arch, naming

from converters.table.checks import check_keys
from converters.table.errors import CheckpointError
# FUSED, FUSED_LAYOUTS, PADDLE_FUSED are re-exported: callers spell them fuse.FUSED etc.
from converters.table.fused_layout import (FUSED, FUSED_LAYOUTS, PADDLE_FUSED,  # noqa: F401
                                           conv_bn_pairs, expected)
from converters.table.head import state_classes
from converters.table.mapping import mapping_table

def fold(weight: np.ndarray, bias: Optional[np.ndarray], gamma: np.ndarray, beta: np.ndarray,
         mean: np.ndarray, var: np.ndarray, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """(W', b') of conv+BN in float32; see the module docstring."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w = np.asarray(weight, np.float64) * scale.reshape((-1,) + (1,) * (np.ndim(weight) - 1))
    b0 = np.zeros_like(scale) if bias is None else np.asarray(bias, np.float64)
    b = np.asarray(beta, np.float64) + (b0 - np.asarray(mean, np.float64)) * scale
    return w.astype(np.float32), b.astype(np.float32)


def fuse_state(official: Mapping[str, np.ndarray], arch_name: str, layout: str = FUSED,
               source: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Fold every BN of an official-layout state dict (checked strictly first;
    the head keeps its own number of classes)."""
    table = mapping_table(arch_name, state_classes(official, arch_name, "official"))
    check_keys({k: tuple(np.shape(v)) for k, v in official.items()}, table.expected("official"),
               f"the official layout of GENet_{table.arch.name}", source)
    arch = table.arch
    out: Dict[str, np.ndarray] = {}
    for conv, bn in conv_bn_pairs(arch.name):
        c, b = naming.layer_path(arch, conv, "official"), naming.layer_path(arch, bn, "official")
        w, bias = fold(official[f"{c}.weight"], official.get(f"{c}.bias"), official[f"{b}.weight"],
                       official[f"{b}.bias"], official[f"{b}.running_mean"], official[f"{b}.running_var"], bn.eps)
        path = naming.layer_path(arch, conv, "fused")
        out[f"{path}.weight"], out[f"{path}.bias"] = w, bias
    fc = naming.fc_path("official")
    out[f"{naming.fc_path('fused')}.weight"] = official[f"{fc}.weight"]
    out[f"{naming.fc_path('fused')}.bias"] = official[f"{fc}.bias"]
    return between_fused(out, FUSED, layout, arch.name, source)


def between_fused(tensors: Mapping[str, np.ndarray], src: str, dst: str, arch_name: str,
                  source: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Convert between the torch and Paddle spellings of the fused layout
    (only the classifier weight differs: transposed)."""
    num_classes = state_classes(tensors, arch_name, src)
    check_keys({k: tuple(np.shape(v)) for k, v in tensors.items()}, expected(arch_name, src, num_classes),
               f"the {src} layout of GENet_{get_arch(arch_name).name}", source)
    out = dict(tensors)
    if src != dst:
        key = f"{naming.fc_path('fused')}.weight"
        out[key] = np.ascontiguousarray(np.asarray(tensors[key]).T)
    for k, shape in expected(arch_name, dst, num_classes):
        if tuple(np.shape(out[k])) != tuple(shape):
            raise CheckpointError(source, f"{k}: expected {shape} after transform, got {np.shape(out[k])}")
    return out
