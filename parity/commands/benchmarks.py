"""Every speed and memory claim of the project, measured side by side in one run.

    python -m parity.commands.benchmarks --json benchmarks.json [--quick] [--threads N]

1. Conversion of each arch: `genet-convert` with and without verification, as
   whole processes (wall time, peak RSS), against the floor: a process that
   only imports torch and paddle and reads and writes the same bytes.
2. Layer diff of GENet_large at batch 8 (`genet-parity layers`, whole
   process) against a process doing two plain forward passes (one per
   framework) with the same weights and input.
3. Inference latency of GENet_large at batch 1 and 8 (`parity.latency.bench`):
   torch eager and compiled, Paddle eager, predictor, bfloat16 predictor,
   each with and without BN folding, against the compute floor (FLOPs over
   the best conv/matmul rate measured in this run).
4. The evaluation input pipeline's images/s with 1 and 2 workers against the
   model's images/s.
5. Training parity of GENet_small, batch 8, 3 steps (`genet-parity train`,
   whole process) against a process running the same three training steps
   in both frameworks, nothing compared.
6. `genet-parity eval` of both frameworks, default runners against eager.
7. `genet-parity eval` as one torchrun job of 2 processes against 1 process
   on the same photos and the same cores (images/s of the whole command and
   of the evaluation loop, and their ratios).

Each process is repeated (median of 5 after one warm-up run; --quick: fewer,
stated in the output). Thread counts are set identically for both frameworks
and every process, and reported. Seeded weights (numpy seed 2020) are written
as official checkpoints into a temporary folder; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

ARCHS = ("small", "normal", "large")

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


def child_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "GENET_THREADS": str(threads)})
    return env


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


FLOOR_SCRIPT = ("import sys, torch, paddle\n"
                "data = open(sys.argv[1], 'rb').read()\n"
                "open(sys.argv[2], 'wb').write(data)\n")

PLAIN_FORWARD_SCRIPT = "from parity.commands.benchmarks import plain_forward; plain_forward()"


def plain_forward() -> None:
    """Child process: two plain forward passes (torch, then Paddle) of the
    checkpoint in argv[1] at batch argv[2], with what the layer diff loads;
    prints the activation bytes of the largest block, of the whole network and
    of the float64 weights as JSON (the yardsticks for the layer diff's memory)."""
    from parity.core.runtime import configure_threads

    configure_threads()
    import paddle
    import torch

    import paddle_genet
    import torch_ref
    from converters.files.load import load_weights, to_layout
    from parity.core.seeded import seeded_input

    w = load_weights(sys.argv[1])
    batch = int(sys.argv[2])
    x = seeded_input(w.arch, batch)
    t_model = torch_ref.load_state(torch_ref.build(w.arch), to_layout(w, "official"), source=w.path)
    p_model = paddle_genet.load_state(paddle_genet.build(w.arch), to_layout(w, "paddle"), source=w.path)
    # Activation bytes of every module inside each top-level block (leaves and
    # residual-unit outputs): what the layer diff may hold for one block, per side.
    per_block: Dict[str, int] = {}
    hooks = []
    for name, m in t_model.named_modules():
        if name.startswith("module_list.") and not list(m.children()):
            top = ".".join(name.split(".")[:2])
            hooks.append(m.register_forward_hook(
                lambda m, i, o, top=top: per_block.__setitem__(top, per_block.get(top, 0) + o.nelement() * 4)))
    with torch.inference_mode():
        t_model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    with paddle.no_grad():
        p_model(paddle.to_tensor(x))
    print(json.dumps({"block_activation_bytes": max(per_block.values()),
                      "network_activation_bytes": sum(per_block.values()),
                      "float64_weight_bytes": 8 * sum(p.numel() for p in t_model.state_dict().values())}))


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


PLAIN_TRAINING_SCRIPT = "from parity.commands.benchmarks import plain_training; plain_training()"


def plain_training() -> None:
    """Child process: the two frameworks' own training steps and nothing else.
    Both GENets built from the checkpoint in argv[1] (`build(pretrained=)`),
    argv[3] steps of the default recipe at batch argv[2] on the batches
    `genet-parity train` uses, torch then Paddle each step; prints the seconds
    of the steps as JSON."""
    from parity.core.runtime import configure_threads

    configure_threads()
    import paddle
    import torch

    import paddle_genet
    import torch_ref
    from converters.files.load import load_weights
    from parity.training import Recipe, make_batches
    from parity.training.paddle_recipe import paddle_loss, paddle_optimizer

    path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    arch = load_weights(path).arch
    start = time.perf_counter()
    t_model = torch_ref.build(arch, pretrained=path).train()
    p_model = paddle_genet.build(arch, pretrained=path)
    p_model.train()
    recipe = Recipe()
    t_opt = recipe.torch_optimizer(t_model.parameters())
    p_opt = paddle_optimizer(recipe, [p for p in p_model.parameters() if not p.stop_gradient])
    batches = make_batches(arch, steps, batch, 1000)
    built = time.perf_counter()
    seconds = {"torch": 0.0, "paddle": 0.0}
    for x, y in zip(batches.inputs, batches.labels):
        t0 = time.perf_counter()
        t_opt.zero_grad(set_to_none=True)
        recipe.torch_loss(t_model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        t_opt.step()
        t1 = time.perf_counter()
        p_opt.clear_grad()
        paddle_loss(recipe, p_model(paddle.to_tensor(x)), paddle.to_tensor(y)).backward()
        p_opt.step()
        seconds["torch"] += t1 - t0
        seconds["paddle"] += time.perf_counter() - t1
    print(json.dumps({"build_s": built - start, "steps_s": seconds["torch"] + seconds["paddle"],
                      "torch_steps_s": seconds["torch"], "paddle_steps_s": seconds["paddle"]}))


def bench_train(ckpt: str, work: str, env: Dict[str, str], threads: int, repeats: int, batch: int, steps: int,
                say) -> dict:
    say(f"training parity GENet_small batch {batch}, {steps} steps: the frameworks' own steps")
    plain = repeated([sys.executable, "-c", PLAIN_TRAINING_SCRIPT, ckpt, str(batch), str(steps)], env, repeats)
    inner_plain = json.loads(plain.pop("last_stdout").strip().splitlines()[-1])
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


COMPUTE_SCRIPT = "from parity.commands.benchmarks import eval_compute; eval_compute()"


def eval_compute() -> None:
    """Child process: the eval runners of argv[1] ('fast' or 'eager') for
    GENet argv[2] on a seeded batch of argv[3], one warm-up batch then
    argv[4] timed batches, both frameworks in turn as eval runs them and
    nothing else (no decoding, no writes); prints images/s as JSON."""
    from parity.core.runtime import configure_threads

    configure_threads()
    from converters.table.mapping import mapping_table
    from parity.accuracy.evaluate import build_runners
    from parity.core.seeded import seeded_input, seeded_state

    runner, arch, batch, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    official = seeded_state(arch)
    paddle_state = mapping_table(arch).convert(official, "official", "paddle")
    runners = build_runners(arch, ["torch", "paddle"], official, paddle_state, runner=runner)
    x = seeded_input(arch, batch)
    seconds = {fw: 0.0 for fw in runners}
    for i in range(batches + 1):
        for fw, run in runners.items():
            t0 = time.perf_counter()
            run(x)
            if i:
                seconds[fw] += time.perf_counter() - t0
    n = batch * batches
    print(json.dumps({"images": n, "seconds": seconds, "images_per_s": n / sum(seconds.values()),
                      "runners": {fw: r.label for fw, r in runners.items()}}))


def bench_eval(arch: str, work: str, env: Dict[str, str], threads: int, n_images: int, batch: int, say) -> dict:
    """Whole `genet-parity eval` processes of both runners, and, measured
    alone in the same run, the two yardsticks of the issue's target:
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
    compute.update(json.loads(compute.pop("stdout").strip().splitlines()[-1]))
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
    sizes = {k: v / 2 ** 20 for k, v in json.loads(plain.pop("last_stdout").strip().splitlines()[-1]).items()}
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


# ---------------------------------------------------------------- report
def _process_table(title: str, d: dict, rows):
    """A table of `repeated` whole-process runs: (label, key of d) per row."""
    from rich.table import Table

    t = Table(title=title)
    for c in ("step", "median wall s", "peak RSS MB", "runs (s)"):
        t.add_column(c)
    for name, key in rows:
        r = d[key]
        t.add_row(name, f"{r['wall_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
                  ", ".join(f"{s:.1f}" for s in r["runs_wall_s"]))
    return t


def render(result: dict, console) -> None:
    from rich.table import Table

    from parity.latency.bench import ratio_table

    ok = lambda b: "[green]met[/]" if b else "[bold red]MISSED[/]"  # noqa: E731
    if "conversion" in result:
        t = Table(title="1. Conversion (whole processes; median wall s / peak RSS MB)")
        for c in ("arch", "ckpt MB", "floor", "no-verify", "extra", "verify", "extra", "targets"):
            t.add_column(c, justify="left" if c in ("arch", "targets") else "right")
        for r in result["conversion"]:
            f, n, v = r["floor"], r["no_verify"], r["verify"]
            t.add_row(f"GENet_{r['arch']}", f"{r['checkpoint_mb']:.0f}",
                      f"{f['wall_s']:.2f} s / {f['peak_rss_mb']:.0f}", f"{n['wall_s']:.2f} s / {n['peak_rss_mb']:.0f}",
                      f"{r['no_verify_extra_s']:+.2f} s / {r['no_verify_extra_rss_mb']:+.0f}",
                      f"{v['wall_s']:.2f} s / {v['peak_rss_mb']:.0f}",
                      f"{r['verify_extra_s']:+.2f} s / {r['verify_extra_rss_mb']:+.0f}",
                      f"time {ok(r['targets']['no_verify_time'])}, mem {ok(r['targets']['no_verify_memory'])}, "
                      f"verified {ok(r['targets']['verify_time'])}")
        console.print(t)
        console.print("Targets: no-verify <= floor + 0.5 s and floor + 1x checkpoint size; verified <= floor + 2 s.")
    if "layer_diff" in result:
        d = result["layer_diff"]
        console.print(_process_table(f"2. Layer diff, GENet_large batch {d['batch_size']} (whole processes)",
                                     d, (("two plain forward passes", "plain_forward"),
                                         ("genet-parity layers", "layer_diff"))))
        console.print(f"time ratio {d['time_ratio']:.2f}x (target <= {TARGETS['layer_diff_time_ratio']:g}x: "
                      f"{ok(d['targets']['time'])}); extra RSS "
                      f"{d['extra_rss_mb']:.0f} MB vs one block held on every side {d['block_bound_mb']:.0f} MB "
                      f"({LAYER_DIFF_SIDES} x {d['block_activations_mb']:.0f} MB activations of the largest block + "
                      f"{d['float64_weights_mb']:.0f} MB float64 weights; target: {ok(d['targets']['memory'])}) and "
                      f"the whole network held {d['network_bound_mb']:.0f} MB; phases (s): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in (d.get("layer_diff_phases_s") or {}).items()))
    elif "layer_diff_not_measured" in result:
        console.print(f"2. Layer diff: not measured: {result['layer_diff_not_measured']}")
    for lat in result.get("latency", []):
        t = Table(title=f"3. Latency GENet_large, {lat['device']}, batch {lat['batch_size']}, "
                        f"{lat['warmup']} warm-up + {lat['iters']} timed iterations (ms per image)")
        t.add_column("path")
        for c in ("median", "p90", "x torch eager", "x floor", "rel L2", "top-1"):
            t.add_column(c, justify="right")
        short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
        for r in ratio_table(lat):
            name = f"{r['framework']} {r['mode']} {short[r['dtype']]}{' BN-folded' if r['bn_folded'] else ''}"
            if "skipped" in r:
                t.add_row(name, f"not run: {r['skipped']}")
                continue
            t.add_row(name, f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{r['vs_baseline']:.2f}x", f"{r['vs_floor']:.2f}x",
                      f"{r['rel_l2']:.1e}", f"{r['top1_agreement']:.0%}")
        console.print(t)
        s = lat["summary"]
        fl = lat["compute_floor"]
        console.print(f"floor fp32 {fl['float32']['ms_per_image']:.1f} ms/img ({fl['float32']['best_gflops']:.0f} "
                      f"GFLOP/s, {fl['float32']['best_probe']}); Paddle best fp32 ({s['paddle_best_fp32']['path']}) "
                      f"{s['paddle_best_fp32']['vs_torch_eager']:.2f}x torch eager (target <= 0.85: "
                      f"{ok(s['targets']['paddle_fp32_vs_torch_eager'])}), {s['paddle_best_fp32']['vs_floor']:.2f}x "
                      f"floor (target <= 1.1: {ok(s['targets']['paddle_fp32_vs_floor'])})"
                      + (f"; bf16 {s['paddle_best_bf16']['vs_torch_eager']:.2f}x torch eager (target <= 0.45: "
                         f"{ok(s['targets']['paddle_bf16_vs_torch_eager'])}), top-1 agreement with fp32 "
                         f"{s['paddle_best_bf16']['top1_agreement_vs_fp32']:.0%} of {lat['batch_size']} seeded inputs"
                         if "paddle_best_bf16" in s else ""))
    if "pipeline" in result:
        model = result.get("model_images_per_s", {})
        console.print("4. Input pipeline (decode + preprocess, GENet_large crops): " + "; ".join(
            f"{p['workers']} worker{'s' if p['workers'] != 1 else ''} {p['images_per_s']:.0f} img/s"
            for p in result["pipeline"]) + " vs model " + ", ".join(f"{k} {v:.1f} img/s" for k, v in model.items()))
    if "eval" in result:
        d = result["eval"]
        t = Table(title=f"6. Evaluation, both frameworks, GENet_{d['arch']}, {d['n_images']} photos, batch "
                        f"{d['batch_size']} (images/s)")
        for c in ("runner", "loop, no start-up", "whole process", "torch in loop", "paddle in loop", "decode/worker",
                  "paths"):
            t.add_column(c)
        for k, r in d["runs"].items():
            st = r["throughput"]["stages"]
            t.add_row(f"--runner {k}", f"{r['run_images_per_s']:.1f}", f"{r['images_per_s']:.1f} ({r['wall_s']:.0f} s)",
                      f"{st['torch']['images_per_s']:.1f}", f"{st['paddle']['images_per_s']:.1f}",
                      f"{st['decode']['images_per_s']:.0f}", f"{r['runners']['torch']}; {r['runners']['paddle']}")
        console.print(t)
        console.print(f"yardsticks alone: decoding {d['decode_alone']['images_per_s']:.1f} img/s "
                      f"({d['decode_alone']['workers']} workers), both fast runners "
                      f"{d['models_alone']['images_per_s']:.1f} img/s; fast loop / min of them "
                      f"{d['fast_vs_bound']:.2f}x (target >= {TARGETS['eval_fast_vs_bound']:g}x: "
                      f"{ok(d['targets']['fast_vs_bound'])}); fast/eager loop {d['fast_vs_eager']:.2f}x (target >= "
                      f"{TARGETS['eval_fast_vs_eager']:g}x: {ok(d['targets']['fast_vs_eager'])}); whole processes "
                      f"{d['whole_process_fast_vs_eager']:.2f}x")
    if "distributed" in result:
        d = result["distributed"]
        t = Table(title=f"7. Evaluation as a torchrun job, GENet_{d['arch']}, {d['n_images']} photos, batch "
                        f"{d['batch_size']}, {d['threads']} threads in all (images/s)")
        for c in ("processes", "threads each", "whole command", "loop", "wall s"):
            t.add_column(c, justify="right")
        for k, r in d["runs"].items():
            t.add_row(k, str(r["threads_per_process"]), f"{r['images_per_s']:.2f}", f"{r['loop_images_per_s']:.2f}",
                      f"{r['wall_s']:.1f}")
        console.print(t)
        console.print(f"2 processes / 1: whole command {d['whole_command_ratio']:.2f}x, loop {d['loop_ratio']:.2f}x; "
                      f"the same predictions: {'yes' if d['same_predictions'] else '[bold red]NO[/]'}")
    if "train" in result:
        d = result["train"]
        console.print(_process_table(
            f"5. Training parity, GENet_small batch {d['batch_size']}, {d['steps']} steps (whole processes)",
            d, (("the frameworks' own training steps", "plain_training"), ("genet-parity train", "train"))))
        console.print(f"time ratio {d['time_ratio']:.2f}x (target <= {TARGETS['train_time_ratio']:g}x: "
                      f"{ok(d['targets']['time'])}); the steps alone: {d['train_steps_s']:.1f} s against "
                      f"{d['plain_phases_s']['steps_s']:.1f} s ({d['steps_ratio']:.1f}x; torch "
                      f"{d['plain_phases_s']['torch_steps_s']:.1f} s + Paddle {d['plain_phases_s']['paddle_steps_s']:.1f} s); "
                      "train phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in (d.get("train_phases_s") or {}).items()))
    env = result["environment"]
    console.print(f"Machine: {env['cpu']}, {env['cpu_count']} cores; threads {env['threads']}; torch {env['torch']}, "
                  f"paddle {env['paddle']}; load average at start {env['load_average']}, at end "
                  f"{result['load_average_end']}; total {result['seconds']:.0f} s; {result['mode_note']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.commands.benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write every raw figure and ratio as JSON")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats (3 processes, 5 timed iterations), GENet_large conversion only, "
                        "latency at batch 8 only, one layer-diff run; stated in the output")
    p.add_argument("--threads", type=int, help="threads for both frameworks in every process (default: all cores)")
    p.add_argument("--skip", action="append",
                   choices=["conversion", "layer-diff", "eval", "latency", "pipeline", "train", "distributed"],
                   default=[], help="leave a section out (repeatable)")
    args = p.parse_args(argv)

    from parity.core.runtime import configure_threads

    threads = configure_threads(args.threads)
    from converters.conversion.verify import import_paddle

    import_paddle()  # without its import-time notices (see parity.commands.cli)
    from rich.console import Console

    from parity.core.environment import environment
    from parity.core.seeded import seeded_state

    console = Console(width=None if sys.stdout.isatty() else 140)
    say = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')} {msg}[/]")  # noqa: E731
    start = time.perf_counter()
    repeats = 3 if args.quick else 5
    given = argv if argv is not None else sys.argv[1:]
    result = {"command": " ".join(["python -m parity.commands.benchmarks"] + given),
              "mode_note": ("--quick: medians of 3 process runs after 1 warm-up, 5 timed latency iterations, "
                            "1 layer-diff run" if args.quick else
                            "medians of 5 process runs after 1 warm-up, 20 timed latency iterations"),
              "targets": TARGETS, "environment": environment("cpu")}
    env = child_env(threads)
    with tempfile.TemporaryDirectory(prefix="genet_bench_") as work:
        from converters.files.torch_format import write_torch

        archs = ("large",) if args.quick else ARCHS
        ckpts = {}
        for arch in archs + (("small",) if "train" not in args.skip and "small" not in archs else ()):
            ckpts[arch] = os.path.join(work, f"GENet_{arch}.pth")
            write_torch(seeded_state(arch), ckpts[arch])
        if "conversion" not in args.skip:
            result["conversion"] = bench_conversion({a: ckpts[a] for a in archs}, work, env, threads, repeats, say)
        if "layer-diff" not in args.skip:
            result["layer_diff"] = bench_layer_diff(ckpts["large"], work, env, threads, 1 if args.quick else repeats,
                                                    8, say)
        else:
            result["layer_diff_not_measured"] = "skipped with --skip layer-diff"
        if "eval" not in args.skip:
            result["eval"] = bench_eval("large", work, env, threads, 64 if args.quick else 512, 8, say)
        if "distributed" not in args.skip:
            result["distributed"] = bench_distributed("large", work, env, threads, 32 if args.quick else 128, 8, say)
        if "train" not in args.skip:
            result["train"] = bench_train(ckpts["small"], work, env, threads, 1 if args.quick else repeats, 8, 3, say)
    if "latency" not in args.skip:
        official = seeded_state("large")
        lat = bench_latency(official, (8,) if args.quick else (1, 8), 2 if args.quick else 3,
                            5 if args.quick else 20, say)
        for r in lat:
            r["summary"] = latency_summary(r)
        result["latency"] = lat
        b8 = lat[-1]
        timed = [e for e in b8["results"] if "skipped" not in e and not e["bn_folded"]]
        result["model_images_per_s"] = {f"{e['framework']} {e['mode']} {e['dtype']} b{e['batch_size']}":
                                        e["images_per_s"] for e in timed}
    if "pipeline" not in args.skip:
        result["pipeline"] = bench_pipeline((1, 2), 48 if args.quick else 128, say)
    result["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = time.perf_counter() - start
    render(result, console)
    if args.json:
        from converters.files.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
