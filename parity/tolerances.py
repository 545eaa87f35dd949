"""The per-layer pass rule of the layer diff, per dtype.

Default (relative) rule: a float64 recomputation of the same layer is the
truth. A Paddle output passes when its max abs error against that truth is at
most FACTOR times torch's own max abs error against it, plus a floor of
FLOOR_ULPS units in the last place of the layer's largest reference value
(the floor matters only where torch is exact, e.g. a ReLU). The bar thus
follows the rounding noise a correct float32 (or float16) implementation
really shows at that layer, rather than a guess. docs/layers.md gives the
measurements behind FACTOR and FLOOR_ULPS.

Override rule: with explicit atol and rtol, every element must satisfy
|paddle - torch| <= atol + rtol * |torch| (torch.testing's rule), and no
float64 recomputation is run.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

# Measured worst ratio (Paddle error / torch error vs float64) over every layer
# of the three variants, several seeds: ~3.3 isolated, ~2.4 accumulated (see
# docs/layers.md). 16 leaves ~5x headroom for other CPUs and builds while
# staying ~1e4x below the smallest injected fault.
FACTOR = 16.0
FLOOR_ULPS = 4.0

# Unit roundoff of the precision each side computes in.
EPS = {"float32": float(np.finfo(np.float32).eps), "float16": float(np.finfo(np.float16).eps)}


def relative_bound(torch_error: float, ref_scale: float, dtype: str) -> float:
    """Largest acceptable Paddle max abs error (vs float64) for one layer."""
    return FACTOR * torch_error + FLOOR_ULPS * EPS[dtype] * ref_scale


def check_overrides(atol: Optional[float], rtol: Optional[float]) -> None:
    if (atol is None) != (rtol is None):
        raise ValueError("give --atol and --rtol together, or neither (then the float64-relative rule applies)")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (value >= 0 and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def describe(atol: Optional[float], rtol: Optional[float], dtype: str) -> dict:
    if atol is not None:
        return {"mode": "absolute", "atol": atol, "rtol": rtol,
                "rule": "|paddle - torch| <= atol + rtol * |torch| for every element"}
    return {"mode": "float64-relative", "factor": FACTOR, "floor_ulps": FLOOR_ULPS, "eps": EPS[dtype],
            "rule": (f"max|paddle - f64| <= {FACTOR:g} * max|torch - f64| + {FLOOR_ULPS:g} * eps * max|f64| "
                     "(f64: torch_ref in float64 with the same weights and input)")}
