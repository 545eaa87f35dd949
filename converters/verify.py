"""Judge a conversion: the file read back holds exactly the tensors meant, and
the destination model computes what the source model computes.

Both models run in float32 on the fixed seeded input of `parity.seeded`
(numpy seed 2021, the arch's resolution, batch 1 by default: one forward
pass per model keeps verification cheap). The conversion passes when

    max |dst - src| <= LOGIT_RTOL * max |src|   and   rel L2 <= REL_L2_TOL

(margins measured on seeded weights, all three archs: PyTorch vs Paddle
1.5e-6 / 9.4e-7; BN-folded vs unfolded 1.4e-6 / 9.3e-7). Top-1 agreement is
reported, not judged: inside these bounds a differing top-1 is a near tie.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from .checks import check_keys
from .errors import VerificationError
from .io import _bf16_to_f32, f32_to_bf16_bits
from .load import TORCH_STORAGE, LoadedWeights, expected, to_layout

LOGIT_RTOL = 1e-4
REL_L2_TOL = 1e-5
TOLERANCE_TEXT = f"max abs diff <= {LOGIT_RTOL:g} x max |source logit| and relative L2 <= {REL_L2_TOL:g}"


@dataclass
class Verification:
    passed: bool
    max_abs_diff: float
    ref_max_abs: float
    tolerance_abs: float
    rel_l2: float
    rel_l2_tolerance: float
    cosine: float
    top1_agreement: float
    source_model: str
    destination_model: str
    input: str
    tensors_read_back: int
    seconds: float
    timings: dict = None  # seconds per step: read-back check, source model, destination model

    def to_dict(self) -> dict:
        return asdict(self)


def framework_of(layout: str) -> str:
    return "torch" if layout in TORCH_STORAGE else "paddle"


def _model_layout(layout: str) -> str:
    """The layout a model of that framework and fusing holds."""
    fused = layout in ("fused", "paddle_fused")
    if framework_of(layout) == "torch":
        return "fused" if fused else "official"
    return "paddle_fused" if fused else "paddle"


_PADDLE_IMPORT_NOISE = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")


def import_paddle():
    """`import paddle` without its two import-time notices: one about a C++
    compiler cache (for building extensions, never done here), one about
    OMP_NUM_THREADS > 1 (which this tool sets on purpose, for speed). Anything
    else Paddle prints still reaches stderr."""
    import contextlib
    import io
    import sys
    import warnings

    from parity.runtime import paddle_log_flags  # its C++ log keeps errors only (see there)

    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(buf), paddle_log_flags():
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle
    kept = [line for line in buf.getvalue().splitlines() if line and not line.startswith(_PADDLE_IMPORT_NOISE)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
    return paddle


def _float32(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float32) if v.dtype.kind == "f" and v.dtype != np.float32 else v


def run_model(arch: str, layout: str, tensors: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Float32 logits of the model for `layout` (one of the model layouts)
    with `tensors` loaded strictly."""
    check_keys({k: tuple(np.shape(v)) for k, v in tensors.items()}, expected(arch, layout),
               f"the {layout} layout of GENet_{arch}")
    fused = layout in ("fused", "paddle_fused")
    if framework_of(layout) == "torch":
        import torch

        import torch_ref

        # Built without memory or random init (meta device); the weights are
        # then the arrays themselves (assign=True): nothing is initialised or copied.
        with torch.device("meta"):
            model = torch_ref.build(arch, fused=fused)
        with warnings.catch_warnings():
            # Read-only (memory-mapped) arrays: the model only reads them (eval, no_grad).
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            state = {k: torch.from_numpy(_float32(np.asarray(v))) for k, v in tensors.items()}
        model.load_state_dict(state, strict=True, assign=True)
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    paddle = import_paddle()

    import paddle_genet

    # LazyGuard skips the random initialisation every parameter is about to
    # be overwritten with (all of them: the keys were checked above).
    with paddle.LazyGuard():
        model = paddle_genet.build(arch, fused=fused)
    own = model.state_dict()
    for k, v in tensors.items():
        own[k].set_value(_float32(np.asarray(v)))
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def check_read_back(written: Mapping[str, np.ndarray], read: LoadedWeights, bf16_keys=frozenset()) -> int:
    """Every tensor read back equals, bit for bit, the tensor meant to be written."""
    if list(read.tensors) != list(written):
        raise VerificationError(f"{read.path}: read back with different keys than were written")
    for k, v in written.items():
        want = _bf16_to_f32(f32_to_bf16_bits(v)).reshape(np.shape(v)) if k in bf16_keys else np.asarray(v)
        got = read.tensors[k]
        if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
            raise VerificationError(f"{read.path}: {k} read back differs from what was written "
                                    f"({got.dtype}{got.shape} vs {want.dtype}{want.shape}); nothing was written")
    return len(written)


def verify(source: LoadedWeights, written: Mapping[str, np.ndarray], read_back: LoadedWeights,
           bf16_keys=frozenset(), batch: int = 1) -> Verification:
    """Compare the source model (source tensors) with the destination model
    (tensors read back from the written file) on the seeded input."""
    from parity.compare import compare, top1_agreement
    from parity.seeded import INPUT_SEED, seeded_input

    start = time.perf_counter()
    timings = {}
    n = check_read_back(written, read_back, bf16_keys)
    timings["compare_tensors"] = time.perf_counter() - start
    src_layout, dst_layout = _model_layout(source.layout), _model_layout(read_back.layout)
    x = seeded_input(source.arch, batch)
    t = time.perf_counter()
    ref = run_model(source.arch, src_layout, to_layout(source, src_layout), x)
    timings["source_model"] = time.perf_counter() - t
    t = time.perf_counter()
    out = run_model(read_back.arch, dst_layout, to_layout(read_back, dst_layout), x)
    timings["destination_model"] = time.perf_counter() - t
    d = compare("logits", out, ref)
    tol = LOGIT_RTOL * d.ref_max_abs
    passed = bool(np.isfinite(out).all() and d.max_abs <= tol and d.rel_l2 <= REL_L2_TOL)
    return Verification(passed=passed, max_abs_diff=d.max_abs, ref_max_abs=d.ref_max_abs, tolerance_abs=tol,
                        rel_l2=d.rel_l2, rel_l2_tolerance=REL_L2_TOL, cosine=d.cosine,
                        top1_agreement=top1_agreement(out, ref),
                        source_model=f"{framework_of(src_layout)} GENet_{source.arch} ({src_layout})",
                        destination_model=f"{framework_of(dst_layout)} GENet_{read_back.arch} ({dst_layout})",
                        input=f"seeded normal noise (numpy seed {INPUT_SEED}), batch {batch}, float32",
                        tensors_read_back=n, seconds=time.perf_counter() - start, timings=timings)

