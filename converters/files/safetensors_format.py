"""safetensors files, read and written by this module's own parser and
streaming writer (the reference library is a test dependency only).

The reader memory-maps the file and checks every header entry against it
before any tensor becomes an array: dtype, shape and offsets, entries tiling
the data bytes exactly, and the total within `tensor_check`'s budget.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Dict, Mapping, Optional, Set

import numpy as np

from converters.files.arrays import bf16_to_f32, c_order, f32_to_bf16_bits
from converters.files.source import open_source
from converters.files.tensor_check import TensorBudget, check_dtype, check_key, check_tensor, show
from converters.table.errors import CheckpointError

# GENet's safetensors headers are under 64 KiB; parsing a header costs memory
# in proportion to it, so a larger one is refused before it is read.
MAX_SAFETENSORS_HEADER = 8 * 1024 * 1024

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items() if v is not None}

_ST_FIELDS = {"dtype", "shape", "data_offsets"}


def _st_entry(path: str, k: str, info, data_len: int):
    """(dtype name, shape, begin, end) of one header entry, every field checked."""
    check_key(path, k)
    if not isinstance(info, dict) or set(info) != _ST_FIELDS:
        raise CheckpointError(path, f"{k}: damaged safetensors entry {show(info, 80)}: expected an object with "
                                    f"dtype, shape and data_offsets")
    dt, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dt, str) or dt not in _ST_DTYPES:
        if isinstance(dt, str):
            check_dtype(path, k, dt)  # "dtype C64, expected a float type (...)"
        raise CheckpointError(path, f"{k}: unsupported safetensors dtype {show(dt, 20)}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        raise CheckpointError(path, f"{k}: damaged safetensors entry: data_offsets {show(offsets, 60)} is not "
                                    f"[begin, end] in integers")
    b, e = offsets
    if not 0 <= b <= e <= data_len:
        raise CheckpointError(path, f"{k}: data offsets [{b}, {e}) do not fit inside the {data_len} data bytes "
                                    f"(truncated or damaged file)")
    name = "bfloat16" if dt == "BF16" else np.dtype(_ST_DTYPES[dt]).name
    return name, shape, b, e


def read_safetensors(path: str):
    """(tensors, dtypes, metadata) of a safetensors file, as read-only views of
    a memory map; every entry is checked against the file before use, and the
    entries must tile the data bytes exactly (as the reference library requires)."""
    with open_source(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise CheckpointError(path, f"is truncated: {size} bytes, shorter than a safetensors header")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_SAFETENSORS_HEADER:
            raise CheckpointError(path, f"claims a {n}-byte safetensors header; GENet's are under 64 KiB and this "
                                        f"tool reads at most {MAX_SAFETENSORS_HEADER} (damaged or forged)")
        if n > size - 8:
            raise CheckpointError(path, f"is truncated: its safetensors header claims {n} bytes, the file has "
                                        f"{size - 8} after the length field")
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError) as e:  # bad UTF-8 is a ValueError too
            raise CheckpointError(path, f"has a damaged safetensors header: {show(str(e), 120)}") from None
        if not isinstance(header, dict):
            raise CheckpointError(path, "has a damaged safetensors header: not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise CheckpointError(path, "has a damaged safetensors header: __metadata__ is not an object of strings")
        start, data_len = 8 + n, size - 8 - n
        entries = sorted(((k,) + _st_entry(path, k, info, data_len) for k, info in header.items()),
                         key=lambda x: (x[3], x[4]))
        budget = TensorBudget(path, size)
        pos = 0
        for k, name, shape, b, e in entries:
            if b != pos:
                what = "overlaps the previous entry" if b < pos else f"leaves bytes [{pos}, {b}) unaccounted for"
                raise CheckpointError(path, f"{k}: data offsets [{b}, {e}) {what} (damaged or forged)")
            budget.take(k, check_tensor(path, k, name, shape, e - b))
            pos = e
        if pos != data_len:
            raise CheckpointError(path, f"its tensors end at byte {pos} of {data_len} data bytes (damaged or "
                                        f"truncated)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if data_len else b""
    tensors: Dict[str, np.ndarray] = {}
    dtypes: Dict[str, str] = {}
    # safetensors stores entries sorted by offset, which need not be the state
    # dict's order; the caller orders by the mapping table.
    for k, name, shape, b, e in entries:
        if name == "bfloat16":
            arr = bf16_to_f32(np.frombuffer(mm, dtype="<u2", count=(e - b) // 2, offset=start + b)).reshape(shape)
        else:
            dt = np.dtype(name).newbyteorder("<")
            arr = np.frombuffer(mm, dtype=dt, count=(e - b) // dt.itemsize, offset=start + b).reshape(shape)
        dtypes[k] = name
        tensors[k] = arr
    return tensors, dtypes, metadata


def write_safetensors(tensors: Mapping[str, np.ndarray], path: str, metadata: Optional[Mapping[str, str]] = None,
                      bf16_keys: Set[str] = frozenset()) -> None:
    """Stream a safetensors file: header, then each tensor's bytes, no second
    copy of the whole state (the library's writer buffers every tensor)."""
    header, offset, order = {}, 0, []
    for k, v in tensors.items():
        v = np.asarray(v)
        if k in bf16_keys:
            dt, nbytes = "BF16", v.size * 2
        else:
            if v.dtype not in _ST_NAMES:
                raise CheckpointError(path, f"{k}: dtype {v.dtype} cannot be stored in safetensors")
            dt, nbytes = _ST_NAMES[v.dtype], v.nbytes
        header[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [offset, offset + nbytes]}
        order.append((k, v))
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for k, v in order:
            data = f32_to_bf16_bits(v) if k in bf16_keys else c_order(v)
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            f.write(memoryview(data.reshape(-1)).cast("B"))

