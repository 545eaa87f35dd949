"""`.pdparams` files (what `paddle.save(state_dict)` writes), read without
running code from them.

`paddle.load` would run any pickle payload, so a `.pdparams` file is read with
a restricted unpickler instead, after its pickle's work has been bounded by its
size (`pickle_scan`); numpy objects are rebuilt from plain number types only
(`safe_numpy`), and every array passes `tensor_check` before it is built. See
docs/convert.md, "Threat model".
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional

import numpy as np

from converters.files import safe_numpy
from converters.files.arrays import c_order
from converters.files.pickle_scan import PickleRefused, scan_pickle
from converters.files.safe_numpy import ArrayStandIn, UnsafeValue
from converters.files.source import first_line, open_source
from converters.files.tensor_check import TensorBudget, check_key
from converters.table.errors import CheckpointError



class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays, nothing that can run code.
    numpy's names resolve to the stand-ins of `safe_numpy`, so no numpy object
    is built from the file's values until `tensor_check` has passed them."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): safe_numpy.reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): safe_numpy.reconstruct,
        ("numpy", "ndarray"): safe_numpy.NdarrayName,
        ("numpy", "dtype"): safe_numpy.DtypeStandIn,
        ("numpy.core.multiarray", "scalar"): safe_numpy.scalar,
        ("numpy._core.multiarray", "scalar"): safe_numpy.scalar,
        ("collections", "OrderedDict"): OrderedDict,
        # Protocol-2 pickles spell array bytes as _codecs.encode(str, 'latin1').
        ("_codecs", "encode"): safe_numpy.encode,
        # paddle.save stores each Tensor as tuple((name, array)).
        ("builtins", "tuple"): tuple,
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"blocked global {module}.{name}: a .pdparams file holds only "
                                     f"arrays and plain containers, so this entry would run code on load "
                                     f"and was refused (nothing from the file was executed)")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id, which a .pdparams file never holds (refused)")


def _paddle_entry(v):
    """The array of a `paddle.save`d Tensor, stored as (tensor name, array)."""
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], ArrayStandIn):
        return v[1]
    return v


def read_pdparams(path: str, notes: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    with open_source(path) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            scan_pickle(f, size, "its pickle")
        except PickleRefused as e:
            raise CheckpointError(path, str(e)) from None
        f.seek(0)
        try:
            obj = _RestrictedUnpickler(f).load()
        except UnsafeValue as e:
            raise CheckpointError(path, f"{e}; refused (nothing from the file was executed)") from None
        except (EOFError, pickle.UnpicklingError) as e:
            if isinstance(e, EOFError) or "truncated" in str(e):
                raise CheckpointError(path, f"is truncated or damaged: its pickle stream ends early ({e})") from None
            raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {e}") from None
        except Exception as e:
            raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {first_line(e)}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, expected a dict of arrays")
    if "StructuredToParameterName@@" in obj and notes is not None:
        # paddle.save's map from structured to parameter names: bookkeeping, not weights.
        notes.append("ignored the 'StructuredToParameterName@@' name map paddle.save adds")
    entries = {check_key(path, k): _paddle_entry(v) for k, v in obj.items() if k != "StructuredToParameterName@@"}
    bad = [f"{k} ({type(v).__name__})" for k, v in entries.items() if not isinstance(v, ArrayStandIn)]
    if bad:
        raise CheckpointError(path, f"entries are not arrays: {bad[:5]}")
    budget = TensorBudget(path, size)
    for k, v in entries.items():  # every tensor checked before any becomes an array
        try:
            v.check(path, k, budget)
        except UnsafeValue as e:
            raise CheckpointError(path, f"{k}: {e}") from None
    return {k: v.build() for k, v in entries.items()}


def write_pdparams(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """The format `paddle.save(state_dict)` writes: a protocol-4 pickle of arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: c_order(v) for k, v in tensors.items()}, f, protocol=4)
