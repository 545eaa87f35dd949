"""`genet-parity demo`: the built-in default job, needing no checkpoint or data.

Builds every variant in both frameworks, loads the seeded weights into the
PyTorch model, converts them to Paddle through the mapping table, and reports
the parity of the logits on a seeded input.
"""
from __future__ import annotations

import json
import time

HELP = "Build all three GENets, convert seeded weights to Paddle, report the parity of logits."

# Paddle's float32 logits must stay within this fraction of the largest
# reference logit (the bound the tests hold against the official outputs).
LOGIT_TOLERANCE = 1e-4


def add_arguments(p):
    p.add_argument("--arch", action="append", choices=["small", "normal", "large"],
                   help="variant to run (repeatable; default: all three)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def logits_parity(arch: str, batch_size: int = 2) -> dict:
    import numpy as np
    import paddle
    import torch

    import paddle_genet
    import torch_ref
    from converters.mapping import mapping_table

    from .compare import compare, top1_agreement
    from .seeded import seeded_input, seeded_state

    start = time.perf_counter()
    state = seeded_state(arch)
    t_model = torch_ref.load_state(torch_ref.build(arch), state, source="seeded weights")
    p_model = paddle_genet.load_state(paddle_genet.build(arch),
                                      mapping_table(arch).convert(state, "official", "paddle"),
                                      source="seeded weights (converted)")
    x = seeded_input(arch, batch_size)
    with torch.no_grad():
        ref = t_model(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        out = p_model(paddle.to_tensor(x)).numpy()
    d = compare(f"GENet_{arch} logits", out, ref)
    ok = bool(np.isfinite(out).all() and d.max_abs <= LOGIT_TOLERANCE * d.ref_max_abs)
    return {"arch": arch, "batch_size": batch_size, "max_abs": d.max_abs, "ref_max_abs": d.ref_max_abs,
            "rel_l2": d.rel_l2, "cosine": d.cosine, "top1_agreement": top1_agreement(out, ref),
            "tolerance": LOGIT_TOLERANCE * d.ref_max_abs, "pass": ok,
            "seconds": time.perf_counter() - start}


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    archs = args.arch or ["small", "normal", "large"]
    results = []
    with console.status("") as status:
        for arch in archs:
            status.update(f"GENet_{arch}: building both models, converting seeded weights, running…")
            results.append(logits_parity(arch, args.batch_size))
    table = Table(title="Seeded weights, PyTorch (reference) vs PaddlePaddle (converted): logits")
    for col in ("arch", "max abs diff", "tolerance", "rel L2", "cosine", "top-1 agree", "verdict"):
        table.add_column(col)
    for r in results:
        table.add_row(f"GENet_{r['arch']}", f"{r['max_abs']:.3g}", f"{r['tolerance']:.3g}", f"{r['rel_l2']:.3g}",
                      f"{r['cosine']:.9f}", f"{r['top1_agreement']:.0%}",
                      "[green]PASS[/]" if r["pass"] else "[bold red]FAIL[/]")
    console.print(table)
    console.print("Tolerance: max abs diff <= 1e-4 x the largest reference logit. Weights: seeded "
                  "(numpy seed 2020), not trained; input: seeded noise.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pass": all(r["pass"] for r in results), "results": results}, f, indent=2)
    return 0 if all(r["pass"] for r in results) else 1
