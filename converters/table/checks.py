"""Strict comparison of a set of tensors against the keys and shapes expected."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

from converters.table.errors import CheckpointError, closest, fmt_shape

Expected = Sequence[Tuple[str, Tuple[int, ...]]]

_MAX_LISTED = 12


def _listing(lines):
    shown = lines[:_MAX_LISTED]
    more = len(lines) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def key_report(found: Mapping[str, Tuple[int, ...]], expected: Expected, what: str) -> Optional[str]:
    """None when `found` has exactly the expected keys and shapes; else one
    paragraph listing every missing, unexpected and misshaped tensor."""
    exp = dict(expected)
    missing = [k for k in exp if k not in found]
    unexpected = [k for k in found if k not in exp]
    misshaped = [k for k in exp if k in found and tuple(found[k]) != tuple(exp[k])]
    if not (missing or unexpected or misshaped):
        return None
    parts = [f"does not match {what} ({len(exp)} tensors expected, {len(found)} found)."]
    if misshaped:
        lines = []
        for k in misshaped:
            hint = " (transposed?)" if tuple(found[k]) == tuple(reversed(exp[k])) and len(exp[k]) == 2 else ""
            lines.append(f"{k}: expected {fmt_shape(exp[k])}, got {fmt_shape(found[k])}{hint}")
        parts.append(f"Wrong shape ({len(misshaped)}): " + _listing(lines) + ".")
    for title, keys, others, where in (("Missing", missing, unexpected, "in file"),
                                       ("Unexpected", unexpected, missing, "expected")):
        if keys:
            lines = []
            for k in keys:
                near = closest(k, others)
                lines.append(k + (f" (closest {where}: {', '.join(near)})" if near else ""))
            parts.append(f"{title} ({len(keys)}): " + _listing(lines) + ".")
    return " ".join(parts)


def check_keys(found: Mapping[str, Tuple[int, ...]], expected: Expected, what: str,
               source: Optional[str] = None) -> None:
    report = key_report(found, expected, what)
    if report:
        raise CheckpointError(source, report)
