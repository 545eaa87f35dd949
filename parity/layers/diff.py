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

This module is the engine; its parts live beside it: `prepare` (options,
weights, input, reference activations, segments), `hyperparams`, `stats` (the
chunked statistics and side verdicts) and `records` (the result types).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from converters.table.head import state_classes
from converters.table.mapping import mapping_table

from parity.core import tolerances
from parity.core.environment import environment
from parity.core.modules import paddle_layer, round_f16_paddle, round_f16_torch, torch_module
from parity.core.progress import PhaseClock, step_callback
from parity.core.reference import float64_copy
from parity.layers.hyperparams import paddle_hparams, torch_hparams
from parity.layers.prepare import Options, load_reference, options, prepare, segments
from parity.layers.records import EMULATION_NOTE, LayerDiffResult, LayerRecord, layer_record
from parity.layers.stats import SideVerdict, check_side, stats_of_expected


# ---------------------------------------------------------------- the run

def _unit_forward(block, u, x):
    """Residual unit `u` of a super block (either framework): ReLU(branch(x) +
    shortcut(x)), as genet_arch.ResidualUnit defines it."""
    return block.unit_relu[u](block.conv_list[u](x) + block.shortcut_list[u](x))

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


class _LayerDiff:
    """The engine, step by step: `build` the three models, `hook` every mapped
    module, then per top-level segment `run` the accumulated passes (torch,
    Paddle, float64; each row judged as its float64 output arrives, so only
    torch's activations outlive the passes), `isolate` every module on torch's
    input, `judge` its isolated output, and `record` the row."""

    def __init__(self, opts: Options, table, reference_arrays: Dict[int, np.ndarray], clock: PhaseClock):
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
        self.accumulated: Dict[int, SideVerdict] = {}
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
            self.t_stats[i] = stats_of_expected(t)
            r = _host(r_out) if r_out is not None else None
            self.accumulated[i] = check_side(row.official, p, t, self.t_stats[i], r, self.opts.dtype,
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
        iso = check_side(row.official, _host(p_iso), t, diff.t_stats[i], _host(r_iso) if o.relative else None,
                         o.dtype, o.atol, o.rtol, count_outside=not o.relative)
        diff.records[i] = layer_record(i, row, list(t.shape), diff.accumulated.pop(i), iso, diff.hp[i],
                                       o.relative, o.atol, *diff.ref_errors.pop(i, (None, None)))
    # Judged: torch's tensors of the row go (freed once no later row's input holds them).
    for held in (diff.t_in, diff.t_out, diff.t_stats):
        held.pop(i, None)


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
    opts = options(arch, dtype, atol, rtol, device)
    # The head the weights hold (a fine-tuned checkpoint's): both states must agree, which convert() checks.
    table = mapping_table(opts.arch, state_classes(official_state, opts.arch, "official") if official_state
                          is not None else state_classes(paddle_state or {}, opts.arch, "paddle"))
    official_state, paddle_state, inputs, input_info = prepare(table, opts, official_state, paddle_state, inputs,
                                                                batch_size, input_info)
    clock = PhaseClock()
    diff = _LayerDiff(opts, table, load_reference(reference, table.modules), clock)
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
