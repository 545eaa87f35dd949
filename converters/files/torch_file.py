"""A `.pth` file's structure checked against its pickle, before `torch.load`.

`torch.load(weights_only=True)` runs no code from a file, but it trusts the
file's sizes and layout: it allocates every storage the pickle declares (legacy
files) or maps it from the zip record of that name (zip files), whatever the
record's real length or compression. So before torch sees a file:

- zip files: every record is stored uncompressed (torch maps records as raw
  bytes, so a deflated one would be read as garbage), names are unique and
  share one archive folder (else Python's and torch's zip readers may pick
  different records), every record lies inside the file, each record's local
  header names the record the central directory names (torch reads a record
  from the offset the directory gives, whatever lies there), no two records
  share bytes (one tensor's bytes read as another's), and `data.pkl`
  exists; its pickle passes `pickle_scan` (bounded work, depth, opcodes);
  every storage it declares is a record of exactly numel x element-size bytes.
- legacy files: the five pickles at the start pass `pickle_scan`, and the
  storages the object pickle declares fit in the bytes that follow.

Every problem is a CheckpointError naming the file.
"""
from __future__ import annotations

import io
import struct
import zipfile
from typing import BinaryIO, Dict, List

from converters.table.errors import CheckpointError
from converters.files.pickle_scan import Global, PickleRefused, scan_pickle
from converters.files.tensor_check import show


def _element_size(path: str, storage_type) -> int:
    import torch

    name = storage_type.name if isinstance(storage_type, Global) else ""
    short = name.rsplit(".", 1)[-1] if name.startswith("torch.") else ""
    if name in ("torch.UntypedStorage", "torch.storage.UntypedStorage"):  # newer dtypes: bytes, typed by the tensor
        return 1
    try:  # the name-to-dtype map torch's own unpickler uses
        return torch.serialization.StorageType(short).dtype.itemsize
    except (KeyError, AttributeError):
        raise CheckpointError(path, f"declares a storage of unknown type {show(storage_type, 60)}") from None


def _storages(path: str, pids, fields: int) -> Dict[str, int]:
    """{storage key: bytes} from persistent ids ('storage', type, key, location, numel[, view])."""
    out: Dict[str, int] = {}
    for pid in pids:
        ok = (isinstance(pid, tuple) and len(pid) == fields and pid[0] == "storage" and isinstance(pid[2], str)
              and type(pid[4]) is int and pid[4] >= 0)
        if not ok:
            raise CheckpointError(path, f"declares a storage it does not describe: {show(pid, 80)} (damaged or forged)")
        nbytes = pid[4] * _element_size(path, pid[1])
        if out.setdefault(pid[2], nbytes) != nbytes:
            raise CheckpointError(path, f"declares storage {show(pid[2], 40)} twice with different sizes (forged)")
    return out


def _zip_damaged(path: str, what: str) -> CheckpointError:
    return CheckpointError(path, f"cannot be read as a PyTorch checkpoint (damaged or truncated?): {what}")


def _name_bytes(info: zipfile.ZipInfo) -> bytes:
    """A record's name as its local header spells it (UTF-8 when flagged, else cp437, as zipfile reads it)."""
    return info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def check_zip(f: BinaryIO, size: int, path: str) -> None:
    try:
        z = zipfile.ZipFile(f)
        infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _zip_damaged(path, str(e) or type(e).__name__) from None
    if not infos:
        raise _zip_damaged(path, "an empty zip archive")
    names = [i.filename for i in infos]
    seen = set()
    dup = next((n for n in names if n in seen or seen.add(n)), None)  # linear: one set, one pass
    if dup is not None:
        raise CheckpointError(path, f"holds two zip records named {show(dup, 60)}; a torch checkpoint names each "
                                    f"once (readers would disagree on which one counts)")
    if "/" not in names[0]:
        raise _zip_damaged(path, f"its first record {show(names[0], 60)} is not in an archive folder, as every "
                                 f"torch.save file's records are")
    prefix = names[0].split("/", 1)[0] + "/"
    stray = [n for n in names if not n.startswith(prefix)]
    if stray:
        raise CheckpointError(path, f"holds records outside its archive folder {show(prefix, 40)}: "
                                    f"{show(stray[0], 60)}")
    records, extents = {}, []
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(path, f"zip record {show(info.filename, 60)} is compressed; torch checkpoints store "
                                        f"records uncompressed (and torch would read compressed bytes as tensor data)")
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise _zip_damaged(path, f"record {show(info.filename, 60)} has no local header")
        n, m = struct.unpack("<HH", local[26:30])
        end = info.header_offset + 30 + n + m + info.file_size
        if end > size:
            raise _zip_damaged(path, f"record {show(info.filename, 60)} extends past the end of the file")
        local_name = f.read(n)
        if local_name != _name_bytes(info):
            raise CheckpointError(path, f"zip record {show(info.filename, 60)}: its local header names "
                                        f"{show(local_name.decode('utf-8', 'replace'), 60)}; the central directory "
                                        f"points it at another record's bytes (damaged or forged)")
        records[info.filename] = info
        extents.append((info.header_offset, end, info.filename))
    extents.sort()
    for (_, end, name), (start, _, other) in zip(extents, extents[1:]):
        if start < end:
            raise CheckpointError(path, f"zip records {show(name, 60)} and {show(other, 60)} overlap in the file; "
                                        f"each record's bytes must be its own (damaged or forged)")
    pkl = records.get(prefix + "data.pkl")
    if pkl is None:
        raise _zip_damaged(path, f"no {prefix}data.pkl record")
    try:
        data = z.read(pkl)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _zip_damaged(path, str(e) or type(e).__name__) from None
    try:
        pids = scan_pickle(io.BytesIO(data), len(data), "its data.pkl record")
    except PickleRefused as e:
        raise CheckpointError(path, str(e)) from None
    for key, nbytes in _storages(path, pids, 5).items():
        record = records.get(f"{prefix}data/{key}")
        if record is None:
            raise CheckpointError(path, f"declares storage {show(key, 40)}, which has no record in the file "
                                        f"(damaged or truncated)")
        if record.file_size != nbytes:
            raise CheckpointError(path, f"storage {show(key, 40)} is declared as {nbytes} bytes, its record holds "
                                        f"{record.file_size} (damaged or forged)")


def check_legacy(f: BinaryIO, size: int, path: str) -> None:
    labels = ("its magic number", "its protocol version", "its system info", "its pickled object",
              "its storage list")
    pids: List = []
    f.seek(0)
    try:
        for label in labels:
            found = scan_pickle(f, size, label)
            if label == "its pickled object":
                pids = found
    except PickleRefused as e:
        raise CheckpointError(path, str(e)) from None
    declared = _storages(path, pids, 6)
    need = sum(8 + n for n in declared.values())  # each storage: an 8-byte count, then its bytes
    left = size - f.tell()
    if need > left:
        raise CheckpointError(path, f"declares {len(declared)} storages of {need} bytes, but only {left} bytes "
                                    f"follow its pickles (truncated or forged)")


__all__ = ["check_legacy", "check_zip"]
