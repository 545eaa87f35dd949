"""Parallel decoding into uint8 crops, batches normalized in the main process.

Measured on 2 cores: a pool shipping float32 arrays back gains nothing (the
786 KB copy per 256-px image costs as much as the decode it saved), while
shipping uint8 crops (196 KB) nearly doubles the rate. So workers run only
`preprocess.crop_uint8`; `normalize_batch` runs once per batch.

Memory stays bounded: at most `prefetch` batches are in flight beyond the one
the model is working on, and workers are started with 'spawn' so they never
inherit a forked copy of a loaded model or of torch/Paddle thread pools.
A ProcessPoolExecutor, not a Pool: a worker that dies makes it raise instead
of waiting forever for a result.
"""
from __future__ import annotations

import collections
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from parity.inputs.preprocessing import crop_uint8, eval_sizes, normalize_batch


def decode_one(path: str, arch: str) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """(crop, None) or (None, the decoder's error) for one image file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return crop_uint8(image, arch), None
    except Exception as e:  # any decoder failure is reported with the file, never dropped
        return None, f"{type(e).__name__}: {e}"


def _decode_chunk(job):
    """(results, seconds this worker spent decoding them)."""
    arch, paths = job
    start = time.perf_counter()
    results = [decode_one(p, arch) for p in paths]
    return results, time.perf_counter() - start


@dataclass
class Batch:
    """One batch: network input for the images that decoded, and the rest."""

    samples: list  # the decoded samples, in order
    inputs: np.ndarray  # float32 (len(samples), 3, R, R)
    failed: List[Tuple[object, str]] = field(default_factory=list)  # (sample, decoder error)


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
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self, chunk: Sequence):
        paths = [self.abspath(s) for s in chunk]
        if self._pool is None:
            return _decode_chunk((self.arch, paths))
        # Split a batch across the workers so all of them decode it at once.
        step = -(-len(paths) // self.workers)
        parts = [paths[i:i + step] for i in range(0, len(paths), step)]
        return [self._pool.submit(_decode_chunk, (self.arch, p)) for p in parts]

    def _collect(self, pending) -> list:
        if isinstance(pending, tuple):  # decoded in this process
            parts = [pending]
        else:
            try:
                parts = [part.result() for part in pending]
            except BrokenProcessPool as e:
                raise RuntimeError(f"a decoding worker process died ({e}); rerun with --workers 0 to decode in "
                                   f"this process") from None
        results = [r for rs, _ in parts for r in rs]
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
            ok = [(s, c) for s, (c, _) in zip(chunk, results) if c is not None]
            failed = [(s, err) for s, (c, err) in zip(chunk, results) if c is None]
            start = time.perf_counter()
            crops = np.stack([c for _, c in ok]) if ok else np.zeros((0, crop, crop, 3), np.uint8)
            inputs = normalize_batch(crops, self.arch)
            self.normalize_s += time.perf_counter() - start
            yield Batch([s for s, _ in ok], inputs, failed)
