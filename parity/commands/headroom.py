"""The judgement rule's headroom, measured: how far a correct Paddle port's error
sits below the bar the rule sets (parity.core.tolerances).

    python -m parity.commands.headroom [--out docs/rule_headroom.json] [--archs small normal large]
                                       [--batches 1 8 32] [--inputs seeded photo] [--dtypes float32 bfloat16]

The rule passes a candidate when max|candidate - f64| <= FACTOR x max|torch - f64|
(+ a few ulp). The quantity that matters is the ratio

    max|candidate - f64| / max|torch - f64|

on correct code: FACTOR / (worst ratio) is the headroom left for other CPUs,
builds and thread counts. This measures its distribution on seeded weights:

- float32, every mapped module (the layer diff, `parity.layers.diff`):
  Paddle's isolated and accumulated error against torch's;
- at the logits, each fast path the project judges by the rule (torch on
  channels-last tensors, Paddle eager where it has kernels, the Paddle
  inference predictor where this CPU runs it) against eager torch at the same
  precision, in float32 and bfloat16;

for every arch, batch size and input kind asked (seeded noise; the bundled
photos, with their mirror images beyond the 16 photos). A comparison where
torch is exact (a ReLU: its error is 0) has no ratio: it is counted apart,
and whether the candidate was exact there too.

Results go to `--out` (atomically, after every configuration, so an
interrupted run keeps what it measured), keyed by the CPU's model name: a run
on another CPU adds its own entry and keeps the others. `summary` gives the
worst ratio over every CPU measured and the headroom FACTOR / worst.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

ARCHS = ("small", "normal", "large")
BATCHES = (1, 8, 32)
INPUTS = ("seeded", "photo")
DTYPES = ("float32", "bfloat16")
DEFAULT_OUT = os.path.join("docs", "rule_headroom.json")
SCHEMA = "genet-parity/rule-headroom"


def lscpu_model() -> str:
    """The CPU's model name as `lscpu` gives it (/proc/cpuinfo where lscpu is missing)."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from parity.core.runtime import cpu_name

    return cpu_name()


def inputs_for(arch: str, kind: str, batch: int) -> np.ndarray:
    """A float32 batch: seeded noise (parity.core.seeded), or the bundled
    photos through the official preprocessing (mirrored beyond the 16)."""
    if kind == "seeded":
        from parity.core.seeded import seeded_input

        return seeded_input(arch, batch)
    from PIL import Image

    from parity.inputs.preprocessing import preprocess
    from parity.inputs.sample_images import bundled_photos

    photos = bundled_photos()
    out = []
    for i in range(batch):
        with Image.open(photos[i % len(photos)]) as im:
            x = preprocess(im, arch)
        out.append(x[:, :, ::-1] if (i // len(photos)) % 2 else x)
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def distribution(ratios: Sequence[float]) -> Optional[dict]:
    if not len(ratios):
        return None
    r = np.asarray(ratios, np.float64)
    return {"n": int(r.size), "median": float(np.median(r)), "p99": float(np.percentile(r, 99)),
            "max": float(r.max())}


def _ratio(candidate: Optional[float], reference: Optional[float]):
    """candidate / reference error, or None where the reference is exact."""
    if candidate is None or reference is None or reference <= 0:
        return None
    return candidate / reference


def layer_ratios(arch: str, state, x: np.ndarray) -> dict:
    """Every mapped module's Paddle/torch error ratio against float64 (float32 layer diff)."""
    from parity.layers.diff import run_layer_diff

    result = run_layer_diff(arch, state, inputs=x).to_dict()
    out = {}
    for side, cand, ref in (("isolated", "isolated_paddle_error_f64", "isolated_torch_error_f64"),
                            ("accumulated", "paddle_error_f64", "torch_error_f64")):
        rows = [(layer["torch_name"], layer["kind"], _ratio(layer[cand], layer[ref]), layer[cand])
                for layer in result["layers"]]
        ratios = [(r, name, kind) for name, kind, r, _ in rows if r is not None]
        exact = [c for _, _, r, c in rows if r is None]
        d = distribution([r for r, _, _ in ratios]) or {}
        if ratios:
            worst = max(ratios)
            d["worst_layer"], d["worst_kind"] = worst[1], worst[2]
            by_kind: Dict[str, float] = {}
            for r, _, kind in ratios:
                by_kind[kind] = max(by_kind.get(kind, 0.0), r)
            d["max_by_kind"] = by_kind
        d["torch_exact"] = len(exact)
        d["torch_exact_candidate_exact_too"] = sum(1 for c in exact if c == 0)
        out[side] = d
    out["passed"] = result["pass"]
    return out


def logit_ratios(arch: str, state, x: np.ndarray, dtype: str) -> dict:
    """Each fast path's logits error ratio against eager torch at `dtype`
    (both against the float64 recomputation), or why a path did not run."""
    from parity.accuracy.runners import PaddleRunner, TorchRunner
    from parity.core.frameworks import paddle_model
    from parity.core.reference import float64_logits, torch_logits
    from parity.core.tolerances import max_abs_error
    from parity.fastpath.inference import PaddlePredictor, predictor_unavailable

    from converters.table.mapping import mapping_table

    truth = float64_logits(arch, state, x)
    reference_error = max_abs_error(torch_logits(arch, state, x, dtype=dtype), truth)
    paddle_state = mapping_table(arch).convert(state, "official", "paddle")

    def predictor():
        # check=False: the predictor's own start-up check is what is measured here, not a gate.
        pred = PaddlePredictor(paddle_model(arch, paddle_state), arch, precision=dtype, check=False)
        try:
            return pred(x)
        finally:
            pred.close()

    paths = {"torch channels-last": lambda: TorchRunner(arch, state, precision=dtype, channels_last=True)(x)}
    skipped = {}
    if dtype == "float32":
        paths["paddle eager"] = lambda: PaddleRunner(arch, paddle_state, precision=dtype)(x)
    else:
        skipped["paddle eager"] = f"Paddle eager has no {dtype} CPU kernels"
    why = predictor_unavailable("cpu", dtype)
    if why:
        skipped["paddle predictor"] = why
    else:
        paths["paddle predictor"] = predictor
    out = {"torch_eager_error": reference_error, "paths": {}, "skipped": skipped}
    for name, logits in paths.items():
        err = max_abs_error(logits(), truth)
        out["paths"][name] = {"error": err, "ratio": _ratio(err, reference_error)}
    return out


def _write(path: str, data: dict) -> None:
    from converters.files.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise SystemExit(f"{path}: not a headroom file ({e}); move it away or give another --out")
    if data.get("schema") != SCHEMA:
        raise SystemExit(f"{path}: not a headroom file (schema {data.get('schema')!r})")
    return data


def summarize(machines: dict) -> dict:
    """The worst ratio over every CPU and configuration, where, and FACTOR / worst."""
    from parity.core.tolerances import FACTOR

    worst = None
    for cpu, m in machines.items():
        for run in m["runs"]:
            where = f"{cpu}: GENet_{run['arch']} batch {run['batch']} {run['input']} {run['dtype']}"
            for side in ("isolated", "accumulated"):
                d = (run.get("layers") or {}).get(side) or {}
                if d.get("max") is not None and (worst is None or d["max"] > worst["ratio"]):
                    worst = {"ratio": d["max"], "where": f"{where}, {side} {d['worst_layer']} ({d['worst_kind']})"}
            for name, p in ((run.get("logits") or {}).get("paths") or {}).items():
                if p["ratio"] is not None and (worst is None or p["ratio"] > worst["ratio"]):
                    worst = {"ratio": p["ratio"], "where": f"{where}, logits of {name}"}
    if worst is None:
        return {"factor": FACTOR, "worst": None, "headroom": None}
    return {"factor": FACTOR, "worst": worst, "headroom": FACTOR / worst["ratio"],
            "cpus": sorted(machines), "configurations": sum(len(m["runs"]) for m in machines.values())}


def markdown(data: dict) -> str:
    """The measurement as a Markdown table, one row per CPU, arch and dtype
    (over its batch sizes and inputs): the worst ratio of each kind."""
    rows = ["| CPU | variant | dtype | batches | inputs | layer comparisons | isolated median / p99 / max | "
            "accumulated median / p99 / max | logits max (path) |", "| --- " * 9 + "|"]
    for cpu, m in sorted(data["machines"].items()):
        groups: Dict[tuple, list] = {}
        for run in m["runs"]:
            groups.setdefault((run["arch"], run["dtype"]), []).append(run)
        for (arch, dtype), runs in sorted(groups.items(), key=lambda g: (ARCHS.index(g[0][0]), g[0][1])):
            cells = []
            n = 0
            for side in ("isolated", "accumulated"):
                ds = [r["layers"][side] for r in runs if r.get("layers") and r["layers"][side].get("max") is not None]
                n += sum(d["n"] for d in ds) if side == "isolated" else 0
                cells.append(" / ".join(f"{max(d[k] for d in ds):.2f}" for k in ("median", "p99", "max"))
                             if ds else "-")
            logits = [(p["ratio"], name) for r in runs for name, p in r["logits"]["paths"].items()
                      if p["ratio"] is not None]
            worst = max(logits) if logits else None
            rows.append(f"| {cpu} | {arch} | {dtype} | {', '.join(str(b) for b in sorted({r['batch'] for r in runs}))} "
                        f"| {', '.join(sorted({r['input'] for r in runs}))} | {n or '-'} | {cells[0]} | {cells[1]} | "
                        + (f"{worst[0]:.2f} ({worst[1]}) |" if worst else "- |"))
    return "\n".join(rows)


def measure(out: str, archs=ARCHS, batches=BATCHES, inputs=INPUTS, dtypes=DTYPES, threads: Optional[int] = None,
            say=lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict:
    import paddle
    import torch

    from parity.core.runtime import configure_threads, thread_report
    from parity.core.seeded import seeded_state
    from parity.core.tolerances import RULE

    threads = configure_threads(threads)
    cpu = lscpu_model()
    data = _load(out) or {"schema": SCHEMA, "machines": {}}
    data["rule"] = RULE
    machine = {"cpu_model": cpu, "platform": platform.platform(), "torch": torch.__version__,
               "paddle": paddle.__version__, "threads": thread_report(),
               "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "runs": []}
    old = data["machines"].get(cpu, {}).get("runs", [])
    data["machines"][cpu] = machine
    # Batch by batch: every arch at the small batches first, so a cut-short run still covers all three.
    configs = [(a, b, i, d) for b in batches for a in archs for i in inputs for d in dtypes]
    for k, (arch, batch, kind, dtype) in enumerate(configs, 1):
        say(f"[{k}/{len(configs)}] GENet_{arch} batch {batch}, {kind} input, {dtype}")
        start = time.perf_counter()
        state = seeded_state(arch)
        x = inputs_for(arch, kind, batch)
        run = {"arch": arch, "batch": batch, "input": kind, "dtype": dtype,
               "weights": "seeded (numpy default_rng(2020))"}
        # The layer diff runs float32 only (no bfloat16 Paddle eager kernels on CPU).
        run["layers"] = layer_ratios(arch, state, x) if dtype == "float32" else None
        run["logits"] = logit_ratios(arch, state, x, dtype)
        run["seconds"] = time.perf_counter() - start
        machine["runs"].append(run)
        # Configurations this run does not repeat keep their earlier measurement on this CPU.
        done = {(r["arch"], r["batch"], r["input"], r["dtype"]) for r in machine["runs"]}
        kept = [r for r in old if (r["arch"], r["batch"], r["input"], r["dtype"]) not in done]
        data["machines"][cpu] = {**machine, "runs": kept + machine["runs"]}
        data["summary"] = summarize(data["machines"])
        _write(out, data)
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.commands.headroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the measurement file (default {DEFAULT_OUT})")
    p.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    p.add_argument("--markdown", action="store_true", help="print the measurement file as a Markdown table "
                                                           "(medians and p99: the largest over the configurations)")
    args = p.parse_args(argv)
    if args.markdown:
        data = _load(args.out)
        if not data:
            print(f"headroom: {args.out}: no such measurement file", file=sys.stderr)
            return 2
        print(markdown(data))
        return 0
    if any(b < 1 for b in args.batches):
        print("headroom: --batches must be >= 1", file=sys.stderr)
        return 2
    data = measure(args.out, args.archs, args.batches, args.inputs, args.dtypes, args.threads)
    s = data["summary"]
    if s["worst"] is None:
        print("no ratio measured (torch exact everywhere?)")
    else:
        print(f"worst ratio {s['worst']['ratio']:.3g} ({s['worst']['where']}); FACTOR {s['factor']:g} leaves "
              f"{s['headroom']:.2g}x headroom; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
