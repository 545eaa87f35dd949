"""A torch-only run and a Paddle-only run of the same images, weights and
preprocessing, paired image by image into the results of a run of both.

paddlepaddle-gpu and a CUDA build of torch often cannot share one
environment, so each framework runs `eval --framework X` in its own. Each
results file holds every image's top-5 from one framework; pairing them by
image index gives the same per-image predictions, agreement, flips and
McNemar test as a run of both (`summarize` of the paired records). What a
run of both measures and two runs cannot: the largest logit difference
(each file holds top-5 classes, not logits), reported as not measured.

Refused, naming the field: files of different runs (`results.run_differences`:
arch, head, weights digests, precision, preprocessing, dataset fingerprint,
every image's size and content digest; and the list's subset), of one
framework twice, unfinished files, shards, an image decoded by one run and
not by the other. The runners and devices may differ (a pair of a GPU run
and a CPU run says so in its `device`).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from parity.accuracy.results import Results, run_differences
from parity.inputs.data import DataError

# Weights fields that only one side has: the Paddle side's own file, when it was given one.
SIDE_WEIGHTS_FIELDS = ("pdparams",)


def is_pair(headers: Sequence[dict]) -> bool:
    """Whether the files are the two single-framework halves of one run."""
    return sorted(tuple(h.get("frameworks") or ()) for h in headers) == [("paddle",), ("torch",)]


def _without_side_weights(r: Results) -> Results:
    """`r` as `run_differences` should see it for pairing: the Paddle side's
    own .pdparams (when it ran one) is what it evaluated, not a difference."""
    weights = {k: v for k, v in (r.header.get("weights") or {}).items() if k not in SIDE_WEIGHTS_FIELDS}
    return Results(r.path, {**r.header, "weights": weights}, r.records, r.chain, r.good_bytes)


def differences(torch_side: Results, paddle_side: Results) -> List[str]:
    """How two single-framework runs differ as evaluations of one model on
    one set of images (`results.run_differences`: arch, head, weights
    digests, precision, preprocessing, dataset fingerprint, every image's
    size and content digest), plus the subset of the list (`limit`)."""
    out = run_differences(_without_side_weights(torch_side), _without_side_weights(paddle_side))
    if torch_side.header.get("limit") != paddle_side.header.get("limit"):
        out.append(f"limit: {torch_side.header.get('limit')!r} in {torch_side.path}, "
                   f"{paddle_side.header.get('limit')!r} in {paddle_side.path}")
    return out


def pair(sides: Sequence[Results]) -> Tuple[dict, List[dict], List[dict]]:
    """(header, records, checks) of the run of both frameworks that the two
    complete single-framework results files `sides` make together."""
    if not is_pair([r.header for r in sides]):
        found = ", ".join(f"{r.path}: {'+'.join(r.header.get('frameworks') or []) or '?'}" for r in sides)
        raise DataError(None, f"pairing takes one torch-only and one Paddle-only results file ({found})")
    by_fw = {r.header["frameworks"][0]: r for r in sides}
    t_side, p_side = by_fw["torch"], by_fw["paddle"]
    tp, th, pp, ph = t_side.path, t_side.header, p_side.path, p_side.header
    for index in sorted(set(t_side.images) & set(p_side.images)):  # said plainly before the digests differ
        t, p = t_side.images[index], p_side.images[index]
        if t["type"] != p["type"] and t["path"] == p["path"]:
            decoded, failed = (tp, pp) if t["type"] == "image" else (pp, tp)
            raise DataError(failed, f"could not decode {t['path']}, which {decoded} decoded: not the same image "
                                    "files")
    bad = differences(t_side, p_side)
    if bad:
        fields = sorted({line.split(":")[0] if not line.startswith("image index") else "image digests"
                         for line in bad})
        raise DataError(pp, f"is not the same run as {tp}: they differ in {', '.join(fields)} ({'; '.join(bad[:3])}"
                            f"{'; ...' if len(bad) > 3 else ''}); pairing needs the same images, weights, "
                            "preprocessing and precision")
    for r in (t_side, p_side):
        if r.header.get("shard"):
            raise DataError(r.path, f"is shard {r.header['shard'][0]}/{r.header['shard'][1]}: pair whole runs "
                                    "(run each side as one job under torchrun, or as one process)")
        if len(r.images) != r.header["expected"]:
            raise DataError(r.path, f"is unfinished: {len(r.images)} of {r.header['expected']} images (finish it "
                                    "with `genet-parity eval ... --resume`)")
    torch_done, paddle_done = t_side.images, p_side.images
    if set(torch_done) != set(paddle_done):
        only = sorted(set(torch_done) ^ set(paddle_done))
        raise DataError(pp, f"holds other images than {tp} ({len(only)} differ, e.g. index {only[0]})")
    records = []
    for index in sorted(torch_done):
        t, p = torch_done[index], paddle_done[index]
        if (t["path"], t["label"]) != (p["path"], p["label"]):
            raise DataError(pp, f"image {index} is {p['path']} (label {p['label']}), in {tp} {t['path']} "
                                f"(label {t['label']})")
        if t["type"] == "bad":
            records.append(t)
            continue
        # The same bytes in both runs (run_differences compared every digest); no logits in either file:
        # the largest logit difference is not measured by a pair.
        records.append({"type": "image", "index": index, "path": t["path"], "label": t["label"],
                        "size": t["size"], "digest": t["digest"],
                        "pred": {"torch": t["pred"]["torch"], "paddle": p["pred"]["paddle"]}})
    checks = t_side.checks + p_side.checks
    weights = dict(th["weights"])
    weights.update({k: ph["weights"][k] for k in SIDE_WEIGHTS_FIELDS if k in ph["weights"]})
    header = {**th, "frameworks": ["torch", "paddle"], "runners": {"torch": th["runners"]["torch"],
                                                                  "paddle": ph["runners"]["paddle"]},
              "weights": weights, "shard": None, "expected": len(records),
              # Each framework's own environment record: the pair ran in two (paths kept for the reader).
              "environments": {"torch": th.get("environment"), "paddle": ph.get("environment")},
              "paired_from": {"torch": tp, "paddle": pp}}
    if th.get("device") != ph.get("device"):
        header["device"] = f"torch {th.get('device')}, paddle {ph.get('device')}"
    header.pop("environment", None)
    return header, records, checks


def paired_summary(header: dict, records: List[dict], checks: List[dict]) -> dict:
    """The summary of a paired run: `summarize`'s, with both environments."""
    from parity.accuracy.summary import summarize

    out = summarize(header, records + checks)
    out["environments"] = header["environments"]
    out["paired_from"] = header["paired_from"]
    return out
