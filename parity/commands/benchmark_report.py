"""The printed report of the benchmark script (`python -m parity.commands.benchmarks`):
its result dict drawn as tables and notes; nothing here measures or computes.
"""
from __future__ import annotations

from parity.commands.benchmark_sections import LAYER_DIFF_SIDES, TARGETS


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

