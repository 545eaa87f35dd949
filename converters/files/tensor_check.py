"""The one check every tensor of every format passes before it becomes an array.

Each reader (`.pdparams`, `.pth` zip and legacy, `.safetensors`) learns a
tensor's key, dtype, shape and the bytes the file stores for it, and calls
`check_tensor` before any numpy or torch constructor sees them:

- the key is a printable string (state dicts are keyed by names; this keeps
  every later message on one line);
- the dtype is a plain number type this tool reads: float16, bfloat16,
  float32, float64, int64 or int32. Anything else (bool, complex, other
  integers, datetime, str, object, structured, quantized) is refused by name:
  `fc_linear.bias: dtype complex64, expected a float type (...)`. Once the
  layout is known, `converters.files.load` holds each tensor to its mapping-table
  row: everything but the BatchNorm step counters floats
  (`check_dtype(..., integer=False)`); the step counters (`num_batches_tracked`,
  metadata no conversion keeps) any of these types, holding a whole
  non-negative number (`converters.files.load.check_step_counters`);
- the shape is a tuple of non-negative integers, and shape x itemsize equals
  the bytes the file stores for the tensor (at most, for torch views of a
  larger storage).

`TensorBudget` bounds the total: the tensors a file declares may add up to at
most `TENSOR_BYTES_FACTOR` x the file's size. A real checkpoint stores each
tensor's bytes once, so its tensors add up to less than its size; only
tensors that repeat the same stored bytes (views of one storage, overlapping
offsets, one array under many keys) can exceed it, and those are refused
before any array is built. bfloat16 tensors are widened to float32 in memory,
so a file's arrays take at most 2 x `TENSOR_BYTES_FACTOR` x its size.
"""
from __future__ import annotations

import math
from typing import Optional

from converters.table.errors import CheckpointError, fmt_shape

STEP_COUNTER = "num_batches_tracked"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INTEGER_DTYPES = ("int64", "int32")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int64": 8, "int32": 4}
TENSOR_BYTES_FACTOR = 2
MAX_KEY_LENGTH = 512
MAX_DIMS = 8


def show(value, limit: int = 80) -> str:
    """A bounded, one-line rendering of a name or value from a file."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_key(source, key) -> str:
    if not isinstance(key, str):
        raise CheckpointError(source, f"key {show(key)} ({type(key).__name__}) is not a tensor name: a state dict's "
                                      f"keys are strings")
    if not key.isprintable() or len(key) > MAX_KEY_LENGTH:
        raise CheckpointError(source, f"key {show(key)} is not a tensor name (control characters, or longer than "
                                      f"{MAX_KEY_LENGTH} characters)")
    return key


def _is_step_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == STEP_COUNTER


def _expected_text(integer: bool) -> str:
    if integer:
        return ("an integer type (int64 or int32), or a float type holding a whole number, for a BatchNorm "
                "step counter")
    return "a float type (float16, bfloat16, float32 or float64)"


def check_dtype(source, key: str, dtype: str, integer: Optional[bool] = None) -> None:
    """`dtype` (a numpy/torch name such as 'float32') must be one this tool
    reads; with `integer` given (from the layout's mapping table), of that
    kind. Without it, the message's wording follows the key's name."""
    allowed = FLOAT_DTYPES + INTEGER_DTYPES if integer is None else INTEGER_DTYPES if integer else FLOAT_DTYPES
    if dtype not in allowed:
        integer = _is_step_counter(key) if integer is None else integer
        hint = ("; paddle.save writes bfloat16 tensors as uint16 bits, indistinguishable from integers: save "
                "them as float32" if dtype == "uint16" and not integer else "")
        raise CheckpointError(source, f"{key}: dtype {show(dtype, 60)}, expected {_expected_text(integer)}{hint}")


def check_tensor(source, key, dtype: str, shape, stored_bytes: int, exact: bool = True) -> int:
    """Validate one tensor; returns the bytes it declares (shape x itemsize).

    `stored_bytes` is what the file holds for it: exactly its bytes
    (safetensors offsets, a pickled array's data), or, with `exact=False`,
    what remains of the storage a torch tensor views."""
    check_key(source, key)
    check_dtype(source, key, dtype)
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMS \
            or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(source, f"{key}: shape {show(shape, 60)} is not a list of at most {MAX_DIMS} "
                                      f"non-negative integers (damaged or forged)")
    need = math.prod(shape) * ITEMSIZE[dtype]
    if need != stored_bytes if exact else need > stored_bytes:
        stored = f"{stored_bytes} bytes" if stored_bytes >= 0 else "no bytes"
        raise CheckpointError(source, f"{key}: shape {fmt_shape(shape)} of {dtype} needs {need} bytes, the file "
                                      f"stores {stored} for it (damaged or forged)")
    return need


class TensorBudget:
    """Refuses a file whose tensors add up to more than
    TENSOR_BYTES_FACTOR x its size (see the module docstring)."""

    def __init__(self, source, file_size: int):
        self.source, self.file_size = source, file_size
        self.limit = TENSOR_BYTES_FACTOR * file_size
        self.total = 0

    def take(self, key: str, nbytes: int) -> None:
        self.total += nbytes
        if self.total > self.limit:
            raise CheckpointError(self.source, f"declares more than {self.total} bytes of tensors (up to {key}) in a "
                                               f"{self.file_size}-byte file, over {TENSOR_BYTES_FACTOR} x its size: "
                                               f"tensors repeat the same stored bytes; refused before building "
                                               f"any array")


__all__ = ["FLOAT_DTYPES", "INTEGER_DTYPES", "STEP_COUNTER", "TENSOR_BYTES_FACTOR", "TensorBudget", "check_dtype",
           "check_key", "check_tensor", "show"]
