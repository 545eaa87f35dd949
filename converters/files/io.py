"""Reading and writing checkpoint files without executing code from them.

Readers return plain `{name: numpy.ndarray}` dicts in file order, memory-mapped
where the format allows (torch zip files, safetensors), so a conversion holds
the source tensors once, as pages of the file.

Safety: `torch.load` is only ever called with `weights_only=True` (plus the
short allow-list `_safe_torch_globals` of harmless objects real checkpoints
carry beside their weights); `.pdparams` files are read with a restricted
unpickler (`paddle.load` would run any pickle payload). Only an explicit
`trust_pickle=True` (the CLI's `--trust-pickle`) loads anything else, and it
says so.

Hostile files: only regular files are opened (a FIFO or device would block or
never end); every pickle's work is bounded by its size before it is unpickled
(`pickle_scan`), a `.pth`'s structure is checked against its pickle before
torch reads it (`torch_file`), numpy objects are rebuilt from plain number
types only (`safe_numpy`), and every tensor of every format passes one check of
its key, dtype, shape and bytes, within a budget proportional to the file's
size, before it becomes an array (`tensor_check`). See docs/convert.md,
"Threat model".
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import pickle
import stat
import struct
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from converters.files import safe_numpy
from converters.files.atomic import AtomicFile, write_text_atomic  # noqa: F401  (re-exported: the writers' home)
from converters.table.errors import CheckpointError
from converters.files.pickle_scan import PickleRefused, scan_pickle
from converters.files.safe_numpy import ArrayStandIn, UnsafeValue
from converters.files.state_dicts import StateDictChoice
from converters.files.state_dicts import choose as choose_state_dict
from converters.files.tensor_check import TensorBudget, check_dtype, check_key, check_tensor, show
from converters.files.torch_file import check_legacy, check_zip

# Formats `sniff_format` recognises from the first bytes of a file.
TORCH_ZIP, TORCH_LEGACY, SAFETENSORS, PDPARAMS = "torch-zip", "torch-legacy", "safetensors", "pdparams"

# torch's legacy (pre-1.6, non-zip) files start with this pickled long.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# GENet's safetensors headers are under 64 KiB; parsing a header costs memory
# in proportion to it, so a larger one is refused before it is read.
MAX_SAFETENSORS_HEADER = 8 * 1024 * 1024

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


# --------------------------------------------------------------------------- opening

def _not_regular(path: str, mode: int) -> CheckpointError:
    if stat.S_ISDIR(mode):
        return CheckpointError(path, "is a directory, not a checkpoint file")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return CheckpointError(path, f"is {kind}, not a regular file; checkpoints are read only from regular files "
                                 f"(reading a pipe or device could block or never end)")


def open_source(path: str):
    """`path` opened for reading, if it is a regular file: checked before
    opening (so a FIFO never blocks the open) and again on the open file
    (in case the name was switched in between). Binary file object."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return os.fdopen(fd, "rb")


def _fd_path(f, path: str) -> str:
    """A name for the already-validated open file, for readers that open by
    name (torch's memory map): /proc/self/fd/N where the OS has it."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        candidate = f"{folder}/{f.fileno()}"
        if os.path.exists(candidate):
            return candidate
    return path


# --------------------------------------------------------------------------- detection

def sniff_format(path: str) -> str:
    """The checkpoint format of `path`, from its content (never its name)."""
    with open_source(path) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            head = f.read(16)
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
        # A header length then '{': the reader checks the length against the file and its limit.
        if n >= 2 and head[8:9] == b"{":
            return SAFETENSORS
    kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
    raise CheckpointError(path, f"is not a checkpoint: it starts with {kind} {head[:12]!r}, not a PyTorch "
                                f"zip/pickle, a safetensors header or a .pdparams pickle")


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open_source(path) as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- torch files

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


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_torch_object(path: str, fmt: str, trust_pickle: bool = False, notes: Optional[List[str]] = None):
    """`torch.load` the whole object, safely unless `trust_pickle`."""
    with open_source(path) as f:
        return _load_torch_open(f, path, fmt, trust_pickle, notes)


def _load_torch_open(f, path: str, fmt: str, trust_pickle: bool, notes: Optional[List[str]]):
    import torch

    mmap_ok = fmt == TORCH_ZIP  # torch can only memory-map zip files, and opens them by name
    source = _fd_path(f, path) if mmap_ok else f
    if trust_pickle:
        msg = ("--trust-pickle: loaded with torch.load(weights_only=False), which executes any code "
               "the file contains")
        print(f"WARNING: {path}: {msg}", file=sys.stderr)
        if notes is not None:
            notes.append(msg)
        try:
            return torch.load(source, map_location="cpu", weights_only=False, mmap=mmap_ok or None)
        except Exception as e:
            raise CheckpointError(path, f"cannot be read as a PyTorch checkpoint: {_first_line(e)}") from None
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
        blocked = _blocked_globals(_fd_path(f, path)) if fmt == TORCH_ZIP else []
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


def _torch_to_numpy(state: Mapping[str, object], source: str, dtypes: Dict[str, str],
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


def read_torch(path: str, trust_pickle: bool = False, weights_key: Optional[str] = None) -> Dict[str, np.ndarray]:
    """A `.pth`/`.pt` state dict, loaded with `torch.load(weights_only=True)`."""
    return read_checkpoint(path, trust_pickle=trust_pickle, expect=(TORCH_ZIP, TORCH_LEGACY),
                           weights_key=weights_key).tensors


# --------------------------------------------------------------------------- .pdparams

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
            raise CheckpointError(path, f"is not a safe .pdparams pickle of arrays: {_first_line(e)}") from None
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
            arr = _bf16_to_f32(np.frombuffer(mm, dtype="<u2", count=(e - b) // 2, offset=start + b)).reshape(shape)
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
    state_dict: StateDictChoice = field(default_factory=StateDictChoice)  # the entry the tensors came from


def read_checkpoint(path: str, trust_pickle: bool = False, expect=None,
                    weights_key: Optional[str] = None) -> RawCheckpoint:
    """Any supported checkpoint, format detected from its content;
    `weights_key` names the state dict of a training checkpoint to read."""
    fmt = sniff_format(path)
    if expect is not None and fmt not in expect:
        raise CheckpointError(path, f"is a {fmt} file; expected {' or '.join(expect)}")
    notes: List[str] = []
    dtypes: Dict[str, str] = {}
    choice = StateDictChoice()
    if weights_key is not None and fmt not in (TORCH_ZIP, TORCH_LEGACY):
        raise CheckpointError(path, f"is a {fmt} file, which holds one state dict; --weights-key {weights_key} "
                                    f"chooses among the state dicts of a PyTorch training checkpoint")
    if fmt in (TORCH_ZIP, TORCH_LEGACY):
        obj = load_torch_object(path, fmt, trust_pickle, notes)
        state, choice = unwrap_state_dict(obj, path, notes, weights_key)
        tensors = _torch_to_numpy(state, path, dtypes, file_size(path))
    elif fmt == SAFETENSORS:
        tensors, dtypes, metadata = read_safetensors(path)
        if metadata:
            notes.append(f"safetensors metadata: {json.dumps(metadata, sort_keys=True)[:200]}")
    else:
        tensors = read_pdparams(path, notes)
        dtypes = {k: str(v.dtype) for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(path, "holds no tensors")
    return RawCheckpoint(fmt, tensors, dtypes, notes, choice)


# --------------------------------------------------------------------------- writers

def _c_order(v) -> np.ndarray:
    """C-contiguous without copying when already so; unlike
    np.ascontiguousarray it keeps 0-d arrays (BN step counters) 0-d."""
    return np.asarray(v, order="C")


def write_pdparams(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """The format `paddle.save(state_dict)` writes: a protocol-4 pickle of arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: _c_order(v) for k, v in tensors.items()}, f, protocol=4)


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
            t = torch.from_numpy(_c_order(v))  # shares memory, no copy
            sd[k] = t.to(torch.bfloat16) if k in bf16_keys else t
    with open(path, "wb") as f:
        out = _KeepWriteError(f)
        try:
            torch.save({"state_dict": sd} if wrap else sd, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise


def file_size(path: str) -> int:
    return os.path.getsize(path)


__all__ = ["AtomicFile", "MAX_SAFETENSORS_HEADER", "PDPARAMS", "RawCheckpoint", "SAFETENSORS", "TORCH_LEGACY",
           "TORCH_ZIP", "f32_to_bf16_bits", "file_size", "load_torch_object", "open_source", "read_checkpoint",
           "read_pdparams", "read_safetensors", "read_torch", "safe_global_names", "sha256_file", "sniff_format",
           "unwrap_state_dict", "write_pdparams", "write_safetensors", "write_text_atomic", "write_torch"]
