"""`genet-convert SRC DST`: parse arguments, call `converters.conversion.convert.convert`, print.

Exit codes: 0 converted and verified; 1 verification failed (nothing
written); 2 bad input (unreadable, unknown or unsafe checkpoint, bad paths;
nothing written); 3 internal error; 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Convert a GENet checkpoint between PyTorch (official, timm, BN-fused) and
PaddlePaddle, safely (no code from the file is ever run), strictly (every
tensor accounted for) and verified (both models compared on a fixed input).
The source format, architecture, layout and head size (a fine-tuned
checkpoint's number of classes) are read from the file's content; of a
training checkpoint holding several state dicts (timm's state_dict and
state_dict_ema), the one taken is said, and --weights-key picks another.
The destination format comes from DST's extension: .pdparams (Paddle layout),
.pth/.pt (official layout, loadable by the official code with strict=True) or
.safetensors. A folder as DST means DST/<source name>.pdparams.
"""

EPILOG = """\
exit codes: 0 ok, 1 verification failed (nothing written), 2 bad input
(nothing written), 3 internal error. See docs/convert.md.
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from converters.files import state_dicts

    p = argparse.ArgumentParser(prog="genet-convert", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="source checkpoint (.pth/.pt, .safetensors, .pdparams)")
    p.add_argument("dst", metavar="DST", help="destination file (.pdparams, .pth/.pt, .safetensors) or folder")
    p.add_argument("--arch", help="force the architecture (small|normal|large, GENet_large, gernet_l)")
    p.add_argument("--layout", choices=["official", "timm", "paddle", "fused", "paddle_fused"],
                   help="force the source layout")
    state_dicts.add_argument(p)
    p.add_argument("--to-layout", dest="to_layout", choices=["official", "timm", "paddle", "fused", "paddle_fused"],
                   help="destination layout (default: paddle for .pdparams, official for .pth/.safetensors)")
    p.add_argument("--fuse-bn", action="store_true",
                   help="fold every BatchNorm into its conv (inference only), verified against the unfolded model")
    p.add_argument("--keep-dtype", action="store_true",
                   help="keep float16/bfloat16 weights as they are (default: write float32)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip reading the output back and comparing both models")
    p.add_argument("--force", action="store_true", help="replace an existing destination (atomically)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="DANGEROUS: load a .pth that safe loading refuses with full pickle, which runs any code "
                        "the file contains. Only for files whose origin you trust completely.")
    p.add_argument("--batch-size", type=_positive, default=1,
                   help="images in the verification input (default 1: one full forward pass per model)")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON result object on stdout instead of a table")
    out.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    return p


def _fmt_bytes(n) -> str:
    return f"{n / 2**20:.1f} MiB" if n else "-"


def summary_rows(result):
    """(label, plain text) rows of the summary; verdicts carry a style."""
    from converters.conversion.verify import READ_BACK
    from parity.core.tolerances import FACTOR, FLOOR_ULPS

    s, v = result["summary"], result["verification"]
    choice = result["state_dict"]
    rows = [("source", f"{result['src']}\nsha256 {result['src_sha256']}")]
    if choice["note"]:
        rows.append(("state dict", choice["note"]))
    rows += [("head", f"{result['num_classes']} classes (read from the source)"),
             ("destination", result["dst"] + ("" if result["status"] == "ok" else "  (not written)")),
            ("tensors", f"{s['source_tensors']} read, {s['written_tensors']} written"),
            ("renamed", str(s["renamed"])),
            ("transposed", f"{s['transposed']}" + (" (fc_linear.weight: torch [out, in] <-> Paddle [in, out])"
                                                   if s["transposed"] else ""))]
    dropped = "; ".join(f"{n} x {reason}" for reason, n in s["drop_reasons"].items())
    rows.append(("dropped", f"{s['dropped']}" + (f": {dropped}" if dropped else "")))
    if s["recreated"]:
        rows.append(("recreated", f"{s['recreated']}: {s['recreate_reason']}"))
    if s["bn_folded"]:
        rows.append(("BN folded", f"{s['bn_folded']} BatchNorms folded into their convs"))
    rows.append(("bytes", f"{_fmt_bytes(s['bytes_in'])} in, {_fmt_bytes(s.get('bytes_out'))} out"))
    rows.append(("time", f"{result['seconds']:.2f} s ("
                 + ", ".join(f"{k} {x:.2f} s" for k, x in result["timings"].items()) + ")"))
    if v is None:
        rows.append(("verification", ("skipped (--no-verify)", "yellow")))
    elif v.get("method") == READ_BACK:  # one framework and layout: no model comparison to report
        rows.append(("verification", ("read back bit-identical (no model comparison: the destination model is "
                                      "the source model)", "green")))
        rows.append(("proven", v["proven"]))
    else:
        rows.append(("verification", ("PASS" if v["passed"] else "FAIL", "green" if v["passed"] else "bold red")))
        rows.append(("compared", f"{v['source_model']} vs {v['destination_model']}, {v['input']}"))
        rows.append(("reference", v["reference"]))
        for model in dict.fromkeys(j["candidate"] for j in v["judgements"]):
            mine = [j for j in v["judgements"] if j["candidate"] == model]
            worst = max(mine, key=lambda j: j["margin"])
            logits = mine[-1]
            rows.append(("judged", f"{model}: logits max abs error {logits['error']:.3g}, bound {logits['bound']:.3g} "
                                   f"= {FACTOR:g} x {logits['reference']} error {logits['reference_error']:.3g} + "
                                   f"{FLOOR_ULPS:g} ulp of {logits['scale']:.3g}, margin {logits['margin']:.3g}; "
                                   f"worst of {len(mine)} checkpoints {worst['name']}, margin {worst['margin']:.3g}"))
        if v.get("first_divergent"):
            rows.append(("first divergent", (v["first_divergent"], "bold red")))
        if v.get("nonfinite"):
            rows.append(("non-finite", (v["nonfinite"], "bold red")))
        rows.append(("dst vs src", f"max abs diff {v['max_abs_diff']:.3g} (max |logit| {v['ref_max_abs']:.3g}), "
                                   f"relative L2 {v['rel_l2']:.3g}, cosine {v['cosine']:.9f} (reported)"))
        rows.append(("top-1 agreement", f"{v['top1_agreement']:.0%}"))
        rows.append(("read back", f"{v['tensors_read_back']} tensors bit-identical to those meant to be written"))
    if result["provenance"] and result["status"] == "ok":
        rows.append(("provenance", result["provenance"]))
    rows += [("note", n) for n in result["notes"] if n != choice["note"]]
    return rows


def render(result, out) -> None:
    """The summary as aligned `label  value` lines at the width of `out`
    (parity.core.textout.Out: colour on a terminal, plain text in a log)."""
    rows = summary_rows(result)
    out.print(f"genet-convert: {result['arch']} {result['src_layout']} ({result['src_format']}) -> "
              f"{result['dst_layout']} ({result['dst_format']})", style="bold")
    styles = {label: value[1] for label, value in rows if isinstance(value, tuple)}
    out.fields([(label, value[0] if isinstance(value, tuple) else value) for label, value in rows], styles=styles)


def _json(d) -> str:
    from parity.layers.report import to_json_line

    return to_json_line(d)


def _run(args, state) -> int:
    from parity.core.progress import Progress
    from parity.core.textout import Out

    from converters.conversion.convert import convert
    from converters.table.errors import VerificationError

    out = Out()
    show = not (args.json or args.quiet)
    status = Progress("genet-convert") if show else None
    progress = status.say if status else None
    kwargs = dict(arch=args.arch, src_layout=args.layout, dst_layout=args.to_layout, fuse_bn=args.fuse_bn,
                  keep_dtype=args.keep_dtype, verify=args.verify, force=args.force,
                  trust_pickle=args.trust_pickle, batch_size=args.batch_size, progress=progress,
                  weights_key=args.weights_key)
    try:
        try:
            result = convert(args.src, args.dst, **kwargs).to_dict()
        finally:
            if status:
                status.close()
    except VerificationError as e:
        if getattr(e, "result", None) is None:
            raise
        result = e.result.to_dict()
        if args.json:
            print(_json(dict(result, exit_code=1, error=str(e))))
            state["printed"] = True
        elif show:
            render(result, out)
        raise
    if args.json:
        print(_json(dict(result, exit_code=0)))
    elif show:
        render(result, out)
    return 0


def main(argv=None) -> int:
    from parity.core.exits import run_guarded

    from converters.files.atomic import terminate_like_interrupt

    # A plain `kill` unwinds like Ctrl-C, so no temporary output survives it;
    # everything after this line runs guarded (a signal while torch is still
    # importing is "Interrupted.", exit 130, like any other).
    terminate_like_interrupt()
    state = {}

    def guarded(argv):
        from parity.core.runtime import configure_threads

        args = build_parser().parse_args(argv)
        state["json"] = args.json
        configure_threads(args.threads)
        try:
            return _run(args, state)
        except BaseException as e:
            state["error"] = f"{type(e).__name__}: {e}" if not hasattr(e, "exit_code") else str(e)
            raise

    code = run_guarded(guarded, argv)
    if state.get("json") and code != 0 and not state.get("printed"):
        print(json.dumps({"status": "error", "exit_code": code, "error": state.get("error", "")}))
    return code


if __name__ == "__main__":
    sys.exit(main())
