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
are measured against (see parity.tolerances); with atol/rtol it is skipped.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from converters.mapping import ModuleMapping, mapping_table
from genet_arch import canonical_arch

from . import tolerances
from .compare import compare
from .reference import float64_copy

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
    timings: Dict[str, float] = field(default_factory=dict)  # seconds per phase (see _Clock)

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
            "arch": self.arch, "dtype": self.dtype, "device": self.device, "emulated": self.emulated,
            "precision_note": EMULATION_NOTE if self.emulated else None,
            "tolerance": self.tolerance,
            "input": self.input_info, "weights": self.weights_info,
            "reference_file": self.reference_file,
            "environment": self.environment,
            "seconds": self.seconds, "timings_s": dict(self.timings),
            "notes": list(self.notes),
            "layers": [r.to_dict() for r in self.layers],
        }


# ---------------------------------------------------------------- modules by path

def torch_module(model, path: str):
    """The torch module at `path`; a mistyped path raises, naming the missing part."""
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        raise LookupError(f"torch model has no module {path!r}: {e}") from None


def paddle_layer(model, path: str):
    """The Paddle layer at `path`, walked through registered sublayers only, so
    a mistyped path raises instead of landing on a parent or attribute."""
    layer = model
    for i, part in enumerate(path.split(".")):
        children = layer._sub_layers
        if part not in children:
            known = ", ".join(list(children)[:8]) or "none"
            raise LookupError(f"Paddle model has no layer {path!r}: "
                              f"{'.'.join(path.split('.')[:i]) or 'the model'} has no {part!r} (has: {known})")
        layer = children[part]
    return layer


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
        return [f"unexpected module types for a {kind}: torch {sorted(t) or 'unknown'}, Paddle {sorted(p) or 'unknown'}"]
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


# ---------------------------------------------------------------- precision

def round_f16_torch(module, args, out):
    """Forward hook of the CPU float16 emulation (also used by parity.evaluate)."""
    return out.half().float()


def round_f16_paddle(layer, inputs, out):
    return out.astype("float16").astype("float32")


def round_state_f16(state: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in state.items()}


PADDLE_FLAGS = ("FLAGS_use_onednn", "FLAGS_cudnn_deterministic", "FLAGS_cudnn_exhaustive_search")


def environment(device: str, dtype: str) -> dict:
    import paddle
    import torch

    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "paddle": paddle.__version__, "numpy": np.__version__,
        "device": device, "dtype": dtype,
        "threads": {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS")},
        "tf32": {"matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                 "cudnn": bool(torch.backends.cudnn.allow_tf32)},
        "cudnn": {"enabled": bool(torch.backends.cudnn.enabled),
                  "deterministic": bool(torch.backends.cudnn.deterministic),
                  "benchmark": bool(torch.backends.cudnn.benchmark)},
        "paddle_device": paddle.device.get_device(),
        "cuda_available": bool(torch.cuda.is_available()),
    }
    if device == "gpu" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    env["paddle_flags"] = {}
    for flag in PADDLE_FLAGS:
        try:
            env["paddle_flags"][flag] = paddle.get_flags([flag])[flag]
        except ValueError:  # not compiled into this build (e.g. cuDNN flags in a CPU build)
            env["paddle_flags"][flag] = "not in this build"
    return env


# ---------------------------------------------------------------- the run

class _Clock:
    """Wall seconds per phase: build, torch, paddle, float64 (the end-to-end
    passes), paddle_isolated, float64_isolated, compare."""

    def __init__(self):
        self._totals: Dict[str, float] = {}

    def __call__(self, phase: str):
        import contextlib

        @contextlib.contextmanager
        def timed():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._totals[phase] = self._totals.get(phase, 0.0) + time.perf_counter() - t0
        return timed()

    def totals(self) -> Dict[str, float]:
        return dict(self._totals)


class _Recorder:
    """Hook sink: (input, output) of each row while `enabled`; isolated
    re-runs of the same modules happen with it disabled."""

    def __init__(self):
        self.enabled = False
        self.inputs: Dict[int, object] = {}
        self.outputs: Dict[int, object] = {}

    def clear(self):
        self.inputs.clear()
        self.outputs.clear()

    def torch_hook(self, index, keep_input):
        def hook(module, args, out):
            if self.enabled:
                if keep_input:
                    self.inputs[index] = args[0]
                self.outputs[index] = out
        return hook

    def paddle_hook(self, index):
        def hook(layer, inputs, out):
            if self.enabled:
                self.outputs[index] = out
        return hook


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


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    m = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
    return float("inf") if np.isnan(m) else m  # NaN must never compare as small


def _progress_callback(progress, total: int):
    if callable(progress):
        return progress, None
    if not progress:
        return (lambda done, total, label: None), None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), transient=True)
    task = bar.add_task("layer diff", total=total)
    bar.start()
    return (lambda done, total_, label: bar.update(task, completed=done, description=label)), bar


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

    import paddle_genet
    import torch_ref

    from .seeded import seeded_input

    start = time.perf_counter()
    arch = canonical_arch(arch)
    tolerances.check_overrides(atol, rtol)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be cpu or gpu, got {device!r}")
    if device == "gpu" and not (torch.cuda.is_available() and paddle.device.is_compiled_with_cuda()):
        raise ValueError("device 'gpu' needs a CUDA device visible to both torch and a CUDA build of Paddle")
    emulated = dtype == "float16" and device == "cpu"
    native_half = dtype == "float16" and device == "gpu"
    relative = atol is None

    table = mapping_table(arch)
    rows = table.modules
    if official_state is None and paddle_state is None:
        raise ValueError("give official_state, paddle_state or both")
    if official_state is None:
        official_state = table.convert(paddle_state, "paddle", "official", source="Paddle weights")
    if paddle_state is None:
        paddle_state = table.convert(official_state, "official", "paddle", source="official weights")
    if dtype == "float16":
        # The float64 reference must see the same float16 weights and input as both sides.
        official_state, paddle_state = round_state_f16(official_state), round_state_f16(paddle_state)
    if inputs is None:
        inputs = seeded_input(arch, batch_size)
        input_info = input_info or {"source": "seeded", "seed": 2021}
    inputs = np.asarray(inputs, dtype=np.float32)
    res = table.arch.resolution
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ValueError(f"inputs: expected (N, 3, H, W), got {inputs.shape}")
    if dtype == "float16":
        inputs = inputs.astype(np.float16).astype(np.float32)
    input_info = dict(input_info or {"source": "given"})
    input_info.update(shape=list(inputs.shape), batch_size=int(inputs.shape[0]), eval_resolution=res)
    reference_arrays = _load_reference(reference, rows)

    clock = _Clock()
    with clock("build"):
        t_model = torch_ref.load_state(torch_ref.build(arch), official_state, source="official weights")
        r_model = float64_copy(t_model) if relative else None
        with paddle.LazyGuard():  # no random init: every parameter is overwritten next
            p_model = paddle_genet.build(arch)
        p_model = paddle_genet.load_state(p_model, paddle_state, source="Paddle weights")
    t_dev = torch.device("cuda" if device == "gpu" else "cpu")
    previous_paddle_device = paddle.device.get_device()
    if device == "gpu":
        paddle.set_device("gpu")
        t_model = t_model.to(t_dev)
        r_model = r_model.to(t_dev) if r_model is not None else None
    if native_half:
        t_model = t_model.half()
        p_model.to(dtype="float16")
    compute_dtype = torch.float16 if native_half else torch.float32

    t_mods = [torch_module(t_model, r.official) for r in rows]
    p_mods = [paddle_layer(p_model, r.paddle) for r in rows]
    r_mods = [torch_module(r_model, r.official) for r in rows] if relative else None
    hp = [(torch_hparams(t), paddle_hparams(p)) for t, p in zip(t_mods, p_mods)]

    rec_t, rec_r, rec_p = _Recorder(), _Recorder(), _Recorder()
    handles = []
    for i, r in enumerate(rows):
        if emulated:
            handles.append(t_mods[i].register_forward_hook(round_f16_torch))
            handles.append(p_mods[i].register_forward_post_hook(round_f16_paddle))
        handles.append(t_mods[i].register_forward_hook(rec_t.torch_hook(i, keep_input=True)))
        handles.append(p_mods[i].register_forward_post_hook(rec_p.paddle_hook(i)))
        if relative:
            handles.append(r_mods[i].register_forward_hook(rec_r.torch_hook(i, keep_input=False)))

    def to_paddle(x):
        return paddle.to_tensor(x.detach().cpu().numpy())

    def np_(x):
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().float().numpy() if x.dtype == torch.float16 else x.detach().cpu().numpy()
        out = x.numpy()
        return out.astype(np.float32) if out.dtype == np.float16 else out

    segs = segments(rows)
    report, bar = _progress_callback(progress, len(segs))
    layers: List[LayerRecord] = []
    missing: List[str] = []
    try:
        with torch.no_grad(), paddle.no_grad():
            xt = torch.from_numpy(inputs).to(t_dev, compute_dtype)
            xp = paddle.to_tensor(inputs.astype(np.float16) if native_half else inputs)
            xr = torch.from_numpy(inputs).to(t_dev, torch.float64) if relative else None
            for done, seg in enumerate(segs):
                head = seg[-1]
                report(done, len(segs), f"GENet_{arch}: {rows[head].official}")
                for rec in (rec_t, rec_p, rec_r):
                    rec.clear()
                    rec.enabled = True
                flat = rows[head].kind == "fc"  # GENet flattens the pooled map before the fc
                seg_in_t = torch.flatten(xt, 1) if flat else xt
                seg_in_p = paddle.flatten(xp, 1) if flat else xp
                seg_in_r = (torch.flatten(xr, 1) if flat else xr) if relative else None
                with clock("torch"):
                    yt = t_mods[head](seg_in_t)
                with clock("paddle"):
                    yp = p_mods[head](seg_in_p)
                with clock("float64"):
                    yr = r_mods[head](seg_in_r) if relative else None
                for rec in (rec_t, rec_p, rec_r):
                    rec.enabled = False
                prev_unit_out = seg_in_t  # a unit's input: the previous unit's output
                for i in seg:
                    row = rows[i]
                    if i not in rec_t.outputs or i not in rec_p.outputs or (relative and i not in rec_r.outputs):
                        missing.append(row.official)
                        continue
                    t_out = rec_t.outputs[i]
                    if row.kind == "unit":
                        t_in = prev_unit_out
                        prev_unit_out = t_out
                        block_t = t_mods[head]
                        block_p = p_mods[head]
                        if block_t.unit_relu[row.node.index] is not t_mods[i] or \
                                block_p.unit_relu[row.node.index] is not p_mods[i]:
                            raise AssertionError(f"{row.official}: unit path does not lead to unit "
                                                 f"{row.node.index} of {rows[head].official}")
                        with clock("paddle_isolated"):
                            p_iso = _unit_forward(block_p, row.node.index, to_paddle(t_in))
                        with clock("float64_isolated"):
                            r_iso = (_unit_forward(r_mods[head], row.node.index, t_in.double())
                                     if relative else None)
                    else:
                        t_in = rec_t.inputs[i]
                        if row.kind == "block":
                            prev_unit_out = t_in
                        with clock("paddle_isolated"):
                            p_iso = p_mods[i](to_paddle(t_in))
                        with clock("float64_isolated"):
                            r_iso = r_mods[i](t_in.double()) if relative else None
                    with clock("compare"):
                        layers.append(_record(
                            i, row, np_(t_out), np_(rec_p.outputs[i]), np_(p_iso),
                            np_(rec_r.outputs[i]) if relative else None, np_(r_iso) if relative else None,
                            hp[i], dtype, atol, rtol, reference_arrays.get(i)))
                xt, xp, xr = yt, yp, yr
            report(len(segs), len(segs), f"GENet_{arch}: done")
    finally:
        paddle.set_device(previous_paddle_device)
        for h in handles:
            h.remove()
        if bar is not None:
            bar.stop()

    notes = []
    if emulated:
        notes.append(EMULATION_NOTE)
    return LayerDiffResult(
        arch=arch, dtype=dtype, device=device, emulated=emulated, tolerance=tolerances.describe(atol, rtol, dtype),
        layers=layers, total=len(rows), missing=missing, input_info=input_info,
        weights_info=dict(weights_info or {}), environment=environment(device, dtype),
        seconds=time.perf_counter() - start, timings=clock.totals(),
        reference_file=str(reference) if isinstance(reference, (str, os.PathLike)) else
        ("given arrays" if reference is not None else None), notes=notes)


def _record(i, row, t_out, p_out, p_iso, r_acc, r_iso, hp, dtype, atol, rtol, ref) -> LayerRecord:
    relative = atol is None
    # Widen once; every statistic below is computed in float64.
    t_out, p_out, p_iso = (np.asarray(x, np.float64) for x in (t_out, p_out, p_iso))
    if relative:
        e_t, e_p = _max_abs(t_out, r_acc), _max_abs(p_out, r_acc)
        e_ti, e_pi = _max_abs(t_out, r_iso), _max_abs(p_iso, r_iso)
        tol = tolerances.relative_bound(e_t, float(np.max(np.abs(r_acc))), dtype)
        tol_i = tolerances.relative_bound(e_ti, float(np.max(np.abs(r_iso))), dtype)
        acc = compare(row.official, p_out, t_out, atol=tol, rtol=0.0, median=False)
        iso = compare(row.official, p_iso, t_out, median=False)
        acc_ok, iso_ok = e_p <= tol, e_pi <= tol_i
    else:
        e_t = e_p = e_ti = e_pi = tol = tol_i = None
        acc = compare(row.official, p_out, t_out, atol=atol, rtol=rtol, median=False)
        iso = compare(row.official, p_iso, t_out, atol=atol, rtol=rtol, median=False)
        acc_ok, iso_ok = acc.n_outside == 0, iso.n_outside == 0
    # NaN/inf in Paddle's output must never pass.
    acc_ok = bool(acc_ok and np.isfinite(acc.max_abs))
    iso_ok = bool(iso_ok and np.isfinite(iso.max_abs))
    mismatches = hparam_mismatches(row.kind, *hp)
    ref_p = ref_t = None
    if ref is not None:
        if tuple(ref.shape) != tuple(t_out.shape):
            raise ValueError(f"reference activations {row.official}: expected shape {tuple(t_out.shape)}, "
                             f"got {tuple(ref.shape)}")
        ref_p, ref_t = _max_abs(p_out, ref), _max_abs(t_out, ref)
    amplification = acc.max_abs / iso.max_abs if iso.max_abs > 0 else None
    return LayerRecord(
        index=i, kind=row.kind, depth=row.depth, torch_name=row.official, paddle_name=row.paddle,
        shape=list(t_out.shape), scale=acc.ref_max_abs, max_abs=acc.max_abs, mean_abs=acc.mean_abs, max_rel=acc.max_rel,
        rel_l2=acc.rel_l2, cosine=acc.cosine, frac_outside=acc.frac_outside, worst_index=list(acc.max_abs_index),
        worst_paddle=acc.actual_at_max, worst_torch=acc.expected_at_max,
        isolated_max_abs=iso.max_abs, isolated_mean_abs=iso.mean_abs, isolated_rel_l2=iso.rel_l2,
        isolated_cosine=iso.cosine, isolated_worst_index=list(iso.max_abs_index),
        isolated_worst_paddle=iso.actual_at_max, isolated_worst_torch=iso.expected_at_max,
        amplification=amplification, torch_error_f64=e_t, paddle_error_f64=e_p,
        isolated_torch_error_f64=e_ti, isolated_paddle_error_f64=e_pi, tolerance=tol if relative else atol,
        isolated_tolerance=tol_i if relative else atol, accumulated_pass=acc_ok, isolated_pass=iso_ok,
        hparams={k: list(v) if isinstance(v, tuple) else v for k, v in hp[0].items()},
        hparam_mismatches=mismatches, reference_max_abs=ref_p, torch_reference_max_abs=ref_t,
        passed=acc_ok and iso_ok and not mismatches)
