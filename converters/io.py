"""Reading and writing checkpoint files without executing code from them.

Every reader returns a plain `{name: numpy.ndarray}` dict in file order.
`torch.load` is only ever called with `weights_only=True`; `.pdparams`
files are read with a restricted unpickler (`paddle.load` would run any
pickle payload).
"""
from __future__ import annotations

import io as _io
import os
import pickle
from typing import Dict, Mapping

import numpy as np

from .errors import CheckpointError

_STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state_dict")


def unwrap_state_dict(obj, source: str) -> Dict[str, object]:
    """Accept `{'state_dict': sd}` and a bare state dict; strip a `module.`
    (DataParallel) or `_orig_mod.` (torch.compile) prefix carried by every key."""
    if isinstance(obj, Mapping):
        for wrapper in _STATE_DICT_WRAPPERS:
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(source, f"holds no state dict (found {type(obj).__name__}"
                                      f"{' with keys ' + ', '.join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ''})")
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise CheckpointError(source, f"state dict has non-string keys: {bad[:5]}")
    out = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _to_numpy(state: Mapping[str, object], source: str) -> Dict[str, np.ndarray]:
    import torch

    out: Dict[str, np.ndarray] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            # numpy has no bfloat16: keep its bits as float32, which is exact.
            out[k] = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        elif isinstance(v, np.ndarray):
            out[k] = v
        else:
            raise CheckpointError(source, f"{k}: expected a tensor, found {type(v).__name__}")
    return out


def read_torch(path: str) -> Dict[str, np.ndarray]:
    """A `.pth`/`.pt` state dict, loaded with `torch.load(weights_only=True)`."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except Exception as e:  # torch raises many types for bad pickles
        raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint with weights_only=True: "
                                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return _to_numpy(unwrap_state_dict(obj, path), path)


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays, nothing that can run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"blocked global {module}.{name}: a .pdparams file holds only "
                                     f"arrays and plain containers")


def read_pdparams(path: str) -> Dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    try:
        obj = _RestrictedUnpickler(_io.BytesIO(data)).load()
    except Exception as e:
        raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {e}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, expected a dict of arrays")
    obj = {k: v for k, v in obj.items() if k != "StructuredToParameterName@@"}
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(path, f"entries are not arrays: {bad[:5]}")
    return dict(obj)


def write_pdparams(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """The format `paddle.save(state_dict)` writes: a protocol-4 pickle of arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: np.ascontiguousarray(v) for k, v in tensors.items()}, f, protocol=4)


def write_torch(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Official layout on disk: `{'state_dict': {...}}` of torch tensors."""
    import torch

    torch.save({"state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}}, path)


def file_size(path: str) -> int:
    return os.path.getsize(path)
