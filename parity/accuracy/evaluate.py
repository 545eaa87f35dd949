"""Accuracy of both frameworks on the same preprocessed images.

Each batch is decoded once and fed to every framework, so any disagreement
comes from the models, never from two data pipelines. Per-image predictions
are appended to a results file (`parity.accuracy.results`: header, one record
per image with its content digest, a digest chain over the records) as they
are produced; the summary is a pure function of that file (header + records
sorted by image index), which is what makes `--resume` and `merge` give
exactly a single run's summary.

This module is the loop (and its resumption check and timing); the runners
and their start-up checks are in `parity.accuracy.runners`, the header and
the summary in `parity.accuracy.summary`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from parity.inputs.data import Dataset, DataError, Sample
from parity.inputs.decode import Decoder
from parity.accuracy.results import ResultsWriter
from parity.accuracy.summary import summarize, topk


# ---------------------------------------------------------------- the loop
def batch_detail(counts: dict, frameworks) -> str:
    """Top-1 so far per framework and their agreement, for a progress line."""
    total = counts["n"]
    if not total:
        return ""
    text = ", ".join(f"{fw} top-1 {100.0 * counts[fw] / total:.2f}%" for fw in frameworks)
    if len(frameworks) == 2:
        text += f", agree {100.0 * counts['agree'] / total:.2f}%"
    return text


def evaluate(runners: Dict[str, object], dataset: Dataset, samples: Sequence[Sample], header: dict,
             results_path: str, resume: bool = False, skip_bad: bool = False, batch_size: int = 32,
             workers: int = 0, on_batch: Optional[Callable[[int, dict], None]] = None,
             check: Optional[Callable[[np.ndarray], dict]] = None, times: Optional["RunTimes"] = None) -> dict:
    """Evaluate `samples` with every runner on the same inputs; returns the summary.

    on_batch(n_images_done_this_batch, running_counts) drives a progress display.
    check: a `logit_check`, run on the first batch evaluated and recorded.
    times: a `RunTimes` to fill with this run's stage times (the summary
    is a pure function of the results file, so it holds none)."""
    import time

    times = times if times is not None else RunTimes()
    clock = times.clock
    writer = ResultsWriter(results_path, header, resume)
    started = time.perf_counter()
    try:
        todo = [s for s in samples if s.index not in writer.done]
        counts = {"n": 0, **{fw: 0 for fw in runners}, "agree": 0}
        for r in writer.done.values():
            if r["type"] == "image":
                counts["n"] += 1
                for fw in runners:
                    counts[fw] += r["pred"][fw][0] == r["label"]
                counts["agree"] += len({tuple(r["pred"][fw][:1]) for fw in runners}) == 1
        with Decoder(header["arch"], dataset.abspath, workers=workers, batch_size=batch_size) as decoder:
            if writer.done:
                check_resumed(results_path, writer.done, samples, dataset, decoder)
            if on_batch:
                on_batch(len(writer.done), counts)
            times.decoder = decoder
            batches = decoder.batches(todo)
            while True:
                with clock("decode_wait"):
                    batch = next(batches, None)
                if batch is None:
                    break
                if batch.failed and not skip_bad:
                    sample, err = batch.failed[0]
                    raise DataError(dataset.abspath(sample), f"cannot be decoded: {err} "
                                                             "(pass --skip-bad to skip and list such images)")
                records = [{"type": "bad", "index": s.index, "path": s.path, "label": s.label, "error": err,
                            **_content(batch, s)} for s, err in batch.failed]
                if batch.samples and check is not None:
                    with clock("check"):
                        writer.checks.append(check(batch.inputs))
                        writer.write(writer.checks[-1:])
                    check = None
                if batch.samples:
                    logits = {}
                    for fw, run in runners.items():
                        with clock(fw):
                            logits[fw] = run(batch.inputs)
                    times.images += len(batch.samples)
                    preds = {fw: topk(v) for fw, v in logits.items()}
                    if len(runners) == 2:
                        a, b = logits.values()
                        gaps = np.abs(a.astype(np.float64) - b).max(axis=1)
                    for i, s in enumerate(batch.samples):
                        rec = {"type": "image", "index": s.index, "path": s.path, "label": s.label,
                               **_content(batch, s), "pred": {fw: [int(c) for c in p[i]] for fw, p in preds.items()}}
                        if len(runners) == 2:
                            rec["logit_max_abs_diff"] = float(gaps[i])
                        records.append(rec)
                        counts["n"] += 1
                        for fw in runners:
                            counts[fw] += int(preds[fw][i][0] == s.label)
                        counts["agree"] += len({int(p[i][0]) for p in preds.values()}) == 1
                records.sort(key=lambda r: r["index"])
                with clock("write"):
                    writer.write(records)
                for r in records:
                    writer.done[r["index"]] = r
                if on_batch:
                    on_batch(len(records), counts)
    finally:
        writer.close()
        times.run_s += time.perf_counter() - started
    return summarize(header, list(writer.done.values()) + writer.checks)


def _content(batch, sample) -> dict:
    """The size and digest of an image's bytes as its worker read them."""
    size, digest = batch.digests.get(sample, (None, None))
    return {"size": size, "digest": digest}


def check_resumed(path: str, done: Dict[int, dict], samples: Sequence[Sample], dataset: Dataset, decoder) -> None:
    """Before a run continues a results file: each image it holds is one of
    this run's, with the same path and label, and its file's bytes are still
    those evaluated (size and digest, read again by the decoding workers)."""
    by_index = {s.index: s for s in samples}
    for index, r in sorted(done.items()):
        s = by_index.get(index)
        if s is None or (s.path, s.label) != (r["path"], r["label"]):
            now = "not one of this run's images" if s is None else f"{s.path} label {s.label} here"
            raise DataError(path, f"cannot resume: it records image {r['path']} label {r['label']} at index {index}, "
                                  f"{now}; it belongs to another data set (nothing was written)")
    recorded = [s for s in samples if s.index in done]
    for s, now in zip(recorded, decoder.digests(recorded)):
        r = done[s.index]
        if (r.get("size"), r.get("digest")) != (now.size, now.digest):
            if now.digest is None:
                change = f"it cannot be read now ({now.error})"
            else:
                change = f"recorded {r.get('size')} bytes {r.get('digest')}, now {now.size} bytes {now.digest}"
            raise DataError(path, f"cannot resume: image {dataset.abspath(s)} (index {s.index}) is not the file "
                                  f"that was evaluated ({change}); these results belong to other images: "
                                  f"evaluate into a new --results file (nothing was written)")


class RunTimes:
    """Where an `evaluate` run's time went, for its images/s: the loop's wall
    time (decoding, both models, the start-up logit check and the writes, as
    they overlapped) and each stage on its own time: a framework's seconds
    inside its runner calls, decoding's seconds summed over its workers."""

    def __init__(self):
        from parity.core.progress import PhaseClock

        self.clock = PhaseClock()
        self.images = 0
        self.run_s = 0.0
        self.decoder = None

    def summary(self, frameworks: Sequence[str]) -> dict:
        """The run's "throughput" record (images/s = None where no time was spent)."""
        def rate(n, seconds):
            return n / seconds if seconds > 0 else None

        phases = self.clock.totals()
        d = self.decoder
        decoded, decode_s = (d.decoded, d.decode_s) if d is not None else (0, 0.0)
        stages = {fw: {"s": phases.get(fw, 0.0), "images_per_s": rate(self.images, phases.get(fw, 0.0))}
                  for fw in frameworks}
        # Per worker: with the cores free, the pool decodes about `workers` times this.
        stages["decode"] = {"s": decode_s, "images": decoded, "images_per_s": rate(decoded, decode_s),
                            "workers": d.workers if d is not None else 0,
                            "normalize_s": d.normalize_s if d is not None else 0.0}
        models_s = sum(phases.get(fw, 0.0) for fw in frameworks)
        return {"images": self.images, "run_s": self.run_s, "images_per_s": rate(self.images, self.run_s),
                "models_s": models_s, "models_images_per_s": rate(self.images, models_s),
                "decode_wait_s": phases.get("decode_wait", 0.0), "check_s": phases.get("check", 0.0),
                "write_s": phases.get("write", 0.0), "stages": stages}
