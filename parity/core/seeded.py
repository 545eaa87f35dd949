"""Seeded random weights and inputs anyone can regenerate (numpy only).

The recipe is the one the official reference outputs were produced with
(see tests/data/README.md): one numpy Generator(seed) walks the official
keys in file order and draws each tensor in turn.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Dict, Tuple

import numpy as np

from converters.table.mapping import mapping_table
from genet_arch import get_arch

WEIGHT_SEED = 2020
INPUT_SEED = 2021


def seeded_state(arch: str, seed: int = WEIGHT_SEED) -> Dict[str, np.ndarray]:
    """Official-layout state dict of float32 arrays (int64 0 step counters).

    A new dict of new arrays each call (callers change them); drawn once per
    (arch, seed) in a process, since copying is ~3x cheaper than drawing."""
    return {k: v.copy() for k, v in _drawn(arch, seed)}


@functools.lru_cache(maxsize=6)
def _drawn(arch: str, seed: int) -> Tuple[Tuple[str, np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for r in mapping_table(arch).rows:
        shape = r.torch_shape
        if r.role == "num_batches_tracked":
            value = np.zeros((), dtype=np.int64)
        elif len(shape) == 4:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
        elif len(shape) == 2:
            value = rng.standard_normal(shape) * np.sqrt(1.0 / shape[1])
        elif r.module == "fc_linear":
            value = rng.standard_normal(shape) * 0.01
        elif r.role == "weight":
            value = rng.uniform(0.5, 1.0, shape)
        elif r.role == "bias":
            value = rng.standard_normal(shape) * 0.1
        elif r.role == "mean":
            value = rng.standard_normal(shape) * 0.1
        elif r.role == "variance":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise AssertionError(f"no seeding rule for {r.official}")
        out[r.official] = value if value.dtype == np.int64 else value.astype(np.float32)
        out[r.official].flags.writeable = False  # the cached draw; seeded_state hands out copies
    return tuple(out.items())


def seeded_input(arch: str, batch: int = 2, seed: int = INPUT_SEED) -> np.ndarray:
    r = get_arch(arch).resolution
    return np.random.default_rng(seed).standard_normal((batch, 3, r, r)).astype(np.float32)


def state_sha256(state: Dict[str, np.ndarray]) -> str:
    """SHA-256 over key bytes + tensor bytes in order (the fixtures' check)."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()
