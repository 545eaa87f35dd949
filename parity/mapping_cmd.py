"""`genet-parity mapping ARCH`: print the shared parameter-name mapping table."""
from __future__ import annotations

import json

HELP = "Print the parameter mapping table (official, Paddle and timm names, shapes, transforms)."
NEEDS_PADDLE = False


def add_arguments(p):
    p.add_argument("arch", help="small | normal | large (or GENet_* / gernet_s/m/l)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args) -> int:
    from converters.mapping import mapping_table

    table = mapping_table(args.arch)
    if args.json:
        rows = [{"official": r.official, "paddle": r.paddle, "timm": r.timm, "torch_shape": list(r.torch_shape),
                 "paddle_shape": None if r.paddle_shape is None else list(r.paddle_shape), "dtype": r.dtype,
                 "action": r.action, "reason": r.reason} for r in table.rows]
        print(json.dumps({"arch": table.arch.name, "version": table.version, "rows": rows}, indent=1))
        return 0
    from rich.console import Console

    Console().print(table.to_rich_table())
    return 0
