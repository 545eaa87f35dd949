"""Output that is either absent or complete, whatever signal arrives when.

Every file this project writes for a user (checkpoints, provenance records,
reports, summaries) goes through a temporary beside its destination that is
renamed into place only when complete (`AtomicFile`). Three things make that
hold under SIGINT and SIGTERM at any moment, not only between statements:

- every temporary (file or folder) is entered in a registry of this process
  while SIGINT/SIGTERM are held back (`signals_deferred`), so no temporary
  ever exists unrecorded, even if the signal lands inside `tempfile.mkstemp`
  or a constructor;
- commits (rename, registry update) run with the signals held back too, so
  several files are committed together or not at all;
- `remove_temporaries()` deletes whatever is still recorded; the commands call
  it on their way out, and it is registered with `atexit` for library users.

`terminate_like_interrupt()` makes SIGTERM (a plain `kill`) unwind like Ctrl-C,
so `finally` blocks and the cleanup run. SIGKILL runs nothing: the temporary
folders of a process that died so are removed at the next start
(`remove_stale_temporaries`, by the owner's pid in the folder's name).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from typing import Iterable, List, Optional, Set

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_live: Set[str] = set()
_deferring = [0]  # 1 inside a signals_deferred block
_pending: list = []  # signals that arrived during one


def _record(signum, frame):
    _pending.append(signum)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM back for the duration; one that arrives meanwhile
    is acted on (its handler called) as soon as the block ends.

    Two locks, because the kernel hands a process's signal to any thread
    that does not block it (torch, Paddle and OpenBLAS keep many): the main
    thread blocks the signals (so no C-level handler a library installed
    behind Python's back runs in it, possibly inside malloc), and Python's own
    handlers are swapped for a recorder (so a signal taken by another thread,
    which Python then handles in the main thread, is only noted). Outside the
    main thread, where neither can be changed, this is a no-op."""
    if threading.current_thread() is not threading.main_thread() or _deferring[0]:
        yield  # off the main thread, or nested: the outer block holds the signals
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    swapped = [s for s, h in previous.items() if h is not None]  # None: set outside Python, cannot be restored
    _deferring[0] = 1
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if hasattr(signal, "pthread_sigmask") else None
    for s in swapped:
        signal.signal(s, _record)
    try:
        yield
    finally:
        if mask is not None:
            # Unblocking runs the handler of a signal pending on this thread at
            # once: the recorder, still in place.
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s in swapped:
            signal.signal(s, previous[s])
        _deferring[0] = 0
        arrived, _pending[:] = list(_pending), []
        if arrived:
            handler = previous[arrived[0]]
            if callable(handler):
                handler(arrived[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(arrived[0])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_file(dst: str) -> str:
    """A new empty file beside `dst` (same folder, so the rename is atomic),
    recorded for removal; permissions as any new file gets, not mkstemp's 0600."""
    dst = os.path.abspath(dst)
    with signals_deferred():
        fd, path = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=os.path.dirname(dst))
        _live.add(path)
        os.close(fd)
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:
        remove(path)
        raise
    return path


# Temporary folders are named <prefix>pid<owner's pid>_<random>, so that a later
# start can tell the folders of a process killed with SIGKILL (which removes
# nothing) from those of a process still running.
STALE_PREFIX = "genet_"
_OWNED = re.compile(r"^genet_.*?pid(\d+)_[^/]*$")


def temporary_dir(prefix: str) -> str:
    """A new folder under the system's temporary folder, recorded for removal."""
    remove_stale_temporaries()
    with signals_deferred():
        path = tempfile.mkdtemp(prefix=f"{prefix}pid{os.getpid()}_")
        _live.add(path)
    return path


@contextlib.contextmanager
def temporary_folder(prefix: str):
    """`temporary_dir` for the length of a `with` block, removed on the way
    out (and, after a `kill -9`, by the next start of any command)."""
    path = temporary_dir(prefix)
    try:
        yield path
    finally:
        remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: Optional[str] = None) -> List[str]:
    """Remove the genet_* temporary folders whose owning process is dead
    (left by a `kill -9`); returns them. Folders of live processes, of other
    users and anything not named by `temporary_dir` are left alone."""
    folder = folder or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _OWNED.match(name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove(path: str) -> None:
    """Delete a recorded temporary (file or folder) and forget it."""
    with signals_deferred():
        _remove(path)
        _live.discard(path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_temporaries() -> None:
    """Delete every temporary this process still has recorded."""
    with signals_deferred():
        for path in sorted(_live):
            _remove(path)
        _live.clear()


atexit.register(remove_temporaries)


def _fsync_dir(folder: str) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # not every filesystem can sync a directory


class AtomicFile:
    """A temporary file beside `dst` that becomes `dst` only on `commit()`.

    Until then `dst` is untouched (absent or the old file); leaving the
    context without committing (any exception, Ctrl-C, SIGTERM) deletes the
    temporary, and so does `remove_temporaries()` if the object never got
    that far.
    """

    def __init__(self, dst: str):
        self.dst = os.path.abspath(dst)
        self.committed = self.synced = False
        self.tmp = temporary_file(self.dst)

    def __enter__(self):
        return self

    def sync(self) -> None:
        """Flush the temporary to disk (where a full disk may still show)."""
        if not self.synced:
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
            self.synced = True

    def commit(self) -> None:
        commit_together([self])

    def discard(self) -> None:
        if not self.committed:
            remove(self.tmp)

    def __exit__(self, *exc):
        self.discard()
        return False


def commit_together(files: Iterable[AtomicFile]) -> None:
    """Rename every temporary into place, with signals held back so that a
    signal never leaves some of them committed and others not."""
    files = [f for f in files if not f.committed]
    for f in files:  # the slow part, outside the signal block
        f.sync()
    with signals_deferred():
        for f in files:
            os.replace(f.tmp, f.dst)
            _live.discard(f.tmp)
            f.committed = True
    for folder in sorted({os.path.dirname(f.dst) for f in files}):
        _fsync_dir(folder)


def write_text_atomic(path: str, text: str) -> None:
    """Write a report or summary so that readers see the old file or the whole
    new one. A failure (a full disk, a read-only or missing folder) is a
    CheckpointError naming the file (exit 2): nothing was written."""
    from converters.table.errors import CheckpointError

    try:
        with AtomicFile(path) as out:
            with open(out.tmp, "w", encoding="utf-8") as f:
                f.write(text)
            out.commit()
    except OSError as e:
        raise CheckpointError(path, f"could not be written ({e.strerror or e}); nothing was written") from None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def terminate_like_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so temporaries are
    removed and the command reports 'Interrupted.' with exit code 130. Each
    command calls it first: the temporary folders left by an earlier
    `kill -9` are removed here too."""
    remove_stale_temporaries()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def reclaim_signal_handlers() -> None:
    """Put Python's own handlers for SIGINT and SIGTERM back in force.

    `import paddle` installs a C-level handler for SIGTERM (and SIGSEGV)
    that prints a stack trace and kills the process, behind Python's back:
    `signal.getsignal` still reports the old handler, but no `finally` block
    and no cleanup would run. Re-registering each Python handler restores it.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not None:
            signal.signal(signum, handler)
