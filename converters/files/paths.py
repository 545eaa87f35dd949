"""What a path names, and reading the files a user hands over without trusting them.

Identity: two paths name the same file when they resolve to the same real
path or the same (device, inode): `a.JPEG`, `./a.JPEG`, a symbolic link to it
and a hard link are all one file. Every command refuses an output that is
one of its inputs (`refuse_output_is_input`) before any work, so no summary,
report or provenance record ever replaces a checkpoint, list or results file.

Reading: a user's text (lists, results files, merge shards) and images are
read only from regular files (a FIFO would block forever, /dev/zero never
ends, a directory is no file) and only up to a bound (`read_bounded`), so
memory stays proportional to what a genuine input of that kind can hold.
Text is UTF-8; a leading byte-order mark is accepted and dropped.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple

from converters.table.errors import CheckpointError

BOM = "\ufeff"
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class Identity:
    """A file's canonical path, and its (device, inode) where it exists."""

    real: str
    inode: Optional[Tuple[int, int]]

    def same(self, other: "Identity") -> bool:
        return self.real == other.real or (self.inode is not None and self.inode == other.inode)


def identity(path: str) -> Identity:
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # not there yet (an output), or a name the OS refuses
        return Identity(real, None)
    return Identity(real, (st.st_dev, st.st_ino))


def same_file(a: str, b: str) -> bool:
    return identity(a).same(identity(b))


def refuse_output_is_input(outputs: Iterable[Tuple[str, Optional[str]]],
                           inputs: Iterable[Tuple[str, Optional[str]]]) -> None:
    """Raise CheckpointError when an output path names one of the inputs, or
    another output (so that one would overwrite the other). Each entry is
    (what it is, e.g. '--json', path); None paths are skipped. Call it before
    any work: nothing has been written when it refuses."""
    given_inputs = [(what, p, identity(p)) for what, p in inputs if p]
    seen = []
    for what, path in outputs:
        if not path:
            continue
        mine = identity(path)
        for other, other_path, theirs in given_inputs:
            if mine.same(theirs):
                raise CheckpointError(path, f"{what} names the same file as the input {other} ({other_path}); "
                                            f"it would be overwritten. Choose another output path (nothing was "
                                            f"written)")
        for other, other_path, theirs in seen:
            if mine.same(theirs):
                raise CheckpointError(path, f"{what} names the same file as {other} ({other_path}); give each "
                                            f"output its own path (nothing was written)")
        seen.append((what, path, mine))


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular(path: str, mode: int, what: str) -> CheckpointError:
    return CheckpointError(path, f"is {kind_of(mode)}, not a regular file; {what} is read only from a regular file "
                                 f"(a pipe or device could block or never end)")


def open_regular(path: str, what: str = "a file", missing: str = "no such file", refuse=None):
    """`path` opened for binary reading if it is a regular file: checked
    before opening (a FIFO never blocks the open) and again on the open file
    (in case the name was switched in between). `refuse(path, mode)`: the
    error for a file that is not regular (default: `not_regular`)."""
    refuse = refuse or (lambda p, mode: not_regular(p, mode, what))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(path, missing) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(mode):
        raise refuse(path, mode)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise refuse(path, mode)
    return os.fdopen(fd, "rb")


def read_bounded(path: str, limit: int, what: str = "a file", missing: str = "no such file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes (else an error
    naming the file and the bound; never more than limit + 1 bytes read)."""
    with open_regular(path, what, missing) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise too_large(path, size, limit, what)
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise CheckpointError(path, f"cannot be read: {e.strerror or e}") from None
    if len(data) > limit:  # grew while being read
        raise too_large(path, len(data), limit, what)
    return data


def too_large(path: str, size: int, limit: int, what: str) -> CheckpointError:
    return CheckpointError(path, f"is {size:,} bytes or more, over the {limit:,}-byte bound for {what}; refused "
                                 f"(is it the right file?)")


def decode_text(path: str, data: bytes) -> str:
    """UTF-8 text without a leading byte-order mark; an error naming the line
    of the first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CheckpointError(path, f"line {line}: is not UTF-8 text (byte 0x{data[e.start]:02x}); save it as "
                                    f"UTF-8") from None
    return text[1:] if text.startswith(BOM) else text


def read_text(path: str, limit: int, what: str = "a text file", missing: str = "no such file") -> str:
    return decode_text(path, read_bounded(path, limit, what, missing))


def printable_name(name: str) -> str:
    """A file name as it can be shown and stored: names that are not valid
    UTF-8 (held by Python as surrogate escapes) shown with their bytes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return repr(os.fsencode(name))[2:-1]


def is_utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def canonical_relative(path: str) -> Optional[str]:
    """A relative, '/'-separated path in normal form ('./a/../b' -> 'b'), or
    None where it leaves its folder or is absolute."""
    path = path.replace("\\", "/")
    if path.startswith("/"):
        return None
    parts: Sequence[str] = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


__all__ = ["BOM", "Identity", "canonical_relative", "decode_text", "identity", "is_utf8_name", "not_regular",
           "open_regular", "printable_name", "read_bounded", "read_text", "refuse_output_is_input", "same_file",
           "too_large"]
