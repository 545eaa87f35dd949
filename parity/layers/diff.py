"""Layer-by-layer parity of the PyTorch and Paddle GENets.

Every module row of the shared mapping table (conv, BN, ReLU, residual unit,
super block, pool, fc) is hooked in both frameworks by its mapped path and
compared two ways:

- accumulated: both models run end to end, each on its own activations;
- isolated: the Paddle module is fed the torch module's own input, so the
  error it shows is the error it introduces, not the one it inherits.

The models run in lockstep, one top-level segment (a `module_list` entry, the
pool, the fc) at a time: a segment's activations are compared and dropped
before the next segment runs, so memory is bounded by one super block.

By default a float64 copy of the torch model is the truth both float32 sides
are measured against (see parity.core.tolerances); with atol/rtol it is skipped.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from converters.table.head import state_classes
from converters.table.mapping import ModuleMapping, mapping_table
from genet_arch import DEFAULT_NUM_CLASSES, canonical_arch

from parity.core import tolerances
from parity.core.compare import REL_FLOOR_FRACTION, Diff, compare
from parity.core.environment import environment
from parity.core.modules import paddle_layer, round_f16_paddle, round_f16_torch, round_state_f16, torch_module
from parity.core.progress import PhaseClock, step_callback
from parity.core.reference import float64_copy

SCHEMA = "genet-parity/layers"
SCHEMA_VERSION = 1
EMULATION_NOTE = ("float16 EMULATED on CPU: both sides compute in float32 with weights, input and every layer "
                  "output rounded to float16 (Paddle has no CPU float16 kernels); this is not native float16")


# ---------------------------------------------------------------- results

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


# ---------------------------------------------------------------- hyper-parameters

def _pair(v):
    if isinstance(v, (list, tuple)):
        v = tuple(int(x) for x in v)
        return v * 2 if len(v) == 1 else v
    return (int(v), int(v))


def torch_hparams(module) -> Dict[str, object]:
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel": _pair(module.kernel_size), "stride": _pair(module.stride),
                "padding": _pair(module.padding), "dilation": _pair(module.dilation), "groups": module.groups,
                "bias": module.bias is not None, "padding_mode": module.padding_mode}
    if isinstance(module, nn.BatchNorm2d):
        return {"channels": module.num_features, "eps": float(module.eps),
                "momentum": None if module.momentum is None else float(module.momentum),
                "affine": module.affine}
    if isinstance(module, nn.ReLU):
        return {"activation": "relu"}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return {"pool": "adaptive_avg", "output_size": _pair(module.output_size)}
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    return {}


def paddle_hparams(layer) -> Dict[str, object]:
    from paddle import nn

    if isinstance(layer, nn.Conv2D):
        padding = layer._padding
        return {"in_channels": layer._in_channels, "out_channels": layer._out_channels,
                "kernel": _pair(layer._kernel_size), "stride": _pair(layer._stride),
                "padding": _pair(padding if not isinstance(padding, str) else layer._updated_padding),
                "dilation": _pair(layer._dilation), "groups": layer._groups, "bias": layer.bias is not None,
                "padding_mode": layer._padding_mode}
    if isinstance(layer, nn.BatchNorm2D):
        # Paddle weights the running statistic: torch momentum = 1 - Paddle momentum.
        return {"channels": int(layer.weight.shape[0]), "eps": float(layer._epsilon),
                "momentum": 1.0 - float(layer._momentum), "affine": layer.weight is not None}
    if isinstance(layer, nn.ReLU):
        return {"activation": "relu"}
    if isinstance(layer, nn.AdaptiveAvgPool2D):
        return {"pool": "adaptive_avg", "output_size": _pair(layer._output_size)}
    if isinstance(layer, nn.Linear):
        return {"in_features": int(layer.weight.shape[0]), "out_features": int(layer.weight.shape[1]),
                "bias": layer.bias is not None}
    return {}


def hparam_mismatches(kind: str, t: Mapping[str, object], p: Mapping[str, object]) -> List[str]:
    if kind in ("unit", "block"):
        return []  # containers: their leaves carry the hyper-parameters
    if not t or not p:
        return [f"unexpected module types for a {kind}: torch {sorted(t) or 'unknown'}, "
                f"Paddle {sorted(p) or 'unknown'}"]
    out = []
    for key in sorted(set(t) | set(p)):
        a, b = t.get(key), p.get(key)
        same = (np.isclose(a, b, rtol=1e-6, atol=1e-9) if isinstance(a, float) and isinstance(b, float) else a == b)
        if not same:
            label = f"{key} (torch convention)" if key == "momentum" else key
            out.append(f"{label}: torch {a}, Paddle {b}")
    return out


# ---------------------------------------------------------------- segments

def segments(rows: Sequence[ModuleMapping]) -> List[List[int]]:
    """Row indices grouped by top-level segment. The table lists a container
    after its contents, so each depth-0 row closes the segment it heads."""
    out, pending = [], []
    for i, row in enumerate(rows):
        pending.append(i)
        if row.depth == 0:
            out.append(pending)
            pending = []
    if pending:
        raise AssertionError(f"mapping table ends inside a container: {[rows[i].official for i in pending]}")
    return out


# ---------------------------------------------------------------- statistics
# The layer diff compares every activation of the network a few times over,
# so its statistics are computed chunk by chunk (cache-sized pieces, no
# whole-tensor float64 copies). Paddle vs torch: float32 differences (exact
# where the two are within a factor 2 of each other) with float64 sums.
# Anything against the float64 recomputation: in float64. A tensor holding NaN
# or Inf goes to parity.core.compare.compare, which defines those cases.

_CHUNK = 1 << 18  # elements per piece


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1)


def _expected_stats(e: np.ndarray):
    """(max |e|, sum e^2) of torch's output, shared by both of its comparisons;
    the scale is inf when e holds NaN or Inf (as in parity.core.compare)."""
    e = _flat(e)
    buf = np.empty(max(1, min(_CHUNK, e.size)), np.float32)
    scale, sq = 0.0, 0.0
    for s in range(0, e.size, _CHUNK):
        ec = e[s:s + _CHUNK]
        b = buf[:ec.size]
        np.abs(ec, out=b)
        v = float(b.max())
        if not np.isfinite(v):
            return float("inf"), float("inf")
        scale = max(scale, v)
        np.multiply(ec, ec, out=b)
        sq += float(np.sum(b, dtype=np.float64))
    return scale, sq


def _compare32(name: str, actual: np.ndarray, expected: np.ndarray, expected_stats=None,
               atol: Optional[float] = None, rtol: Optional[float] = None):
    """parity.core.compare.compare(name, actual, expected, atol, rtol, median=False)
    for two finite float32 tensors, in one chunked pass; any other input is
    handed to compare itself."""
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: shapes differ, {actual.shape} vs {expected.shape}")
    if (atol is None) != (rtol is None):
        raise ValueError("give atol and rtol together, or neither")
    ref_scale, sum_ee = expected_stats if expected_stats is not None else _expected_stats(expected)
    slow = lambda: compare(name, actual, expected, atol=atol, rtol=rtol, median=False)  # noqa: E731
    if actual.dtype != np.float32 or expected.dtype != np.float32 or actual.size == 0 or not np.isfinite(ref_scale):
        return slow()
    a, e = _flat(actual), _flat(expected)
    n = a.size
    floor = np.float32(max(ref_scale * REL_FLOOR_FRACTION, np.finfo(np.float32).tiny))
    d_buf = np.empty(min(_CHUNK, n), np.float32)
    q_buf = np.empty(min(_CHUNK, n), np.float32)
    worst, worst_at = -1.0, 0
    sum_d = sum_dd = sum_aa = 0.0
    max_rel = 0.0
    n_outside = 0
    for s in range(0, n, _CHUNK):
        ac, ec = a[s:s + _CHUNK], e[s:s + _CHUNK]
        d, q = d_buf[:ac.size], q_buf[:ac.size]
        np.subtract(ac, ec, out=d)
        np.abs(d, out=d)
        k = int(np.argmax(d))
        v = float(d[k])
        if not np.isfinite(v):
            return slow()
        if v > worst:
            worst, worst_at = v, s + k
        sum_d += float(np.sum(d, dtype=np.float64))
        np.multiply(d, d, out=q)
        sum_dd += float(np.sum(q, dtype=np.float64))
        np.multiply(ac, ac, out=q)
        sum_aa += float(np.sum(q, dtype=np.float64))
        np.abs(ec, out=q)
        if atol is not None:
            np.multiply(q, np.float32(rtol), out=q)
            np.add(q, np.float32(atol), out=q)
            n_outside += int(np.count_nonzero(d > q))
            np.abs(ec, out=q)
        np.maximum(q, floor, out=q)
        np.divide(d, q, out=q)
        max_rel = max(max_rel, float(q.max()))
    if not (np.isfinite(sum_dd) and np.isfinite(sum_aa)):
        return slow()
    norm_a, norm_e, norm_d = np.sqrt(sum_aa), np.sqrt(sum_ee), np.sqrt(sum_dd)
    rel_l2 = norm_d / norm_e if norm_e > 0 else (0.0 if norm_d == 0 else float("inf"))
    if norm_a > 0 and norm_e > 0:
        # 1 - cos = (|a-e|^2 - (|a|-|e|)^2) / (2|a||e|): the small difference
        # computed from the small quantities, not as 1 minus a rounded dot.
        cosine = 1.0 - (sum_dd - (norm_a - norm_e) ** 2) / (2.0 * norm_a * norm_e)
        cosine = float(min(1.0, max(-1.0, cosine)))
    else:
        cosine = 1.0 if norm_a == norm_e else 0.0
    out = Diff(name=name, shape=tuple(actual.shape), numel=n, max_abs=worst,
               max_abs_index=tuple(int(i) for i in np.unravel_index(worst_at, actual.shape)),
               actual_at_max=float(a[worst_at]), expected_at_max=float(e[worst_at]), mean_abs=sum_d / n,
               median_abs=float("nan"), max_rel=max_rel, rel_l2=float(rel_l2), cosine=cosine, ref_max_abs=ref_scale)
    if atol is not None:
        out.n_outside = n_outside
        out.frac_outside = n_outside / n
        out.atol, out.rtol = atol, rtol
    return out


@dataclass
class _SideVerdict:
    """One side of a row's verdict (accumulated or isolated)."""

    diff: Diff  # Paddle vs torch
    torch_error: Optional[float]  # vs float64 (None with atol/rtol)
    paddle_error: Optional[float]
    tolerance: Optional[float]
    passed: bool


def _check(name: str, p: np.ndarray, t: np.ndarray, t_stats, r: Optional[np.ndarray], dtype: str,
           atol: Optional[float], rtol: Optional[float], count_outside: bool) -> _SideVerdict:
    """Paddle output `p` against torch's `t`, judged by the project's rule
    (`parity.core.tolerances.decide`) against the float64 `r` (or by
    atol/rtol element by element when r is None).
    count_outside: also count the elements beyond the bound (accumulated
    only); it measures |paddle - torch|, so the bound is the rule's bound for
    that difference (`tolerances.difference_bound`), not the one for |paddle - f64|."""
    if r is not None:
        if p.shape != r.shape or t.shape != r.shape:
            raise ValueError(f"{name}: shapes differ: paddle {p.shape}, torch {t.shape}, float64 {r.shape}")
        scale = tolerances.max_abs(r)
        e_t, e_p = tolerances.max_abs_error(t, r), tolerances.max_abs_error(p, r)
        ok, tol, _ = tolerances.decide(e_p, e_t, scale, dtype)
        diff = _compare32(name, p, t, t_stats, atol=tolerances.difference_bound(e_t, scale, dtype), rtol=0.0) \
            if count_outside else _compare32(name, p, t, t_stats)
    else:
        e_t = e_p = None
        tol = atol
        diff = _compare32(name, p, t, t_stats, atol=atol, rtol=rtol)
        ok = diff.n_outside == 0
    # NaN/inf in Paddle's output must never pass.
    return _SideVerdict(diff=diff, torch_error=e_t, paddle_error=e_p, tolerance=tol,
                  passed=bool(ok and np.isfinite(diff.max_abs)))


# ---------------------------------------------------------------- the run

def _unit_forward(block, u, x):
    """Residual unit `u` of a super block (either framework): ReLU(branch(x) +
    shortcut(x)), as genet_arch.ResidualUnit defines it."""
    return block.unit_relu[u](block.conv_list[u](x) + block.shortcut_list[u](x))


def _load_reference(reference, rows) -> Dict[int, np.ndarray]:
    """Reference activations keyed by official module name -> {row index: array}.
    A `NetBlock` wrapper's name stands for its `.netblock` child. Every key must
    match a row: a mistyped key is an error, not a silently empty column."""
    if reference is None:
        return {}
    data = dict(np.load(reference)) if isinstance(reference, (str, os.PathLike)) else dict(reference)
    by_name = {}
    for i, row in enumerate(rows):
        by_name[row.official] = i
        if row.official.endswith(".netblock"):
            by_name.setdefault(row.official[: -len(".netblock")], i)
    unknown = sorted(k for k in data if k not in by_name)
    if unknown:
        raise ValueError(f"reference activations: no module named {', '.join(unknown)} in the official layout")
    return {by_name[k]: np.asarray(v) for k, v in data.items()}


def _host(x) -> np.ndarray:
    """A float32 (or float64) numpy view of a torch or Paddle tensor: no copy
    for CPU float32/float64 tensors (Paddle's through DLPack)."""
    import torch

    if not isinstance(x, torch.Tensor):
        x = torch.from_dlpack(x)
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.cpu().numpy()


def _to_paddle(x):
    """torch's tensor as a Paddle tensor, sharing its memory (DLPack)."""
    import paddle
    import torch

    return paddle.utils.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(x.detach().contiguous()))


@dataclass
class _Options:
    arch: str
    dtype: str
    device: str
    atol: Optional[float]
    rtol: Optional[float]

    @property
    def relative(self) -> bool:
        return self.atol is None

    @property
    def emulated(self) -> bool:
        return self.dtype == "float16" and self.device == "cpu"

    @property
    def native_half(self) -> bool:
        return self.dtype == "float16" and self.device == "gpu"


def _options(arch, dtype, atol, rtol, device) -> _Options:
    import paddle
    import torch

    arch = canonical_arch(arch)
    tolerances.check_overrides(atol, rtol)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be cpu or gpu, got {device!r}")
    if device == "gpu" and not (torch.cuda.is_available() and paddle.device.is_compiled_with_cuda()):
        raise ValueError("device 'gpu' needs a CUDA device visible to both torch and a CUDA build of Paddle")
    return _Options(arch=arch, dtype=dtype, device=device, atol=atol, rtol=rtol)


class _LayerDiff:
    """The engine, step by step: `build` the three models, `hook` every mapped
    module, then per top-level segment `run` the accumulated passes (torch,
    Paddle, float64; each row judged as its float64 output arrives, so only
    torch's activations outlive the passes), `isolate` every module on torch's
    input, `judge` its isolated output, and `record` the row."""

    def __init__(self, opts: _Options, table, reference_arrays: Dict[int, np.ndarray], clock: PhaseClock):
        self.opts = opts
        self.num_classes = table.arch.classifier.out_features
        self.rows = table.modules
        self.reference = reference_arrays
        self.clock = clock
        self.mode: Optional[str] = None  # "accumulated" while the end-to-end passes run, "isolated" after
        self.t_in: Dict[int, object] = {}  # torch's input and output of each row of the segment in flight
        self.t_out: Dict[int, object] = {}
        self.t_stats: Dict[int, tuple] = {}  # (max |t|, sum t^2) of torch's output
        self.p_out: Dict[int, object] = {}  # Paddle's accumulated outputs, until their float64 row arrives
        self.accumulated: Dict[int, _SideVerdict] = {}
        self.ref_errors: Dict[int, tuple] = {}  # (Paddle, torch) max abs vs the reference activations
        self.want: frozenset = frozenset()  # rows whose (input, output) an isolated run captures
        self.capture: Dict[str, Dict[int, tuple]] = {"paddle": {}, "float64": {}}
        self.records: Dict[int, LayerRecord] = {}
        self.missing: List[str] = []
        self.handles: List[object] = []
        self._previous_paddle_device: Optional[str] = None

    # ------------------------------------------------------------ build
    def build(self, official_state, paddle_state) -> None:
        import paddle
        import torch

        import paddle_genet
        import torch_ref

        o = self.opts
        with self.clock("build"):
            t_model = torch_ref.load_state(torch_ref.build(o.arch, self.num_classes), official_state,
                                           source="official weights")
            r_model = float64_copy(t_model) if o.relative else None
            with paddle.LazyGuard():  # no random init: every parameter is overwritten next
                p_model = paddle_genet.build(o.arch, self.num_classes)
            p_model = paddle_genet.load_state(p_model, paddle_state, source="Paddle weights")
        self.t_dev = torch.device("cuda" if o.device == "gpu" else "cpu")
        self._previous_paddle_device = paddle.device.get_device()
        if o.device == "gpu":
            paddle.set_device("gpu")
            t_model = t_model.to(self.t_dev)
            r_model = r_model.to(self.t_dev) if r_model is not None else None
        if o.native_half:
            t_model = t_model.half()
            p_model.to(dtype="float16")
        self.compute_dtype = torch.float16 if o.native_half else torch.float32
        self.t_mods = [torch_module(t_model, r.official) for r in self.rows]
        self.p_mods = [paddle_layer(p_model, r.paddle) for r in self.rows]
        self.r_mods = [torch_module(r_model, r.official) for r in self.rows] if o.relative else None
        self.hp = [(torch_hparams(t), paddle_hparams(p)) for t, p in zip(self.t_mods, self.p_mods)]

    # ------------------------------------------------------------ hook
    def hook(self) -> None:
        for i in range(len(self.rows)):
            if self.opts.emulated:
                self.handles.append(self.t_mods[i].register_forward_hook(round_f16_torch))
                self.handles.append(self.p_mods[i].register_forward_post_hook(round_f16_paddle))
            self.handles.append(self.t_mods[i].register_forward_hook(self._torch_hook(i)))
            self.handles.append(self.p_mods[i].register_forward_post_hook(self._paddle_hook(i)))
            if self.opts.relative:
                self.handles.append(self.r_mods[i].register_forward_hook(self._float64_hook(i)))

    def _torch_hook(self, i):
        def hook(module, args, out):
            if self.mode == "accumulated":
                self.t_in[i], self.t_out[i] = args[0], out
        return hook

    def _paddle_hook(self, i):
        def hook(layer, inputs, out):
            if self.mode == "accumulated":
                if self.opts.relative:
                    self.p_out[i] = out
                elif i in self.t_out:
                    self._judge_accumulated(i, out, None)
            elif self.mode == "isolated" and i in self.want and i not in self.capture["paddle"]:
                self.capture["paddle"][i] = (inputs[0], out)
        return hook

    def _float64_hook(self, i):
        def hook(module, args, out):
            if self.mode == "accumulated":
                if i in self.t_out and i in self.p_out:
                    self._judge_accumulated(i, self.p_out.pop(i), out)
            elif self.mode == "isolated" and i in self.want and i not in self.capture["float64"]:
                self.capture["float64"][i] = (args[0], out)
        return hook

    def close(self) -> None:
        import paddle

        if self._previous_paddle_device is not None:
            paddle.set_device(self._previous_paddle_device)
        for h in self.handles:
            h.remove()
        self.handles = []

    # ------------------------------------------------------------ run (accumulated)
    def start(self, inputs: np.ndarray):
        import paddle
        import torch

        o = self.opts
        xt = torch.from_numpy(inputs).to(self.t_dev, self.compute_dtype)
        xp = paddle.to_tensor(inputs.astype(np.float16) if o.native_half else inputs)
        xr = torch.from_numpy(inputs).to(self.t_dev, torch.float64) if o.relative else None
        return xt, xp, xr

    def run(self, seg: Sequence[int], x):
        """The segment end to end on each side's own activations; every row is
        judged (accumulated) inside the float64 pass, as its output arrives."""
        import paddle
        import torch

        head = seg[-1]
        xt, xp, xr = x
        if self.rows[head].kind == "fc":  # GENet flattens the pooled map before the fc
            xt, xp = torch.flatten(xt, 1), paddle.flatten(xp, 1)
            xr = torch.flatten(xr, 1) if xr is not None else None
        self.mode = "accumulated"
        try:
            with self.clock("torch"):
                yt = self.t_mods[head](xt)
            with self.clock("paddle"):
                yp = self.p_mods[head](xp)
            with self.clock("float64"):
                yr = self.r_mods[head](xr) if self.opts.relative else None
        finally:
            self.mode = None
            self.p_out.clear()
        return yt, yp, yr

    def _judge_accumulated(self, i: int, p_out, r_out) -> None:
        with self.clock("compare"):
            row = self.rows[i]
            t, p = _host(self.t_out[i]), _host(p_out)
            self.t_stats[i] = _expected_stats(t)
            r = _host(r_out) if r_out is not None else None
            self.accumulated[i] = _check(row.official, p, t, self.t_stats[i], r, self.opts.dtype,
                                         self.opts.atol, self.opts.rtol, count_outside=True)
            ref = self.reference.get(i)
            if ref is not None:
                if tuple(ref.shape) != tuple(t.shape):
                    raise ValueError(f"reference activations {row.official}: expected shape {tuple(t.shape)}, "
                                     f"got {tuple(ref.shape)}")
                self.ref_errors[i] = (tolerances.max_abs_error(p, ref), tolerances.max_abs_error(t, ref))

    # ------------------------------------------------------------ isolate
    def isolate(self, seg: Sequence[int]):
        """(row, Paddle output, float64 output) of every row of the segment fed
        torch's input. A module applied directly to the input of a container's
        isolated run (the first layers of a unit, the first unit of a block) is
        read from that run: the same module on the same input tensor."""
        for i in seg:
            if i not in self.accumulated:
                self.missing.append(self.rows[i].official)
        head = seg[-1]
        try:
            if self.rows[head].kind == "block" and head in self.accumulated:
                yield from self._isolate_block(seg)
            else:
                for i in seg:
                    if i in self.accumulated:
                        run = self._isolated_run(i, self.t_in[i])
                        yield i, run.paddle, run.float64
        finally:
            self.mode, self.want = None, frozenset()
            for side in self.capture.values():
                side.clear()
            self.t_in.clear()
            self.t_out.clear()
            self.t_stats.clear()

    def _isolated_run(self, i: int, x, unit: Optional[int] = None, want=()) -> "_IsolatedRun":
        """Row i (or unit `unit` of block row i) in Paddle and in float64 on
        torch's input `x`, capturing the rows in `want` applied inside it."""
        o = self.opts
        p_mod, r_mod = self.p_mods[i], self.r_mods[i] if o.relative else None
        fwd = (lambda m, v: m(v)) if unit is None else (lambda m, v: _unit_forward(m, unit, v))
        for side in self.capture.values():
            side.clear()
        self.mode, self.want = "isolated", frozenset(want)
        try:
            with self.clock("paddle_isolated"):
                p_in = _to_paddle(x)
                p_out = fwd(p_mod, p_in)
            with self.clock("float64_isolated"):
                r_in = x.double() if o.relative else None
                r_out = fwd(r_mod, r_in) if o.relative else None
        finally:
            self.mode, self.want = None, frozenset()
        captured = {}
        for j in want:
            p, r = self.capture["paddle"].get(j), self.capture["float64"].get(j)
            if p is not None and (r is not None or not o.relative):
                captured[j] = (p, r)
        for side in self.capture.values():
            side.clear()
        return _IsolatedRun(p_out, r_out, p_in, r_in, captured)

    def _isolate_block(self, seg):
        rows, head = self.rows, seg[-1]
        block_t, block_p = self.t_mods[head], self.p_mods[head]
        units, leaves = [], []  # [(unit row, its leaf rows)]: the table lists a container after its contents
        for i in seg[:-1]:
            if rows[i].kind == "unit":
                u = rows[i].node.index
                if block_t.unit_relu[u] is not self.t_mods[i] or block_p.unit_relu[u] is not self.p_mods[i]:
                    raise AssertionError(f"{rows[i].official}: unit path does not lead to unit {u} of "
                                         f"{rows[head].official}")
                units.append((i, leaves))
                leaves = []
            else:
                leaves.append(i)
        if leaves:
            raise AssertionError(f"{rows[head].official}: rows outside any unit: {[rows[i].official for i in leaves]}")

        x = self.t_in[head]  # torch's block input: unit 0's input

        def firsts(unit_leaves, x):  # the unit's layers applied to the unit input itself
            return [i for i in unit_leaves if i in self.accumulated and self.t_in[i] is x]

        block = None
        if units:
            block = self._isolated_run(head, x, want=[units[0][0]] + firsts(units[0][1], x))
        else:
            block = self._isolated_run(head, x)
        yield head, block.paddle, block.float64
        for k, (unit, unit_leaves) in enumerate(units):
            if unit not in self.accumulated:
                return  # recorded as missing; the units after it have no torch input to be fed
            u = rows[unit].node.index
            first = firsts(unit_leaves, x)
            run = block.part(unit, first) if k == 0 else None
            if run is None:  # the block's run is no evidence here: the unit runs on its own
                run = self._isolated_run(head, x, unit=u, want=first)
            block = None
            x_next = self.t_out[unit]  # the next unit's input (judging the unit drops the row's own reference)
            yield unit, run.paddle, run.float64
            for i in unit_leaves:
                if i not in self.accumulated:
                    continue
                got = run.captured_on_input(i) if i in first else None
                if got is None:
                    leaf = self._isolated_run(i, self.t_in[i])
                    got = (leaf.paddle, leaf.float64)
                yield (i,) + tuple(got)
            x = x_next
            run = got = None


@dataclass
class _IsolatedRun:
    """Outputs of one isolated run, its input tensors, and the (input, output)
    pairs of the rows captured inside it, per side."""

    paddle: object
    float64: object
    paddle_input: object
    float64_input: object
    captured: Dict[int, tuple]  # row -> ((Paddle in, out), (float64 in, out) or None)

    def captured_on_input(self, i: int):
        """Row i's outputs, if it was applied to this run's very input tensors
        (identity, not equality) on every side."""
        got = self.captured.get(i)
        if got is None:
            return None
        (p_in, p_out), r = got
        if p_in is not self.paddle_input or (r is not None and r[0] is not self.float64_input):
            return None
        return p_out, (r[1] if r is not None else None)

    def part(self, unit: int, first: Sequence[int]) -> Optional["_IsolatedRun"]:
        """Unit `unit`'s run as it happened inside this block run: when the
        unit's output was captured and its first layers were applied to the
        block's very input (so the block began with this unit, on this input)."""
        got = self.captured.get(unit)
        if got is None or not first or any(self.captured_on_input(i) is None for i in first):
            return None
        (_, p_out), r = got
        return _IsolatedRun(p_out, r[1] if r is not None else None, self.paddle_input, self.float64_input,
                            {i: self.captured[i] for i in first})


# ---------------------------------------------------------------- judge and record

def _judge_isolated(diff: _LayerDiff, i: int, p_iso, r_iso) -> None:
    """Row i's isolated check (Paddle and float64 fed torch's input), then its record."""
    o = diff.opts
    with diff.clock("compare"):
        row = diff.rows[i]
        t = _host(diff.t_out[i])
        iso = _check(row.official, _host(p_iso), t, diff.t_stats[i], _host(r_iso) if o.relative else None,
                     o.dtype, o.atol, o.rtol, count_outside=not o.relative)
        diff.records[i] = _record(i, row, list(t.shape), diff.accumulated.pop(i), iso, diff.hp[i], o.relative,
                                  o.atol, *diff.ref_errors.pop(i, (None, None)))
    # Judged: torch's tensors of the row go (freed once no later row's input holds them).
    for held in (diff.t_in, diff.t_out, diff.t_stats):
        held.pop(i, None)


def _record(i, row, shape, acc: _SideVerdict, iso: _SideVerdict, hp, relative, atol, ref_p, ref_t) -> LayerRecord:
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


def _prepare(table, opts: _Options, official_state, paddle_state, inputs, batch_size, input_info):
    """Both layouts of the weights and the input batch, float16-rounded for
    float16 runs (the float64 reference must see what both sides see)."""
    from parity.core.seeded import seeded_input

    if official_state is None and paddle_state is None:
        raise ValueError("give official_state, paddle_state or both")
    if official_state is None:
        official_state = table.convert(paddle_state, "paddle", "official", source="Paddle weights")
    if paddle_state is None:
        paddle_state = table.convert(official_state, "official", "paddle", source="official weights")
    if opts.dtype == "float16":
        official_state, paddle_state = round_state_f16(official_state), round_state_f16(paddle_state)
    if inputs is None:
        inputs = seeded_input(opts.arch, batch_size)
        input_info = input_info or {"source": "seeded", "seed": 2021}
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ValueError(f"inputs: expected (N, 3, H, W), got {inputs.shape}")
    if opts.dtype == "float16":
        inputs = inputs.astype(np.float16).astype(np.float32)
    input_info = dict(input_info or {"source": "given"})
    input_info.update(shape=list(inputs.shape), batch_size=int(inputs.shape[0]),
                      eval_resolution=table.arch.resolution)
    return official_state, paddle_state, inputs, input_info


def run_layer_diff(arch: str, official_state: Optional[Mapping[str, np.ndarray]],
                   paddle_state: Optional[Mapping[str, np.ndarray]] = None, inputs: Optional[np.ndarray] = None,
                   batch_size: int = 2, dtype: str = "float32", atol: Optional[float] = None,
                   rtol: Optional[float] = None, progress=False, device: str = "cpu",
                   reference=None, input_info: Optional[dict] = None,
                   weights_info: Optional[dict] = None) -> LayerDiffResult:
    """Compare every mapped module of the torch and Paddle GENet `arch`.

    official_state: official-layout arrays for the torch model (converted from
      `paddle_state` through the mapping table when None).
    paddle_state: Paddle-layout arrays (converted from `official_state` when None).
    inputs: float32 (N, 3, R, R); a seeded batch of `batch_size` when None.
    dtype: 'float32', or 'float16' (native on device='gpu', emulated on CPU).
    atol/rtol: absolute override of the float64-relative rule (both or neither).
    reference: .npz path or {official module name: array} of reference
      activations for a third column (e.g. the official code's outputs).
    progress: True for a rich progress bar, or a callable(done, total, label).
    """
    import paddle
    import torch

    start = time.perf_counter()
    opts = _options(arch, dtype, atol, rtol, device)
    # The head the weights hold (a fine-tuned checkpoint's): both states must agree, which convert() checks.
    table = mapping_table(opts.arch, state_classes(official_state, opts.arch, "official") if official_state
                          is not None else state_classes(paddle_state or {}, opts.arch, "paddle"))
    official_state, paddle_state, inputs, input_info = _prepare(table, opts, official_state, paddle_state, inputs,
                                                                batch_size, input_info)
    clock = PhaseClock()
    diff = _LayerDiff(opts, table, _load_reference(reference, table.modules), clock)
    diff.build(official_state, paddle_state)
    segs = segments(diff.rows)
    report, bar = step_callback(progress, len(segs), "layer diff")
    try:
        diff.hook()
        with torch.no_grad(), paddle.no_grad():
            x = diff.start(inputs)
            for done, seg in enumerate(segs):
                report(done, len(segs), f"GENet_{opts.arch}: {diff.rows[seg[-1]].official}")
                x = diff.run(seg, x)
                for i, p_iso, r_iso in diff.isolate(seg):
                    _judge_isolated(diff, i, p_iso, r_iso)
                    del p_iso, r_iso
            report(len(segs), len(segs), f"GENet_{opts.arch}: done")
    finally:
        diff.close()
        if bar is not None:
            bar.stop()

    return LayerDiffResult(
        arch=opts.arch, num_classes=diff.num_classes, dtype=opts.dtype, device=opts.device, emulated=opts.emulated,
        tolerance=tolerances.describe(atol, rtol, opts.dtype),
        layers=[diff.records[i] for i in sorted(diff.records)], total=len(diff.rows), missing=diff.missing,
        input_info=input_info, weights_info=dict(weights_info or {}), environment=environment(opts.device, opts.dtype),
        seconds=time.perf_counter() - start, timings=clock.totals(),
        reference_file=str(reference) if isinstance(reference, (str, os.PathLike)) else
        ("given arrays" if reference is not None else None), notes=[EMULATION_NOTE] if opts.emulated else [])
