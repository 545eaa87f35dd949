"""Repository-wide pytest set-up, loaded before tests/ and parity/.

Paddle warns "No ccache found" (a notice about compiling C++ extensions,
which this project never does) once, when it is first imported. Importing it
here under a filter for exactly that message keeps `pytest -W error` strict
for every other warning, ours and Paddle's alike. Its C++ log is set as the
command-line tools set it (parity.core.runtime.paddle_log_flags).

Under pytest-xdist (the README's test command runs two workers) each worker
takes its share of the cores for torch, Paddle and OpenMP, unless the
environment says otherwise: two workers each running as many threads as
there are cores oversubscribe them, and OpenMP threads waiting for a core
spin, which cost a fifth more CPU time in all on 2 cores.
"""
import os
import warnings

from parity.core.runtime import default_threads, paddle_log_flags

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _workers > 1:
    _share = str(max(1, default_threads() // _workers))
    for _var in ("GENET_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _share)

with warnings.catch_warnings(), paddle_log_flags():
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    import paddle  # noqa: F401
