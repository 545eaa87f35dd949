"""`genet-parity layers`: compare every layer of the PyTorch and Paddle GENets.

Exit codes: 0 every layer within tolerance and full coverage, 1 parity
failed, 2 bad input (unreadable weights or images, bad options).
"""
from __future__ import annotations

HELP = ("Compare every conv/BN/ReLU/unit/block/pool/fc of the PyTorch and Paddle GENets "
        "(accumulated and isolated errors); name the first divergent layer.")


def add_arguments(p):
    from converters.files import state_dicts

    w = p.add_argument_group("weights (at least one)")
    w.add_argument("--weights", metavar="PATH",
                   help="PyTorch checkpoint (.pth/.safetensors, official or timm layout) for the torch side; "
                        "converted through the mapping table for the Paddle side unless --pdparams is given")
    w.add_argument("--pdparams", metavar="PATH",
                   help="Paddle .pdparams for the Paddle side (read without running pickle code); converted "
                        "for the torch side unless --weights is given")
    w.add_argument("--random-weights", action="store_true",
                   help="seeded random weights (numpy seed 2020), converted through the mapping table")
    state_dicts.add_argument(w)
    p.add_argument("--arch", help="small|normal|large (or GENet_*/gernet_*); default: identified from the weights")
    i = p.add_argument_group("input")
    i.add_argument("--image", nargs="+", metavar="IMG",
                   help="images, through the evaluation preprocessing (default: seeded random input)")
    i.add_argument("--batch-size", type=int, default=2, help="seeded input batch size (default 2)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="float16 is native on --device gpu and EMULATED on cpu (see docs/layers.md)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--atol", type=float, help="absolute tolerance override (with --rtol)")
    p.add_argument("--rtol", type=float, help="relative tolerance override (with --atol)")
    p.add_argument("--reference", metavar="NPZ",
                   help="reference activations keyed by official module name, for a third column")
    o = p.add_argument_group("reports")
    o.add_argument("--json", metavar="PATH", help="write the result (schema in docs/layers.md)")
    o.add_argument("--html", metavar="PATH", help="write a self-contained HTML report with an error plot")
    o.add_argument("--markdown", metavar="PATH", help="write a Markdown report for pasting into an issue")
    o.add_argument("--summary-only", action="store_true", help="print the verdict, not the table of every layer")
    o.add_argument("--wide", action="store_true",
                   help="every column and full module paths, whatever the width (default: the columns that fit "
                        "the terminal, or COLUMNS, or 80 in a log; short module paths)")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")


def _weights(args):
    """(arch, official tensors or None, paddle tensors or None, info) from the options."""
    from converters.table.errors import CheckpointError
    from converters.files.load import load_weights, to_layout
    from genet_arch import canonical_arch

    from parity.core.seeded import WEIGHT_SEED, seeded_state

    arch = canonical_arch(args.arch) if args.arch else None  # an unknown name is bad input (exit 2)
    if not (args.weights or args.pdparams or args.random_weights):
        raise CheckpointError(None, "no weights: give --weights PATH, --pdparams PATH or --random-weights")
    if args.random_weights and (args.weights or args.pdparams):
        raise CheckpointError(None, "--random-weights cannot be combined with --weights/--pdparams")
    if args.weights_key and not args.weights:
        raise CheckpointError(None, "--weights-key chooses a state dict of the --weights checkpoint; give --weights")
    if args.random_weights:
        if arch is None:
            raise CheckpointError(None, "--random-weights needs --arch small|normal|large")
        return arch, seeded_state(arch), None, {"source": "seeded", "seed": WEIGHT_SEED}
    official = paddle = None
    info = {}
    heads = {}
    for path, side, layout in ((args.weights, "torch", "official"), (args.pdparams, "paddle", "paddle")):
        if not path:
            continue
        w = load_weights(path, arch=arch, weights_key=args.weights_key if side == "torch" else None)
        if w.fused:
            raise CheckpointError(path, f"is BN-fused ({w.layout}); the layer diff compares the unfused models, "
                                        "whose BN layers a fused checkpoint no longer has")
        if arch is not None and w.arch != arch:
            raise CheckpointError(path, f"holds GENet_{w.arch}, but GENet_{arch} was asked for")
        arch = w.arch
        tensors = to_layout(w, layout)
        if layout == "official":
            official = tensors
        else:
            paddle = tensors
        heads[path] = w.num_classes
        info[side] = {"path": path, "sha256": w.sha256, "layout": w.layout, "format": w.format,
                      "num_classes": w.num_classes, "state_dict": w.state_dict.to_dict(), "notes": w.notes}
    if len(set(heads.values())) > 1:
        raise CheckpointError(args.pdparams, "has a {}-class head, {} a {}-class head: the two sides of a layer "
                                             "diff hold the same model".format(heads[args.pdparams], args.weights,
                                                                               heads[args.weights]))
    for side in ("torch", "paddle"):
        info.setdefault(side, {"converted_from": "paddle" if side == "torch" else "torch",
                               "via": "converters.table.mapping.mapping_table"})
    return arch, official, paddle, info


def _images(paths, arch):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from converters.table.errors import CheckpointError

    from parity.inputs.preprocessing import preprocess

    batch = []
    for path in paths:
        try:
            with Image.open(path) as im:
                batch.append(preprocess(im.convert("RGB"), arch))
        except (OSError, UnidentifiedImageError) as e:
            raise CheckpointError(path, f"cannot read the image: {e}") from None
    return np.stack(batch).astype(np.float32), {"source": "images", "images": list(paths)}


def _check_gpu():
    import paddle
    import torch

    from converters.table.errors import CheckpointError

    missing = [name for name, ok in (("torch", torch.cuda.is_available()),
                                     ("paddle", paddle.device.is_compiled_with_cuda())) if not ok]
    if missing:
        raise CheckpointError(None, f"--device gpu: no CUDA device usable by {' and '.join(missing)} "
                                    "(a CUDA build of both frameworks and a GPU are needed)")


def run(args) -> int:
    from converters.table.errors import CheckpointError

    from parity.layers import report
    from parity.layers.diff import run_layer_diff
    from parity.core.progress import Progress
    from parity.core.textout import Out

    out = Out(wide=args.wide)
    if (args.atol is None) != (args.rtol is None):
        raise CheckpointError(None, "give --atol and --rtol together, or neither")
    if args.batch_size < 1:
        raise CheckpointError(None, f"--batch-size must be >= 1, got {args.batch_size}")
    if args.device == "gpu":
        _check_gpu()
    arch, official, paddle, winfo = _weights(args)
    note = winfo.get("torch", {}).get("state_dict", {}).get("note")
    if note:
        out.print(f"{args.weights}: {note}")
    inputs, iinfo = (None, None)
    if args.image:
        inputs, iinfo = _images(args.image, arch)
    with Progress("layers", unit="segments") as progress:
        progress.stage(f"GENet_{arch}, {args.dtype} on {args.device}")
        result = run_layer_diff(arch, official, paddle, inputs=inputs, batch_size=args.batch_size, dtype=args.dtype,
                                atol=args.atol, rtol=args.rtol, device=args.device,
                                progress=lambda done, total, label: progress.update(done=done, total=total,
                                                                                   detail=label),
                                reference=args.reference, input_info=iinfo, weights_info=winfo)
    d = result.to_dict()
    report.print_report(d, out, table=not args.summary_only, wide=args.wide)
    for path, render in ((args.json, report.to_json), (args.html, report.to_html),
                         (args.markdown, report.to_markdown)):
        if path:
            report.write_atomic(path, render(d))
            out.print(f"wrote {path}")
    return 0 if result.passed else 1
