"""The one judgement rule of this project, per dtype.

Every verdict on floating-point results (conversion verification, the layer
diff, the fast paths' start-up checks, the evaluation's logit differences,
training steps) is made here, the same way:

A float64 recomputation of the same computation (`parity.core.reference`) is the
truth. The reference framework (torch, at the precision under test) shows
some error against it: its own rounding noise. A candidate passes when

    max |candidate - f64| <= FACTOR * max |reference - f64| + FLOOR_ULPS * eps * max |f64|

The bar thus follows the rounding noise a correct implementation really shows
for that computation and those weights, rather than a number tuned on one
machine; the floor matters only where the reference is exact (a ReLU, a
copy). docs/layers.md gives the measurements behind FACTOR and FLOOR_ULPS.

Fixed numbers remain only where the thing compared is exact by construction
(bit-identical round trips, integer counts, predictions).

Override rule (layer diff only): with explicit atol and rtol, every element
must satisfy |paddle - torch| <= atol + rtol * |torch| (torch.testing's rule),
and no float64 recomputation is run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

# The worst ratio max|paddle - f64| / max|torch - f64| measured on correct code
# (docs/rule_headroom.json, `python -m parity.commands.headroom`, docs/layers.md):
# 6.34, GENet_normal's 1x1 conv module_list.7.conv_list.0.6 in isolation,
# float32, over every layer of the three variants and each fast path's logits
# at batch 1/8/32, seeded and photo inputs, float32 and bfloat16, on the one
# CPU measured (AMD EPYC). 16 leaves 2.5x headroom for other CPUs, builds and
# thread counts (a measurement under 2x would change the rule) while staying
# far below the smallest injected fault (21x the bar and up, docs/layers.md).
FACTOR = 16.0
FLOOR_ULPS = 4.0

# Unit roundoff (machine epsilon) of the precision each side computes in.
EPS = {"float32": float(np.finfo(np.float32).eps), "float16": float(np.finfo(np.float16).eps),
       "bfloat16": 2.0 ** -7}

RULE = (f"max|candidate - f64| <= {FACTOR:g} x max|reference - f64| + {FLOOR_ULPS:g} x eps x max|f64| "
        "(f64: torch_ref in float64 with the same weights and input; reference: torch at the same precision)")


def _eps(dtype: str) -> float:
    if dtype not in EPS:
        raise ValueError(f"no tolerance rule for dtype {dtype!r}; known: {', '.join(EPS)}")
    return EPS[dtype]


def relative_bound(reference_error: float, ref_scale: float, dtype: str = "float32") -> float:
    """Largest acceptable max abs error (vs float64) of a candidate."""
    return FACTOR * reference_error + FLOOR_ULPS * _eps(dtype) * ref_scale


def difference_bound(reference_error: float, ref_scale: float, dtype: str = "float32") -> float:
    """Largest acceptable max |candidate - reference| (no float64 at hand):
    a candidate within `relative_bound` of the truth lies at most this far
    from the reference, which is itself `reference_error` from it."""
    return relative_bound(reference_error, ref_scale, dtype) + reference_error


_CHUNK = 1 << 16  # elements per float64 temporary: bounded memory on the largest activations


def max_abs_error(a, b) -> float:
    """max |a - b| in float64 (broadcasting like numpy); NaN or Inf anywhere
    reads as infinitely wrong. The one max-abs helper of every verdict.
    Chunked: one small float64 buffer however large the tensors."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    a, b = a.reshape(-1), b.reshape(-1)
    worst = 0.0
    buf = np.empty(min(_CHUNK, a.size), np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for s in range(0, a.size, _CHUNK):
            d = buf[:min(_CHUNK, a.size - s)]
            np.subtract(a[s:s + _CHUNK], b[s:s + _CHUNK], out=d, dtype=np.float64, casting="unsafe")
            np.abs(d, out=d)
            m = float(np.max(d))
            if not np.isfinite(m):
                return float("inf")
            worst = max(worst, m)
    return worst


def max_abs(x) -> float:
    """max |x| (the scale of a float64 truth); inf where x holds NaN or Inf
    (a bound built on it then passes nothing)."""
    return max_abs_error(x, 0.0)


def decide(error: float, reference_error: float, scale: float, dtype: str = "float32"):
    """The rule itself, on measured numbers: (passed, bound, margin) for a
    candidate `error` (max |candidate - f64|) given the reference's own
    `reference_error` and the truth's `scale` (max |f64|)."""
    bound = relative_bound(reference_error, scale, dtype)
    if bound > 0:
        margin = error / bound
    else:
        margin = 0.0 if error == 0 else float("inf")
    passed = bool(np.isfinite(error) and np.isfinite(bound) and error <= bound)
    return passed, bound, float(margin)


@dataclass
class Judgement:
    """One verdict of the rule, with everything needed to read it."""

    name: str
    passed: bool
    error: float  # max |candidate - f64|
    reference_error: float  # max |reference - f64|: the reference framework's own rounding error
    bound: float  # relative_bound(reference_error, scale, dtype)
    scale: float  # max |f64|
    margin: float  # error / bound: <= 1 passes; how many times over the bound a failure lands
    dtype: str
    candidate: str = ""
    reference: str = ""
    truth: str = "torch_ref float64 recomputation, same weights and input"
    rule: str = RULE

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        verdict = "within" if self.passed else "OUT of"
        return (f"{self.name}: {self.candidate or 'candidate'} error {self.error:.3g} vs float64, {verdict} the bound "
                f"{self.bound:.3g} = {FACTOR:g} x {self.reference or 'reference'} error {self.reference_error:.3g} "
                f"+ {FLOOR_ULPS:g} ulp of {self.scale:.3g} ({self.dtype}); margin {self.margin:.3g}")


def judge(name: str, candidate, f64, reference=None, reference_error: Optional[float] = None,
          dtype: str = "float32", candidate_label: str = "", reference_label: str = "") -> Judgement:
    """Judge `candidate` against the float64 truth `f64`; the bar comes from
    `reference` (the reference framework's output at the same precision) or
    its already measured `reference_error`."""
    if (reference is None) == (reference_error is None):
        raise ValueError("give the reference output or its error against float64, exactly one")
    f64 = np.asarray(f64, np.float64)
    if np.shape(candidate) != f64.shape:
        raise ValueError(f"{name}: candidate shape {np.shape(candidate)} differs from the reference's {f64.shape}")
    if reference_error is None:
        reference_error = max_abs_error(reference, f64)
    scale = max_abs(f64)
    error = max_abs_error(candidate, f64)
    passed, bound, margin = decide(error, reference_error, scale, dtype)
    return Judgement(name=name, passed=passed, error=error, reference_error=float(reference_error), bound=bound,
                     scale=scale, margin=float(margin), dtype=dtype, candidate=candidate_label,
                     reference=reference_label)


REFERENCE = "reference"  # a row of the reference itself: what the bar is made of, not a verdict


def reference_row(name: str, reference, f64, dtype: str = "float32", label: str = "") -> dict:
    """The row of a computation that *is* the reference (eager torch at the
    precision under test judged against the bar it sets would compare it
    with itself, a check that cannot fail): its own error against float64,
    reported with no verdict, bound or margin. Shaped like
    `Judgement.to_dict()` (plus `verdict`, `pass`) so tables read both."""
    _eps(dtype)
    scale = max_abs(f64)
    error = max_abs_error(reference, f64)
    return {"name": name, "verdict": REFERENCE, "passed": None, "pass": None, "error": error,
            "reference_error": error, "bound": None, "scale": scale, "margin": None, "dtype": dtype,
            "candidate": label, "reference": label, "truth": "torch_ref float64 recomputation, same weights and input",
            "rule": "not judged: this is the reference the rule's bar comes from"}


def is_reference(row: dict) -> bool:
    """Whether a judgement dict is a `reference_row` (no verdict)."""
    return row.get("verdict") == REFERENCE


def failed(row: dict) -> bool:
    """Whether a judgement dict (`Judgement.to_dict()`, with or without a
    `pass` copy of `passed`, or a `reference_row`) is a failure."""
    return not is_reference(row) and not row.get("pass", row.get("passed"))


def check_word(row: dict, ok: str = "ok", bad: str = "WRONG") -> str:
    """The word a table shows for a judgement dict: `reference` for the
    reference's own row (no verdict), else `ok` or `bad`."""
    return REFERENCE if is_reference(row) else bad if failed(row) else ok


def check_overrides(atol: Optional[float], rtol: Optional[float]) -> None:
    if (atol is None) != (rtol is None):
        raise ValueError("give --atol and --rtol together, or neither (then the float64-relative rule applies)")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (value >= 0 and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def describe(atol: Optional[float], rtol: Optional[float], dtype: str) -> dict:
    if atol is not None:
        return {"mode": "absolute", "atol": atol, "rtol": rtol,
                "rule": "|paddle - torch| <= atol + rtol * |torch| for every element"}
    return {"mode": "float64-relative", "factor": FACTOR, "floor_ulps": FLOOR_ULPS, "eps": _eps(dtype),
            "rule": (f"max|paddle - f64| <= {FACTOR:g} * max|torch - f64| + {FLOOR_ULPS:g} * eps * max|f64| "
                     "(f64: torch_ref in float64 with the same weights and input)")}
