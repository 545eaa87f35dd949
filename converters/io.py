"""Reading and writing checkpoint files without executing code from them.

Readers return plain `{name: numpy.ndarray}` dicts in file order, memory-mapped
where the format allows (torch zip files, safetensors), so a conversion holds
the source tensors once, as pages of the file.

Safety: `torch.load` is only ever called with `weights_only=True` (plus the
short allow-list `SAFE_TORCH_GLOBALS` of harmless objects real checkpoints
carry beside their weights); `.pdparams` files are read with a restricted
unpickler (`paddle.load` would run any pickle payload). Only an explicit
`trust_pickle=True` (the CLI's `--trust-pickle`) loads anything else, and it
says so.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import pickle
import struct
import sys
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Set

import numpy as np

from .atomic import AtomicFile, write_text_atomic  # noqa: F401  (re-exported: the writers' home)
from .errors import CheckpointError

_STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state_dict")

# Formats `sniff_format` recognises from the first bytes of a file.
TORCH_ZIP, TORCH_LEGACY, SAFETENSORS, PDPARAMS = "torch-zip", "torch-legacy", "safetensors", "pdparams"

# torch's legacy (pre-1.6, non-zip) files start with this pickled long.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


# --------------------------------------------------------------------------- detection

def sniff_format(path: str) -> str:
    """The checkpoint format of `path`, from its content (never its name)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except IsADirectoryError:
        raise CheckpointError(path, "is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {e.strerror or e}") from None
    if size == 0:
        raise CheckpointError(path, "is empty (0 bytes); expected a checkpoint")
    if head.startswith(b"PK\x03\x04"):
        return TORCH_ZIP
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if head[2:3] == b"\x8a" and head[3:4] == b"\x0a" and head[4:14] == _TORCH_LEGACY_MAGIC:
            return TORCH_LEGACY
        return PDPARAMS
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        # A plausible header length: a shorter file is a truncated safetensors, reported as such.
        if 2 <= n <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return SAFETENSORS
    kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
    raise CheckpointError(path, f"is not a checkpoint: it starts with {kind} {head[:12]!r}, not a PyTorch "
                                f"zip/pickle, a safetensors header or a .pdparams pickle")


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- torch files

def _safe_torch_globals():
    """Harmless objects found beside the weights in real checkpoints (training
    args, stored accuracies, epoch counters): plain data, no code on load.
    timm admits `argparse.Namespace` for the same reason."""
    import argparse

    from numpy import dtypes as np_dtypes

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    out = [argparse.Namespace, np.dtype, scalar,
           # Files written under numpy 1.x name the scalar constructor by its old path.
           (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    out += [getattr(np_dtypes, n) for n in dir(np_dtypes) if n.endswith("DType")]
    return out


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


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_torch_object(path: str, fmt: str, trust_pickle: bool = False, notes: Optional[List[str]] = None):
    """`torch.load` the whole object, safely unless `trust_pickle`."""
    import torch

    mmap_ok = fmt == TORCH_ZIP  # torch can only memory-map zip files
    if trust_pickle:
        msg = ("--trust-pickle: loaded with torch.load(weights_only=False), which executes any code "
               "the file contains")
        print(f"WARNING: {path}: {msg}", file=sys.stderr)
        if notes is not None:
            notes.append(msg)
        try:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap_ok or None)
        except Exception as e:
            raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint: {_first_line(e)}") from None
    try:
        with torch.serialization.safe_globals(_safe_torch_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap_ok or None)
    except pickle.UnpicklingError as e:
        blocked = _blocked_globals(path) if fmt == TORCH_ZIP else []
        what = (f"safe loading (torch.load weights_only=True) refuses the Python objects it holds: "
                f"{', '.join(blocked)}" if blocked
                else f"safe loading (torch.load weights_only=True) refused it: {_first_line(e)}")
        raise CheckpointError(path, f"{what}. Loading them would run code from the file, so nothing was loaded. "
                                    f"If, and only if, you trust the file's origin, pass --trust-pickle "
                                    f"(trust_pickle=True) to load it with full pickle, which executes any code "
                                    f"it contains.") from None
    except Exception as e:  # torch raises many types for damaged files
        raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint (damaged or truncated?): "
                                    f"{_first_line(e)}") from None


def _describe(v) -> str:
    return type(v).__name__


def unwrap_state_dict(obj, source: str, notes: Optional[List[str]] = None) -> Dict[str, object]:
    """Accept `{'state_dict': sd}` and a bare state dict; strip a `module.`
    (DataParallel) or `_orig_mod.` (torch.compile) prefix carried by every key.
    Entries beside the wrapped state dict are reported in `notes`, not used."""
    if isinstance(obj, Mapping):
        for wrapper in _STATE_DICT_WRAPPERS:
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                extras = [f"{k} ({_describe(v)})" for k, v in obj.items() if k != wrapper]
                if extras and notes is not None:
                    notes.append(f"ignored entries beside '{wrapper}': {', '.join(map(str, extras))}")
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        keys = f" with keys {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, Mapping) and obj else ""
        empty = " (empty)" if isinstance(obj, Mapping) and not obj else ""
        raise CheckpointError(source, f"holds no state dict (found {type(obj).__name__}{empty}{keys})")
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise CheckpointError(source, f"state dict has non-string keys: {bad[:5]}")
    out = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
            if notes is not None:
                notes.append(f"stripped the '{prefix}' prefix from every key")
    return out


def _torch_to_numpy(state: Mapping[str, object], source: str, dtypes: Dict[str, str]) -> Dict[str, np.ndarray]:
    import torch

    out: Dict[str, np.ndarray] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            dtypes[k] = str(v.dtype).replace("torch.", "")
            # numpy has no bfloat16: float32 holds every bfloat16 value exactly.
            out[k] = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        elif isinstance(v, np.ndarray):
            dtypes[k] = str(v.dtype)
            out[k] = v
        else:
            raise CheckpointError(source, f"{k}: expected a tensor, found {_describe(v)}")
    return out


def read_torch(path: str, trust_pickle: bool = False) -> Dict[str, np.ndarray]:
    """A `.pth`/`.pt` state dict, loaded with `torch.load(weights_only=True)`."""
    return read_checkpoint(path, trust_pickle=trust_pickle, expect=(TORCH_ZIP, TORCH_LEGACY)).tensors


# --------------------------------------------------------------------------- .pdparams

class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays, nothing that can run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        # Protocol-2 pickles spell array bytes as _codecs.encode(str, 'latin1').
        ("_codecs", "encode"),
        # paddle.save stores each Tensor as tuple((name, array)).
        ("builtins", "tuple"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"blocked global {module}.{name}: a .pdparams file holds only "
                                     f"arrays and plain containers, so this entry would run code on load "
                                     f"and was refused (nothing from the file was executed)")


def _paddle_entry(v):
    """The array of a `paddle.save`d Tensor, stored as (tensor name, array)."""
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], np.ndarray):
        return v[1]
    return v


def read_pdparams(path: str, notes: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except (EOFError, pickle.UnpicklingError) as e:
        if isinstance(e, EOFError) or "truncated" in str(e):
            raise CheckpointError(path, f"is truncated or damaged: its pickle stream ends early ({e})") from None
        raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {e}") from None
    except Exception as e:
        raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {e}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, expected a dict of arrays")
    if "StructuredToParameterName@@" in obj and notes is not None:
        # paddle.save's map from structured to parameter names: bookkeeping, not weights.
        notes.append("ignored the 'StructuredToParameterName@@' name map paddle.save adds")
    obj = {k: _paddle_entry(v) for k, v in obj.items() if k != "StructuredToParameterName@@"}
    bad = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(path, f"entries are not arrays: {bad[:5]}")
    return dict(obj)


# --------------------------------------------------------------------------- safetensors

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items() if v is not None}


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def read_safetensors(path: str):
    """(tensors, dtypes, metadata) of a safetensors file, as read-only views of
    a memory map; every offset is checked against the file before use."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise CheckpointError(path, f"is truncated: {size} bytes, shorter than a safetensors header")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise CheckpointError(path, f"is truncated: its safetensors header claims {n} bytes, the file has "
                                        f"{size - 8} after the length field")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointError(path, f"has a damaged safetensors header: {e}") from None
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 8 + n else b""
    if not isinstance(header, dict):
        raise CheckpointError(path, "has a damaged safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    start, data_len = 8 + n, size - 8 - n
    tensors: Dict[str, np.ndarray] = {}
    dtypes: Dict[str, str] = {}
    # safetensors stores entries sorted by offset, which need not be the state
    # dict's order; the caller orders by the mapping table.
    for k, info in sorted(header.items(), key=lambda kv: (kv[1] or {}).get("data_offsets", [0])[0]
                          if isinstance(kv[1], dict) else 0):
        try:
            dt, shape, (b, e) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(path, f"{k}: damaged safetensors entry {info!r}") from None
        if dt not in _ST_DTYPES:
            raise CheckpointError(path, f"{k}: unsupported safetensors dtype {dt}")
        itemsize = 2 if dt == "BF16" else np.dtype(_ST_DTYPES[dt]).itemsize
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= e <= data_len) or e - b != count * itemsize:
            raise CheckpointError(path, f"{k}: data offsets [{b}, {e}) do not fit shape {shape} {dt} inside the "
                                        f"{data_len} data bytes (truncated or damaged file)")
        if dt == "BF16":
            arr = _bf16_to_f32(np.frombuffer(mm, dtype="<u2", count=count, offset=start + b)).reshape(shape)
            dtypes[k] = "bfloat16"
        else:
            arr = np.frombuffer(mm, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"), count=count,
                                offset=start + b).reshape(shape)
            dtypes[k] = str(arr.dtype)
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
            data = f32_to_bf16_bits(v) if k in bf16_keys else _c_order(v)
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            f.write(memoryview(data.reshape(-1)).cast("B"))


# --------------------------------------------------------------------------- any format

@dataclass
class RawCheckpoint:
    """The tensors of a file as read, before any naming is interpreted."""

    format: str
    tensors: Dict[str, np.ndarray]
    dtypes: Dict[str, str] = field(default_factory=dict)  # dtype in the file, per key
    notes: List[str] = field(default_factory=list)


def read_checkpoint(path: str, trust_pickle: bool = False, expect=None) -> RawCheckpoint:
    """Any supported checkpoint, format detected from its content."""
    fmt = sniff_format(path)
    if expect is not None and fmt not in expect:
        raise CheckpointError(path, f"is a {fmt} file; expected {' or '.join(expect)}")
    notes: List[str] = []
    dtypes: Dict[str, str] = {}
    if fmt in (TORCH_ZIP, TORCH_LEGACY):
        obj = load_torch_object(path, fmt, trust_pickle, notes)
        tensors = _torch_to_numpy(unwrap_state_dict(obj, path, notes), path, dtypes)
    elif fmt == SAFETENSORS:
        tensors, dtypes, metadata = read_safetensors(path)
        if metadata:
            notes.append(f"safetensors metadata: {json.dumps(metadata, sort_keys=True)[:200]}")
    else:
        tensors = read_pdparams(path, notes)
        dtypes = {k: str(v.dtype) for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(path, "holds no tensors")
    return RawCheckpoint(fmt, tensors, dtypes, notes)


# --------------------------------------------------------------------------- writers

def _c_order(v) -> np.ndarray:
    """C-contiguous without copying when already so; unlike
    np.ascontiguousarray it keeps 0-d arrays (BN step counters) 0-d."""
    return np.asarray(v, order="C")


def write_pdparams(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """The format `paddle.save(state_dict)` writes: a protocol-4 pickle of arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: _c_order(v) for k, v in tensors.items()}, f, protocol=4)


def write_torch(tensors: Mapping[str, np.ndarray], path: str, wrap: bool = True,
                bf16_keys: Set[str] = frozenset()) -> None:
    """Official layout on disk: `{'state_dict': {...}}` of torch tensors
    (`wrap=False`: a bare state dict, as timm saves)."""
    import torch

    sd = {}
    with warnings.catch_warnings():
        # Memory-mapped sources are read-only; these tensors are only serialised.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for k, v in tensors.items():
            t = torch.from_numpy(_c_order(v))  # shares memory, no copy
            sd[k] = t.to(torch.bfloat16) if k in bf16_keys else t
    torch.save({"state_dict": sd} if wrap else sd, path)


def file_size(path: str) -> int:
    return os.path.getsize(path)


__all__ = ["AtomicFile", "write_text_atomic", "RawCheckpoint", "PDPARAMS", "SAFETENSORS", "TORCH_LEGACY", "TORCH_ZIP", "f32_to_bf16_bits",
           "file_size", "load_torch_object", "read_checkpoint", "read_pdparams", "read_safetensors", "read_torch",
           "safe_global_names", "sha256_file", "sniff_format", "unwrap_state_dict", "write_pdparams",
           "write_safetensors", "write_torch"]
