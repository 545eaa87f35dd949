"""Evaluation datasets in the two ImageNet-val layouts, checked before any work.

- list layout (the Paddle reproduction): an image folder plus a list file
  with one `<relative path> <integer label>` per line;
- folder layout (the official code, torchvision ImageFolder): one sub-folder
  per class, label = index of the folder name in sorted order.

Every sample carries its position in the full dataset (`index`), which is
what results files, `--resume`, `--shard` and `merge` key on.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import FrozenSet, List, Optional, Sequence, Tuple

from converters.files.paths import canonical_relative, is_utf8_name, printable_name, read_text
from converters.table.errors import CheckpointError
from genet_arch import DEFAULT_NUM_CLASSES

# torchvision's IMG_EXTENSIONS, so the folder layout finds the same files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_LISTED = 20  # problems named one by one in an error before "... and N more"
# ImageNet val's list is 1.5 MB; a list past this bound is not a list (or is /dev/zero).
MAX_LIST_BYTES = 64 * 2**20


class DataError(CheckpointError):
    """Bad evaluation input (exit code 2, like every bad input)."""


@dataclass(frozen=True)
class Sample:
    index: int
    path: str  # relative to the dataset root, '/'-separated
    label: int


@dataclass
class Dataset:
    root: str
    layout: str  # 'list' | 'folders'
    samples: List[Sample]
    list_file: Optional[str] = None
    classes: Optional[List[str]] = None
    # (device, inode) of every image: an output path among them is refused (converters.files.paths)
    inodes: FrozenSet[Tuple[int, int]] = field(default_factory=frozenset)

    def __len__(self):
        return len(self.samples)

    def abspath(self, sample: Sample) -> str:
        return os.path.join(self.root, *sample.path.split("/"))

    def fingerprint(self) -> str:
        """SHA-256 over (path, label) of every sample, in order: two runs
        agree on it exactly when they evaluate the same labelled list."""
        h = hashlib.sha256()
        for s in self.samples:
            h.update(f"{s.path}\t{s.label}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict:
        return {"root": os.path.abspath(self.root), "layout": self.layout, "n_images": len(self.samples),
                "list_file": os.path.abspath(self.list_file) if self.list_file else None,
                "n_classes": len(self.classes) if self.classes is not None else None,
                "fingerprint_sha256": self.fingerprint()}


def _listing(problems: Sequence[str]) -> str:
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"\n  {shown}{more}"


def resolve_list(list_file: Optional[str], root: str) -> Tuple[Optional[str], Optional[str]]:
    """(the list file to read, a note saying where it was found or None).
    A relative `--list` is read from the current directory; where it is not
    there, from the data folder (where ImageNet's val_list.txt usually sits),
    and the note says so. Found in neither: an error naming both places."""
    if not list_file or os.path.isabs(list_file) or os.path.lexists(list_file):
        return list_file, None
    beside = os.path.join(root, list_file)
    if os.path.lexists(beside):
        return beside, (f"--list {list_file}: not in the current directory ({os.getcwd()}); read {beside} "
                        f"(relative to --data)")
    raise DataError(list_file, f"no such list file: looked in the current directory ({os.getcwd()}) and in "
                               f"--data ({beside})")


def parse_list(list_file: str, num_classes: int = DEFAULT_NUM_CLASSES) -> List[Tuple[int, str, int]]:
    """(line number, relative path, label) per line of a `val_list.txt`.
    Blank lines are ignored; anything else that is not exactly two fields with
    a label of ASCII digits in [0, num_classes) is an error naming every bad
    line. Paths are compared in normal form ('./a.JPEG' is 'a.JPEG'), so an
    image listed twice under two spellings is named. A UTF-8 byte-order mark
    at the start is accepted."""
    try:
        lines = read_text(list_file, MAX_LIST_BYTES, "a list file", "no such list file").splitlines()
    except CheckpointError as e:
        raise DataError(e.source, e.reason) from None
    entries, problems, seen = [], [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            problems.append(f"line {number}: expected '<relative path> <integer label>', got {line.strip()!r}")
            continue
        path, label = fields
        # int() also reads '7_5_3', '+753' and other scripts' digits: a label is ASCII digits only.
        if not (label.isascii() and label.isdigit()):
            problems.append(f"line {number}: label {label!r} is not a whole number in ASCII digits")
            continue
        value = int(label)
        if not 0 <= value < num_classes:
            problems.append(f"line {number}: label {value} outside [0, {num_classes}): the model's head has "
                            f"{num_classes} classes")
            continue
        given, path = path, canonical_relative(path)
        if path is None:
            problems.append(f"line {number}: path {given!r} must be relative to the image folder")
            continue
        if path in seen:
            problems.append(f"line {number}: {path} already listed on line {seen[path]}")
            continue
        seen[path] = number
        entries.append((number, path, value))
    if problems:
        raise DataError(list_file, f"{len(problems)} malformed line(s):{_listing(problems)}")
    if not entries:
        raise DataError(list_file, "lists no images")
    return entries


def _image_identities(root: str, paths: Sequence[Tuple[str, str]], source: str) -> FrozenSet[Tuple[int, int]]:
    """(device, inode) of every image, each checked to be a regular file;
    `paths` holds (relative path, where it came from). Two names for one file
    (a link, a hard link) would count one image twice: refused, named."""
    missing, problems, first = [], [], {}
    for path, where in paths:
        try:
            st = os.stat(os.path.join(root, *path.split("/")))
        except FileNotFoundError:
            missing.append(f"{path} ({where})")
            continue
        except OSError as e:
            problems.append(f"{path} ({where}): cannot be read: {e.strerror or e}")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path} ({where}): is not a regular file")
            continue
        key = (st.st_dev, st.st_ino)
        if key in first:
            problems.append(f"{path} ({where}) is the same file as {first[key]}: it would be counted twice")
            continue
        first[key] = f"{path} ({where})"
    if missing:
        raise DataError(root, f"{len(missing)} of {len(paths)} images listed in {source} are missing:"
                              f"{_listing(missing)}")
    if problems:
        raise DataError(root, f"{len(problems)} image(s) of {source} cannot be evaluated:{_listing(problems)}")
    return frozenset(first)


def from_list(root: str, list_file: str, num_classes: int = DEFAULT_NUM_CLASSES) -> Dataset:
    entries = parse_list(list_file, num_classes)
    inodes = _image_identities(root, [(path, f"line {number}") for number, path, _ in entries], list_file)
    return Dataset(root=root, layout="list", list_file=list_file, inodes=inodes,
                   samples=[Sample(i, path, label) for i, (_, path, label) in enumerate(entries)])


def _walk(root: str, top: str) -> List[str]:
    """Image files below `top`, relative to `root`, in torchvision's order
    (sorted(os.walk(top, followlinks=True)): folders by path, each one's files
    sorted). Links to folders are followed as torchvision does, but a folder
    reached twice (a link cycle such as `loop -> .`, or two links to one
    folder) is refused before anything is listed twice."""
    folders, visited, pending = {}, {}, [top]
    while pending:
        folder = pending.pop()
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        try:
            st = os.stat(folder)
            entries = list(os.scandir(folder))
        except OSError as e:
            raise DataError(printable_name(folder), f"cannot be listed: {e.strerror or e}") from None
        key = (st.st_dev, st.st_ino)
        if key in visited:
            raise DataError(printable_name(folder), f"is the folder {printable_name(visited[key])} again (a link "
                                                    f"cycle, or a second link to one folder): its images would be "
                                                    f"counted more than once; remove the link")
        visited[key] = rel
        files = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                pending.append(entry.path)
            else:
                files.append(entry.name)
        folders[folder] = files
    found = []
    for folder in sorted(folders):
        for fn in sorted(folders[folder]):
            if fn.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(folder, fn)
                if not is_utf8_name(path):
                    raise DataError(printable_name(path), "this file name is not valid UTF-8; rename it (results "
                                                          "files and reports store names as UTF-8)")
                found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return found


def from_folders(root: str, num_classes: int = DEFAULT_NUM_CLASSES) -> Dataset:
    """torchvision ImageFolder: classes = sorted sub-folder names; images =
    files with an image extension found below each, in sorted order."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(root, "has no class sub-folders (for a flat folder of images, pass --list val_list.txt)")
    bad_names = [printable_name(c) for c in classes if not is_utf8_name(c)]
    if bad_names:
        raise DataError(os.path.join(root, bad_names[0]), "this class folder's name is not valid UTF-8; rename it")
    if len(classes) > num_classes:
        raise DataError(root, f"has {len(classes)} class folders, the model has {num_classes} classes (its head's "
                              f"size): labels {num_classes}-{len(classes) - 1} could never be predicted")
    samples, empty = [], []
    for label, name in enumerate(classes):
        found = _walk(root, os.path.join(root, name))
        if not found:
            empty.append(name)
        base = len(samples)
        samples.extend(Sample(base + k, p, label) for k, p in enumerate(found))
    if empty:
        raise DataError(root, f"{len(empty)} class folder(s) hold no image ({', '.join(IMAGE_EXTENSIONS)}):"
                              f"{_listing(empty)}")
    inodes = _image_identities(root, [(s.path, f"class {classes[s.label]}") for s in samples], "the class folders")
    return Dataset(root=root, layout="folders", samples=samples, classes=classes, inodes=inodes)


def class_note(dataset: Dataset, num_classes: int) -> Optional[str]:
    """One line when a class-folder dataset has fewer classes than the
    model's head (a subset, or a fine-tuned head evaluated on part of its
    classes): which labels it gives. None otherwise."""
    if dataset.classes is None or len(dataset.classes) >= num_classes:
        return None
    n = len(dataset.classes)
    labels = "label 0" if n == 1 else f"labels 0-{n - 1}"
    return f"{n} class folder{'s' if n != 1 else ''}: {labels} of a {num_classes}-class head"


def open_dataset(root: str, list_file: Optional[str] = None, num_classes: int = DEFAULT_NUM_CLASSES) -> Dataset:
    """The list layout when a list file is given, else the folder layout."""
    if not os.path.isdir(root):
        raise DataError(root, "no such image folder")
    if list_file:
        return from_list(root, list_file, num_classes)
    return from_folders(root, num_classes)


# (rank, world size, local GPU index) variables of the launchers: torchrun, then paddle.distributed.launch.
LAUNCHER_ENV = (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM", "FLAGS_selected_gpus"))


def launcher_rank() -> Optional[Tuple[int, int, Optional[int]]]:
    """(K, N, local GPU index) set by torchrun or paddle.distributed.launch, else None."""
    for rank, world, local in LAUNCHER_ENV:
        if os.environ.get(rank) is not None and os.environ.get(world) is not None:
            gpu = os.environ.get(local)
            return int(os.environ[rank]), int(os.environ[world]), int(gpu.split(",")[0]) if gpu else None
    return None


def parse_shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """'K/N' -> (K, N) with 0 <= K < N (K is 0-based, like RANK under torchrun);
    'auto' -> the rank and world size of torchrun / paddle.distributed.launch."""
    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        found = launcher_rank()
        if found is None:
            raise DataError(None, "--shard auto: no launcher variables found (RANK and WORLD_SIZE from torchrun, or "
                                  "PADDLE_TRAINER_ID and PADDLE_TRAINERS_NUM from paddle.distributed.launch)")
        text = f"{found[0]}/{found[1]}"
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise DataError(None, f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise DataError(None, f"--shard {text}: need 0 <= K < N (K is 0-based)")
    return k, n


def select(samples: Sequence[Sample], limit: Optional[int] = None,
           shard: Optional[Tuple[int, int]] = None) -> List[Sample]:
    """The first `limit` samples, then every N-th from the K-th: shards
    interleave, so each gets the same mix of classes, and together they are
    exactly the limited set."""
    chosen = list(samples[:limit] if limit is not None else samples)
    if shard is not None:
        k, n = shard
        chosen = chosen[k::n]
    return chosen
