"""Accuracy of both frameworks on the same preprocessed images.

Each batch is decoded once and fed to every framework, so any disagreement
comes from the models, never from two data pipelines. Per-image predictions
are appended to a results file (`parity.accuracy.results`: header, one record
per image with its content digest, a digest chain over the records) as they
are produced; the summary is a pure function of that file (header + records
sorted by image index), which is what makes `--resume` and `merge` give
exactly a single run's summary.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from genet_arch import DEFAULT_NUM_CLASSES

from parity.inputs.data import Dataset, DataError, Sample
from parity.inputs.decode import DIGEST, Decoder
from parity.inputs.preprocessing import describe as describe_preprocessing
from parity.accuracy.results import (IDENTITY_FIELDS, RECORD_TYPES, RESULTS_VERSION,  # noqa: F401 (their old home)
                                     ResultsWriter, identity_mismatch, read_results)
from parity.accuracy.stats import paired_summary

FRAMEWORKS = ("torch", "paddle")
PRECISIONS = ("float32", "float16", "bfloat16")
TOPK = 5


def normalize_device(device: str) -> str:
    """'cpu' | 'gpu' | 'gpu:N' (also accepts torch's 'cuda[:N]')."""
    d = (device or "cpu").strip().lower().replace("cuda", "gpu")
    if d == "cpu":
        return d
    if d == "gpu":
        return "gpu:0"
    if d.startswith("gpu:") and d[4:].isdigit():
        return d
    raise DataError(None, f"--device {device!r}: expected cpu, gpu or gpu:N")


# ---------------------------------------------------------------- runners
class TorchRunner:
    """The official model in PyTorch. float16 is `model.half()` as in the
    official evaluation (on CPU too: torch has CPU half convolutions).
    channels_last: the same eager model with NHWC tensors (oneDNN's native
    layout on CPU: no reorder around each convolution), checked at start-up
    by `check()` before a run trusts it."""

    name = "torch"

    def __init__(self, arch: str, official_state, device: str = "cpu", precision: str = "float32",
                 channels_last: bool = False):
        import torch

        from parity.core.frameworks import torch_device, torch_dtype, torch_model

        self.arch, self.official_state, self.precision, self.device = arch, official_state, precision, device
        if device != "cpu" and not torch.cuda.is_available():
            raise DataError(None, f"--device {device}: this PyTorch build sees no CUDA GPU")
        self.torch_device, self.dtype = torch_device(device), torch_dtype(precision)
        self.model = torch_model(arch, official_state, device=device, dtype=precision)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=self.memory_format)
        # Contiguous eager torch at this precision is the start-up checks' bar itself.
        self.is_reference = not channels_last
        mode = "eager channels-last" if channels_last else "eager"
        self.label = f"torch {torch.__version__} {mode}, {precision}, {device.split(':')[0]}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(device=self.torch_device, dtype=self.dtype)
            out = self.model(t.contiguous(memory_format=self.memory_format))
            return out.float().cpu().numpy()

    def check(self) -> dict:
        """This runner's logits on a seeded batch judged by the project's rule
        against the float64 recomputation (bar: eager torch, contiguous);
        raises VerificationError when they fail it."""
        from parity.core.reference import startup_check

        return startup_check(self, self.label, self.arch, self.official_state, self.precision, self.device)


class PaddleRunner:
    """The Paddle model. float16 on a GPU: `paddle.amp.decorate(level='O2')`,
    Paddle's `model.half()` (it keeps BatchNorm statistics in float32, which
    its float16 kernels require). Paddle has no CPU float16 kernels: there,
    float16 is the layer-diff tool's emulation and is labelled so."""

    name = "paddle"

    def __init__(self, arch: str, paddle_state, device: str = "cpu", precision: str = "float32"):
        import paddle

        import paddle_genet
        from converters.table.head import state_classes

        if device != "cpu" and not paddle.device.is_compiled_with_cuda():
            raise DataError(None, f"--device {device}: this PaddlePaddle build has no CUDA support")
        paddle.set_device(device)
        self.precision = precision
        self.emulated = precision == "float16" and device == "cpu"
        if precision == "bfloat16":
            raise DataError(None, "PaddlePaddle has no bfloat16 path here: evaluate with --framework torch "
                                  "for bfloat16, or use --precision float32/float16")
        if self.emulated:
            from parity.core.modules import round_state_f16

            paddle_state = round_state_f16(paddle_state)
        model = paddle_genet.load_state(paddle_genet.build(arch, state_classes(paddle_state, arch, "paddle")),
                                        paddle_state, source="paddle weights")
        model.eval()
        if self.emulated:
            self._round_every_layer(model, arch)
        elif precision == "float16":
            model = paddle.amp.decorate(models=model, level="O2", dtype="float16")
        self.model = model
        mode = "float16 EMULATED on CPU (float32 kernels, float16 rounding)" if self.emulated else precision
        self.label = f"paddle {paddle.__version__} eager, {mode}, {device.split(':')[0]}"

    @staticmethod
    def _round_every_layer(model, arch):
        """The layer-diff tool's emulation: weights, input and the output of
        every mapped module rounded to float16, arithmetic in float32."""
        from converters.table.mapping import mapping_table

        from parity.core.modules import paddle_layer, round_f16_paddle

        for row in mapping_table(arch).modules:
            paddle_layer(model, row.paddle).register_forward_post_hook(round_f16_paddle)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import paddle

        with paddle.no_grad():
            if self.emulated:
                x = x.astype(np.float16).astype(np.float32)
            t = paddle.to_tensor(x)
            if self.precision == "float16" and not self.emulated:
                # The documented way to run an O2-decorated model (untested here: no GPU in CI).
                with paddle.amp.auto_cast(enable=True, level="O2", dtype="float16"):
                    return self.model(t.astype("float16")).astype("float32").numpy()
            return self.model(t).astype("float32").numpy()


RUNNERS = ("fast", "eager")


def build_runners(arch: str, frameworks: Sequence[str], official_state=None, paddle_state=None,
                  device: str = "cpu", precision: str = "float32", runner: str = "eager",
                  say: Callable[[str], None] = lambda line: None) -> Dict[str, object]:
    """One runner per framework. runner='fast': each framework on its fastest
    path proven equal here, at start-up, against the float64 recomputation
    with the project's rule: torch eager on channels-last tensors, Paddle its
    inference predictor (oneDNN on CPU). Where a fast path is unavailable or
    fails its check, that framework runs eager and `say` reports why (never
    silently). runner='eager': both eager, contiguous.
    torch.compile is not used: its compilation (tens of seconds per input
    shape on CPU) costs more than it saves on all but the largest runs."""
    if runner not in RUNNERS:
        raise DataError(None, f"unknown runner {runner!r}; expected {', '.join(RUNNERS)}")
    runners = {}
    for fw in frameworks:
        if fw == "torch":
            eager = lambda: TorchRunner(arch, official_state, device, precision)  # noqa: E731
            fast = lambda: _checked(  # noqa: E731
                TorchRunner(arch, official_state, device, precision, channels_last=True))
            runners[fw] = _fast_or_eager(fw, "the channels-last path", fast, eager, None, runner, say)
        elif fw == "paddle":
            from parity.fastpath.inference import predictor_unavailable

            eager = lambda: PaddleRunner(arch, paddle_state, device, precision)  # noqa: E731
            from parity.fastpath.inference import PredictorRunner

            fast = lambda: PredictorRunner(arch, paddle_state, device, precision)  # noqa: E731
            runners[fw] = _fast_or_eager(fw, "the predictor", fast, eager, predictor_unavailable(device, precision),
                                         runner, say)
        else:
            raise DataError(None, f"unknown framework {fw!r}; expected {', '.join(FRAMEWORKS)}")
    return runners


def _checked(runner):
    runner.startup_check = runner.check()
    return runner


# What became of a framework's fast path (each runner's `fast_path["status"]`).
# FAST_FAILED is a finding (the fast path computes wrong logits): eval exits 1
# and the certificate fails; FAST_UNAVAILABLE only means it could not run here.
FAST_PASSED, FAST_FAILED, FAST_UNAVAILABLE, FAST_NOT_TRIED = (
    "passed its check", "failed its check", "unavailable", "not tried")


def _fast_or_eager(fw, what, build_fast, build_eager, unavailable, runner, say):
    """The fast runner when it builds and passes its start-up check, else the
    eager one, with a WARNING line saying why (`unavailable`: the reason the
    fast path cannot run here at all, asked before building anything). The
    runner returned carries `fast_path`: the status, the path, why, and the
    start-up check's judgement (with its margin) where one was made."""
    if runner == "eager":
        eager = build_eager()
        eager.fast_path = {"status": FAST_NOT_TRIED, "path": what, "reason": "--runner eager"}
        return eager
    why, judgement, status = unavailable, None, FAST_UNAVAILABLE
    if why is None:
        from converters.table.errors import VerificationError

        try:
            fast = build_fast()
            say(f"{fw}: {fast.label}, start-up check passed (margin {fast.startup_check['margin']:.2g})")
            fast.fast_path = {"status": FAST_PASSED, "path": what, "reason": "",
                              "judgement": fast.startup_check, "margin": fast.startup_check["margin"]}
            return fast
        except VerificationError as e:
            status, judgement = FAST_FAILED, getattr(e, "judgement", None)
            why = str(e)
        except (RuntimeError, ValueError, OSError) as e:  # what the frameworks raise for a path they cannot build
            why = f"{what} could not be built ({type(e).__name__}: {e})"
    eager = build_eager()
    if status == FAST_FAILED:
        margin = judgement["margin"] if judgement else None
        say(f"WARNING: {fw}: {what} FAILED its start-up check"
            + (f" (margin {margin:.3g}: its logits lie {margin:.3g} x the bound from the float64 recomputation)"
               if margin is not None else "")
            + f"; this run falls back to eager, and the failure is reported as a finding: {why}")
        eager.label += " (fast path failed its check)"
        eager.fast_path = {"status": FAST_FAILED, "path": what, "reason": why, "judgement": judgement,
                           "margin": margin}
    else:
        say(f"WARNING: {fw} falls back to eager: {why}")
        eager.label += " (fast path unavailable)"
        eager.fast_path = {"status": FAST_UNAVAILABLE, "path": what, "reason": why}
    return eager


def fast_paths_failed(fast_paths: Optional[dict]) -> List[str]:
    """The frameworks whose fast path failed its start-up check."""
    return [fw for fw, f in (fast_paths or {}).items() if f and f.get("status") == FAST_FAILED]


# ---------------------------------------------------------------- start-up logit check
CHECK_IMAGES = 8  # images of the first batch the check judges (float64 is a few times float32's cost)


def logit_check(arch: str, official_state, runners: Dict[str, object], device: str = "cpu",
                precision: str = "float32", n_images: int = CHECK_IMAGES) -> Callable[[np.ndarray], dict]:
    """A function that judges every runner's logits on (the first
    `n_images` of) a batch with the project's rule: the truth is the float64
    recomputation with `official_state`, the bar eager torch at `precision`.
    `evaluate` calls it on the first batch it runs and records the result."""
    import torch

    from parity.core.reference import float64_logits, torch_logits
    from parity.core.tolerances import is_reference, judge, reference_row

    # A Paddle-only run on a GPU in an environment whose torch is a CPU build (paddlepaddle-gpu and CUDA
    # torch often cannot share one): torch's bar at this precision is measured on the CPU, and said so.
    bar_device = device
    if "torch" not in runners and device != "cpu" and not torch.cuda.is_available():
        bar_device = "cpu"
    bar_label = f"torch eager {precision}" + (" on the CPU (this environment's torch has no CUDA)"
                                              if bar_device != device else "")

    def check(x: np.ndarray) -> dict:
        x = np.ascontiguousarray(x[:n_images])
        truth = float64_logits(arch, official_state, x)
        bar = torch_logits(arch, official_state, x, device=bar_device, dtype=precision)
        judgements = {}
        for fw, run in runners.items():
            name = f"GENet_{arch} logits"
            if getattr(run, "is_reference", False):  # the bar itself: judging it would compare it with itself
                judgements[fw] = reference_row(name, bar, truth, precision, run.label)
            else:
                judgements[fw] = judge(name, run(x), truth, reference=bar, dtype=precision, candidate_label=run.label,
                                       reference_label=bar_label).to_dict()
        judged = [j["passed"] for j in judgements.values() if not is_reference(j)]
        return {"type": "check", "n_images": int(len(x)), "precision": precision, "bar": bar_label,
                "truth": "torch_ref float64 recomputation, same weights and images",
                # None: only the reference ran, nothing was compared
                "judgements": judgements, "pass": all(judged) if judged else None,
                # this run's (or resumption's, or shard's) fast paths: a failure in any of them is kept
                "fast_paths": {fw: getattr(run, "fast_path", None) for fw, run in runners.items()}}
    return check


# ---------------------------------------------------------------- results file
def make_header(arch: str, precision: str, device: str, runners: Dict[str, object], weights: dict,
                dataset: Dataset, limit: Optional[int], shard, expected: int) -> dict:
    # Only the device kind: shard K on gpu:K still belongs to the same run.
    location = dataset.describe()
    identity = {k: location.pop(k) for k in ("layout", "n_images", "n_classes", "fingerprint_sha256")}
    return {"type": "header", "version": RESULTS_VERSION, "arch": arch, "precision": precision,
            "device": device.split(":")[0], "frameworks": list(runners),
            "runners": {k: r.label for k, r in runners.items()},
            "fast_paths": {k: getattr(r, "fast_path", None) for k, r in runners.items()},
            "weights": weights, "dataset": identity,
            "dataset_location": location, "limit": limit, "shard": list(shard) if shard else None,
            "expected": expected, "preprocessing": describe_preprocessing(arch), "image_digest": DIGEST}


# ---------------------------------------------------------------- summary
def topk(logits: np.ndarray, k: int = TOPK) -> np.ndarray:
    # A stable sort of -logits: ties go to the lower class index, the same in both frameworks.
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def _checks_pass(checks: Sequence[dict]) -> Optional[bool]:
    """False if any start-up logit check failed, True if one compared anything
    and none failed, None if none ran or each only reported the reference."""
    verdicts = [c["pass"] for c in checks if c["pass"] is not None]
    return all(verdicts) if verdicts else None


def _fast_paths(header: dict, checks: Sequence[dict]) -> dict:
    """Each framework's fast path: this run's (the header's), unless one that
    failed its check is recorded by any run, resumption or shard (its check
    record), which is then the one reported."""
    out = dict(header.get("fast_paths") or {})
    for c in checks:
        for fw, f in (c.get("fast_paths") or {}).items():
            failed = bool(f) and f.get("status") == FAST_FAILED
            if fw not in out or (failed and (out.get(fw) or {}).get("status") != FAST_FAILED):
                # a framework run apart (a paired file) has its fast path only in its own records
                out[fw] = dict(f, shard=c["shard"]) if failed and c.get("shard") else f
    return out


def summarize(header: dict, records: Sequence[dict], expected: Optional[int] = None) -> dict:
    """The summary of a run from its header and records (any order)."""
    checks = [r for r in records if r["type"] == "check"]
    records = sorted((r for r in records if r["type"] in RECORD_TYPES), key=lambda r: r["index"])
    images = [r for r in records if r["type"] == "image"]
    bad = [r for r in records if r["type"] == "bad"]
    fws = header["frameworks"]
    expected = header["expected"] if expected is None else expected
    fast_paths = _fast_paths(header, checks)
    n = len(images)
    correct = {fw: [r["pred"][fw][0] == r["label"] for r in images] for fw in fws}
    in_top5 = {fw: [r["label"] in r["pred"][fw][:TOPK] for r in images] for fw in fws}
    out = {
        "arch": header["arch"],
        # the head's size, recorded with the weights (files written before it was: the ImageNet head)
        "num_classes": header["weights"].get("num_classes", DEFAULT_NUM_CLASSES),
        "precision": header["precision"], "device": header["device"],
        "frameworks": fws, "runners": header["runners"], "weights": header["weights"],
        "dataset": header["dataset"], "dataset_location": header.get("dataset_location"), "limit": header["limit"],
        "n_expected": expected, "n_evaluated": n, "n_bad": len(bad),
        "complete": n + len(bad) == expected,
        "bad_images": [{"path": r["path"], "error": r["error"]} for r in bad],
        "top1": {fw: 100.0 * sum(correct[fw]) / n if n else None for fw in fws},
        "top5": {fw: 100.0 * sum(in_top5[fw]) / n if n else None for fw in fws},
        "correct_top1": {fw: sum(correct[fw]) for fw in fws},
        # the start-up logit checks (one per run or resumption, per shard): None when none ran
        "logit_checks": checks,
        "logit_checks_pass": _checks_pass(checks),
        # each framework's fast path: passed its check, failed its check (a finding), unavailable, not tried
        "fast_paths": fast_paths,
        "fast_paths_failed": fast_paths_failed(fast_paths),
    }
    if len(fws) == 2:
        a, b = fws
        disagree = [r for r in images if r["pred"][a][0] != r["pred"][b][0]]
        diffs = [r["logit_max_abs_diff"] for r in images if r.get("logit_max_abs_diff") is not None]
        out.update({
            "agreement_top1": 100.0 * (n - len(disagree)) / n if n else None,
            "n_disagree": len(disagree),
            "disagreements": [{"path": r["path"], "label": r["label"], a: r["pred"][a][0], b: r["pred"][b][0]}
                              for r in disagree],
            "paired": {"a": a, "b": b, **paired_summary(correct[a], correct[b])},
            "logit_max_abs_diff": max(diffs) if diffs else None,
        })
    return out


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
