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

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from genet_arch import BatchNorm, Conv, get_arch, naming

from .checks import check_keys
from .errors import CheckpointError

FUSED, PADDLE_FUSED = "fused", "paddle_fused"
FUSED_LAYOUTS = (FUSED, PADDLE_FUSED)


def fold(weight: np.ndarray, bias: Optional[np.ndarray], gamma: np.ndarray, beta: np.ndarray,
         mean: np.ndarray, var: np.ndarray, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """(W', b') of conv+BN in float32; see the module docstring."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w = np.asarray(weight, np.float64) * scale.reshape((-1,) + (1,) * (np.ndim(weight) - 1))
    b0 = np.zeros_like(scale) if bias is None else np.asarray(bias, np.float64)
    b = np.asarray(beta, np.float64) + (b0 - np.asarray(mean, np.float64)) * scale
    return w.astype(np.float32), b.astype(np.float32)


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


def expected(arch_name: str, layout: str = FUSED) -> List[Tuple[str, Tuple[int, ...]]]:
    """(key, shape) of every tensor of a fused checkpoint, in file order."""
    if layout not in FUSED_LAYOUTS:
        raise ValueError(f"unknown fused layout {layout!r}; expected one of {FUSED_LAYOUTS}")
    arch = get_arch(arch_name)
    out = []
    for conv, _ in conv_bn_pairs(arch_name):
        path = naming.layer_path(arch, conv, "fused")
        out += [(f"{path}.weight", conv.weight_shape), (f"{path}.bias", (conv.out_channels,))]
    fc = arch.classifier
    fc_shape = fc.paddle_weight_shape if layout == PADDLE_FUSED else fc.torch_weight_shape
    out += [(f"{naming.fc_path('fused')}.weight", fc_shape), (f"{naming.fc_path('fused')}.bias", (fc.out_features,))]
    return out


def fuse_state(official: Mapping[str, np.ndarray], arch_name: str, layout: str = FUSED,
               source: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Fold every BN of an official-layout state dict (checked strictly first)."""
    from .mapping import mapping_table

    table = mapping_table(arch_name)
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
    check_keys({k: tuple(np.shape(v)) for k, v in tensors.items()}, expected(arch_name, src),
               f"the {src} layout of GENet_{get_arch(arch_name).name}", source)
    out = dict(tensors)
    if src != dst:
        key = f"{naming.fc_path('fused')}.weight"
        out[key] = np.ascontiguousarray(np.asarray(tensors[key]).T)
    for k, shape in expected(arch_name, dst):
        if tuple(np.shape(out[k])) != tuple(shape):
            raise CheckpointError(source, f"{k}: expected {shape} after transform, got {np.shape(out[k])}")
    return out
