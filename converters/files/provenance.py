"""The provenance record written next to a converted checkpoint (`<dst>.json`):
what was converted, by which tool and mapping table, and how it was verified,
so anyone can later check a file against its origin."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import Mapping, Optional

import numpy as np

from converters.files.atomic import AtomicFile
from converters.files.arrays import f32_to_bf16_bits

PROVENANCE_FORMAT = 1


def provenance_path(dst: str) -> str:
    """Where the record of the checkpoint `dst` lives: beside it, named after it."""
    return dst + ".json"


def tool_version() -> str:
    return _installed("genet-parity")


def _installed(dist: str) -> str:
    """A package's version without importing it (Paddle's import is slow)."""
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not installed"


def tensor_sha256(v: np.ndarray, bf16: bool = False) -> str:
    """SHA-256 of a tensor's bytes as stored (C order, little endian)."""
    data = f32_to_bf16_bits(v) if bf16 else np.asarray(v, order="C")
    return hashlib.sha256(memoryview(data.reshape(-1)).cast("B")).hexdigest()


def record(*, source, dst: str, dst_format: str, dst_layout: str, tensors: Mapping[str, np.ndarray],
           bf16_keys, table_version: str, options: dict, summary: dict, verification: Optional[dict]) -> dict:
    import numpy
    import torch

    return {
        "provenance_format": PROVENANCE_FORMAT,
        "tool": "genet-convert", "tool_version": tool_version(),
        "versions": {"python": platform.python_version(), "numpy": numpy.__version__, "torch": torch.__version__,
                     "paddlepaddle": _installed("paddlepaddle")},
        "arch": f"GENet_{source.arch}",
        "num_classes": source.num_classes,  # the head's size, read from the source's classifier
        "source": {"path": os.path.abspath(source.path), "sha256": source.sha256, "format": source.format,
                   "layout": source.layout, "bytes": source.size_bytes,
                   # which state dict of a training checkpoint was converted, and which others it holds
                   "state_dict": source.state_dict.to_dict(), "notes": source.notes},
        "destination": {"path": os.path.abspath(dst), "format": dst_format, "layout": dst_layout},
        "mapping_table_version": table_version,
        "options": options,
        "summary": summary,
        "verification": verification if verification is not None else "skipped (--no-verify)",
        "tensors": {k: {"shape": list(np.shape(v)),
                        "dtype": "bfloat16" if k in bf16_keys else str(np.asarray(v).dtype),
                        "sha256": tensor_sha256(v, k in bf16_keys)} for k, v in tensors.items()},
    }


def write_record(rec: dict, path: str) -> AtomicFile:
    """Write the record to a temporary file; the caller commits it with the checkpoint."""
    out = AtomicFile(path)
    try:
        with open(out.tmp, "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
    except BaseException:
        out.discard()
        raise
    return out
