"""Model latency, measured the way the GENet paper states it, done right.

ms per image after warm-up, with the input already on the device, the device
synchronised before each clock read, median/p90/p99 over many timed
iterations, for each framework in eager mode and in its best inference mode
(`parity.fastpath.inference`), optionally with BN folded. Every timed path's logits
are compared with the float32 eager torch model on the same input. The input
pipeline's images/s is measured apart and reported beside, so a data-bound
wall time is never mistaken for model latency. Nothing here is asserted in
tests: tests check the bookkeeping with tiny iteration counts.
"""
from __future__ import annotations

import os
import time
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from converters.table.head import state_classes
from genet_arch import CARDS, canonical_arch

from parity.latency import contention
from parity.fastpath import inference
from parity.core.frameworks import check_dtype, layout_states, paddle_model, torch_device, torch_dtype, torch_model
from parity.core.environment import environment
from parity.core.progress import heartbeat
from parity.core.runtime import configure_threads, configured_threads, set_paddle_threads, thread_report
from parity.core.tolerances import check_word

FRAMEWORKS = ("torch", "paddle")
MODES = ("eager", "best")
DEFAULT_WARMUP = 20
DEFAULT_ITERS = 100
# The authors' convention is batch 64 on a GPU. On a CPU that would take tens
# of minutes for GENet_large, so the CPU default is batch 1 (stated in the output).
DEFAULT_BATCH = {"gpu": 64, "cpu": 1}
# What a slow build is doing, said before it starts (a heartbeat follows while it runs).
BUILD_NOTES = {("torch", "best"): " (torch.compile: tens of seconds)", ("paddle", "best"): " (predictor, checked)"}
SWITCH_PAUSE_S = 0.25  # untimed, between frameworks when interleaving (see _time_paths)


# ---------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default rule)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize_times(seconds: Sequence[float], batch_size: int) -> dict:
    """Per-batch and per-image statistics (ms) of timed iterations."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    batch = {"median": float(np.median(ms)), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
             "mean": float(ms.mean()), "min": float(ms.min()), "max": float(ms.max())}
    return {"iters": int(ms.size), "batch_ms": batch,
            "ms_per_image": {k: v / batch_size for k, v in batch.items()},
            "images_per_s": batch_size * 1e3 / batch["median"]}


def time_loop(step: Callable[[], None], sync: Callable[[], None], warmup: int, iters: int,
              clock=time.perf_counter) -> List[float]:
    """Seconds per iteration of `step` after `warmup` untimed ones; `sync`
    waits for the device before every clock read."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    for _ in range(warmup):
        step()
    sync()
    out = []
    for _ in range(iters):
        t0 = clock()
        step()
        sync()
        out.append(clock() - t0)
    return out


def _time_paths(paths, warmup: int, iters: int, interleave: bool, pause: float = 0.0,
                clock=time.perf_counter, on_warm: Optional[Callable[[Optional[float]], None]] = None
                ) -> List[List[float]]:
    """Seconds per iteration for each path (objects with .step, .sync and
    optionally .group). Interleaved, an untimed `pause` precedes each switch
    to another group: Paddle's OpenMP threads keep spinning for ~200 ms after
    a run (KMP_BLOCKTIME) and slowed the torch run that followed (~10%).
    on_warm(estimated seconds of the timed part, or None) is called once,
    after the warm-up and before the first timed iteration (for progress)."""
    if not interleave:
        if on_warm:
            on_warm(None)
        return [time_loop(p.step, p.sync, warmup, iters, clock) for p in paths]
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    t0 = clock()
    for p in paths:
        for _ in range(warmup):
            p.step()
        p.sync()
    if on_warm:
        groups = len({getattr(p, "group", None) for p in paths})
        on_warm((clock() - t0) / warmup * iters + (pause * groups * iters if groups > 1 else 0.0)
                if warmup else None)
    out = [[] for _ in paths]
    last = None
    for _ in range(iters):
        for p, seconds in zip(paths, out):
            group = getattr(p, "group", None)
            if pause and last is not None and group != last:
                time.sleep(pause)
            last = group
            t0 = clock()
            p.step()
            p.sync()
            seconds.append(clock() - t0)
    return out


# ---------------------------------------------------------------- environment
def default_device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- compute floor
def compute_floor(arch: str, device: str = "cpu", dtype: str = "float32", repeats: int = 5) -> dict:
    """The model's FLOPs per image over the best conv/matmul rate this machine
    reaches right now (torch and Paddle kernels, dense shapes that suit them
    best): no implementation of GENet can beat this by much."""
    import paddle
    import torch

    arch = canonical_arch(arch)
    flops = 2.0 * CARDS[arch].macs_g * 1e9
    dev = torch_device(device)
    tdt = torch_dtype(dtype)
    sync = torch.cuda.synchronize if dev != "cpu" else (lambda: None)
    n = 2048 if dev == "cpu" else 8192
    a = torch.randn(n, n, device=dev).to(tdt)
    b = torch.randn(n, n, device=dev).to(tdt)
    # A 3x3 conv shaped like GENet_large's widest 3x3 stage (192 ch at 32x32).
    x = torch.randn(8, 192, 32, 32, device=dev).to(tdt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(192, 192, 3, 3, device=dev).to(tdt).contiguous(memory_format=torch.channels_last)
    probes = {f"torch matmul {n}x{n} {dtype}": (lambda: torch.mm(a, b), 2.0 * n ** 3),
              f"torch conv3x3 192->192 @32x32 b8 {dtype}": (lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                                           2.0 * 8 * 192 * 192 * 9 * 32 * 32)}
    if device == "cpu" and dtype == "float32":  # Paddle's own BLAS (its eager kernels have no CPU half types)
        pa, pb = paddle.to_tensor(a.numpy()), paddle.to_tensor(b.numpy())
        probes[f"paddle matmul {n}x{n} float32"] = (lambda: paddle.matmul(pa, pb), 2.0 * n ** 3)
        set_paddle_threads()
    rates = {}
    with torch.inference_mode():
        for name, (fn, work) in probes.items():
            seconds = time_loop(fn, sync, warmup=2, iters=repeats)
            rates[name] = work / min(seconds) / 1e9
    best = max(rates, key=rates.get)
    return {"flops_per_image": flops, "rates_gflops": rates, "best_probe": best, "best_gflops": rates[best],
            "ms_per_image": flops / (rates[best] * 1e9) * 1e3, "dtype": dtype}


# ---------------------------------------------------------------- input pipeline
def pipeline_rate(arch: str, workers: int = 1, n_images: int = 64, batch_size: int = 16) -> dict:
    """Decode + preprocess images/s of the evaluation pipeline (`parity.inputs.decode`)
    on real photos (scikit-image's bundled files, repeated), pool start-up and
    one batch of warm-up excluded. workers=0 decodes in this process."""
    from parity.inputs.decode import Decoder
    from parity.inputs.sample_images import bundled_photos

    photos = bundled_photos()
    paths = [photos[i % len(photos)] for i in range(n_images + batch_size)]
    with Decoder(arch, lambda p: p, workers=workers, batch_size=batch_size) as dec:
        it = dec.batches(paths)
        next(it)  # warm-up: worker start and imports
        t0 = time.perf_counter()
        n = sum(len(b.samples) for b in it)
        seconds = time.perf_counter() - t0
    return {"workers": workers, "images": n, "seconds": seconds, "images_per_s": n / seconds,
            "source": f"{len(photos)} photos bundled with scikit-image, repeated"}


# ---------------------------------------------------------------- runners
class _Path:
    """One timed configuration: how to put the input on the device, run one
    batch, synchronise, and fetch the logits."""

    def __init__(self, step, sync, fetch, label, build_seconds=0.0, extra=None):
        self.step, self.sync, self.fetch, self.label = step, sync, fetch, label
        # Timing order within a round (see measure_latency): torch, then the
        # Paddle predictors, then Paddle eager.
        self.group = ("0 torch" if label.startswith("torch") else
                      "2 paddle eager" if label.endswith("eager") else "1 paddle predictor")
        self.build_seconds, self.extra = build_seconds, extra or {}


def _torch_path(arch, state, fused, mode, dtype, device, x_np) -> _Path:
    import torch

    start = time.perf_counter()
    model = torch_model(arch, state, fused=fused, device=device, dtype=dtype)
    dev = torch_device(device)
    x = torch.from_numpy(x_np).to(device=dev, dtype=torch_dtype(dtype))
    sync = torch.cuda.synchronize if dev != "cpu" else (lambda: None)
    out = {}
    if mode == "eager":
        def step():
            with torch.inference_mode():
                out["y"] = model(x)
        label = f"torch {torch.__version__} eager"
    else:
        compiled = inference.TorchCompiled(model)
        x = compiled.prepare(x)
        compiled(x)  # compiles for this shape; counted in build time, not in the timing
        sync()

        def step():
            out["y"] = compiled(x)
        label = f"torch {torch.__version__} compile (Inductor, frozen weights, channels-last)"
    return _Path(step, sync, lambda: out["y"].float().cpu().numpy(), label, time.perf_counter() - start)


def _paddle_path(arch, state, fused, mode, dtype, device, x_np) -> _Path:
    import paddle

    start = time.perf_counter()
    paddle.set_device(device)
    model = paddle_model(arch, state, fused=fused)
    if mode == "eager":
        if dtype != "float32" and (device == "cpu" or dtype == "bfloat16"):
            raise _Unsupported(f"Paddle eager has no {dtype} {'CPU ' if device == 'cpu' else ''}kernels here")
        x = paddle.to_tensor(x_np)
        if dtype == "float16":
            # Paddle's model.half(): BN statistics stay float32, as its kernels require.
            model = paddle.amp.decorate(models=model, level="O2", dtype="float16")
            x = x.astype("float16")
        sync = (lambda: paddle.device.synchronize()) if device != "cpu" else (lambda: None)
        out = {}

        def step():
            with paddle.no_grad():
                out["y"] = model(x)
        return _Path(step, sync, lambda: out["y"].astype("float32").numpy(), f"paddle {paddle.__version__} eager",
                     time.perf_counter() - start)
    try:
        pred = inference.PaddlePredictor(model, arch, precision=dtype, device=device)
    except ValueError as e:  # a precision this device cannot run: reported, not hidden
        raise _Unsupported(str(e)) from None
    pred.set_input(x_np)  # device-resident input: copied once, reused by every run
    box = {}

    def step():
        pred.run()
        # Fetching the logits (batch x 1000 float32) is how a predictor run is
        # synchronised; it is part of every timed iteration.
        box["y"] = pred.output()
    return _Path(step, lambda: None, lambda: box["y"], f"paddle {paddle.__version__} {pred.label}",
                 time.perf_counter() - start, {"startup_check": pred.startup_check, "_close": pred.close})


class _Unsupported(Exception):
    pass


def _as_tuple(v, kind) -> tuple:
    return (v,) if isinstance(v, kind) else tuple(v)


def measure_latency(arch: str, official_state=None, frameworks: Sequence[str] = FRAMEWORKS,
                    modes: Sequence[str] = MODES, batch_size: Optional[int] = None,
                    warmup: int = DEFAULT_WARMUP, iters: int = DEFAULT_ITERS,
                    dtype: Union[str, Sequence[str]] = "float32", fuse_bn: Union[bool, Sequence[bool]] = False,
                    device: Optional[str] = None, floor: bool = True, pipeline_workers: Sequence[int] = (),
                    threads: Optional[int] = None, interleave: bool = True,
                    only: Optional[Sequence[Sequence[str]]] = None,
                    progress: Optional[Callable[[str], None]] = None) -> dict:
    """Latency of GENet `arch` for every framework x mode x dtype x folding.

    official_state: official-layout weights (seeded when None).
    batch_size: default 64 on a GPU, 1 on a CPU (`batch_note` says so).
    dtype, fuse_bn: one value or a sequence (every combination is timed).
    floor: also measure the compute floor for each dtype.
    pipeline_workers: decode+preprocess images/s with these worker counts.
    interleave: time the paths round-robin (iteration i of every path, then
      i + 1), so a change in the machine's load hits all paths alike and the
      ratios stay fair; False times each path's iterations in one block.
    only: (framework, mode, dtype) triples to time instead of the full product.
    threads: for both frameworks (default: the configured count, all cores
      unless told otherwise); set here, since `import paddle` may have left
      Paddle on one.
    Returns a JSON-ready dict: 'results' (one entry per configuration, with
    'skipped' and a reason where a framework cannot run it), 'environment',
    'compute_floor', 'pipeline'.
    """
    import paddle  # noqa: F401  (imported before the thread count is applied to it)

    from parity.core.compare import compare, top1_agreement
    from parity.core.reference import float64_logits, torch_logits
    from parity.core.seeded import seeded_input, seeded_state
    from parity.core.tolerances import judge, reference_row

    configure_threads(threads or configured_threads())
    arch = canonical_arch(arch)
    device = device or default_device()
    device = "gpu:0" if device == "gpu" else device.replace("cuda", "gpu")
    kind = "cpu" if device == "cpu" else "gpu"
    if kind == "gpu":
        from parity.core.frameworks import pin_tf32_off

        pin_tf32_off()
    dtypes = tuple(check_dtype(d) for d in _as_tuple(dtype, str))
    folds = _as_tuple(fuse_bn, bool)
    bad = [f for f in frameworks if f not in FRAMEWORKS] + [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown framework/mode {bad}; frameworks: {FRAMEWORKS}, modes: {MODES}")
    batch = int(batch_size or DEFAULT_BATCH[kind])
    say = progress or (lambda msg: None)
    seeded = official_state is None
    state = seeded_state(arch) if seeded else official_state
    x = seeded_input(arch, batch)
    env = environment(device, ",".join(dtypes))  # before timing: the load average says how busy the cores were

    # Every path's logits are judged by the project's rule (parity.core.tolerances):
    # the truth is the float64 recomputation (unfolded weights) on the same
    # input, the bar eager torch (unfolded) at the path's dtype.
    say(f"GENet_{arch} batch {batch} on {device}: the float64 reference logits")
    truth = float64_logits(arch, state, x)  # torch_ref float64, BN unfolded
    bars = {}

    def bar(dt):
        if dt not in bars:
            bars[dt] = torch_logits(arch, state, x, device=device, dtype=dt)
        return bars[dt]

    floors = {}
    if floor:  # probed before and after the timing; the faster rate counts
        say("compute floor: best conv/matmul rate")
        floors = {dt: compute_floor(arch, device, dt) for dt in dtypes if not (kind == "cpu" and dt == "float16")}

    results, paths = [], []
    for fused in folds:
        states = layout_states(arch, state, fused)
        for fw in frameworks:
            for mode in modes:
                for dt in dtypes:
                    if only is not None and (fw, mode, dt) not in {tuple(c) for c in only}:
                        continue
                    entry = {"framework": fw, "mode": mode, "dtype": dt, "bn_folded": fused, "batch_size": batch,
                             "warmup": warmup}
                    results.append(entry)
                    what = f"building GENet_{arch} {fw} {mode} {dt}{' BN-folded' if fused else ''}"
                    say(f"{what}, batch {batch}" + BUILD_NOTES.get((fw, mode), ""))
                    try:
                        make = _torch_path if fw == "torch" else _paddle_path
                        with heartbeat(say, what):  # a compilation reports nothing for up to a minute
                            paths.append((entry, make(arch, states[0] if fw == "torch" else states[1], fused, mode,
                                                      dt, device, x)))
                    except _Unsupported as e:
                        entry["skipped"] = str(e)
    try:
        n_paths = len(paths)
        say(f"warming up {n_paths} paths ({warmup} iterations each)")

        def timing(estimate):
            say(f"timing {n_paths} paths x {iters} iterations" + (", interleaved" if interleave else "")
                + (f", about {estimate:.0f} s" if estimate is not None else ""))
        # Grouped within each round, with a pause at each group switch. Paddle
        # eager goes last: run just before a predictor it slowed the predictor
        # by ~50% here (measured: 30 vs 20.5 ms/img, GENet_large batch 8).
        order = sorted(range(len(paths)), key=lambda i: paths[i][1].group)
        before = contention.reading()
        timed = _time_paths([paths[i][1] for i in order], warmup, iters, interleave, pause=SWITCH_PAUSE_S,
                            on_warm=timing)
        env["other_load"] = contention.other_load(before)  # other work on the cores while timing
        times = [None] * len(paths)
        for i, seconds in zip(order, timed):
            times[i] = seconds
        for (entry, path), seconds in zip(paths, times):
            logits = path.fetch()
            d = compare(f"{path.label} logits", logits, bar("float32"))
            if (entry["framework"], entry["mode"], entry["bn_folded"]) == ("torch", "eager", False):
                # This path is the bar itself (eager torch, unfolded, at its dtype): a reference row, not a verdict.
                check = reference_row(f"{path.label} logits", logits, truth, entry["dtype"], path.label)
            else:
                j = judge(f"{path.label} logits", logits, truth, reference=bar(entry["dtype"]), dtype=entry["dtype"],
                          candidate_label=path.label, reference_label=f"torch eager {entry['dtype']}")
                check = {**j.to_dict(), "pass": j.passed}
            entry.update({"label": path.label, "build_seconds": path.build_seconds,
                          **summarize_times(seconds, batch), **{k: v for k, v in path.extra.items() if k[0] != "_"},
                          # every timed iteration, batch ms in timing order (the distribution plots)
                          "iteration_ms": [round(1e3 * t, 6) for t in seconds],
                          # judged by the rule; rel L2, cosine and top-1 against torch eager float32 reported
                          "check": {**check, "rel_l2": d.rel_l2, "cosine": d.cosine,
                                    "top1_agreement": top1_agreement(logits, bar("float32"))},
                          "threads_after": thread_report()})
    finally:
        for _, path in paths:
            close = path.extra.get("_close")
            if close:
                close()
    del paths
    if floor:
        say("compute floor again")
        for dt, before in floors.items():
            after = compute_floor(arch, device, dt)
            floors[dt] = after if after["best_gflops"] > before["best_gflops"] else before
            floors[dt]["probed"] = "before and after the timing; the faster kept"
    out = {"arch": f"GENet_{arch}", "num_classes": state_classes(state, arch, "official"), "device": device,
           "batch_size": batch,
           "batch_note": (f"batch {batch}" + (" (the CPU default; the authors' convention, batch 64, is the GPU "
                                               "default)" if kind == "cpu" and batch_size is None else "")),
           "weights": "seeded (numpy seed 2020, not trained)" if seeded else "given",
           "input": "seeded noise, resident on the device before timing",
           "warmup": warmup, "iters": iters, "interleaved": interleave, "results": results,
           "environment": {**env, "threads_end": thread_report(),
                           "load_average_end": [round(v, 2) for v in os.getloadavg()]}}
    if floor:
        out["compute_floor"] = floors
    if pipeline_workers:
        say("input pipeline: decode + preprocess")
        out["pipeline"] = [pipeline_rate(arch, w) for w in pipeline_workers]
    return out


def ratio_table(result: dict, baseline=("torch", "eager", "float32", False)) -> List[dict]:
    """Rows for a printed table: each configuration's median ms/img and its
    ratio to `baseline` (framework, mode, dtype, bn_folded) and to the floor."""
    entries = result["results"]
    base = next((e for e in entries if "skipped" not in e and
                 (e["framework"], e["mode"], e["dtype"], e["bn_folded"]) == baseline), None)
    rows = []
    for e in entries:
        row = {k: e[k] for k in ("framework", "mode", "dtype", "bn_folded")}
        if "skipped" in e:
            row["skipped"] = e["skipped"]
        else:
            ms = e["ms_per_image"]["median"]
            floor = result.get("compute_floor", {}).get(e["dtype"])
            row.update({"label": e["label"], "median": ms, "p90": e["ms_per_image"]["p90"],
                        "p99": e["ms_per_image"]["p99"], "images_per_s": e["images_per_s"],
                        "vs_baseline": ms / base["ms_per_image"]["median"] if base else None,
                        "vs_floor": ms / floor["ms_per_image"] if floor else None,
                        "check_pass": e["check"]["pass"], "check": check_word(e["check"]),
                        "margin": e["check"]["margin"],
                        "rel_l2": e["check"]["rel_l2"],
                        "top1_agreement": e["check"]["top1_agreement"]})
        rows.append(row)
    return rows
