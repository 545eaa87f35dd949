"""Shared test fixtures: the checkpoint layout specs and official reference outputs
copied into tests/data (the project never reads ../shared at test time)."""
from __future__ import annotations

import ast
import os
from functools import lru_cache
from typing import List, Tuple

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")
ARCHS = ("small", "normal", "large")
TIMM = {"small": "gernet_s", "normal": "gernet_m", "large": "gernet_l"}


@lru_cache(maxsize=None)
def spec_rows(name: str) -> List[Tuple[str, Tuple[int, ...], str]]:
    """Rows (key, shape, dtype) of tests/data/spec/{name}.tsv, in file order."""
    rows = []
    with open(os.path.join(DATA, "spec", f"{name}.tsv")) as f:
        for line in f.read().splitlines():
            key, shape, dtype = line.split("\t")
            rows.append((key, tuple(ast.literal_eval(shape)), dtype))
    return rows


def spec_name(layout: str, arch: str) -> str:
    return {"official": f"official_{arch}", "fused": f"official_{arch}_fused",
            "paddle": f"paddle_seed_{arch}", "timm": f"timm_{TIMM[arch]}"}[layout]


def reference(name: str) -> np.ndarray:
    return np.load(os.path.join(DATA, "official_reference", name))


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param
