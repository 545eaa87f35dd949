"""Thread settings, applied identically to both frameworks.

`import paddle` sets OMP_NUM_THREADS=1 when it is unset, which would make
Paddle run on one core while torch uses all; so the count is fixed in the
environment before either framework is imported.
"""
from __future__ import annotations

import os
from typing import Optional


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(n: Optional[int] = None) -> int:
    """Use `n` threads (all available cores by default) in torch and Paddle."""
    n = int(n or os.environ.get("GENET_THREADS") or default_threads())
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        import torch

        torch.set_num_threads(n)
    return n
