"""Parallel decoding into uint8 crops, batches normalized in the main process.

Measured on 2 cores: a pool shipping float32 arrays back gains nothing (the
786 KB copy per 256-px image costs as much as the decode it saved), while
shipping uint8 crops (196 KB) nearly doubles the rate. So workers run only
`preprocess.crop_uint8`; `normalize_batch` runs once per batch.

Memory stays bounded: at most `prefetch` batches are in flight beyond the one
the model is working on, and workers are started with 'spawn' so they never
inherit a forked copy of a loaded model or of torch/Paddle thread pools.
A ProcessPoolExecutor, not a Pool: a worker that dies makes it raise instead
of waiting forever for a result. Workers die with their parent
(`parity.inputs.workers`): a `kill -9` of the evaluation leaves none behind.

Each image's file is read once, as bytes (a regular file within
MAX_IMAGE_BYTES), and its content digest (size and BLAKE2b-128) is taken
from those bytes by the worker that decodes it: results files record it, and
`--resume` and `merge` check it, so a run never mixes two sets of images.
"""
from __future__ import annotations

import collections
import hashlib
import io
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from converters.files.paths import read_bounded
from converters.table.errors import CheckpointError

from parity.inputs.preprocessing import crop_uint8, eval_sizes, normalize_batch
from parity.inputs.workers import bind_to_parent

# The largest ImageNet val JPEG is under 16 MB; a file past this is not one of its images.
MAX_IMAGE_BYTES = 256 * 2**20
DIGEST = "blake2b-128"


def content_digest(data: bytes) -> str:
    """An image's content digest as results files record it (with its size)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class Decoded:
    """One image: its crop (None when it failed), the error, and the size and
    digest of its bytes (None when they could not be read)."""

    crop: Optional[np.ndarray]
    error: Optional[str]
    size: Optional[int] = None
    digest: Optional[str] = None


def _decoder_errors():
    from PIL import Image, UnidentifiedImageError

    # What a damaged or hostile image makes PIL raise; anything else is a bug
    # of ours and must surface as one, never be counted as a bad image.
    return (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, SyntaxError, EOFError)


def decode_one(path: str, arch: str) -> Decoded:
    """Read, digest and decode one image file into its uint8 crop. A file that
    cannot be read or decoded gives its error; an error in the cropping that
    follows a good decode is raised."""
    from PIL import Image

    try:
        data = read_bounded(path, MAX_IMAGE_BYTES, "an image")
    except CheckpointError as e:
        return Decoded(None, e.reason)
    size, digest = len(data), content_digest(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
    except _decoder_errors() as e:
        return Decoded(None, f"{type(e).__name__}: {e}", size, digest)
    return Decoded(crop_uint8(rgb, arch), None, size, digest)


def digest_one(path: str) -> Decoded:
    """Only the size and digest of an image's bytes (what `--resume` checks)."""
    try:
        data = read_bounded(path, MAX_IMAGE_BYTES, "an image")
    except CheckpointError as e:
        return Decoded(None, e.reason)
    return Decoded(None, None, len(data), content_digest(data))


def _decode_chunk(job):
    """(results, seconds this worker spent decoding them)."""
    arch, paths = job
    start = time.perf_counter()
    results = [decode_one(p, arch) for p in paths]
    return results, time.perf_counter() - start


def _digest_chunk(paths):
    start = time.perf_counter()
    return [digest_one(p) for p in paths], time.perf_counter() - start


@dataclass
class Batch:
    """One batch: network input for the images that decoded, and the rest."""

    samples: list  # the decoded samples, in order
    inputs: np.ndarray  # float32 (len(samples), 3, R, R)
    failed: List[Tuple[object, str]] = field(default_factory=list)  # (sample, decoder error)
    digests: dict = field(default_factory=dict)  # sample -> (size, digest) of its bytes, where they were read


class Decoder:
    """Iterate batches of `samples` (objects with .path relative to `root`
    resolved by `abspath(sample)`), decoding ahead in `workers` processes
    (0 = in this process).

    After (or during) iteration: `decode_s` is the seconds spent decoding,
    summed over the workers (their busy time, not the wall time), and
    `normalize_s` the main process's seconds normalizing batches; with
    `decoded`, they give the decoding stage's own rate."""

    def __init__(self, arch: str, abspath, workers: int = 0, batch_size: int = 32, prefetch: int = 2):
        if batch_size < 1:
            raise ValueError("batch size must be >= 1")
        self.arch, self.abspath, self.workers = arch, abspath, max(0, int(workers))
        self.batch_size, self.prefetch = batch_size, max(1, int(prefetch))
        self._pool = None
        self.decoded = 0
        self.decode_s = 0.0
        self.normalize_s = 0.0

    def __enter__(self):
        if self.workers > 0:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=bind_to_parent, initargs=(os.getpid(),))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self, chunk: Sequence, digest_only: bool = False):
        paths = [self.abspath(s) for s in chunk]
        work, job = (_digest_chunk, lambda ps: ps) if digest_only else (_decode_chunk, lambda ps: (self.arch, ps))
        if self._pool is None:
            return work(job(paths))
        # Split a batch across the workers so all of them decode it at once.
        step = -(-len(paths) // self.workers)
        parts = [paths[i:i + step] for i in range(0, len(paths), step)]
        return [self._pool.submit(work, job(p)) for p in parts]

    def digests(self, samples: Sequence) -> List[Decoded]:
        """The size and digest of each sample's bytes (no decoding), in order,
        read by the workers."""
        out = []
        for i in range(0, len(samples), self.batch_size * max(1, self.workers)):
            chunk = samples[i:i + self.batch_size * max(1, self.workers)]
            out += self._collect(self._submit(chunk, digest_only=True), count=False)
        return out

    def _collect(self, pending, count: bool = True) -> list:
        if isinstance(pending, tuple):  # decoded in this process
            parts = [pending]
        else:
            try:
                parts = [part.result() for part in pending]
            except BrokenProcessPool as e:
                raise RuntimeError(f"a decoding worker process died ({e}); rerun with --workers 0 to decode in "
                                   f"this process") from None
        results = [r for rs, _ in parts for r in rs]
        if count:
            self.decode_s += sum(seconds for _, seconds in parts)
            self.decoded += len(results)
        return results

    def batches(self, samples: Sequence) -> Iterator[Batch]:
        chunks = [samples[i:i + self.batch_size] for i in range(0, len(samples), self.batch_size)]
        in_flight = collections.deque()
        next_chunk = 0
        crop = eval_sizes(self.arch)[1]
        while in_flight or next_chunk < len(chunks):
            while next_chunk < len(chunks) and len(in_flight) <= self.prefetch:
                in_flight.append((chunks[next_chunk], self._submit(chunks[next_chunk])))
                next_chunk += 1
                if self._pool is None:
                    break  # in-process decoding gains nothing from running ahead
            chunk, pending = in_flight.popleft()
            results = self._collect(pending)
            ok = [(s, r.crop) for s, r in zip(chunk, results) if r.crop is not None]
            failed = [(s, r.error) for s, r in zip(chunk, results) if r.crop is None]
            digests = {s: (r.size, r.digest) for s, r in zip(chunk, results) if r.digest is not None}
            start = time.perf_counter()
            crops = np.stack([c for _, c in ok]) if ok else np.zeros((0, crop, crop, 3), np.uint8)
            inputs = normalize_batch(crops, self.arch)
            self.normalize_s += time.perf_counter() - start
            yield Batch([s for s, _ in ok], inputs, failed, digests)
