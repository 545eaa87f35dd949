"""`pytest parity/` on a sample too small to decide: INCONCLUSIVE is its own
outcome (or a failure, as the user chooses), never passed or silently skipped.
Runs the suite in a subprocess on 4 real photos with seeded GENet_small weights."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import torch_ref
from parity.core.seeded import seeded_state
from parity.inputs.preprocessing import preprocess
from parity.inputs.sample_images import bundled_photos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCURACY_CHECKS = ("test_frameworks_agree_image_by_image", "test_paddle_top1_equals_torch_top1")


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """Seeded GENet_small weights and 4 photos labelled with torch's own top-1:
    both frameworks agree on all 4, far too few to show >= 99.9% agreement."""
    root = tmp_path_factory.mktemp("tiny")
    state = seeded_state("small")
    weights = root / "GENet_small.pth"
    torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}}, weights)
    model = torch_ref.load_state(torch_ref.build("small"), state).eval()
    (root / "img").mkdir()
    lines = []
    for i, p in enumerate(bundled_photos()[:4]):
        name = f"{i}_{os.path.basename(p)}"
        shutil.copy(p, root / "img" / name)
        with Image.open(p) as im, torch.no_grad():
            label = int(model(torch.from_numpy(preprocess(im, "small")[None])).argmax())
        lines.append(f"{name} {label}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return str(weights), str(root / "img"), str(root / "list.txt")


def _suite(tiny, *extra, env=None):
    weights, data, listing = tiny
    cmd = [sys.executable, "-m", "pytest", "parity/test_accuracy.py", "-p", "no:cacheprovider", "-W", "error",
           "--genet-weights", weights, "--imagenet-dir", data, "--imagenet-list", listing, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_inconclusive_is_reported_as_its_own_outcome(tiny_imagenet):
    r = _suite(tiny_imagenet, "-v")
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for name in ACCURACY_CHECKS:
        assert re.search(rf"test_accuracy.py::{name} INCONCLUSIVE", out), out
        assert f"INCONCLUSIVE parity/test_accuracy.py::{name}: GENet_small:" in out
    summary = out.strip().splitlines()[-1]
    assert "2 inconclusive" in summary, summary
    # Neither counted as passed nor as skipped: the passed/skipped counts are the other tests'.
    assert re.search(r"\b1 passed\b", summary) and re.search(r"\b1 skipped\b", summary), summary
    assert "images would decide it" in out and "check(s) INCONCLUSIVE" in out


def test_inconclusive_fails_when_asked(tiny_imagenet):
    r = _suite(tiny_imagenet, "-q", env={"GENET_INCONCLUSIVE": "fail"})
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    summary = out.strip().splitlines()[-1]
    assert "2 failed" in summary and "inconclusive" not in summary, summary
    for name in ACCURACY_CHECKS:
        assert f"FAILED parity/test_accuracy.py::{name}" in out
    assert "Inconclusive: GENet_small" in out


def test_a_wrong_mode_is_a_usage_error(tiny_imagenet):
    r = _suite(tiny_imagenet, "--genet-inconclusive", "maybe")
    assert r.returncode == 4 and "--genet-inconclusive maybe: expected one of report, fail" in r.stderr
