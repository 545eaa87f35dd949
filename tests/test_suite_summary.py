"""`pytest parity/` names, at the end of every run and without -rs, each
skipped check and the option that enables it."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_skipped_checks_are_listed_with_their_options():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENET_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "parity/test_accuracy.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-2000:]
    assert "genet-parity: 4 check(s) skipped, and what enables each" in out
    for name in ("test_logits_within_the_rule_on_the_first_images", "test_frameworks_agree_image_by_image",
                 "test_paddle_top1_equals_torch_top1", "test_torch_top1_matches_the_paper"):
        line = next(line for line in out.splitlines() if line.startswith(f"SKIPPED parity/test_accuracy.py::{name}"))
        assert "--genet-weights PATH (or GENET_WEIGHTS=PATH)" in line and "--imagenet-dir DIR" in line
