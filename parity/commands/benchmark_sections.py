"""The measurements of the benchmark script (`python -m parity.commands.benchmarks`),
one function per section, each returning the section's part of the JSON result.

Whole processes are timed from outside (`run_process`: wall time and peak RSS
from wait4), repeated, and set against a yardstick process doing the least the
same job needs (parity.commands.benchmark_workloads). The targets each ratio
is judged against are stated here, once (TARGETS).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from parity.commands.benchmark_workloads import (COMPUTE_SCRIPT, EXPORT_SCRIPT, FLOOR_SCRIPT,
                                                 PLAIN_FORWARD_SCRIPT, PLAIN_TRAINING_SCRIPT)

TARGETS = {
    "convert_no_verify_extra_s": 0.5,  # wall over the floor
    "convert_no_verify_extra_rss": 1.0,  # peak RSS over the floor, in checkpoint sizes
    "convert_verify_extra_s": 2.0,
    "layer_diff_time_ratio": 2.0,  # vs two plain forward passes
    "paddle_fp32_vs_torch_eager": 0.85,
    "paddle_fp32_vs_floor": 1.1,
    "paddle_bf16_vs_torch_eager": 0.45,
    "train_time_ratio": 4.0,  # vs the two frameworks' own training steps
    "eval_fast_vs_eager": 2.5,  # images/s of `eval`'s loop (both frameworks), default runner vs --runner eager
    "eval_fast_vs_bound": 0.8,  # ... vs min(decoding alone, both fast runners alone)
}
# float32-sized copies of a block's activations the layer diff holds at once:
# torch float32, Paddle float32 and the float64 reference (twice the bytes).
LAYER_DIFF_SIDES = 4


# ---------------------------------------------------------------- whole processes
def run_process(cmd: Sequence[str], env: Dict[str, str], cwd: Optional[str] = None) -> dict:
    """Wall time and peak RSS of one child process (its own rusage, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{stderr[-2000:]}")
    # ru_maxrss is in KiB on Linux
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": stdout}


def repeated(cmd: Sequence[str], env: Dict[str, str], repeats: int, warmup: int = 1) -> dict:
    """Median wall time and peak RSS over `repeats` runs after `warmup` runs
    (the first run pays for cold file caches)."""
    for _ in range(warmup):
        run_process(cmd, env)
    runs = [run_process(cmd, env) for _ in range(repeats)]
    return {"wall_s": statistics.median(r["wall_s"] for r in runs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "runs_wall_s": [r["wall_s"] for r in runs], "runs_peak_rss_mb": [r["peak_rss_mb"] for r in runs],
            "repeats": repeats, "warmup_runs": warmup, "last_stdout": runs[-1]["stdout"]}


def printed_figures(stdout: str) -> dict:
    """The figures a workload of parity.commands.benchmark_workloads printed:
    its last line of stdout, one JSON object."""
    return json.loads(stdout.strip().splitlines()[-1])


def child_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "GENET_THREADS": str(threads)})
    return env


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)



# ---------------------------------------------------------------- sections
def bench_conversion(ckpts: Dict[str, str], work: str, env: Dict[str, str], threads: int, repeats: int,
                     say) -> List[dict]:
    rows = []
    for arch, src in ckpts.items():
        size_mb = os.path.getsize(src) / 2 ** 20
        dst = os.path.join(work, f"GENet_{arch}.pdparams")
        say(f"conversion GENet_{arch}: floor process")
        floor = repeated([sys.executable, "-c", FLOOR_SCRIPT, src, os.path.join(work, "floor.bin")], env, repeats)
        convert = [_bin("genet-convert"), src, dst, "--force", "--quiet", "--threads", str(threads)]
        say(f"conversion GENet_{arch}: genet-convert --no-verify")
        plain = repeated(convert + ["--no-verify"], env, repeats)
        say(f"conversion GENet_{arch}: genet-convert (verified)")
        verified = repeated(convert, env, repeats)
        row = {"arch": arch, "checkpoint_mb": size_mb, "floor": floor, "no_verify": plain, "verify": verified,
               "no_verify_extra_s": plain["wall_s"] - floor["wall_s"],
               "no_verify_extra_rss_mb": plain["peak_rss_mb"] - floor["peak_rss_mb"],
               "verify_extra_s": verified["wall_s"] - floor["wall_s"],
               "verify_extra_rss_mb": verified["peak_rss_mb"] - floor["peak_rss_mb"]}
        row["targets"] = {
            "no_verify_time": row["no_verify_extra_s"] <= TARGETS["convert_no_verify_extra_s"],
            "no_verify_memory": row["no_verify_extra_rss_mb"] <= TARGETS["convert_no_verify_extra_rss"] * size_mb,
            "verify_time": row["verify_extra_s"] <= TARGETS["convert_verify_extra_s"]}
        for r in (floor, plain, verified):
            r.pop("last_stdout")
        rows.append(row)
    return rows



def bench_train(ckpt: str, work: str, env: Dict[str, str], threads: int, repeats: int, batch: int, steps: int,
                say) -> dict:
    say(f"training parity GENet_small batch {batch}, {steps} steps: the frameworks' own steps")
    plain = repeated([sys.executable, "-c", PLAIN_TRAINING_SCRIPT, ckpt, str(batch), str(steps)], env, repeats)
    inner_plain = printed_figures(plain.pop("last_stdout"))
    say(f"training parity GENet_small batch {batch}, {steps} steps: genet-parity train")
    report = os.path.join(work, "train.json")
    tool = repeated([_bin("genet-parity"), "train", "--weights", ckpt, "--batch-size", str(batch), "--steps",
                     str(steps), "--summary-only", "--json", report, "--threads", str(threads)], env, repeats)
    tool.pop("last_stdout")
    with open(report) as f:
        inner = json.load(f)
    ratio = tool["wall_s"] / plain["wall_s"]
    tool_steps = sum(s["seconds"] for s in inner["steps_summary"])
    return {"batch_size": batch, "steps": steps, "plain_training": plain, "train": tool, "time_ratio": ratio,
            "plain_phases_s": inner_plain, "train_steps_s": tool_steps,
            "steps_ratio": tool_steps / inner_plain["steps_s"], "train_phases_s": inner.get("timings_s"),
            "train_pass": inner.get("pass"), "targets": {"time": ratio <= TARGETS["train_time_ratio"]}}


def photo_list(work: str, n_images: int) -> Tuple[str, str]:
    """The bundled photos repeated to `n_images`, as a data folder and list."""
    import shutil

    from parity.inputs.sample_images import bundled_photos

    folder = os.path.join(work, "eval_photos")
    os.makedirs(folder, exist_ok=True)
    photos = bundled_photos()
    lines = []
    for i in range(n_images):
        name = f"{i:05d}.JPEG"
        shutil.copyfile(photos[i % len(photos)], os.path.join(folder, name))
        lines.append(f"{name} {i % 1000}")
    listing = os.path.join(work, "eval_list.txt")
    with open(listing, "w") as f:
        f.write("\n".join(lines) + "\n")
    return folder, listing



def bench_eval(arch: str, work: str, env: Dict[str, str], threads: int, n_images: int, batch: int, say) -> dict:
    """Whole `genet-parity eval` processes of both runners, and, measured
    alone in the same run, the two yardsticks of the evaluation's target:
    decoding alone (the eval's decode pool, all cores, nothing else running)
    and the models alone (both fast runners in turn on one seeded batch, no
    decoding). The eval's own rate is its loop's (`throughput`: decoding,
    both models and the writes as they overlapped), without the start-up
    work (building the runners, the fast paths' checks, the start-up logit
    check), which a 50,000-image run pays once; the whole-process rate with
    it is reported beside it."""
    from parity.latency.bench import pipeline_rate

    folder, listing = photo_list(work, n_images)
    runs = {}
    for runner in ("eager", "fast"):
        say(f"eval GENet_{arch}, {n_images} images, --runner {runner}")
        summary = os.path.join(work, f"eval_{runner}.json")
        cmd = [_bin("genet-parity"), "eval", "--seeded", "--arch", arch, "--data", folder, "--list", listing,
               "--batch-size", str(batch), "--runner", runner, "--threads", str(threads),
               "--results", os.path.join(work, f"eval_{runner}.jsonl"), "--json", summary]
        r = run_process(cmd, env)
        r.pop("stdout")
        with open(summary) as f:
            s = json.load(f)
        t = s["throughput"]
        steady_s = t["run_s"] - t["check_s"]
        r.update(images_per_s=n_images / r["wall_s"], runners=s["runners"], logit_checks_pass=s["logit_checks_pass"],
                 throughput=t, run_images_per_s=t["images"] / steady_s)
        runs[runner] = r
    say(f"eval yardsticks: decoding alone ({threads} workers), the fast runners alone")
    decode = pipeline_rate(arch, workers=threads, n_images=min(n_images, 256), batch_size=batch)
    compute = run_process([sys.executable, "-c", COMPUTE_SCRIPT, "fast", arch, str(batch), str(max(4, 64 // batch))],
                          env)
    compute.update(printed_figures(compute.pop("stdout")))
    bound = min(decode["images_per_s"], compute["images_per_s"])
    fast, eager = runs["fast"]["run_images_per_s"], runs["eager"]["run_images_per_s"]
    return {"arch": arch, "n_images": n_images, "batch_size": batch, "runs": runs,
            "decode_alone": decode, "models_alone": compute, "bound_images_per_s": bound,
            "fast_vs_bound": fast / bound, "fast_vs_eager": fast / eager,
            "whole_process_fast_vs_eager": runs["fast"]["images_per_s"] / runs["eager"]["images_per_s"],
            "targets": {"fast_vs_bound": fast / bound >= TARGETS["eval_fast_vs_bound"],
                        "fast_vs_eager": fast / eager >= TARGETS["eval_fast_vs_eager"]}}


def bench_distributed(arch: str, work: str, env: Dict[str, str], threads: int, n_images: int, batch: int,
                      say) -> dict:
    """`eval` of both frameworks as one process with `threads` threads and
    decoding workers, and as a torchrun job of 2 processes with half each
    (the same cores), on the same photos: images/s of the whole command
    (start-up included) and of the job's loop (`throughput`), and the
    2-process / 1-process ratios. Both runs must give the same predictions."""
    folder, listing = photo_list(work, n_images)
    half = max(1, threads // 2)
    runs = {}
    for n, per in ((1, threads), (2, half)):
        say(f"eval GENet_{arch}, {n_images} images, {n} process{'es' if n > 1 else ''} x {per} threads")
        summary, results = os.path.join(work, f"dist{n}.json"), os.path.join(work, f"dist{n}.jsonl")
        cmd = [_bin("genet-parity"), "eval", "--seeded", "--arch", arch, "--data", folder, "--list", listing,
               "--batch-size", str(batch), "--threads", str(per), "--workers", str(per), "--results", results,
               "--json", summary]
        if n > 1:
            cmd = [_bin("torchrun"), "--standalone", "--nproc_per_node", str(n)] + cmd
        r = run_process(cmd, {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR")})
        r.pop("stdout")
        with open(summary) as f:
            s = json.load(f)
        with open(results) as f:
            preds = [json.loads(line).get("pred") for line in f if '"type":"image"' in line]
        t = s["throughput"]
        r.update(processes=n, threads_per_process=per, images_per_s=n_images / r["wall_s"],
                 loop_images_per_s=t["images_per_s"], loop_s=t["run_s"], runners=s["runners"], predictions=preds)
        runs[n] = r
    same = runs[1].pop("predictions") == runs[2].pop("predictions")
    return {"arch": arch, "n_images": n_images, "batch_size": batch, "threads": threads,
            "runs": {str(k): v for k, v in runs.items()}, "same_predictions": same,
            "whole_command_ratio": runs[2]["images_per_s"] / runs[1]["images_per_s"],
            "loop_ratio": runs[2]["loop_images_per_s"] / runs[1]["loop_images_per_s"]}


def bench_layer_diff(ckpt: str, work: str, env: Dict[str, str], threads: int, repeats: int, batch: int,
                     say) -> dict:
    say(f"layer diff GENet_large batch {batch}: two plain forward passes")
    plain = repeated([sys.executable, "-c", PLAIN_FORWARD_SCRIPT, ckpt, str(batch)], env, repeats)
    sizes = {k: v / 2 ** 20 for k, v in printed_figures(plain.pop("last_stdout")).items()}
    say(f"layer diff GENet_large batch {batch}: genet-parity layers")
    report = os.path.join(work, "layers.json")
    diff = repeated([_bin("genet-parity"), "layers", "--weights", ckpt, "--batch-size", str(batch),
                     "--summary-only", "--json", report, "--threads", str(threads)], env, repeats)
    diff.pop("last_stdout")
    with open(report) as f:
        inner = json.load(f)
    ratio = diff["wall_s"] / plain["wall_s"]
    extra_mb = diff["peak_rss_mb"] - plain["peak_rss_mb"]
    # The diff holds, for the block in flight, torch float32, Paddle float32 and
    # the float64 reference (two float32's worth), plus the float64 model copy.
    block_bound = LAYER_DIFF_SIDES * sizes["block_activation_bytes"] + sizes["float64_weight_bytes"]
    network_bound = LAYER_DIFF_SIDES * sizes["network_activation_bytes"] + sizes["float64_weight_bytes"]
    return {"batch_size": batch, "plain_forward": plain, "layer_diff": diff, "time_ratio": ratio,
            "extra_rss_mb": extra_mb, "block_activations_mb": sizes["block_activation_bytes"],
            "network_activations_mb": sizes["network_activation_bytes"],
            "float64_weights_mb": sizes["float64_weight_bytes"],
            "block_bound_mb": block_bound, "network_bound_mb": network_bound,
            "layer_diff_pass": inner.get("pass"), "layer_diff_phases_s": inner.get("timings_s"),
            "targets": {"time": ratio <= TARGETS["layer_diff_time_ratio"], "memory": extra_mb <= block_bound},
            }


def bench_latency(official, batches: Sequence[int], warmup: int, iters: int, say) -> List[dict]:
    from parity.latency.bench import measure_latency

    combos = [("torch", "eager", "float32"), ("torch", "best", "float32"), ("paddle", "eager", "float32"),
              ("paddle", "best", "float32"), ("paddle", "best", "bfloat16")]
    return [measure_latency("large", official, batch_size=batch, warmup=warmup, iters=iters,
                            dtype=("float32", "bfloat16"), fuse_bn=(False, True), only=combos, progress=say)
            for batch in batches]


def latency_summary(result: dict) -> dict:
    """Ratios the targets are stated in, for one batch size."""
    from parity.core.tolerances import failed

    timed = [e for e in result["results"] if "skipped" not in e]

    def best(fw, mode, dtype):
        cands = [e for e in timed if (e["framework"], e["mode"], e["dtype"]) == (fw, mode, dtype)]
        return min(cands, key=lambda e: e["ms_per_image"]["median"]) if cands else None

    eager = next(e for e in timed if (e["framework"], e["mode"], e["dtype"], e["bn_folded"])
                 == ("torch", "eager", "float32", False))
    base = eager["ms_per_image"]["median"]
    floor = result["compute_floor"]["float32"]["ms_per_image"]
    paddle32 = min((e for e in timed if e["framework"] == "paddle" and e["dtype"] == "float32"),
                   key=lambda e: e["ms_per_image"]["median"])
    paddle16 = best("paddle", "best", "bfloat16")
    s = {"batch_size": result["batch_size"], "torch_eager_ms": base, "floor_ms": floor,
         "paddle_best_fp32": {"path": f"{paddle32['mode']}{' BN-folded' if paddle32['bn_folded'] else ''}",
                              "ms": paddle32["ms_per_image"]["median"],
                              "vs_torch_eager": paddle32["ms_per_image"]["median"] / base,
                              "vs_floor": paddle32["ms_per_image"]["median"] / floor}}
    s["targets"] = {"paddle_fp32_vs_torch_eager": s["paddle_best_fp32"]["vs_torch_eager"]
                    <= TARGETS["paddle_fp32_vs_torch_eager"],
                    "paddle_fp32_vs_floor": s["paddle_best_fp32"]["vs_floor"] <= TARGETS["paddle_fp32_vs_floor"],
                    "every_path_within_dtype_tolerance": not any(failed(e["check"]) for e in timed)}
    if paddle16:
        ms = paddle16["ms_per_image"]["median"]
        s["paddle_best_bf16"] = {"path": f"best{' BN-folded' if paddle16['bn_folded'] else ''}", "ms": ms,
                                 "vs_torch_eager": ms / base,
                                 "top1_agreement_vs_fp32": paddle16["check"]["top1_agreement"],
                                 "rel_l2_vs_fp32": paddle16["check"]["rel_l2"]}
        s["targets"]["paddle_bf16_vs_torch_eager"] = ms / base <= TARGETS["paddle_bf16_vs_torch_eager"]
    return s


def bench_pipeline(workers: Sequence[int], n_images: int, say) -> List[dict]:
    from parity.latency.bench import pipeline_rate

    say("input pipeline")
    return [pipeline_rate("large", w, n_images=n_images) for w in workers]


def bench_export(archs: Sequence[str], env: Dict[str, str], exports: int, say) -> List[dict]:
    """Paddle's inference export (what each predictor's start pays) of new
    models, the blocks' forward code run as it is (the default) against
    dy2static transforming it: a process per way and arch, `exports` timed
    exports each after one untimed (the first in a process pays for Paddle's
    own first-use set-up)."""
    rows = []
    for arch in archs:
        say(f"Paddle export of GENet_{arch}, both ways, {exports} each")
        ways = {}
        for way in ("as-is", "transformed"):
            r = run_process([sys.executable, "-c", EXPORT_SCRIPT, way, arch, str(exports + 1)], env)
            ways[way] = printed_figures(r["stdout"])["seconds"][1:]
        med = {w: statistics.median(v) for w, v in ways.items()}
        rows.append({"arch": arch, "exports": exports, "seconds": ways, "median_s": med,
                     "transformed_vs_as_is": med["transformed"] / med["as-is"]})
    return rows
