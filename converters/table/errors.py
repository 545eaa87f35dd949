"""Errors users see: one paragraph naming the file, the keys and the shapes."""
from __future__ import annotations

import difflib
from typing import Iterable, List, Optional


class CheckpointError(Exception):
    """A checkpoint cannot be used as asked. `str()` is the whole explanation."""

    exit_code = 2  # bad input

    def __init__(self, source: Optional[str], reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}" if source else reason)


class VerificationError(Exception):
    """Outputs that should agree do not, beyond the project's tolerance: a
    conversion read back (nothing is written then), a file read back unlike what
    was written, or a fast inference path failing its start-up check. Exit code 1."""

    exit_code = 1


def closest(name: str, candidates: Iterable[str], n: int = 2) -> List[str]:
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"
