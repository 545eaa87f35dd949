"""`genet-parity demo`: the built-in default job, needing no checkpoint or data.

1. Builds every variant in both frameworks, loads the seeded weights into the
   PyTorch model, converts them to Paddle through the mapping table, and
   reports the parity of the logits on a seeded input.
2. Runs the demo certificate (`genet-parity certify --demo`): conversion with
   verification, layer diff, both frameworks' predictions on bundled photos
   with synthetic labels, and latency, written as JSON and HTML.
"""
from __future__ import annotations

import json
import time

HELP = ("Built-in default job: logit parity of all three GENets on seeded weights, then a demo "
        "certificate on bundled photos.")

def add_arguments(p):
    p.add_argument("--arch", action="append", choices=["small", "normal", "large"],
                   help="variant to run (repeatable; default: all three)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    p.add_argument("--json", metavar="PATH", help="also write the logit results as JSON")
    p.add_argument("--logits-only", action="store_true", help="skip the demo certificate")
    p.add_argument("--out", default="genet-demo", metavar="DIR",
                   help="folder for the demo certificate and its files (default: ./genet-demo)")


def logits_parity(arch: str, batch_size: int = 2) -> dict:
    """Both models, loaded strictly as the converter's verification loads them,
    and the float64 recomputation; Paddle passes when its logits are within
    the project's rule (parity.core.tolerances), the bar set by torch float32."""
    from converters.table.mapping import mapping_table
    from converters.conversion.verify import run_model

    from parity.core.compare import compare, top1_agreement
    from parity.core.reference import float64_logits
    from parity.core.seeded import seeded_input, seeded_state
    from parity.core.tolerances import judge

    start = time.perf_counter()
    state = seeded_state(arch)
    x = seeded_input(arch, batch_size)
    ref = run_model(arch, "official", state, x)
    out = run_model(arch, "paddle", mapping_table(arch).convert(state, "official", "paddle"), x)
    j = judge(f"GENet_{arch} logits", out, float64_logits(arch, state, x), reference=ref,
              candidate_label="paddle float32", reference_label="torch float32")
    d = compare(f"GENet_{arch} logits", out, ref)
    return {"arch": arch, "batch_size": batch_size, "max_abs": d.max_abs, "ref_max_abs": d.ref_max_abs,
            "rel_l2": d.rel_l2, "cosine": d.cosine, "top1_agreement": top1_agreement(out, ref),
            "judgement": j.to_dict(), "error_f64": j.error, "torch_error_f64": j.reference_error,
            "bound": j.bound, "margin": j.margin, "pass": j.passed, "seconds": time.perf_counter() - start}


def run(args) -> int:
    from parity.core.progress import Progress
    from parity.core.textout import Column, Out

    out = Out()
    archs = args.arch or ["small", "normal", "large"]
    results = []
    with Progress("demo") as progress:
        for k, arch in enumerate(archs):
            progress.stage(f"GENet_{arch} ({k + 1}/{len(archs)}): building both models, converting seeded weights, "
                           "running both" + (f" (next: GENet_{archs[k + 1]})" if k + 1 < len(archs) else
                                             "" if args.logits_only else " (next: the demo certificate)"))
            results.append(logits_parity(arch, args.batch_size))
    columns = [Column("GENet"), Column("paddle err", align="right"), Column("torch err", align="right"),
               Column("bound", align="right"), Column("margin", align="right"), Column("top-1 agree %", 1, "right"),
               Column("verdict")]
    rows = [[r["arch"], f"{r['error_f64']:.1e}", f"{r['torch_error_f64']:.1e}", f"{r['bound']:.1e}",
             f"{r['margin']:.3f}", f"{100 * r['top1_agreement']:.0f}", "PASS" if r["pass"] else "FAIL"]
            for r in results]
    out.table(columns, rows, title="Seeded weights, PyTorch (reference) vs PaddlePaddle (converted): logits",
              row_styles=[None if r["pass"] else "bold red" for r in results], hint="--json writes them")
    out.print("err: max abs logit error against a float64 recomputation. Rule: paddle err <= 16 x torch err + "
              "4 ulp of the logits' scale (margin = paddle err / bound). top-1 agree %: inputs whose top-1 class "
              "is the same in both frameworks (agreement, not accuracy: seeded noise has no labels). Weights: "
              "seeded (numpy seed 2020), not trained; input: seeded noise.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pass": all(r["pass"] for r in results), "results": results}, f, indent=2)
    logits_ok = all(r["pass"] for r in results)
    if args.logits_only:
        return 0 if logits_ok else 1
    out.rule("Demo certificate (genet-parity certify --demo)")
    certificate_rc = _demo_certificate(args)
    return certificate_rc if logits_ok else 1


def _demo_certificate(args) -> int:
    import argparse
    import os

    from parity.commands import certify_cmd

    os.makedirs(args.out, exist_ok=True)
    parser = argparse.ArgumentParser()
    certify_cmd.add_arguments(parser)
    cert_args = ["--demo", "--out", os.path.join(args.out, "certificate_GENet_small")]
    if args.threads:
        cert_args += ["--threads", str(args.threads)]
    return certify_cmd.run(parser.parse_args(cert_args))
