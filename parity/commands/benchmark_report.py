"""The printed report of the benchmark script (`python -m parity.commands.benchmarks`):
its result dict drawn as tables and notes; nothing here measures or computes.

Drawn with the project's text output (parity.core.textout.Out), as every
command's: at the terminal's width (or COLUMNS) on a terminal, within 80
columns in a file or a pipe, columns that do not fit named under their table.
Sections print in the order of their numbers in the script's docstring.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from parity.commands.benchmark_sections import LAYER_DIFF_SIDES, TARGETS

SHORT_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
MISSED_STYLE = "bold red"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def path_name(row: dict) -> str:
    """A latency row's path: framework, mode, short dtype, BN folding."""
    return (f"{row['framework']} {row['mode']} {SHORT_DTYPE[row['dtype']]}"
            f"{' BN-folded' if row['bn_folded'] else ''}")


def render(result: dict, out) -> None:
    """Every measured section of `result` on `out` (a parity.core.textout.Out)."""
    if "conversion" in result:
        conversion(result["conversion"], out)
    if "layer_diff" in result:
        layer_diff(result["layer_diff"], out)
    elif "layer_diff_not_measured" in result:
        out.print(f"2. Layer diff: not measured: {result['layer_diff_not_measured']}")
    for lat in result.get("latency", []):
        latency(lat, out)
    if "pipeline" in result:
        pipeline(result["pipeline"], result.get("model_images_per_s", {}), out)
    if "eval" in result:
        evaluation(result["eval"], out)
    if "distributed" in result:
        distributed(result["distributed"], out)
    if "train" in result:
        training(result["train"], out)
    if "export" in result:
        export(result["export"], out)
    machine(result, out)


def process_table(title: str, d: dict, rows: Sequence[Tuple[str, str]], out) -> None:
    """A table of `repeated` whole-process runs: (label, key of d) per row;
    median wall s, median peak RSS MB and each run's wall s."""
    from parity.core.textout import Column

    columns = [Column("step"), Column("median s", 0, "right"), Column("peak MB", 0, "right"),
               Column("runs (s)", 1)]
    out.table(columns, [[name, f"{d[key]['wall_s']:.2f}", f"{d[key]['peak_rss_mb']:.0f}",
                         ", ".join(f"{s:.1f}" for s in d[key]["runs_wall_s"])] for name, key in rows],
              title=title, hint="--json has every run")


def conversion(rows: List[dict], out) -> None:
    """Two tables, time then memory, so that each fits 80 columns."""
    from parity.core.textout import Column

    time_cols = [Column("arch"), Column("floor", 0, "right"), Column("no-verify", 0, "right"),
                 Column("extra", 0, "right"), Column("target", 0), Column("verified", 0, "right"),
                 Column("extra", 0, "right"), Column("target", 0)]
    time_rows, time_styles, rss_rows, rss_styles = [], [], [], []
    for r in rows:
        f, n, v, t = r["floor"], r["no_verify"], r["verify"], r["targets"]
        time_rows.append([f"GENet_{r['arch']}", f"{f['wall_s']:.2f}", f"{n['wall_s']:.2f}",
                          f"{r['no_verify_extra_s']:+.2f}", verdict(t["no_verify_time"]), f"{v['wall_s']:.2f}",
                          f"{r['verify_extra_s']:+.2f}", verdict(t["verify_time"])])
        time_styles.append(None if t["no_verify_time"] and t["verify_time"] else MISSED_STYLE)
        rss_rows.append([f"GENet_{r['arch']}", f"{r['checkpoint_mb']:.0f}", f"{f['peak_rss_mb']:.0f}",
                         f"{n['peak_rss_mb']:.0f}", f"{r['no_verify_extra_rss_mb']:+.0f}",
                         verdict(t["no_verify_memory"]), f"{v['peak_rss_mb']:.0f}",
                         f"{r['verify_extra_rss_mb']:+.0f}"])
        rss_styles.append(None if t["no_verify_memory"] else MISSED_STYLE)
    out.table(time_cols, time_rows, row_styles=time_styles,
              title="1. Conversion, whole processes: median wall s")
    rss_cols = [Column("arch"), Column("ckpt MB", 0, "right"), Column("floor", 0, "right"),
                Column("no-verify", 0, "right"), Column("extra", 0, "right"), Column("target", 0),
                Column("verified", 0, "right"), Column("extra", 0, "right")]
    out.table(rss_cols, rss_rows, row_styles=rss_styles, title="1. Conversion, whole processes: median peak RSS MB")
    out.print(f"extra: over the floor (a process that only imports torch and paddle and copies the bytes). "
              f"Targets: no-verify <= floor + {TARGETS['convert_no_verify_extra_s']:g} s and floor + "
              f"{TARGETS['convert_no_verify_extra_rss']:g}x checkpoint size; verified <= floor + "
              f"{TARGETS['convert_verify_extra_s']:g} s.", style="dim")


def layer_diff(d: dict, out) -> None:
    process_table(f"2. Layer diff, GENet_large batch {d['batch_size']} (whole processes)", d,
                  (("two plain forward passes", "plain_forward"), ("genet-parity layers", "layer_diff")), out)
    out.print(f"time ratio {d['time_ratio']:.2f}x (target <= {TARGETS['layer_diff_time_ratio']:g}x: "
              f"{verdict(d['targets']['time'])}); extra RSS "
              f"{d['extra_rss_mb']:.0f} MB vs one block held on every side {d['block_bound_mb']:.0f} MB "
              f"({LAYER_DIFF_SIDES} x {d['block_activations_mb']:.0f} MB activations of the largest block + "
              f"{d['float64_weights_mb']:.0f} MB float64 weights; target: {verdict(d['targets']['memory'])}) and "
              f"the whole network held {d['network_bound_mb']:.0f} MB; phases (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in (d.get("layer_diff_phases_s") or {}).items()))


def latency(lat: dict, out) -> None:
    from parity.core.textout import Column
    from parity.latency.bench import ratio_table

    columns = [Column("path"), Column("median", 0, "right"), Column("p90", 2, "right"),
               Column("x torch", 0, "right"), Column("x floor", 1, "right"), Column("rel L2", 3, "right"),
               Column("top-1", 3, "right")]
    table = ratio_table(lat)
    timed = [r for r in table if "skipped" not in r]
    ratio = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    rows = [[path_name(r), f"{r['median']:.2f}", f"{r['p90']:.2f}", ratio(r["vs_baseline"]), ratio(r["vs_floor"]),
             f"{r['rel_l2']:.1e}", f"{r['top1_agreement']:.0%}"] for r in timed]
    styles = [None if r["check_pass"] else MISSED_STYLE for r in timed]
    out.table(columns, rows, row_styles=styles, hint="--json writes every figure",
              title=f"3. Latency GENet_large, {lat['device']}, batch {lat['batch_size']}, "
                    f"{lat['warmup']} warm-up + {lat['iters']} timed iterations (ms per image)")
    for r in table:
        if "skipped" in r:
            out.print(f"{path_name(r)}: not run: {r['skipped']}", style="dim", indent="  ")
    out.print("x torch: against torch eager fp32; x floor: against the compute floor; rel L2, top-1: logits "
              "against the float32 eager torch model on the same seeded input (top-1: agreement, not accuracy).",
              style="dim")
    s = lat["summary"]
    fl = lat["compute_floor"]
    best = s["paddle_best_fp32"]
    out.print(f"floor fp32 {fl['float32']['ms_per_image']:.1f} ms/img ({fl['float32']['best_gflops']:.0f} "
              f"GFLOP/s, {fl['float32']['best_probe']}); Paddle best fp32 ({best['path']}) "
              f"{best['vs_torch_eager']:.2f}x torch eager (target <= {TARGETS['paddle_fp32_vs_torch_eager']:g}: "
              f"{verdict(s['targets']['paddle_fp32_vs_torch_eager'])}), {best['vs_floor']:.2f}x "
              f"floor (target <= {TARGETS['paddle_fp32_vs_floor']:g}: {verdict(s['targets']['paddle_fp32_vs_floor'])})"
              + (f"; bf16 {s['paddle_best_bf16']['vs_torch_eager']:.2f}x torch eager (target <= "
                 f"{TARGETS['paddle_bf16_vs_torch_eager']:g}: {verdict(s['targets']['paddle_bf16_vs_torch_eager'])}),"
                 f" top-1 agreement with fp32 {s['paddle_best_bf16']['top1_agreement_vs_fp32']:.0%} of "
                 f"{lat['batch_size']} seeded inputs" if "paddle_best_bf16" in s else ""))


def pipeline(rates: List[dict], model: dict, out) -> None:
    out.print("4. Input pipeline (decode + preprocess, GENet_large crops): " + "; ".join(
        f"{p['workers']} worker{'s' if p['workers'] != 1 else ''} {p['images_per_s']:.0f} img/s"
        for p in rates) + (" vs model " + ", ".join(f"{k} {v:.1f} img/s" for k, v in model.items()) if model
                           else " (the model's rate not measured: latency skipped)"))


def evaluation(d: dict, out) -> None:
    from parity.core.textout import Column

    columns = [Column("runner"), Column("loop", 0, "right"), Column("whole process", 0, "right"),
               Column("torch", 1, "right"), Column("paddle", 1, "right"), Column("decode/worker", 2, "right")]
    rows = []
    for k, r in d["runs"].items():
        st = r["throughput"]["stages"]
        rows.append([f"--runner {k}", f"{r['run_images_per_s']:.1f}", f"{r['images_per_s']:.1f} ({r['wall_s']:.0f} s)",
                     f"{st['torch']['images_per_s']:.1f}", f"{st['paddle']['images_per_s']:.1f}",
                     f"{st['decode']['images_per_s']:.0f}"])
    out.table(columns, rows, title=f"6. Evaluation, both frameworks, GENet_{d['arch']}, {d['n_images']} photos, "
                                   f"batch {d['batch_size']} (images/s)")
    out.print("loop: the evaluation loop without start-up; torch, paddle, decode/worker: each stage within the "
              "loop. Paths: " + "; ".join(f"--runner {k}: {r['runners']['torch']}, {r['runners']['paddle']}"
                                         for k, r in d["runs"].items()), style="dim")
    out.print(f"yardsticks alone: decoding {d['decode_alone']['images_per_s']:.1f} img/s "
              f"({d['decode_alone']['workers']} workers), both fast runners "
              f"{d['models_alone']['images_per_s']:.1f} img/s; fast loop / min of them "
              f"{d['fast_vs_bound']:.2f}x (target >= {TARGETS['eval_fast_vs_bound']:g}x: "
              f"{verdict(d['targets']['fast_vs_bound'])}); fast/eager loop {d['fast_vs_eager']:.2f}x (target >= "
              f"{TARGETS['eval_fast_vs_eager']:g}x: {verdict(d['targets']['fast_vs_eager'])}); whole processes "
              f"{d['whole_process_fast_vs_eager']:.2f}x")


def distributed(d: dict, out) -> None:
    from parity.core.textout import Column

    columns = [Column("processes", 0, "right"), Column("threads each", 0, "right"),
               Column("whole command", 0, "right"), Column("loop", 0, "right"), Column("wall s", 0, "right")]
    rows = [[k, str(r["threads_per_process"]), f"{r['images_per_s']:.2f}", f"{r['loop_images_per_s']:.2f}",
             f"{r['wall_s']:.1f}"] for k, r in d["runs"].items()]
    out.table(columns, rows, title=f"7. Evaluation as a torchrun job, GENet_{d['arch']}, {d['n_images']} photos, "
                                   f"batch {d['batch_size']}, {d['threads']} threads in all (images/s)")
    same = d["same_predictions"]
    out.print(f"2 processes / 1: whole command {d['whole_command_ratio']:.2f}x, loop {d['loop_ratio']:.2f}x; "
              f"the same predictions: {'yes' if same else 'NO'}", style=None if same else MISSED_STYLE)


def training(d: dict, out) -> None:
    process_table(f"5. Training parity, GENet_small batch {d['batch_size']}, {d['steps']} steps (whole processes)",
                  d, (("both frameworks' own steps", "plain_training"), ("genet-parity train", "train")), out)
    plain = d["plain_phases_s"]
    out.print(f"time ratio {d['time_ratio']:.2f}x (target <= {TARGETS['train_time_ratio']:g}x: "
              f"{verdict(d['targets']['time'])}); the steps alone: {d['train_steps_s']:.1f} s against "
              f"{plain['steps_s']:.1f} s ({d['steps_ratio']:.1f}x; torch {plain['torch_steps_s']:.1f} s + Paddle "
              f"{plain['paddle_steps_s']:.1f} s); train phases (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in (d.get("train_phases_s") or {}).items()))


def export(rows: List[dict], out) -> None:
    from parity.core.textout import Column

    columns = [Column("arch"), Column("blocks as is", 0, "right"), Column("transformed", 0, "right"),
               Column("ratio", 0, "right"), Column("exports", 1, "right")]
    out.table(columns, [[f"GENet_{r['arch']}", f"{r['median_s']['as-is']:.2f}", f"{r['median_s']['transformed']:.2f}",
                         f"{r['transformed_vs_as_is']:.1f}x", str(r["exports"])] for r in rows],
              title="8. Paddle export of a new model (median s, paid by every predictor's start)")


def machine(result: dict, out) -> None:
    env = result["environment"]
    out.print(f"Machine: {env['cpu']}, {env['cpu_count']} cores; threads {env['threads']}; torch {env['torch']}, "
              f"paddle {env['paddle']}; load average at start {env['load_average']}, at end "
              f"{result['load_average_end']}; total {result['seconds']:.0f} s; {result['mode_note']}")
