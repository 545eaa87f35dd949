"""Every speed and memory claim of the project, measured side by side in one run.

    python -m parity.commands.benchmarks --json benchmarks.json [--quick] [--threads N] [--skip SECTION]

Eight sections, each left out with `--skip` and the name in brackets; they
run in the order conversion, layer-diff, eval, distributed, train, latency,
pipeline, export, and print in the order of their numbers:

1. [conversion] Conversion of each arch: `genet-convert` with and without
   verification, as whole processes (wall time, peak RSS), against the floor:
   a process that only imports torch and paddle and reads and writes the
   same bytes.
2. [layer-diff] Layer diff of GENet_large at batch 8 (`genet-parity layers`,
   whole process) against a process doing two plain forward passes (one per
   framework) with the same weights and input: wall time, and peak RSS
   against the activations of the largest block held on every side plus the
   float64 weights.
3. [latency] Inference latency of GENet_large at batch 1 and 8
   (`parity.latency.bench`): torch eager and compiled, Paddle eager,
   predictor, bfloat16 predictor, each with and without BN folding, against
   the compute floor (FLOPs over the best conv/matmul rate measured in this
   run).
4. [pipeline] The evaluation input pipeline's images/s with 1 and 2 workers
   against the model's images/s (from section 3; without it, the pipeline
   alone).
5. [train] Training parity of GENet_small, batch 8, 3 steps (`genet-parity
   train`, whole process) against a process running the same three training
   steps in both frameworks, nothing compared.
6. [eval] `genet-parity eval` of both frameworks, default runners against
   eager, and against its two yardsticks measured alone in the same run:
   decoding alone and both fast runners alone.
7. [distributed] `genet-parity eval` as one torchrun job of 2 processes
   against 1 process on the same photos and the same cores (images/s of the
   whole command and of the evaluation loop, and their ratios).
8. [export] Paddle's inference export (`paddle.jit.save`, paid at every
   predictor's start) of a new model of each arch, the network's forward code
   run as it is while the program is recorded (the default) against dy2static
   transforming every block's forward (median of 5 exports, --quick: small
   only, 3).

Each process is repeated (median of 5 after one warm-up run; --quick: fewer,
stated in the output). Thread counts are set identically for both frameworks
and every process, and reported. Seeded weights (numpy seed 2020) are written
as official checkpoints into a temporary folder; nothing is downloaded.

The tables fit the width they are read at (the terminal's, COLUMNS, or 80
columns in a file or a pipe; parity.commands.benchmark_report); `--json`
writes every raw figure. The measurements are in
parity.commands.benchmark_sections, the child processes' workloads in
parity.commands.benchmark_workloads.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from parity.commands.benchmark_report import render
from parity.commands.benchmark_sections import (TARGETS, bench_conversion, bench_distributed, bench_eval,
                                                bench_export, bench_latency, bench_layer_diff, bench_pipeline,
                                                bench_train, child_env, latency_summary)

ARCHS = ("small", "normal", "large")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.commands.benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write every raw figure and ratio as JSON")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats (3 processes, 5 timed iterations), GENet_large conversion only, "
                        "latency at batch 8 only, one layer-diff run; stated in the output")
    p.add_argument("--threads", type=int, help="threads for both frameworks in every process (default: all cores)")
    p.add_argument("--skip", action="append",
                   choices=["conversion", "layer-diff", "eval", "latency", "pipeline", "train", "distributed",
                            "export"],
                   default=[], help="leave a section out (repeatable)")
    args = p.parse_args(argv)

    from parity.core.runtime import configure_threads

    threads = configure_threads(args.threads)
    from parity.core.frameworks import import_paddle

    import_paddle()  # without its import-time notices (see parity.commands.cli)
    from parity.core.environment import environment
    from parity.core.seeded import seeded_state
    from parity.core.textout import Out

    out = Out()  # the terminal's width (or COLUMNS); 80 columns in a file or a pipe
    say = lambda msg: out.print(f"{time.strftime('%H:%M:%S')} {msg}", style="dim")  # noqa: E731
    start = time.perf_counter()
    repeats = 3 if args.quick else 5
    given = argv if argv is not None else sys.argv[1:]
    result = {"command": " ".join(["python -m parity.commands.benchmarks"] + given),
              "mode_note": ("--quick: medians of 3 process runs after 1 warm-up, 5 timed latency iterations, "
                            "1 layer-diff run" if args.quick else
                            "medians of 5 process runs after 1 warm-up, 20 timed latency iterations"),
              "targets": TARGETS, "environment": environment("cpu")}
    env = child_env(threads)
    from converters.files.atomic import temporary_folder

    with temporary_folder("genet_bench_") as work:
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
    if "export" not in args.skip:
        result["export"] = bench_export(("small",) if args.quick else ARCHS, env, 3 if args.quick else 5, say)
    result["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = time.perf_counter() - start
    render(result, out)
    if args.json:
        from converters.files.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2))
        out.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
