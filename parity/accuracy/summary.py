"""A run's results-file header and its summary: the summary is a pure
function of the results file (header + records sorted by image index), which
is what makes `--resume` and `merge` give exactly a single run's summary."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from genet_arch import DEFAULT_NUM_CLASSES

from parity.inputs.data import Dataset
from parity.inputs.decode import DIGEST
from parity.inputs.preprocessing import describe as describe_preprocessing
from parity.accuracy.results import RECORD_TYPES, RESULTS_VERSION
from parity.accuracy.runners import FAST_FAILED, fast_paths_failed
from parity.accuracy.stats import paired_summary

TOPK = 5


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
