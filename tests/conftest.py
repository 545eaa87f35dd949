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


@pytest.fixture(scope="session")
def demo_certificate(tmp_path_factory):
    """(certificate, options, folder) of `certify --demo` on 4 images, built
    once per session: every test that reads a certificate (its checks, JSON,
    HTML, the page in a browser) shares it. Tests must not change it."""
    import argparse

    from parity.certificate.certify import certify
    from parity.commands import certify_cmd

    out = tmp_path_factory.mktemp("cert")
    parser = argparse.ArgumentParser()
    certify_cmd.add_arguments(parser)
    cwd = os.getcwd()
    os.chdir(out)
    try:
        opts = certify_cmd.build_options(parser.parse_args(["--demo", "--limit", "4", "--workers", "0"]))
        # the benchmark's own bookkeeping is tested elsewhere: eager paths, few iterations
        opts.bench_options = {"warmup": 1, "iters": 2, "modes": ("eager",), "pipeline_workers": ()}
        cert = certify(opts, say=lambda m: None)
    finally:
        os.chdir(cwd)
    return cert, opts, out


def assert_matches_official(arch, state, x, candidate, official, dtype="float32", fused_state=None):
    """`candidate` logits judged by the project's rule (parity.core.tolerances)
    against a float64 recomputation of `state` on `x`, the bar set by the
    official code's own float32 logits `official`. The official logits are
    first judged the same way with torch_ref float32 as the bar, so neither
    side can widen the bar unnoticed: a wrong architecture or wrong weights
    put the official logits far from the recomputation. Returns the judgement."""
    import torch

    import torch_ref
    from parity.core.reference import float64_logits
    from parity.core.tolerances import judge

    f64 = float64_logits(arch, state, x)
    with torch.no_grad():
        ours = torch_ref.load_state(torch_ref.build(arch), state)(torch.from_numpy(x)).numpy()
    j0 = judge("official logits", official, f64, reference=ours, candidate_label="official code float32",
               reference_label="torch_ref float32")
    assert j0.passed, j0.describe()
    j = judge("logits", candidate, f64, reference=official, dtype=dtype, reference_label="official code float32")
    assert j.passed, j.describe()
    return j
