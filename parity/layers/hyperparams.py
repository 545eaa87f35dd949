"""Hyper-parameters of a mapped module pair, read from each framework's module
(conv geometry, BN eps and momentum, pool size, fc shape), and the differences
between them: a converted pair that computes the same function must agree here."""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np


def _pair(v):
    if isinstance(v, (list, tuple)):
        v = tuple(int(x) for x in v)
        return v * 2 if len(v) == 1 else v
    return (int(v), int(v))


def torch_hparams(module) -> Dict[str, object]:
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel": _pair(module.kernel_size), "stride": _pair(module.stride),
                "padding": _pair(module.padding), "dilation": _pair(module.dilation), "groups": module.groups,
                "bias": module.bias is not None, "padding_mode": module.padding_mode}
    if isinstance(module, nn.BatchNorm2d):
        return {"channels": module.num_features, "eps": float(module.eps),
                "momentum": None if module.momentum is None else float(module.momentum),
                "affine": module.affine}
    if isinstance(module, nn.ReLU):
        return {"activation": "relu"}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return {"pool": "adaptive_avg", "output_size": _pair(module.output_size)}
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    return {}


def paddle_hparams(layer) -> Dict[str, object]:
    from paddle import nn

    if isinstance(layer, nn.Conv2D):
        padding = layer._padding
        return {"in_channels": layer._in_channels, "out_channels": layer._out_channels,
                "kernel": _pair(layer._kernel_size), "stride": _pair(layer._stride),
                "padding": _pair(padding if not isinstance(padding, str) else layer._updated_padding),
                "dilation": _pair(layer._dilation), "groups": layer._groups, "bias": layer.bias is not None,
                "padding_mode": layer._padding_mode}
    if isinstance(layer, nn.BatchNorm2D):
        # Paddle weights the running statistic: torch momentum = 1 - Paddle momentum.
        return {"channels": int(layer.weight.shape[0]), "eps": float(layer._epsilon),
                "momentum": 1.0 - float(layer._momentum), "affine": layer.weight is not None}
    if isinstance(layer, nn.ReLU):
        return {"activation": "relu"}
    if isinstance(layer, nn.AdaptiveAvgPool2D):
        return {"pool": "adaptive_avg", "output_size": _pair(layer._output_size)}
    if isinstance(layer, nn.Linear):
        return {"in_features": int(layer.weight.shape[0]), "out_features": int(layer.weight.shape[1]),
                "bias": layer.bias is not None}
    return {}


def hparam_mismatches(kind: str, t: Mapping[str, object], p: Mapping[str, object]) -> List[str]:
    if kind in ("unit", "block"):
        return []  # containers: their leaves carry the hyper-parameters
    if not t or not p:
        return [f"unexpected module types for a {kind}: torch {sorted(t) or 'unknown'}, "
                f"Paddle {sorted(p) or 'unknown'}"]
    out = []
    for key in sorted(set(t) | set(p)):
        a, b = t.get(key), p.get(key)
        same = (np.isclose(a, b, rtol=1e-6, atol=1e-9) if isinstance(a, float) and isinstance(b, float) else a == b)
        if not same:
            label = f"{key} (torch convention)" if key == "momentum" else key
            out.append(f"{label}: torch {a}, Paddle {b}")
    return out
