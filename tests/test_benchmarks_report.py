"""The benchmark script's printed report read where it is read: a hand-made
result of every section (no model runs), drawn at 80 columns in a log and on
an 80-column terminal, and the command itself with stdout a pipe."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from parity.commands.benchmark_report import render
from parity.core.textout import Out

WIDTH = 80
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def process(wall: float, rss: float, runs=5) -> dict:
    return {"wall_s": wall, "peak_rss_mb": rss, "runs_wall_s": [wall + 0.01 * k for k in range(runs)],
            "runs_peak_rss_mb": [rss] * runs, "repeats": runs, "warmup_runs": 1}


def latency_entry(fw, mode, dtype, folded, ms, ok=True) -> dict:
    return {"framework": fw, "mode": mode, "dtype": dtype, "bn_folded": folded, "batch_size": 8,
            "label": f"{fw} {mode} {dtype}", "ms_per_image": {"median": ms, "p90": ms * 1.1, "p99": ms * 1.2},
            "images_per_s": 1000 / ms,
            "check": {"pass": ok, "margin": 0.5, "rel_l2": 5.9e-3, "top1_agreement": 0.875}}


def latency_result() -> dict:
    results = [latency_entry(fw, mode, dt, folded, ms, ok=(fw, dt) != ("paddle", "bfloat16"))
               for folded in (False, True)
               for fw, mode, dt, ms in (("torch", "eager", "float32", 133.44), ("torch", "best", "float32", 131.64),
                                        ("paddle", "eager", "float32", 1148.56), ("paddle", "best", "float32", 24.08),
                                        ("paddle", "best", "bfloat16", 13.32))]
    results.append({"framework": "torch", "mode": "best", "dtype": "bfloat16", "bn_folded": False,
                    "skipped": "no bfloat16 kernels on this CPU"})
    floor = {"float32": {"ms_per_image": 18.0, "best_gflops": 506.0, "flops_per_image": 9.1e9,
                         "best_probe": "torch conv3x3 192->192 @32x32 b8 float32"}}
    lat = {"device": "cpu", "batch_size": 8, "warmup": 3, "iters": 20, "results": results, "compute_floor": floor}
    lat["summary"] = {
        "paddle_best_fp32": {"path": "best BN-folded", "ms": 24.08, "vs_torch_eager": 0.18, "vs_floor": 1.34},
        "paddle_best_bf16": {"path": "best", "ms": 13.32, "vs_torch_eager": 0.10, "top1_agreement_vs_fp32": 0.875,
                             "rel_l2_vs_fp32": 5.9e-3},
        "targets": {"paddle_fp32_vs_torch_eager": True, "paddle_fp32_vs_floor": False,
                    "paddle_bf16_vs_torch_eager": True, "every_path_within_dtype_tolerance": False}}
    return lat


def eval_run(rate: float, wall: float, runners) -> dict:
    stage = lambda r: {"images_per_s": r}  # noqa: E731
    return {"wall_s": wall, "peak_rss_mb": 2345.0, "images_per_s": 512 / wall, "run_images_per_s": rate,
            "runners": {"torch": runners[0], "paddle": runners[1]}, "logit_checks_pass": True,
            "throughput": {"stages": {"torch": stage(1234.5), "paddle": stage(1016.1), "decode": stage(12061.0)}}}


def full_result() -> dict:
    """Every section, with figures as wide as real runs give (and wider)."""
    conversion = [{"arch": arch, "checkpoint_mb": mb, "floor": process(12.17, 10688.0),
                   "no_verify": process(11.47, 10688.0), "verify": process(124.59, 12864.0),
                   "no_verify_extra_s": -0.70, "no_verify_extra_rss_mb": 0.0, "verify_extra_s": 112.42,
                   "verify_extra_rss_mb": 2176.0,
                   "targets": {"no_verify_time": True, "no_verify_memory": mb < 100, "verify_time": False}}
                  for arch, mb in (("small", 31.0), ("normal", 81.0), ("large", 119.0))]
    layer_diff = {"batch_size": 8, "plain_forward": process(108.99, 10977.0), "layer_diff": process(124.44, 11805.0),
                  "time_ratio": 2.72, "extra_rss_mb": 828.0, "block_activations_mb": 181.0,
                  "network_activations_mb": 745.0, "float64_weights_mb": 238.0, "block_bound_mb": 963.0,
                  "network_bound_mb": 3217.0, "layer_diff_pass": True,
                  "layer_diff_phases_s": {"build": 0.5, "torch": 0.8, "paddle_isolated": 5.5, "compare": 3.5},
                  "targets": {"time": False, "memory": True}}
    fast = ("torch 2.13.0+cpu eager channels-last, float32, cpu", "paddle 3.3.1 predictor (oneDNN, float32), cpu")
    eager = ("torch 2.13.0+cpu eager, float32, cpu", "paddle 3.3.1 eager, float32, cpu")
    evaluation = {"arch": "large", "n_images": 512, "batch_size": 8,
                  "runs": {"eager": eval_run(2.4, 1222.0, eager), "fast": eval_run(1006.8, 97.0, fast)},
                  "decode_alone": {"images_per_s": 207.9, "workers": 2}, "models_alone": {"images_per_s": 7.9},
                  "bound_images_per_s": 7.9, "fast_vs_bound": 0.86, "fast_vs_eager": 2.80,
                  "whole_process_fast_vs_eager": 2.30, "targets": {"fast_vs_bound": True, "fast_vs_eager": True}}
    dist_run = lambda n, per, wall: {"wall_s": wall, "peak_rss_mb": 2000.0, "processes": n,  # noqa: E731
                                     "threads_per_process": per, "images_per_s": 128 / wall,
                                     "loop_images_per_s": 256 / wall, "loop_s": wall / 2, "runners": {}}
    distributed = {"arch": "large", "n_images": 128, "batch_size": 8, "threads": 16,
                   "runs": {"1": dist_run(1, 16, 1285.6), "2": dist_run(2, 8, 94.1)}, "same_predictions": False,
                   "whole_command_ratio": 13.66, "loop_ratio": 13.66}
    train = {"batch_size": 8, "steps": 3, "plain_training": process(112.3, 1900.0), "train": process(140.1, 2300.0),
             "time_ratio": 1.25, "plain_phases_s": {"build_s": 1.0, "steps_s": 9.0, "torch_steps_s": 3.0,
                                                    "paddle_steps_s": 6.0},
             "train_steps_s": 11.0, "steps_ratio": 1.2, "train_phases_s": {"build": 1.0, "steps": 11.0},
             "train_pass": True, "targets": {"time": True}}
    environment = {"cpu": "AMD EPYC 7B13 64-Core Processor", "cpu_count": 16, "torch": "2.13.0+cpu",
                   "paddle": "3.3.1", "load_average": [9.44, 9.82, 6.55],
                   "threads": {"configured": 16, "OMP_NUM_THREADS": "16", "torch": 16, "paddle": 16}}
    return {"command": "python -m parity.commands.benchmarks", "mode_note": "medians of 5 process runs",
            "environment": environment, "conversion": conversion, "layer_diff": layer_diff,
            "latency": [latency_result()], "model_images_per_s": {"torch eager float32 b8": 7.5},
            "pipeline": [{"workers": 1, "images_per_s": 104.0}, {"workers": 2, "images_per_s": 207.0}],
            "eval": evaluation, "distributed": distributed, "train": train,
            "export": [{"arch": "small", "exports": 5, "seconds": {"as-is": [1.0] * 5, "transformed": [2.8] * 5},
                        "median_s": {"as-is": 1.0, "transformed": 2.8}, "transformed_vs_as_is": 2.8}],
            "load_average_end": [11.01, 10.63, 8.01], "seconds": 553.0}


def rendered(result: dict, terminal: bool) -> str:
    buf = io.StringIO()
    render(result, Out(buf, width=WIDTH, terminal=terminal))
    return ANSI.sub("", buf.getvalue())


def assert_fits(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"{len(long)} line(s) over {WIDTH} characters, the first: {long[0]!r}"


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_every_section_fits_80_columns(terminal):
    text = rendered(full_result(), terminal)
    assert_fits(text)
    # Nothing dropped silently: every section is there, and at 80 columns
    # every table keeps all its columns.
    for number in range(1, 9):
        assert re.search(rf"^ *{number}\. ", text, re.M), f"section {number} missing"
    assert "Not shown at" not in text
    assert "not run: no bfloat16 kernels on this CPU" in text
    assert "the same predictions: NO" in text
    assert re.search(r"GENet_small +1\.00 +2\.80 +2\.8x +5", text)


def test_log_table_values_in_their_columns():
    """The plain conversion table: each row's cells, split on runs of spaces,
    are the hand-made figures in the header's order."""
    lines = rendered(full_result(), terminal=False).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("arch") and "no-verify" in line)
    assert re.split(r"\s{2,}", lines[head].strip()) == ["arch", "floor", "no-verify", "extra", "target",
                                                        "verified", "extra", "target"]
    assert re.split(r"\s{2,}", lines[head + 2].strip()) == ["GENet_small", "12.17", "11.47", "-0.70", "met",
                                                            "124.59", "+112.42", "MISSED"]


def test_narrow_terminal_names_what_it_leaves_out():
    buf = io.StringIO()
    render(full_result(), Out(buf, width=60, terminal=False))
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "Not shown at 60 columns" in text


def test_command_prints_within_80_columns_to_a_pipe(tmp_path):
    """The script itself, every section skipped (no model runs): what it
    prints to a pipe fits 80 columns and --json is written."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "parity.commands.benchmarks", "--quick", "--json", str(out_json),
                           "--threads", "1"]
                          + [a for s in ("conversion", "layer-diff", "eval", "latency", "pipeline", "train",
                                         "distributed", "export") for a in ("--skip", s)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_fits(proc.stdout)
    assert "2. Layer diff: not measured: skipped with --skip layer-diff" in proc.stdout
    assert json.loads(out_json.read_text())["layer_diff_not_measured"] == "skipped with --skip layer-diff"


def test_pipeline_without_the_model_rate_says_so():
    result = full_result()
    del result["model_images_per_s"]
    text = rendered(result, terminal=False)
    assert "2 workers 207 img/s (the model's rate not measured: latency skipped)" in " ".join(text.split())
    assert "vs model" not in text
