"""Thread settings, applied identically to both frameworks.

`import paddle` sets OMP_NUM_THREADS=1 when it is unset, which would make
Paddle run on one core while torch uses all; so the count is fixed in the
environment before either framework is imported.
"""
from __future__ import annotations

import contextlib
import os
import platform
from typing import Optional

_configured: Optional[int] = None  # the count configure_threads() last set


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(n: Optional[int] = None) -> int:
    """Use `n` threads (all available cores by default) in torch and Paddle."""
    global _configured
    n = int(n or os.environ.get("GENET_THREADS") or default_threads())
    _configured = n
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        from converters.files.atomic import signals_deferred

        # A signal in the middle of torch's import leaves it half initialised,
        # and the interpreter can then crash on exit; it is handled right after.
        with signals_deferred():
            import torch

        torch.set_num_threads(n)
    if "paddle" in sys.modules:  # imported earlier: its runtime read the environment already
        set_paddle_threads(n)
    return n


# ---------------------------------------------------------------- Paddle's own thread pool
# Paddle's CPU kernels run on the OpenMP runtime it ships (libiomp5), not on
# torch's (libgomp). Its inference predictor calls SetNumThreads(1) at the end
# of every run (so that a serving thread does not oversubscribe), which leaves
# any later Paddle eager work in the process on ONE core without a word. The
# helpers below set that count, read it back, and restore it after each run.


def configured_threads() -> int:
    """The count configure_threads() set (all cores if it was never called)."""
    return _configured or default_threads()


def _paddle_openmp():
    """ctypes handle of the OpenMP runtime Paddle's kernels use, or None if
    Paddle is not imported (or ships none that can be found)."""
    import ctypes
    import sys

    if "paddle" not in sys.modules:
        return None
    candidates = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                name = os.path.basename(path)
                if name.startswith(("libiomp", "libgomp")) and path not in candidates:
                    candidates.append(path)
    except OSError:  # not Linux: the count cannot be read back here
        return None
    # The copy inside Paddle's package first; torch ships its own libgomp.
    candidates.sort(key=lambda p: os.sep + "paddle" + os.sep not in p)
    for path in candidates:
        if os.sep + "torch" + os.sep in path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def paddle_threads() -> Optional[int]:
    """omp_get_max_threads() of Paddle's OpenMP runtime (None if not loaded)."""
    lib = _paddle_openmp()
    return int(lib.omp_get_max_threads()) if lib is not None else None


def set_paddle_threads(n: Optional[int] = None) -> int:
    """Set Paddle's CPU thread count (default: the configured count)."""
    n = int(n or configured_threads())
    from paddle.base import core

    core.set_num_threads(n)
    return n


def thread_report() -> dict:
    """Thread counts as each framework sees them now (for JSON reports)."""
    import sys

    out = {"configured": configured_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = torch.get_num_threads()
        out["torch_interop"] = torch.get_num_interop_threads()
    if "paddle" in sys.modules:
        out["paddle"] = paddle_threads()
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- Paddle's C++ log
# Paddle's C++ code logs through glog, straight to file descriptor 2, lines such
# as "W1202 14:54:17.099637 12893 eager_utils.cc:3584] Paddle static graph(PIR)
# not support input out tensor for now!!!!!" (every inference predictor build).
# glog reads its flags from the environment once, when `import paddle` loads
# the library, so they are set for that import only.
PADDLE_LOG_FLAGS = {"GLOG_minloglevel": "2"}  # 2: errors and fatal errors only (no INFO, no WARNING)


@contextlib.contextmanager
def paddle_log_flags():
    """Around `import paddle`: Paddle's C++ logger keeps only errors. A flag
    the user set is left as it is (theirs wins: GLOG_minloglevel=0 shows
    everything); the ones set here are removed again after the import, so
    the environment the user gave reaches any process started later."""
    ours = [k for k in PADDLE_LOG_FLAGS if k not in os.environ]
    for k in ours:
        os.environ[k] = PADDLE_LOG_FLAGS[k]
    try:
        yield
    finally:
        for k in ours:
            os.environ.pop(k, None)
