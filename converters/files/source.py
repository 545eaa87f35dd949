"""Opening and identifying a checkpoint file before any reader parses it.

Only regular files are opened (a FIFO or device would block or never end),
and a file's format comes from its first bytes, never its name.
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct

from converters.files.paths import open_regular
from converters.table.errors import CheckpointError

# Formats `sniff_format` recognises from the first bytes of a file.
TORCH_ZIP, TORCH_LEGACY, SAFETENSORS, PDPARAMS = "torch-zip", "torch-legacy", "safetensors", "pdparams"

# torch's legacy (pre-1.6, non-zip) files start with this pickled long.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

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
    """`path` opened for reading, if it is a regular file (binary file
    object; `paths.open_regular` checks before and after opening)."""
    return open_regular(path, "a checkpoint", refuse=_not_regular)


def fd_path(f, path: str) -> str:
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


def file_size(path: str) -> int:
    return os.path.getsize(path)


# --------------------------------------------------------------------------- error messages

def first_line(e: Exception) -> str:
    """The line of a reader's exception worth one line of an error message:
    torch buries the unpickler's reason inside a long explanation."""
    text = str(e).strip()
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return text.splitlines()[0] if text else type(e).__name__
