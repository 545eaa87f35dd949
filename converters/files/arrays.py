"""Array layouts shared by the format readers and writers: bfloat16 as bit
patterns (numpy has no bfloat16 type) and C order for writing."""
from __future__ import annotations

import numpy as np


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly: a bfloat16 is the
    top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def c_order(v) -> np.ndarray:
    """C-contiguous without copying when already so; unlike
    np.ascontiguousarray it keeps 0-d arrays (BN step counters) 0-d."""
    return np.asarray(v, order="C")
