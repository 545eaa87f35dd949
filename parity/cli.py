"""`genet-parity`: one entry point, one module per sub-command.

Each command module exposes HELP, add_arguments(parser) and run(args) -> int,
and imports torch/paddle only inside run(), so `--help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

COMMANDS = {
    "demo": "parity.demo",
    "bench": "parity.bench_cmd",
    "layers": "parity.layers_cmd",
    "mapping": "parity.mapping_cmd",
    "eval": "parity.eval_cmd",
    "merge": "parity.merge_cmd",
    "certify": "parity.certify_cmd",
    "train": "parity.train_cmd",
}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


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


def run_guarded(fn, *args) -> int:
    """Map known failures to one `Error:` paragraph and an exit code; a
    traceback only for internal errors or with GENET_DEBUG=1."""
    from converters.atomic import remove_temporaries
    from converters.errors import CheckpointError, VerificationError
    from genet_arch import UnknownArchError

    try:
        try:
            return int(fn(*args) or 0)
        finally:
            remove_temporaries()
    except (CheckpointError, UnknownArchError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK
    except VerificationError as e:
        print(f"Verification failed: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if os.environ.get("GENET_DEBUG"):
            traceback.print_exc()
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # the last resort: say it is ours, not the user's
        if os.environ.get("GENET_DEBUG"):
            traceback.print_exc()
        else:
            print(f"Internal error: {type(e).__name__}: {e}\n(set GENET_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def main(argv=None) -> int:
    from converters.atomic import terminate_like_interrupt

    terminate_like_interrupt()  # a plain `kill` unwinds like Ctrl-C: no temporary output survives
    return run_guarded(_main, argv)


def _main(argv) -> int:
    from .runtime import configure_threads

    parser, modules = _parser()
    args = parser.parse_args(argv)
    configure_threads(getattr(args, "threads", None))
    module = modules[args.command]
    if getattr(module, "NEEDS_PADDLE", True):
        # Paddle's import-time notices (a C++ compiler cache it never needs here,
        # and OMP_NUM_THREADS > 1, which configure_threads sets on purpose) are
        # dropped once, here; anything else it prints still shows.
        from converters.verify import import_paddle

        import_paddle()
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
