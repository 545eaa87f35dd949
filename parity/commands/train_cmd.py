"""`genet-parity train`: the same fine-tuning steps in PyTorch and Paddle,
every layer output, loss, gradient, parameter and BN statistic compared.

Exit codes: 0 every quantity within its bound, 1 divergence, 2 bad input.
"""
from __future__ import annotations

HELP = ("Run the same training steps in PyTorch and Paddle and compare every layer's train-mode output, the loss, "
        "every gradient and every parameter/BN statistic after each step; name the first divergent quantity.")

DEFAULT_ARCH = "small"


def add_arguments(p):
    from converters.files import state_dicts
    from converters.files.pretrained import HEAD_SEED

    from parity.training.batches import DATA_SEED
    from parity.training.mistakes import MISTAKES
    from parity.training.recipe import DEFAULT_LR, DEFAULT_WEIGHT_DECAY

    w = p.add_argument_group("weights (one)")
    w.add_argument("--weights", metavar="PATH",
                   help="checkpoint for both frameworks (.pth/.safetensors official or timm layout, or .pdparams; "
                        "a fine-tuned one continues with its own head), converted through the mapping table")
    w.add_argument("--random-weights", action="store_true", help="seeded random weights (numpy seed 2020)")
    state_dicts.add_argument(w)
    p.add_argument("--arch", help=f"small|normal|large (default: from the weights; {DEFAULT_ARCH} with --random-weights)")
    h = p.add_argument_group("head")
    h.add_argument("--num-classes", type=int,
                   help="the head's size (default: the checkpoint's own, 1000 for --random-weights); another size "
                        "than the checkpoint's replaces its head by a fresh one (the same in both frameworks)")
    h.add_argument("--head-seed", type=int, default=HEAD_SEED, help=f"seed of the fresh head (default {HEAD_SEED})")
    h.add_argument("--freeze-backbone", action="store_true", help="train only the head")
    o = p.add_argument_group("recipe")
    o.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    o.add_argument("--lr", type=float, help=f"learning rate (default: {DEFAULT_LR['sgd']:g} SGD, "
                                            f"{DEFAULT_LR['adamw']:g} AdamW)")
    o.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    o.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    o.add_argument("--weight-decay", type=float,
                   help=f"(default: {DEFAULT_WEIGHT_DECAY['sgd']:g} SGD, {DEFAULT_WEIGHT_DECAY['adamw']:g} AdamW, "
                        "decoupled)")
    o.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999), metavar=("B1", "B2"), help="AdamW betas")
    o.add_argument("--eps", type=float, default=1e-8, help="AdamW epsilon (default 1e-8)")
    o.add_argument("--label-smoothing", type=float, default=0.1, help="(default 0.1)")
    d = p.add_argument_group("data")
    d.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
    d.add_argument("--batch-size", type=int, default=8, help="(default 8)")
    d.add_argument("--image", nargs="+", metavar="IMG", help="your images (default: scikit-image's bundled photos)")
    d.add_argument("--random-input", action="store_true", help="seeded Gaussian input instead of images")
    d.add_argument("--preprocess", choices=["train", "eval"], default="train",
                   help="training (random resized crop + flip, seeded) or evaluation preprocessing (default train)")
    d.add_argument("--seed", type=int, default=DATA_SEED,
                   help=f"seed of crops, flips and synthetic labels (default {DATA_SEED})")
    p.add_argument("--inject", action="append", default=[], choices=sorted(MISTAKES), metavar="MISTAKE",
                   help="inject a named porting mistake to see how it is reported (repeatable): "
                        + "; ".join(f"{k}: {v}" for k, v in MISTAKES.items()))
    r = p.add_argument_group("reports")
    r.add_argument("--json", metavar="PATH", help="write the result (schema in docs/train.md)")
    r.add_argument("--html", metavar="PATH", help="write a self-contained HTML report with plots")
    r.add_argument("--summary-only", action="store_true", help="print the verdict, not the tables")
    r.add_argument("--wide", action="store_true", help="full tensor names and every column, whatever the width")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")


def _weights(args):
    """(arch, official state with the requested head, weights info, head info)."""
    from converters.table.errors import CheckpointError
    from converters.files.pretrained import LoadReport, pretrained_state, with_head
    from genet_arch import DEFAULT_NUM_CLASSES, canonical_arch, get_arch

    from parity.core.seeded import WEIGHT_SEED, seeded_state

    arch = canonical_arch(args.arch) if args.arch else None  # an unknown name is bad input (exit 2)
    if bool(args.weights) == bool(args.random_weights):
        raise CheckpointError(None, "give exactly one of --weights PATH or --random-weights")
    if args.random_weights:
        if args.weights_key:
            raise CheckpointError(None, "--weights-key chooses a state dict of --weights, not of --random-weights")
        arch = arch or DEFAULT_ARCH
        num_classes = args.num_classes or DEFAULT_NUM_CLASSES
        state, replaced = with_head(seeded_state(arch), arch, num_classes, args.head_seed)
        head = LoadReport(source="seeded random weights", arch=arch, layout="official",
                          num_classes=num_classes, checkpoint_classes=DEFAULT_NUM_CLASSES,
                          loaded=[k for k in state if k not in replaced], replaced=replaced,
                          head_seed=args.head_seed if replaced else None)
        return arch, state, {"source": "seeded", "seed": WEIGHT_SEED}, head.to_dict()
    state, report = pretrained_state(args.weights, arch, args.num_classes, "official", args.head_seed,
                                     weights_key=args.weights_key)
    if arch is not None and report.arch != arch:
        raise CheckpointError(args.weights, f"holds GENet_{report.arch}, but GENet_{arch} was asked for")
    get_arch(report.arch)
    return report.arch, state, {"path": args.weights, "sha256": report.sha256, "layout": report.checkpoint_layout,
                                "notes": report.notes}, report.to_dict()


def run(args) -> int:
    from converters.table.errors import CheckpointError
    from genet_arch import get_arch

    from parity.core.progress import Progress
    from parity.core.textout import Out
    from parity.training import Recipe, make_batches, report, run_training_parity
    from parity.training.mistakes import check_mistakes

    out = Out(wide=args.wide)
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            raise CheckpointError(None, f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_classes is not None and args.num_classes < 1:
        raise CheckpointError(None, f"--num-classes must be >= 1, got {args.num_classes}")
    if args.image and args.random_input:
        raise CheckpointError(None, "--image and --random-input exclude each other")
    try:
        recipe = Recipe(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                        weight_decay=args.weight_decay, betas=tuple(args.betas),
                        eps=args.eps, label_smoothing=args.label_smoothing)
    except ValueError as e:
        raise CheckpointError(None, f"recipe: {e}") from None
    arch, state, winfo, head = _weights(args)
    num_classes = head["num_classes"]
    try:
        check_mistakes(args.inject, recipe.optimizer, num_classes == get_arch(arch).classifier.in_features)
        batches = make_batches(arch, args.steps, args.batch_size, num_classes,
                               source="random" if args.random_input else "photos", images=args.image,
                               preprocess=args.preprocess, seed=args.seed)
    except ValueError as e:
        raise CheckpointError(None, str(e)) from None
    with Progress("train", unit="steps") as progress:
        progress.stage(f"GENet_{arch}: torch, Paddle and a float64 recomputation of each step", total=args.steps)
        result = run_training_parity(
            arch, state, batches, recipe, freeze_backbone=args.freeze_backbone, mistakes=args.inject,
            progress=lambda done, total, label: progress.update(done=done, total=total, detail=label),
            weights_info=winfo, head_info=head)
    d = result.to_dict()
    report.print_report(d, out, detail=not args.summary_only, wide=args.wide)
    for path, render in ((args.json, report.to_json), (args.html, report.to_html)):
        if path:
            report.write_atomic(path, render(d))
            out.print(f"wrote {path}")
    return 0 if result.passed else 1
