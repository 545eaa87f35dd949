"""`genet-parity`: one entry point, one module per sub-command.

Each command module exposes HELP, add_arguments(parser) and run(args) -> int,
and imports torch/paddle only inside run(), so `--help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from parity.core.exits import run_guarded

COMMANDS = {
    "demo": "parity.commands.demo",
    "bench": "parity.commands.bench_cmd",
    "layers": "parity.commands.layers_cmd",
    "mapping": "parity.commands.mapping_cmd",
    "eval": "parity.commands.eval_cmd",
    "merge": "parity.commands.merge_cmd",
    "certify": "parity.commands.certify_cmd",
    "train": "parity.commands.train_cmd",
}



def _parser():
    parser = argparse.ArgumentParser(prog="genet-parity", description="GENet PyTorch/PaddlePaddle parity tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


OUTPUT_OPTIONS = ("json", "html", "markdown")  # report files a command writes
INPUT_OPTIONS = ("weights", "pdparams", "list", "reference", "image")  # files a command reads


def refuse_overwriting_inputs(args) -> None:
    """No report a command writes may replace one of its inputs (same file by
    any name: a link, `./x`, a hard link) or another of its reports; checked
    before any work. `eval`, `merge` and `certify` check their own results
    files and certificates as well."""
    from converters.files.paths import refuse_output_is_input

    def given(names):
        for name in names:
            value = getattr(args, name, None)
            for v in (value if isinstance(value, list) else [value]):
                if isinstance(v, str):
                    yield f"--{name.replace('_', '-')}", v

    inputs = list(given(INPUT_OPTIONS))
    if args.command == "merge":
        inputs += [(f"shard {p}", p) for p in args.results]
    refuse_output_is_input(given(OUTPUT_OPTIONS), inputs)


def main(argv=None) -> int:
    from converters.files.atomic import terminate_like_interrupt

    terminate_like_interrupt()  # a plain `kill` unwinds like Ctrl-C: no temporary output survives
    return run_guarded(_main, argv)


def _main(argv) -> int:
    from parity.core.runtime import configure_threads

    parser, modules = _parser()
    args = parser.parse_args(argv)
    refuse_overwriting_inputs(args)
    configure_threads(getattr(args, "threads", None))
    module = modules[args.command]
    if getattr(module, "NEEDS_PADDLE", True):
        # Paddle's import-time notices (a C++ compiler cache it never needs here,
        # and OMP_NUM_THREADS > 1, which configure_threads sets on purpose) are
        # dropped once, here; anything else it prints still shows.
        from parity.core.frameworks import import_paddle

        import_paddle()
    # After Paddle's import, so that its switches are turned off too; harmless on a CPU.
    from parity.core.frameworks import pin_tf32_off

    pin_tf32_off()
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
