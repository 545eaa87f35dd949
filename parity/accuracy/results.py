"""Results files: one evaluation's per-image predictions, checked on every read.

A results file is JSON lines. Line 1 is the header {"type": "header",
"version": 2, ...} naming everything that must match to continue or merge it
(IDENTITY_FIELDS); then one record per image, {"type": "image", "index",
"path", "label", "size", "digest", "pred": {framework: top-5}, ...}, or
{"type": "bad", ..., "error"} under --skip-bad, and {"type": "check", ...}
records (the start-up logit check, once per run or resumption).

Integrity, checked by every reader (`read_results`: `--resume`, `merge`,
`certify`):
- every image record carries the size and BLAKE2b-128 digest of the image
  file's bytes as the decoding worker read them (`digest`, `size`), so a
  resumed run can tell that the images are still the ones evaluated, and two
  runs can be paired image by image (`run_differences`);
- every line carries `chain`, the SHA-256 of the previous line's chain and
  this line's record in canonical JSON (sorted keys, no spaces, ASCII): a
  record edited, removed, reordered or inserted by hand breaks the chain at
  that line, which is named. It detects damage and hand edits, not a forger
  who recomputes the chain;
- every record is checked to be a record (its fields and their types), its
  index inside the run's images and not repeated.

One writer at a time: `ResultsWriter` holds an exclusive OS lock (flock) on
the file while it runs; a second run on the same file is refused at once.
Each batch is written as whole lines; a failed write (a full disk, a file
size limit) is cut back to the last whole line and reported, never left as a
torn line.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from converters.files.paths import decode_text, not_regular, read_bounded, too_large
from converters.table.errors import CheckpointError

from parity.inputs.data import DataError

RESULTS_VERSION = 2
RECORD_TYPES = ("image", "bad")  # the per-image records; "check" records hold the start-up logit check
LINE_TYPES = ("header",) + RECORD_TYPES + ("check",)
# Header fields that a resumed run or a merged shard must share exactly.
IDENTITY_FIELDS = ("version", "arch", "precision", "device", "frameworks", "runners", "weights", "dataset", "limit",
                   "preprocessing")
# 50,000 records of two frameworks are about 15 MB; a file past this is not a results file.
MAX_RESULTS_BYTES = 1 << 30
CHAIN_START = ""


def canonical(record: dict) -> str:
    """The one text of a record the chain is computed over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def next_chain(previous: str, record: dict) -> str:
    return hashlib.sha256((previous + "\n" + canonical(record)).encode("ascii")).hexdigest()


@dataclass
class Results:
    """A results file as read: its header, its records (images, bad images and
    checks, in file order, without their chain values) and its last chain value."""

    path: str
    header: dict
    records: List[dict]
    chain: str = CHAIN_START
    good_bytes: int = 0

    # `header, records = read_results(path)` and `read_results(path)[1]`, as before this class
    def __iter__(self):
        return iter((self.header, self.records))

    def __getitem__(self, i):
        return (self.header, self.records)[i]

    @property
    def images(self) -> Dict[int, dict]:
        return {r["index"]: r for r in self.records if r["type"] in RECORD_TYPES}

    @property
    def checks(self) -> List[dict]:
        return [r for r in self.records if r["type"] == "check"]


# ---------------------------------------------------------------- checking records
def _is_int(v) -> bool:
    return type(v) is int


def _record_problem(r, header: Optional[dict]) -> Optional[str]:
    """Why a parsed line is not a well-formed record (None when it is)."""
    if not isinstance(r, dict):
        return f"is {type(r).__name__ if r is not None else 'null'}, not a record"
    kind = r.get("type")
    if kind not in LINE_TYPES:
        return f"has type {kind!r}, not one of {', '.join(LINE_TYPES)}"
    if not isinstance(r.get("chain"), str):
        return "has no chain value"
    if kind == "header":
        return None if header is None else "is a second header"
    if header is None:
        return "comes before the header"
    if kind == "check":
        # pass: None where only the reference ran (eager torch alone: nothing compared)
        return None if (r.get("pass") is None or isinstance(r.get("pass"), bool)) and "pass" in r and \
            isinstance(r.get("judgements"), dict) else \
            "is a check record without its pass/judgements"
    for key in ("index", "label"):
        if not _is_int(r.get(key)) or r[key] < 0:
            return f"has no valid {key!r} (a whole number >= 0)"
    if not isinstance(r.get("path"), str):
        return "has no valid 'path'"
    if kind == "bad":
        return None if isinstance(r.get("error"), str) else "is a bad-image record without its error"
    if not (_is_int(r.get("size")) and isinstance(r.get("digest"), str)):
        return "has no image size and digest"
    pred = r.get("pred")
    frameworks = header.get("frameworks") or []
    if not isinstance(pred, dict) or sorted(pred) != sorted(frameworks):
        return f"has no prediction of each framework ({', '.join(frameworks)})"
    if not all(isinstance(p, list) and p and all(_is_int(c) and c >= 0 for c in p) for p in pred.values()):
        return "has a prediction that is not a list of class numbers"
    return None


def _header_problem(h: dict) -> Optional[str]:
    if h.get("version") != RESULTS_VERSION:
        return (f"was written by an older genet-parity (results version {h.get('version')!r}, this one reads "
                f"{RESULTS_VERSION}: it now records each image's content digest); run that evaluation again, "
                f"without --resume, into a new --results file")
    for key, kind in (("frameworks", list), ("expected", int), ("dataset", dict), ("weights", dict)):
        if not isinstance(h.get(key), kind):
            return f"has a header without a valid {key!r}"
    return None


def valid_indices(header: dict) -> range:
    """The dataset indices this run's records may hold: the first `limit`
    images of the dataset, every N-th from the K-th for shard K/N."""
    n = header["dataset"].get("n_images")
    n = n if _is_int(n) else 0
    if _is_int(header.get("limit")):
        n = min(n, header["limit"])
    shard = header.get("shard")
    k, every = (shard[0], shard[1]) if shard else (0, 1)
    return range(k, n, every)


# ---------------------------------------------------------------- reading
def read_results(path: str, repair: bool = False, _fd: Optional[int] = None) -> Results:
    """The checked contents of a results file. A last line cut short by an
    interruption is dropped (and, with repair=True, truncated from the file);
    anything else wrong is an error naming the file and the line."""
    try:
        raw = _read_raw(path, _fd)
    except CheckpointError as e:
        raise DataError(e.source, e.reason) from None
    # Every line is written whole and ends in a newline, so only a last piece
    # without its newline can be an interrupted write.
    complete, newline, _ = raw.rpartition(b"\n")
    good_bytes = len(complete) + len(newline)
    try:
        text = decode_text(path, complete)
    except CheckpointError as e:
        raise DataError(e.source, e.reason) from None
    header, records, chain, seen = None, [], CHAIN_START, {}
    allowed = None
    for number, line in enumerate(text.split("\n") if complete else [], start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError as e:
            raise DataError(path, f"line {number} is not valid JSON ({e}); the file is damaged") from None
        if number == 1 and isinstance(r, dict) and r.get("type") == "header" and r.get("version") != RESULTS_VERSION:
            raise DataError(path, _header_problem(r))
        problem = _record_problem(r, header)
        if problem:
            if header is None and number == 1:
                raise DataError(path, f"is not a genet-parity results file (line 1 {problem})")
            raise DataError(path, f"line {number} {problem}; the file is damaged or was edited")
        stored = r.pop("chain")
        chain = next_chain(chain, r)
        if stored != chain:
            what = f"image {r['path']} (index {r['index']})" if r["type"] in RECORD_TYPES else f"its {r['type']}"
            raise DataError(path, f"line {number} ({what}) does not match the file's digest chain: the record was "
                                  f"edited, or lines were removed, reordered or inserted before it; refused")
        if r["type"] == "header":
            problem = _header_problem(r)
            if problem:
                raise DataError(path, problem)
            header, allowed = r, valid_indices(r)
            continue
        if r["type"] in RECORD_TYPES:
            if r["index"] not in allowed:
                raise DataError(path, f"line {number}: image index {r['index']} is outside this run's images "
                                      f"(indices {allowed.start}..{max(allowed.start, allowed.stop - 1)} step "
                                      f"{allowed.step})")
            if r["index"] in seen:
                raise DataError(path, f"line {number}: image {r['path']} (index {r['index']}) is recorded again "
                                      f"(first on line {seen[r['index']]}); an image is counted once")
            seen[r["index"]] = number
        records.append(r)
    if header is None:
        raise DataError(path, "is not a genet-parity results file (no header line)")
    if repair and good_bytes < len(raw):
        if _fd is not None:
            os.ftruncate(_fd, good_bytes)
        else:
            with open(path, "r+b") as f:
                f.truncate(good_bytes)
    return Results(path, header, records, chain, good_bytes)


def _read_raw(path: str, fd: Optional[int]) -> bytes:
    if fd is None:
        return read_bounded(path, MAX_RESULTS_BYTES, "a results file", "no such results file")
    size = os.fstat(fd).st_size
    if size > MAX_RESULTS_BYTES:
        raise too_large(path, size, MAX_RESULTS_BYTES, "a results file")
    os.lseek(fd, 0, os.SEEK_SET)
    parts, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


# ---------------------------------------------------------------- comparing runs
def identity_mismatch(a: dict, b: dict) -> List[str]:
    """The header fields in which two results files' runs differ (resume and merge need none)."""
    return [k for k in IDENTITY_FIELDS if a.get(k) != b.get(k)]


def _weights_identity(weights: dict) -> dict:
    keys = ("sha256", "state_sha256", "num_classes", "state_dict")
    out = {k: weights.get(k) for k in keys}
    pdparams = weights.get("pdparams") or {}
    out["pdparams_sha256"] = pdparams.get("sha256")
    return out


# What makes two runs the same evaluation wherever they ran: the model, its
# head, the preprocessing, the precision and the images (not the runners,
# the device or the machine, which cross-environment comparisons vary).
def run_differences(a: Results, b: Results) -> List[str]:
    """How two results files differ as evaluations of one model on one set of
    images, one line per difference ([] when they are the same run): the
    architecture, head size, weights digests (and the state dict taken),
    precision, preprocessing and dataset fingerprint of their headers, and the
    size and content digest of every image both hold (by dataset index).
    Runners, devices and machines may differ: this is what distributed and
    cross-environment comparisons pair on."""
    ha, hb = a.header, b.header
    out = []
    for key, get in (("arch", lambda h: h.get("arch")), ("precision", lambda h: h.get("precision")),
                     ("preprocessing", lambda h: h.get("preprocessing")),
                     ("weights", lambda h: _weights_identity(h.get("weights") or {})),
                     ("dataset", lambda h: (h.get("dataset") or {}).get("fingerprint_sha256"))):
        if get(ha) != get(hb):
            out.append(f"{key}: {get(ha)!r} in {a.path}, {get(hb)!r} in {b.path}")
    ia, ib = a.images, b.images
    for index in sorted(set(ia) & set(ib)):
        ra, rb = ia[index], ib[index]
        if (ra.get("path"), ra.get("size"), ra.get("digest")) != (rb.get("path"), rb.get("size"), rb.get("digest")):
            out.append(f"image index {index}: {ra.get('path')} ({ra.get('size')} bytes, {ra.get('digest')}) in "
                       f"{a.path}, {rb.get('path')} ({rb.get('size')} bytes, {rb.get('digest')}) in {b.path}")
    return out


def same_run(a: Results, b: Results) -> bool:
    """True when `run_differences(a, b)` finds nothing."""
    return not run_differences(a, b)


# ---------------------------------------------------------------- writing
def already_holds_a_run(path: str) -> DataError:
    """The refusal of a results file that holds a run, when not resuming (the
    writer's, and the commands' own before any model is built)."""
    return DataError(path, "already exists; pass --resume to continue it, or choose another --results path "
                           "(nothing was overwritten)")


def _unwritable(path: str, e: OSError, cut: bool) -> DataError:
    where = ("the batch being written was cut back, so the file ends with its last whole record; continue with "
             "--resume once the problem is fixed") if cut else "nothing was written"
    return DataError(path, f"could not be written ({e.strerror or e}); {where}")


@dataclass
class ResultsWriter:
    """Appends records to a results file, held under an exclusive lock for
    the writer's life and flushed to disk after every batch, so that an
    interrupted run loses at most the batch in progress.

    resume=False refuses an existing non-empty file; resume=True continues it
    when its header's identity equals `header`'s (`done`, `checks` are what it
    holds)."""

    path: str
    header: dict
    resume: bool
    done: Dict[int, dict] = field(default_factory=dict)
    checks: List[dict] = field(default_factory=list)

    def __post_init__(self):
        path = self.path
        self._fd = None
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as e:
            raise _unwritable(path, e, False) from None
        if mode is not None and not stat.S_ISREG(mode):
            e = not_regular(path, mode, "a results file")
            raise DataError(e.source, e.reason)
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise _unwritable(path, e, False) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataError(path, "is being written by another run (it holds the file's lock); wait for it to "
                                      "finish, or give this run another --results path") from None
            raise _unwritable(path, e, False) from None
        self._fd = fd
        try:
            self._open_locked()
        except BaseException:
            self.close()
            raise

    def _open_locked(self):
        path, fd = self.path, self._fd
        if os.fstat(fd).st_size > 0:
            if not self.resume:
                raise already_holds_a_run(path)
            old = read_results(path, repair=True, _fd=fd)
            bad = identity_mismatch(old.header, self.header)
            if old.header.get("shard") != self.header.get("shard"):
                bad.append("shard")
            if bad:
                raise DataError(path, "cannot resume: it was written for a different run (differs in "
                                      f"{', '.join(bad)})")
            self.done = old.images
            self.checks = old.checks
            self._chain = old.chain
            self._size = old.good_bytes
        else:
            self._chain, self._size = CHAIN_START, 0
            self.write([self.header])

    def write(self, records: Sequence[dict]) -> None:
        """Append whole lines; on failure the file is cut back to its length
        before this call and the error names the file."""
        chain, lines = self._chain, []
        for r in records:
            chain = next_chain(chain, r)
            lines.append(canonical({**r, "chain": chain}) + "\n")
        data = "".join(lines).encode("ascii")
        try:
            os.lseek(self._fd, self._size, os.SEEK_SET)
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise _unwritable(self.path, e, True) from None
        self._chain, self._size = chain, self._size + len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def write_results_file(path: str, header: dict, checks: Sequence[dict], records: Sequence[dict]) -> None:
    """A whole results file (a job's gathered records, a paired pair) written
    beside `path` and renamed into place: a reader sees no file or all of it."""
    tmp = f"{path}.writing"
    if os.path.exists(tmp):
        os.remove(tmp)
    writer = ResultsWriter(tmp, header, resume=False)
    try:
        writer.write(checks)
        writer.write(records)
    finally:
        writer.close()
    os.replace(tmp, path)
