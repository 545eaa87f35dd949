"""`genet-parity mapping ARCH`: print the shared parameter-name mapping table.

Default: a count of the transforms and one line per module that holds
tensors (its path in the official, Paddle and timm layouts and what happens
to its tensors). `--full`: one row per tensor. `--json`: every row.
"""
from __future__ import annotations

import json
from collections import Counter

HELP = "Print the parameter mapping table (official, Paddle and timm names, shapes, transforms)."
NEEDS_PADDLE = False


def add_arguments(p):
    p.add_argument("arch", help="small | normal | large (or GENet_* / gernet_s/m/l)")
    p.add_argument("--num-classes", type=int, metavar="N",
                   help="the head's size (default 1000, the published checkpoints'; a fine-tuned checkpoint's "
                        "table, whose version its conversion's provenance record names)")
    p.add_argument("--full", action="store_true", help="one row per tensor (default: one line per module)")
    p.add_argument("--wide", action="store_true", help="every column, whatever the width")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def _owner(key):
    return key.rsplit(".", 1)[0] if key else "-"


def module_rows(table):
    """One row per module holding tensors: [official, paddle, timm, tensors, transforms]."""
    by_module = {}
    for r in table.rows:
        by_module.setdefault(r.module, []).append(r)
    rows = []
    for module, params in by_module.items():
        paddle = next((_owner(r.paddle) for r in params if r.paddle), "-")
        notes = []
        for r in params:
            if r.action == "transpose":
                notes.append(f"{r.role} transposed")
            elif r.action == "drop":
                notes.append(f"{r.role} dropped")
        renamed = sorted({r.key("paddle").rsplit(".", 1)[1] for r in params
                          if r.paddle and r.paddle.rsplit(".", 1)[1] != r.official.rsplit(".", 1)[1]})
        if renamed:
            notes.append("Paddle names " + ", ".join(renamed))
        rows.append([module, "=" if paddle == module else paddle, _owner(params[0].timm), str(len(params)),
                     "; ".join(notes) or "copied"])
    return rows


def run(args) -> int:
    from converters.table.errors import CheckpointError
    from converters.table.mapping import DROP, mapping_table
    from genet_arch import DEFAULT_NUM_CLASSES, check_num_classes

    from parity.core.textout import Column, Out

    try:
        num_classes = check_num_classes(DEFAULT_NUM_CLASSES if args.num_classes is None else args.num_classes)
    except ValueError as e:
        raise CheckpointError(None, f"--num-classes: {e}") from None
    table = mapping_table(args.arch, num_classes)
    if args.json:
        rows = [{"official": r.official, "paddle": r.paddle, "timm": r.timm, "torch_shape": list(r.torch_shape),
                 "paddle_shape": None if r.paddle_shape is None else list(r.paddle_shape), "dtype": r.dtype,
                 "action": r.action, "reason": r.reason} for r in table.rows]
        print(json.dumps({"arch": table.arch.name, "num_classes": table.arch.classifier.out_features,
                          "version": table.version, "rows": rows}, indent=1))
        return 0
    out = Out(wide=args.wide)
    counts = Counter(r.action for r in table.rows)
    out.print(f"GENet_{table.arch.name} parameter mapping ({table.arch.classifier.out_features}-class head), "
              f"table {table.version}: {len(table.rows)} tensors "
              f"({counts.get('identity', 0)} copied, {counts.get('transpose', 0)} transposed, "
              f"{counts.get(DROP, 0)} dropped: torch's BatchNorm step counters, which Paddle lacks)")
    if args.full:
        rows = [[r.official, r.paddle or "-", r.timm, "x".join(map(str, r.torch_shape)) or "scalar",
                 "-" if r.paddle_shape is None else ("x".join(map(str, r.paddle_shape)) or "scalar"), r.action]
                for r in table.rows]
        out.table([Column("official key"), Column("paddle key", 1), Column("timm key", 2),
                   Column("torch shape", 3), Column("paddle shape", 3), Column("transform", 1)], rows,
                  hint="--wide or --json shows them")
        return 0
    out.table([Column("official module"), Column("paddle", 1), Column("timm", 2), Column("tensors", 3, "right"),
               Column("transforms", 4)], module_rows(table), hint="--wide or --full shows them")
    out.print("paddle '=': the same path as the official one. --full lists every tensor with its shapes; "
              "--json prints every row.", style="dim")
    return 0
