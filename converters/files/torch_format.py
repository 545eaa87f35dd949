"""PyTorch checkpoint files (`.pth`/`.pt`, zip or legacy pickle), loaded
without executing code from them, and written in the official layout.

Safety: `torch.load` is only ever called with `weights_only=True` (plus the
short allow-list `_safe_torch_globals` of harmless objects real checkpoints
carry beside their weights). Only an explicit `trust_pickle=True` (the CLI's
`--trust-pickle`) loads anything else, and it says so.

Hostile files: the pickle's work is bounded by its size before it is
unpickled (`pickle_scan`), a `.pth`'s structure is checked against its pickle
before torch reads it (`torch_file`), numpy objects are rebuilt from plain
number types only (`safe_numpy`), and every tensor passes `tensor_check`,
within a budget proportional to the file's size, before it becomes an array.
See docs/convert.md, "Threat model".
"""
from __future__ import annotations

import os
import pickle
import sys
import warnings
from typing import Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from converters.files import safe_numpy
from converters.files.arrays import c_order
from converters.files.safe_numpy import UnsafeValue
from converters.files.source import TORCH_ZIP, first_line, fd_path, open_source
from converters.files.state_dicts import StateDictChoice
from converters.files.state_dicts import choose as choose_state_dict
from converters.files.tensor_check import TensorBudget, check_key, check_tensor, show
from converters.files.torch_file import check_legacy, check_zip
from converters.table.errors import CheckpointError


def _safe_torch_globals():
    """Harmless objects found beside the weights in real checkpoints (training
    args, stored accuracies, epoch counters): plain data, no code on load.
    timm admits `argparse.Namespace` for the same reason. numpy's dtype and
    scalar constructors are admitted by name only: torch gets the stand-ins of
    `safe_numpy`, which build plain number types and refuse forged dtypes
    (numpy's own would take pointers from the file)."""
    import argparse

    return [argparse.Namespace, (safe_numpy.DtypeStandIn, "numpy.dtype"),
            # Files written under numpy 1.x name the scalar constructor by its old path.
            (safe_numpy.scalar, "numpy.core.multiarray.scalar"), (safe_numpy.scalar, "numpy._core.multiarray.scalar")]


def safe_global_names() -> Set[str]:
    names = set()
    for g in _safe_torch_globals():
        names.add(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}")
    return names


def _blocked_globals(path: str) -> List[str]:
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy or damaged files: the load error says enough
        return []
    allowed = safe_global_names()
    return [g for g in found if g not in allowed]


def load_torch_object(path: str, fmt: str, trust_pickle: bool = False, notes: Optional[List[str]] = None):
    """`torch.load` the whole object, safely unless `trust_pickle`."""
    with open_source(path) as f:
        return _load_torch_open(f, path, fmt, trust_pickle, notes)


def _load_torch_open(f, path: str, fmt: str, trust_pickle: bool, notes: Optional[List[str]]):
    import torch

    mmap_ok = fmt == TORCH_ZIP  # torch can only memory-map zip files, and opens them by name
    source = fd_path(f, path) if mmap_ok else f
    if trust_pickle:
        msg = ("--trust-pickle: loaded with torch.load(weights_only=False), which executes any code "
               "the file contains")
        print(f"WARNING: {path}: {msg}", file=sys.stderr)
        if notes is not None:
            notes.append(msg)
        try:
            return torch.load(source, map_location="cpu", weights_only=False, mmap=mmap_ok or None)
        except Exception as e:
            raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint: {first_line(e)}") from None
    size = os.fstat(f.fileno()).st_size
    (check_zip if fmt == TORCH_ZIP else check_legacy)(f, size, path)
    f.seek(0)
    try:
        with torch.serialization.safe_globals(_safe_torch_globals()), warnings.catch_warnings():
            # torch's own notice when it rebuilds a quantized tensor, which is then refused anyway
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap_ok or None)
    except UnsafeValue as e:
        raise CheckpointError(path, f"{e}; refused (safe loading, nothing from the file was executed)") from None
    except pickle.UnpicklingError as e:
        blocked = _blocked_globals(fd_path(f, path)) if fmt == TORCH_ZIP else []
        what = (f"safe loading (torch.load weights_only=True) refuses the Python objects it holds: "
                f"{', '.join(blocked)}" if blocked
                else f"safe loading (torch.load weights_only=True) refused it: {first_line(e)}")
        raise CheckpointError(path, f"{what}. Loading them would run code from the file, so nothing was loaded. "
                                    f"If, and only if, you trust the file's origin, pass --trust-pickle "
                                    f"(trust_pickle=True) to load it with full pickle, which executes any code "
                                    f"it contains.") from None
    except Exception as e:  # torch raises many types for damaged files
        raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint (damaged or truncated?): "
                                    f"{first_line(e)}") from None


def _describe(v) -> str:
    return type(v).__name__


def unwrap_state_dict(obj, source: str, notes: Optional[List[str]] = None, weights_key: Optional[str] = None
                      ) -> Tuple[Dict[str, object], StateDictChoice]:
    """(state dict, which entry it was) of a training checkpoint
    (`{'state_dict': sd, ...}`: the entry `weights_key`, else the default
    one, see `converters.files.state_dicts`) or a bare state dict; a
    `module.` (DataParallel) or `_orig_mod.` (torch.compile) prefix carried
    by every key is stripped. Entries beside the chosen state dict are
    reported in `notes`, not used."""
    chosen, how = choose_state_dict(obj, source, weights_key)
    if how.key is not None:
        if notes is not None:
            if how.note:
                notes.append(how.note)
            extras = [f"{show(k, 40)} ({_describe(v)})" for k, v in obj.items() if k != how.key]
            if extras:
                notes.append(f"ignored entries beside '{how.key}': {', '.join(map(str, extras))}")
        obj = chosen
    if not isinstance(obj, Mapping) or not obj:
        keys = f" with keys {', '.join(show(k, 40) for k in list(obj)[:8])}" if isinstance(obj, Mapping) and obj else ""
        empty = " (empty)" if isinstance(obj, Mapping) and not obj else ""
        raise CheckpointError(source, f"holds no state dict (found {type(obj).__name__}{empty}{keys})")
    for k in obj:
        check_key(source, k)
    out = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
            if notes is not None:
                notes.append(f"stripped the '{prefix}' prefix from every key")
    return out, how


def _check_torch_tensor(source: str, k: str, v, budget: TensorBudget) -> None:
    """The shared tensor check, on a torch tensor's metadata (no data is read)."""
    import torch

    if type(v) not in (torch.Tensor, torch.nn.Parameter):
        raise CheckpointError(source, f"{k}: a {type(v).__name__} (tensor subclass), expected a plain tensor")
    if v.layout != torch.strided:
        raise CheckpointError(source, f"{k}: a {str(v.layout).replace('torch.', '')} tensor, expected a dense one")
    if v.is_quantized:
        raise CheckpointError(source, f"{k}: a quantized tensor ({str(v.dtype).replace('torch.', '')}), expected "
                                      f"a float type (float16, bfloat16, float32 or float64)")
    if v.device.type != "cpu":
        raise CheckpointError(source, f"{k}: a tensor on device {v.device.type} without data, expected one "
                                      f"stored in the file")
    dtype = str(v.dtype).replace("torch.", "")
    available = v.untyped_storage().nbytes() - v.storage_offset() * v.element_size()
    budget.take(k, check_tensor(source, k, dtype, tuple(v.shape), available, exact=False))


def torch_to_numpy(state: Mapping[str, object], source: str, dtypes: Dict[str, str],
                    file_size: int) -> Dict[str, np.ndarray]:
    import torch

    budget = TensorBudget(source, file_size)
    for k, v in state.items():  # every tensor checked before any becomes an array
        if isinstance(v, torch.Tensor):
            _check_torch_tensor(source, k, v, budget)
        elif isinstance(v, np.ndarray):  # only from --trust-pickle files
            _check_array(source, k, v, budget)
        else:
            raise CheckpointError(source, f"{k}: expected a tensor, found {_describe(v)}")
    out: Dict[str, np.ndarray] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            dtypes[k] = str(v.dtype).replace("torch.", "")
            # numpy has no bfloat16: float32 holds every bfloat16 value exactly.
            out[k] = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        else:
            dtypes[k] = str(v.dtype)
            out[k] = v
    return out


def _check_array(source: str, k: str, v: np.ndarray, budget: TensorBudget) -> None:
    dt = v.dtype
    name = dt.name if dt.fields is None and dt.subdtype is None and not dt.hasobject else str(dt)
    budget.take(k, check_tensor(source, k, name, tuple(v.shape), v.nbytes))


class _KeepWriteError:
    """A file for torch.save that remembers the OSError of a failed write:
    torch's zip writer replaces it by an opaque RuntimeError."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def write_torch(tensors: Mapping[str, np.ndarray], path: str, wrap: bool = True,
                bf16_keys: Set[str] = frozenset()) -> None:
    """Official layout on disk: `{'state_dict': {...}}` of torch tensors
    (`wrap=False`: a bare state dict, as timm saves). A failed write (full
    disk) raises its OSError."""
    import torch

    sd = {}
    with warnings.catch_warnings():
        # Memory-mapped sources are read-only; these tensors are only serialised.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for k, v in tensors.items():
            t = torch.from_numpy(c_order(v))  # shares memory, no copy
            sd[k] = t.to(torch.bfloat16) if k in bf16_keys else t
    with open(path, "wb") as f:
        out = _KeepWriteError(f)
        try:
            torch.save({"state_dict": sd} if wrap else sd, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
