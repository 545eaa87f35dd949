"""Repository-wide pytest set-up, loaded before tests/ and parity/.

Paddle warns "No ccache found" (a notice about compiling C++ extensions,
which this project never does) once, when it is first imported. Importing it
here under a filter for exactly that message keeps `pytest -W error` strict
for every other warning, ours and Paddle's alike.
"""
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    import paddle  # noqa: F401
