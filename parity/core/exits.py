"""The exit codes of both commands and the one place that maps a failure to
its code and to one `Error:` paragraph (no traceback for a user's mistake)."""
from __future__ import annotations

import os
import sys
import traceback

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_JOB_FAILED = 5  # a launched job (torchrun, paddle.distributed.launch) ended because another rank failed or died


class JobFailed(Exception):
    """This rank of a launched job cannot go on: a peer failed, was killed or
    went silent, or the job's store is gone. Not the user's input, not a bug
    here: one `Error:` line and EXIT_JOB_FAILED."""


def run_guarded(fn, *args) -> int:
    """Map known failures to one `Error:` paragraph and an exit code; a
    traceback only for internal errors or with GENET_DEBUG=1."""
    from converters.files.atomic import remove_temporaries
    from converters.table.errors import CheckpointError, VerificationError
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
    except JobFailed as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_JOB_FAILED
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
