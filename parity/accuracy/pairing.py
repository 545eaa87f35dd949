"""A torch-only run and a Paddle-only run of the same images, weights and
preprocessing, paired image by image into the results of a run of both.

paddlepaddle-gpu and a CUDA build of torch often cannot share one
environment, so each framework runs `eval --framework X` in its own. Each
results file holds every image's top-5 from one framework; pairing them by
image index gives the same per-image predictions, agreement, flips and
McNemar test as a run of both (`summarize` of the paired records). What a
run of both measures and two runs cannot: the largest logit difference
(each file holds top-5 classes, not logits), reported as not measured.

Refused, naming the field: files of different runs (any identity field but
the framework and its runner), of one framework twice, unfinished files, an
image decoded by one run and not by the other.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from parity.inputs.data import DataError

# Identity fields that the two sides of a pair differ in by construction.
SIDE_FIELDS = ("frameworks", "runners")
# Weights fields that only one side has: the Paddle side's own file, when it was given one.
SIDE_WEIGHTS_FIELDS = ("pdparams",)


def is_pair(headers: Sequence[dict]) -> bool:
    """Whether the files are the two single-framework halves of one run."""
    return sorted(tuple(h.get("frameworks") or ()) for h in headers) == [("paddle",), ("torch",)]


def differences(a: dict, b: dict) -> List[str]:
    """The identity fields (dotted below `weights`) in which two
    single-framework headers differ, beyond what the framework makes differ."""
    from parity.accuracy.evaluate import IDENTITY_FIELDS

    out = []
    for field in IDENTITY_FIELDS:
        if field in SIDE_FIELDS:
            continue
        if field == "weights":
            wa, wb = a.get(field) or {}, b.get(field) or {}
            out += [f"weights.{k}" for k in sorted(set(wa) | set(wb))
                    if k not in SIDE_WEIGHTS_FIELDS and wa.get(k) != wb.get(k)]
        elif a.get(field) != b.get(field):
            out.append(field)
    return out


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def pair(sides: Sequence[Tuple[str, dict, List[dict]]]) -> Tuple[dict, List[dict], List[dict]]:
    """(header, records, checks) of the run of both frameworks that the two
    complete single-framework files `sides` = [(path, header, records), ...]
    make together."""
    from parity.accuracy.evaluate import RECORD_TYPES

    if not is_pair([h for _, h, _ in sides]):
        found = ", ".join(f"{p}: {'+'.join(h.get('frameworks') or []) or '?'}" for p, h, _ in sides)
        raise DataError(None, f"pairing takes one torch-only and one Paddle-only results file ({found})")
    by_fw = {h["frameworks"][0]: (p, h, recs) for p, h, recs in sides}
    (tp, th, trecs), (pp, ph, precs) = by_fw["torch"], by_fw["paddle"]
    bad = differences(th, ph)
    if bad:
        detail = "; ".join(f"{f}: {_describe(_get(th, f))} vs {_describe(_get(ph, f))}" for f in bad[:3])
        raise DataError(pp, f"is not the same run as {tp}: they differ in {', '.join(bad)} ({detail}); pairing "
                            "needs the same images, weights, preprocessing and precision")
    per_side = {}
    for path, header, recs in ((tp, th, trecs), (pp, ph, precs)):
        if header.get("shard"):
            raise DataError(path, f"is shard {header['shard'][0]}/{header['shard'][1]}: pair whole runs "
                                  "(merge a side's shards first, or run each side as one torchrun job)")
        done = {r["index"]: r for r in recs if r["type"] in RECORD_TYPES}
        if len(done) != header["expected"]:
            raise DataError(path, f"is unfinished: {len(done)} of {header['expected']} images (finish it with "
                                  "`genet-parity eval ... --resume`)")
        per_side[path] = done
    torch_done, paddle_done = per_side[tp], per_side[pp]
    if set(torch_done) != set(paddle_done):
        only = sorted(set(torch_done) ^ set(paddle_done))
        raise DataError(pp, f"holds other images than {tp} ({len(only)} differ, e.g. index {only[0]})")
    records = []
    for index in sorted(torch_done):
        t, p = torch_done[index], paddle_done[index]
        if (t["path"], t["label"]) != (p["path"], p["label"]):
            raise DataError(pp, f"image {index} is {p['path']} (label {p['label']}), in {tp} {t['path']} "
                                f"(label {t['label']})")
        if t["type"] != p["type"]:
            decoded, failed = (tp, pp) if t["type"] == "image" else (pp, tp)
            raise DataError(failed, f"could not decode {t['path']}, which {decoded} decoded: not the same image "
                                    "files")
        if t["type"] == "bad":
            records.append(t)
            continue
        # No logits in either file: the largest logit difference is not measured by a pair.
        records.append({"type": "image", "index": index, "path": t["path"], "label": t["label"],
                        "pred": {"torch": t["pred"]["torch"], "paddle": p["pred"]["paddle"]}})
    checks = [r for r in trecs + precs if r["type"] == "check"]
    weights = dict(th["weights"])
    weights.update({k: ph["weights"][k] for k in SIDE_WEIGHTS_FIELDS if k in ph["weights"]})
    header = {**th, "frameworks": ["torch", "paddle"], "runners": {"torch": th["runners"]["torch"],
                                                                  "paddle": ph["runners"]["paddle"]},
              "weights": weights, "shard": None, "expected": len(records),
              # Each framework's own environment record: the pair ran in two (paths kept for the reader).
              "environments": {"torch": th.get("environment"), "paddle": ph.get("environment")},
              "paired_from": {"torch": tp, "paddle": pp}}
    header.pop("environment", None)
    return header, records, checks


def _get(header: dict, field: str):
    if field.startswith("weights."):
        return (header.get("weights") or {}).get(field.split(".", 1)[1])
    return header.get(field)


def paired_summary(header: dict, records: List[dict], checks: List[dict]) -> dict:
    """The summary of a paired run: `summarize`'s, with both environments."""
    from parity.accuracy.evaluate import summarize

    out = summarize(header, records + checks)
    out["environments"] = header["environments"]
    out["paired_from"] = header["paired_from"]
    return out
