"""The layer diff's results: one `LayerRecord` per compared module pair, the
`LayerDiffResult` of a run (its verdict, failures and JSON form), and
`layer_record`, which turns a row's two verdicts into its record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from genet_arch import DEFAULT_NUM_CLASSES

from parity.layers.hyperparams import hparam_mismatches
from parity.layers.stats import SideVerdict

SCHEMA = "genet-parity/layers"
SCHEMA_VERSION = 1
EMULATION_NOTE = ("float16 EMULATED on CPU: both sides compute in float32 with weights, input and every layer "
                  "output rounded to float16 (Paddle has no CPU float16 kernels); this is not native float16")

@dataclass
class LayerRecord:
    """One compared pair. Accumulated statistics are Paddle vs torch, both run
    end to end; `isolated_*` are Paddle fed torch's input vs torch."""

    index: int
    kind: str
    depth: int
    torch_name: str
    paddle_name: str
    shape: List[int]
    scale: float  # max |torch output|: the size the errors are to be read against
    max_abs: float
    mean_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    frac_outside: float
    worst_index: List[int]
    worst_paddle: float
    worst_torch: float
    isolated_max_abs: float
    isolated_mean_abs: float
    isolated_rel_l2: float
    isolated_cosine: float
    isolated_worst_index: List[int]
    isolated_worst_paddle: float
    isolated_worst_torch: float
    amplification: Optional[float]
    # max abs error of each float32 side against the float64 recomputation
    # (None with atol/rtol overrides, where no float64 model runs)
    torch_error_f64: Optional[float]
    paddle_error_f64: Optional[float]
    isolated_torch_error_f64: Optional[float]
    isolated_paddle_error_f64: Optional[float]
    tolerance: Optional[float]
    isolated_tolerance: Optional[float]
    accumulated_pass: bool
    isolated_pass: bool
    hparams: Dict[str, object]
    hparam_mismatches: List[str]
    reference_max_abs: Optional[float] = None
    torch_reference_max_abs: Optional[float] = None
    passed: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("passed")
        return d


@dataclass
class LayerDiffResult:
    arch: str
    dtype: str
    device: str
    emulated: bool
    tolerance: dict
    layers: List[LayerRecord]
    total: int
    missing: List[str]
    input_info: dict
    weights_info: dict
    environment: dict
    seconds: float
    reference_file: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)  # seconds per phase (see parity.core.progress.PhaseClock)
    num_classes: int = DEFAULT_NUM_CLASSES  # the head's size, read from the weights

    @property
    def coverage(self) -> float:
        return len(self.layers) / self.total if self.total else 0.0

    @property
    def first_divergent(self) -> Optional[LayerRecord]:
        """First layer, in mapping-table order, whose isolated error is out of
        tolerance or whose hyper-parameters differ."""
        return next((r for r in self.layers if not r.isolated_pass or r.hparam_mismatches), None)

    @property
    def failures(self) -> List[str]:
        out = []
        if not self.layers:
            out.append("no layer was compared")
        elif self.missing:
            out.append(f"coverage {len(self.layers)}/{self.total}: not compared: {', '.join(self.missing)}")
        inherited = []
        for r in self.layers:
            if r.hparam_mismatches:
                out.append(f"{r.torch_name}: hyper-parameters differ: {'; '.join(r.hparam_mismatches)}")
            if not r.isolated_pass:
                out.append(f"{r.torch_name}: isolated error {r.isolated_max_abs:.3g} out of tolerance "
                           f"({r.isolated_tolerance:.3g})" if r.isolated_tolerance is not None else
                           f"{r.torch_name}: isolated error {r.isolated_max_abs:.3g} out of tolerance")
            elif not r.accumulated_pass:
                inherited.append(r)
        if inherited:
            # Within tolerance in isolation: the error is inherited from upstream.
            first = inherited[0]
            out.append(f"{len(inherited)} layer(s) out of tolerance only accumulated (inherited error), the first "
                       f"{first.torch_name} (accumulated max abs {first.max_abs:.3g})")
        return out

    @property
    def passed(self) -> bool:
        return bool(self.layers) and not self.missing and all(r.passed for r in self.layers)

    def to_dict(self) -> dict:
        first = self.first_divergent
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "pass": self.passed,
            "first_divergent": None if first is None else {
                "index": first.index, "torch_name": first.torch_name, "paddle_name": first.paddle_name,
                "kind": first.kind,
                "reason": "hyper-parameters" if first.hparam_mismatches else "isolated error"},
            "coverage": {"compared": len(self.layers), "total": self.total, "fraction": self.coverage,
                         "missing": list(self.missing)},
            "failures": self.failures,
            "arch": self.arch, "num_classes": self.num_classes, "dtype": self.dtype, "device": self.device,
            "emulated": self.emulated,
            "precision_note": EMULATION_NOTE if self.emulated else None,
            "tolerance": self.tolerance,
            "input": self.input_info, "weights": self.weights_info,
            "reference_file": self.reference_file,
            "environment": self.environment,
            "seconds": self.seconds, "timings_s": dict(self.timings),
            "notes": list(self.notes),
            "layers": [r.to_dict() for r in self.layers],
        }


def layer_record(i, row, shape, acc: SideVerdict, iso: SideVerdict, hp, relative, atol, ref_p, ref_t) -> LayerRecord:
    mismatches = hparam_mismatches(row.kind, *hp)
    a, s = acc.diff, iso.diff
    amplification = a.max_abs / s.max_abs if s.max_abs > 0 else None
    return LayerRecord(
        index=i, kind=row.kind, depth=row.depth, torch_name=row.official, paddle_name=row.paddle,
        shape=shape, scale=a.ref_max_abs, max_abs=a.max_abs, mean_abs=a.mean_abs, max_rel=a.max_rel,
        rel_l2=a.rel_l2, cosine=a.cosine, frac_outside=a.frac_outside, worst_index=list(a.max_abs_index),
        worst_paddle=a.actual_at_max, worst_torch=a.expected_at_max,
        isolated_max_abs=s.max_abs, isolated_mean_abs=s.mean_abs, isolated_rel_l2=s.rel_l2,
        isolated_cosine=s.cosine, isolated_worst_index=list(s.max_abs_index),
        isolated_worst_paddle=s.actual_at_max, isolated_worst_torch=s.expected_at_max,
        amplification=amplification, torch_error_f64=acc.torch_error, paddle_error_f64=acc.paddle_error,
        isolated_torch_error_f64=iso.torch_error, isolated_paddle_error_f64=iso.paddle_error,
        tolerance=acc.tolerance if relative else atol, isolated_tolerance=iso.tolerance if relative else atol,
        accumulated_pass=acc.passed, isolated_pass=iso.passed,
        hparams={k: list(v) if isinstance(v, tuple) else v for k, v in hp[0].items()},
        hparam_mismatches=mismatches, reference_max_abs=ref_p, torch_reference_max_abs=ref_t,
        passed=acc.passed and iso.passed and not mismatches)
