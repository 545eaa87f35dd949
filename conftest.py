"""Repository-wide pytest set-up, loaded before tests/ and parity/.

Paddle warns "No ccache found" (a notice about compiling C++ extensions,
which this project never does) once, when it is first imported. Importing it
here under a filter for exactly that message keeps `pytest -W error` strict
for every other warning, ours and Paddle's alike. Its C++ log is set as the
command-line tools set it (parity.core.runtime.paddle_log_flags).
"""
import warnings

from parity.core.runtime import paddle_log_flags

with warnings.catch_warnings(), paddle_log_flags():
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    import paddle  # noqa: F401
