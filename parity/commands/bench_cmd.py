"""`genet-parity bench`: model latency per image, both frameworks, eager and best mode.

Exit codes: 0 every timed path's logits within its dtype's tolerance of the
float32 eager model, 1 some path was fast but wrong, 2 bad input.
"""
from __future__ import annotations

import json
import os
import sys

HELP = ("Latency in ms per image (median/p90/p99 after warm-up, device-resident input) of torch and Paddle, "
        "eager and best inference mode, with the input pipeline's images/s beside it.")


def add_arguments(p):
    from converters.files import state_dicts

    p.add_argument("--arch", help="small|normal|large (or GENet_*/gernet_*); default: from --weights, else large")
    p.add_argument("--weights", metavar="PATH",
                   help="checkpoint (any layout genet-convert reads); default: seeded random weights")
    state_dicts.add_argument(p)
    p.add_argument("--framework", action="append", choices=["torch", "paddle"],
                   help="repeatable; default both")
    p.add_argument("--mode", action="append", choices=["eager", "best"],
                   help="repeatable; default both. best = torch.compile (frozen) / Paddle inference predictor")
    p.add_argument("--dtype", action="append", choices=["float32", "float16", "bfloat16"],
                   help="repeatable; default float32 (float16 = model.half() on GPU; bfloat16 = CPU with "
                        "native bf16)")
    p.add_argument("--fuse-bn", choices=["no", "yes", "both"], default="no",
                   help="fold BatchNorm into the convs (converters.table.fuse) before timing")
    p.add_argument("--batch-size", type=int, help="default 64 on a GPU (the authors' convention), 1 on a CPU")
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations first (default 20)")
    p.add_argument("--iters", type=int, default=100, help="timed iterations (default 100)")
    p.add_argument("--device", help="cpu, gpu or gpu:N (default: gpu if torch sees one, else cpu)")
    p.add_argument("--pipeline-workers", type=int, nargs="*", default=None, metavar="N",
                   help="also measure decode+preprocess images/s with these worker counts (default: 0 and "
                        "the thread count; give no number to skip)")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the compute-floor probe (best conv/matmul rate)")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON")


def _weights(args):
    from converters.table.errors import CheckpointError
    from converters.files.load import load_weights, to_layout
    from genet_arch import canonical_arch

    if not args.weights:
        if args.weights_key:
            raise CheckpointError(None, "--weights-key chooses a state dict of --weights; give --weights")
        try:
            return None, canonical_arch(args.arch or "large")
        except ValueError as e:
            raise CheckpointError(None, str(e)) from None
    w = load_weights(args.weights, arch=args.arch, weights_key=args.weights_key)
    if w.state_dict.note:
        print(f"{args.weights}: {w.state_dict.note}", file=sys.stderr)
    if w.fused:
        raise CheckpointError(args.weights, "is BN-fused; bench needs unfolded weights (it folds them itself "
                                            "with --fuse-bn)")
    return to_layout(w, "official"), w.arch


def render(result: dict, out) -> None:
    """The latency table and its notes at the width of `out` (parity.core.textout.Out)."""
    from parity.latency.bench import ratio_table
    from parity.core.textout import Column

    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    columns = [Column("path"), Column("ms/img", 0, "right"), Column("p90", 2, "right"), Column("p99", 3, "right"),
               Column("img/s", 2, "right"), Column("x torch", 1, "right"), Column("x floor", 2, "right"),
               Column("rel L2", 3, "right"), Column("top-1 %", 4, "right"), Column("logits")]
    rows, styles, skipped = [], [], []
    for r in ratio_table(result):
        name = f"{r['framework']} {r['mode']} {short[r['dtype']]}{' BN-folded' if r['bn_folded'] else ''}"
        if "skipped" in r:
            skipped.append(f"{name}: not run: {r['skipped']}")
            continue
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        rows.append([name, f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{r['p99']:.2f}", f"{r['images_per_s']:.1f}",
                     fmt(r["vs_baseline"], ".2f"), fmt(r["vs_floor"], ".2f"), f"{r['rel_l2']:.1e}",
                     f"{100 * r['top1_agreement']:.0f}", r["check"]])
        styles.append("bold red" if r["check"] == "WRONG" else None)
    out.table(columns, rows, row_styles=styles, hint="--json writes every figure",
              title=f"{result['arch']} latency, {result['device']}, {result['batch_note']}, "
                    f"{result['warmup']} warm-up + {result['iters']} timed iterations")
    for line in skipped:
        out.print(line, style="dim", indent="  ")
    out.print("ms/img, p90, p99: per image, from the batch times; x torch: against torch eager fp32; x floor: "
              "against the compute floor. rel L2, top-1 %: logits against the float32 eager torch model on the "
              "same input (reported); logits ok/WRONG: judged by the project's rule against a float64 "
              "recomputation, the bar eager torch at the same dtype (parity.core.tolerances); reference: eager "
              "torch (unfolded) is that bar itself, its own error reported, not judged.", style="dim")
    for dt, f in result.get("compute_floor", {}).items():
        out.print(f"Compute floor {dt}: {f['flops_per_image'] / 1e9:.2f} GFLOP/img at {f['best_gflops']:.0f} "
                  f"GFLOP/s ({f['best_probe']}) = {f['ms_per_image']:.2f} ms/img")
    for p in result.get("pipeline", []):
        out.print(f"Input pipeline (decode + preprocess, {p['workers']} worker{'s' if p['workers'] != 1 else ''}"
                  f"{' = in-process' if p['workers'] == 0 else ''}): {p['images_per_s']:.0f} images/s "
                  f"({p['source']}); measured apart from the model")
    env = result["environment"]
    th = env["threads"]
    load = env.get("load_average")
    out.print(f"Load average {', '.join(f'{v:.2f}' for v in load) if load else 'unknown'} at the start"
              + (f" ({', '.join(f'{v:.2f}' for v in env['load_average_end'])} at the end)"
                 if env.get("load_average_end") else "")
              + f" on {env.get('cpu_count')} cores: other work on the machine slows every figure.")
    from parity.latency.contention import caution

    warning = caution(result)
    if warning:
        out.print(warning, style="bold yellow")
    out.print(f"Threads: torch {th.get('torch')}, paddle {th.get('paddle')} (configured {th['configured']}); "
              f"weights: {result['weights']}")


def run(args) -> int:
    from converters.files.atomic import write_text_atomic

    from parity.latency.bench import measure_latency
    from parity.accuracy.runners import normalize_device
    from parity.core.tolerances import failed
    from parity.core.progress import Progress
    from parity.core.runtime import configured_threads
    from parity.core.textout import Out

    out = Out()
    official, arch = _weights(args)
    device = normalize_device(args.device) if args.device else None
    if args.warmup < 0 or args.iters < 1 or (args.batch_size is not None and args.batch_size < 1):
        from converters.table.errors import CheckpointError

        raise CheckpointError(None, "need --warmup >= 0, --iters >= 1 and --batch-size >= 1")
    workers = args.pipeline_workers
    if workers is None:
        workers = sorted({0, configured_threads()})
    with Progress("bench") as progress:
        result = measure_latency(arch, official, frameworks=tuple(args.framework or ("torch", "paddle")),
                                 modes=tuple(args.mode or ("eager", "best")), batch_size=args.batch_size,
                                 warmup=args.warmup, iters=args.iters, dtype=tuple(args.dtype or ("float32",)),
                                 fuse_bn={"no": False, "yes": True, "both": (False, True)}[args.fuse_bn],
                                 device=device, floor=args.floor, pipeline_workers=tuple(workers),
                                 progress=progress.say)
    if args.weights:
        result["weights"] = os.path.abspath(args.weights)
    render(result, out)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    wrong = [r for r in result["results"] if "check" in r and failed(r["check"])]
    return 1 if wrong else 0
