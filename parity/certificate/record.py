"""The certificate's record: its schema, its title, the inputs' file
records, the accuracy figure and every image's predictions (the dict that
`parity.certificate.page` renders as JSON, HTML and terminal text)."""
from __future__ import annotations

import os
from typing import List

from genet_arch import DEFAULT_NUM_CLASSES

from parity.certificate.verdict import CONFIDENCE

SCHEMA = "genet-parity/certificate"
SCHEMA_VERSION = 1


def file_record(role: str, path: str) -> dict:
    from converters.files.source import sha256_file

    return {"role": role, "path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def title(arch: str, demo: bool, num_classes: int = DEFAULT_NUM_CLASSES) -> str:
    """The one title of a certificate, in the JSON, the HTML and the terminal
    (naming the head where it is not the published one)."""
    if num_classes != DEFAULT_NUM_CLASSES:
        arch = f"{arch} ({num_classes}-class head)"
    return (f"DEMO certificate for {arch} (built-in data; not a reproduction certificate)" if demo
            else f"{arch} reproduction certificate")


def accuracy_intervals(summary: dict) -> dict:
    """Top-1 of each framework with its 95% Wilson interval, in percent (the
    certificate's accuracy figure)."""
    from parity.accuracy.stats import wilson_interval

    n = summary["n_evaluated"]
    out = {}
    for fw in summary["frameworks"]:
        k = summary["correct_top1"][fw]
        lo, hi = wilson_interval(k, n, CONFIDENCE) if n else (None, None)
        out[fw] = {"top1_pct": summary["top1"][fw], "correct": k, "n": n,
                   "ci_pct": None if lo is None else [100.0 * lo, 100.0 * hi], "confidence": CONFIDENCE}
    return out


def image_predictions(results_path: str) -> List[dict]:
    """Every image's top-5 in both frameworks, from the evaluation's results file."""
    from parity.accuracy.results import RECORD_TYPES, read_results

    records = read_results(results_path).records
    out = []
    for r in sorted((r for r in records if r["type"] in RECORD_TYPES), key=lambda r: r["index"]):
        if r["type"] == "image":
            out.append({"index": r["index"], "path": r["path"], "label": r["label"], **r["pred"],
                        "logit_max_abs_diff": r.get("logit_max_abs_diff")})
        else:
            out.append({"index": r["index"], "path": r["path"], "label": r["label"], "error": r["error"]})
    return out
