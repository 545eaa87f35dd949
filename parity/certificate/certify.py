"""The reproduction certificate: every check the project can run on one
checkpoint, each with its threshold, measured value and verdict.

Steps, in order: hash the inputs; convert the weights to Paddle with
verification (or check a given .pdparams against that conversion); the layer
diff on real evaluation images; the evaluation of both frameworks in float32
(and float16 on a GPU); the latency benchmark. A step that cannot run says
so ("NOT RUN", with the reason): nothing is ever reported as passed that was
not measured. `parity.certificate.page` renders the result as JSON, HTML and
terminal text.

Accuracy checks are judged on their 95% confidence intervals
(parity.accuracy.stats): PASS when the interval lies within the threshold, FAIL when
it lies wholly outside, INCONCLUSIVE (with the number of images that would
decide it) when the sample is too small to tell.

Verdict: FAIL if any check fails; INCOMPLETE if a required check did not run
or does not apply to these inputs (e.g. a subset of ImageNet cannot be held
to the published top-1); INCONCLUSIVE if every check ran but one could not be
decided on this sample; PASS otherwise. Checks that only exist on a GPU are
SKIPPED on a CPU and do not block. A demo certificate (seeded weights,
bundled photos, synthetic labels) is always labelled DEMO.
"""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

from genet_arch import CARDS, DEFAULT_NUM_CLASSES, canonical_arch

from parity.core.environment import environment

SCHEMA = "genet-parity/certificate"
SCHEMA_VERSION = 1
IMAGENET_VAL_SIZE = 50_000
PASS, FAIL, NOT_RUN, NOT_APPLICABLE, SKIPPED, INFO = "PASS", "FAIL", "NOT RUN", "N/A", "SKIPPED", "INFO"
INCONCLUSIVE = "INCONCLUSIVE"  # the interval straddles the threshold: too few images to tell
STATUSES = (PASS, FAIL, INCONCLUSIVE, NOT_RUN, NOT_APPLICABLE, SKIPPED, INFO)
INCOMPLETE = "INCOMPLETE"
CONFIDENCE = 0.95


@dataclass
class Thresholds:
    torch_top1_points: float = 0.1  # |torch top-1 - published| on the full 50,000-image val
    paddle_top1_points: float = 0.05  # |Paddle top-1 - torch top-1| on the same inputs
    min_agreement_pct: float = 99.9  # top-1 prediction agreement, float32
    pdparams_max_abs: float = 0.0  # a given .pdparams vs the conversion of --weights (a copy: exact)


@dataclass
class CertificateCheck:
    """One row of the certificate: what was checked, its threshold, the measured value and the status."""

    id: str
    title: str
    status: str
    threshold: str
    measured: str
    reason: str = ""
    details: dict = field(default_factory=dict)
    interval: str = ""  # the confidence interval the status was decided on ("" where none applies)
    images_needed: Optional[int] = None  # INCONCLUSIVE: images that would decide it at the observed rates


@dataclass
class CertifyOptions:
    arch: Optional[str]
    weights: Optional[str]
    data: str
    list_file: Optional[str]
    out_prefix: str
    pdparams: Optional[str] = None
    demo: bool = False
    demo_note: str = ""
    limit: Optional[int] = None
    batch_size: int = 32
    workers: int = 0
    device: str = "cpu"
    runner: str = "fast"  # see evaluate.build_runners
    skip_bad: bool = False
    resume: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    layer_diff_images: int = 2
    bench: bool = True
    bench_options: dict = field(default_factory=dict)
    weights_key: Optional[str] = None  # which state dict of a training checkpoint (converters.files.state_dicts)
    eval_results: Optional[str] = None  # a finished float32 run of both frameworks (or a pair) to certify, not rerun


def _file_record(role: str, path: str) -> dict:
    from converters.files.source import sha256_file

    return {"role": role, "path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def verdict(checks: List[CertificateCheck], demo: bool) -> str:
    statuses = [c.status for c in checks]
    if FAIL in statuses:
        v = FAIL
    elif NOT_RUN in statuses or NOT_APPLICABLE in statuses:
        v = INCOMPLETE
    elif INCONCLUSIVE in statuses:
        v = INCONCLUSIVE
    else:
        v = PASS
    return f"DEMO ({v}; not a reproduction certificate)" if demo else v


def core_verdict(cert_verdict: str) -> str:
    """PASS, FAIL, INCOMPLETE or INCONCLUSIVE, also from a demo's verdict."""
    return cert_verdict.split("(")[-1].split(";")[0] if cert_verdict.startswith("DEMO") else cert_verdict


def title(arch: str, demo: bool, num_classes: int = DEFAULT_NUM_CLASSES) -> str:
    """The one title of a certificate, in the JSON, the HTML and the terminal
    (naming the head where it is not the published one)."""
    if num_classes != DEFAULT_NUM_CLASSES:
        arch = f"{arch} ({num_classes}-class head)"
    return (f"DEMO certificate for {arch} (built-in data; not a reproduction certificate)" if demo
            else f"{arch} reproduction certificate")


# ---------------------------------------------------------------- steps
def conversion_step(opts: CertifyOptions, arch: str, say) -> tuple:
    """Convert --weights to a .pdparams beside the certificate (verified by
    the converter), or hold a given --pdparams to that conversion."""
    from converters.files.load import load_weights, to_layout
    from converters.conversion.convert import convert
    from converters.table.errors import VerificationError
    from converters.conversion.verify import summary_of

    from parity.core.tolerances import RULE

    dst = f"{opts.out_prefix}.pdparams"
    say(f"converting {opts.weights} -> {dst} (with verification)")
    try:
        result = convert(opts.weights, dst, arch=arch, force=True, provenance=False, progress=None,
                         weights_key=opts.weights_key).to_dict()
        failure = None
    except VerificationError as e:
        result, failure = e.result.to_dict(), str(e)
    v = result.get("verification") or {}
    checks = [CertificateCheck(
        "conversion", "Conversion to Paddle, verified by the converter (logits of both models on a seeded input, "
                      "judged against a float64 recomputation)",
        PASS if result["status"] == "ok" else FAIL, RULE,
        summary_of(v) if v else "not verified",
        reason=failure or "", details=result)]
    paddle_path = dst if failure is None else None
    if opts.pdparams:
        given = to_layout(load_weights(opts.pdparams, arch=arch, layout="paddle"), "paddle")
        ours = to_layout(load_weights(opts.weights, arch=arch, weights_key=opts.weights_key), "paddle")
        worst, worst_key = tensor_difference(given, ours)
        ok = worst <= opts.thresholds.pdparams_max_abs
        checks.append(CertificateCheck(
            "pdparams_matches", "The given .pdparams holds the converted weights",
            PASS if ok else FAIL, f"max |tensor diff| <= {opts.thresholds.pdparams_max_abs:g}",
            f"max |tensor diff| {worst:.3g} (at {worst_key})", details={"pdparams": os.path.abspath(opts.pdparams)}))
        paddle_path = opts.pdparams  # the file the user holds is the one evaluated
    return checks, paddle_path


def tensor_difference(given, ours) -> tuple:
    """(largest max |given - ours| over the float tensors, its key), by the
    rule's one max-abs helper (NaN anywhere reads as infinitely different)."""
    from parity.core.tolerances import max_abs_error

    worst, worst_key = 0.0, None
    for k, want in ours.items():
        if want.dtype.kind != "f":
            continue
        d = max_abs_error(given[k], want)
        if d > worst or worst_key is None:
            worst, worst_key = d, k
    return worst, worst_key


def layer_diff_step(arch, official, paddle_state, inputs, input_info, device, say, on_layer=None) -> CertificateCheck:
    """on_layer(done, total, label): progress by network segment (parity.layers.diff)."""
    from parity.layers.diff import run_layer_diff

    if on_layer is None:
        say("layer diff: every mapped module, torch vs Paddle, on real evaluation images")
    result = run_layer_diff(arch, official, paddle_state, inputs=inputs, device="gpu" if device != "cpu" else "cpu",
                            input_info=input_info, progress=on_layer or False)
    d = result.to_dict()
    first = d["first_divergent"]
    worst = max((r["isolated_max_abs"] for r in d["layers"] if r.get("isolated_max_abs") is not None), default=None)
    return CertificateCheck(
        "layer_diff", "Layer diff: every mapped module within tolerance (isolated and accumulated)",
        PASS if result.passed else FAIL,
        f"all {d['coverage']['total']} mapped modules compared, each within the float64-relative tolerance",
        f"{d['coverage']['compared']}/{d['coverage']['total']} compared; first divergent: "
        f"{first['torch_name'] if first else 'none'}"
        + (f"; largest isolated error {worst:.3g}" if worst is not None else ""),
        reason="; ".join(d["failures"][:5]), details=d)


def _undecided_reason(judged: dict, what: str) -> str:
    n = judged["n"]
    if judged["images_needed"] is None:
        return (f"the observed value lies on the threshold: no number of images would decide {what} "
                f"(on {n:,} images)")
    return (f"{n:,} images are too few to decide {what}: the {100 * judged['confidence']:.0f}% interval "
            f"straddles the threshold; about {judged['images_needed']:,} images would decide it at the "
            "observed rates")


def evaluation_checks(summary: dict, opts: CertifyOptions, arch: str, precision: str,
                      num_classes: int = DEFAULT_NUM_CLASSES) -> List[CertificateCheck]:
    """The accuracy checks of one evaluation. The published-figure check is
    exact: it applies only to the full validation set, the very sample the
    figure was measured on. The two paired checks are judged on their 95%
    intervals (parity.accuracy.stats): PASS inside the threshold, FAIL outside,
    INCONCLUSIVE across it."""
    from parity.accuracy.stats import paired_difference_check, proportion_check

    t = opts.thresholds
    card = CARDS[arch]
    top1_t, top1_p = summary["top1"]["torch"], summary["top1"]["paddle"]
    n = summary["n_evaluated"]
    suffix = f" ({precision})"
    checks = []
    full = (not opts.demo and opts.limit is None and summary["dataset"]["n_images"] == IMAGENET_VAL_SIZE
            and summary["complete"] and summary["n_bad"] == 0)
    measured = f"torch top-1 {top1_t:.3f}% vs published {card.published_top1}%: {top1_t - card.published_top1:+.3f} points"
    interval = ""
    if opts.demo:
        status, reason = SKIPPED, "demo: seeded weights and synthetic labels, no published figure applies"
    elif num_classes != DEFAULT_NUM_CLASSES:
        status, reason = NOT_APPLICABLE, (f"the published top-1 is for the {DEFAULT_NUM_CLASSES}-class ImageNet "
                                          f"head; this checkpoint has a {num_classes}-class head (fine-tuned)")
    elif not full:
        status, reason = NOT_APPLICABLE, (
            f"the published top-1 is for all {IMAGENET_VAL_SIZE:,} ImageNet-val images; this run evaluated "
            f"{summary['n_evaluated']:,} of a {summary['dataset']['n_images']:,}-image list"
            + (f" with {summary['n_bad']} undecodable" if summary["n_bad"] else ""))
    else:
        status, reason = (PASS if abs(top1_t - card.published_top1) <= t.torch_top1_points else FAIL), ""
        interval = "none: all 50,000 images, the sample the published figure itself was measured on"
    checks.append(CertificateCheck(
        f"torch_top1_vs_published_{precision}", "PyTorch top-1 matches the published figure" + suffix,
        status, f"|torch - {card.published_top1}| <= {t.torch_top1_points:g} points", measured,
        reason=reason, interval=interval))

    gap = top1_p - top1_t
    p = summary["paired"]
    # paired["a"] is torch: the interval of torch - paddle, turned into paddle - torch
    judged = paired_difference_check(p["a_only_correct"], p["b_only_correct"], n, t.paddle_top1_points, CONFIDENCE)
    lo, hi = judged["interval_points"]
    judged["interval_points"] = [-hi, -lo]
    judged["difference"] = "paddle - torch, points"
    checks.append(CertificateCheck(
        f"paddle_top1_vs_torch_{precision}", "Paddle top-1 equals PyTorch top-1 on the same inputs" + suffix,
        judged["status"], f"|paddle - torch| <= {t.paddle_top1_points:g} points, the whole 95% interval",
        f"paddle {top1_p:.3f}% vs torch {top1_t:.3f}%: {gap:+.3f} points on {n:,} images "
        f"({p['a_only_correct']} right only in torch, {p['b_only_correct']} only in Paddle; McNemar exact "
        f"p = {p['mcnemar_exact_p']:.3g})",
        interval=f"95% CI of paddle - torch [{-hi:+.3f}, {-lo:+.3f}] points (Agresti-Min, paired)",
        reason=_undecided_reason(judged, "a difference this small") if judged["status"] == INCONCLUSIVE else "",
        images_needed=judged["images_needed"], details=judged))

    agree = summary["agreement_top1"]
    judged = proportion_check(n - summary["n_disagree"], n, t.min_agreement_pct, CONFIDENCE)
    a_lo, a_hi = judged["interval_pct"]
    a_interval = f"95% CI [{a_lo:.3f}, {a_hi:.3f}]% (Wilson)"
    if precision == "float32":
        checks.append(CertificateCheck(
            "agreement_float32", "Top-1 prediction agreement, image by image (float32)",
            judged["status"], f">= {t.min_agreement_pct:g}%, the whole 95% interval",
            f"{agree:.3f}% ({summary['n_disagree']} of {n:,} images differ)", interval=a_interval,
            reason=(_undecided_reason(judged, f"agreement >= {t.min_agreement_pct:g}%")
                    if judged["status"] == INCONCLUSIVE else ""),
            images_needed=judged["images_needed"], details=judged))
    else:
        checks.append(CertificateCheck(f"agreement_{precision}", f"Top-1 prediction agreement ({precision})", INFO,
                            "none (reported)", f"{agree:.3f}% ({summary['n_disagree']} images differ)",
                            interval=a_interval, details=judged))
    return checks


def logit_check_row(summary: dict, precision: str) -> CertificateCheck:
    """The evaluation's start-up logit check (parity.accuracy.evaluate.logit_check) as a certificate row."""
    from parity.core.tolerances import RULE, is_reference

    runs = summary.get("logit_checks") or []
    if not runs:
        return CertificateCheck(f"logits_{precision}", f"Logits of every framework within the rule ({precision})",
                                NOT_RUN, RULE, "-", reason="no image was evaluated")
    parts = [f"{fw} reference (its own error {j['error']:.3g}, not judged)" if is_reference(j) else
             f"{fw} error {j['error']:.3g} <= bound {j['bound']:.3g}? margin {j['margin']:.3g}"
             for c in runs for fw, j in c["judgements"].items()]
    ok = summary["logit_checks_pass"]
    return CertificateCheck(f"logits_{precision}",
                 f"Logits of every framework on the first {runs[0]['n_images']} evaluation images, judged against "
                 f"a float64 recomputation ({precision})",
                 INFO if ok is None else PASS if ok else FAIL, RULE, "; ".join(parts),
                 reason="only the reference ran: nothing was compared" if ok is None else "", details={"checks": runs})


def fast_path_row(summary: dict, precision: str) -> CertificateCheck:
    """What became of each framework's fast path at start-up: a fast path that
    failed its check computes wrong logits, a finding (FAIL) even though the
    evaluation went on eager; one that could not run here is reported (INFO)."""
    from parity.accuracy.evaluate import FAST_FAILED, FAST_PASSED
    from parity.core.tolerances import RULE

    paths = {fw: f for fw, f in (summary.get("fast_paths") or {}).items() if f}
    parts = []
    for fw, f in paths.items():
        margin = f" (margin {f['margin']:.3g})" if f.get("margin") is not None else ""
        parts.append(f"{fw} {f['path']}: {f['status']}{margin}" + (f": {f['reason']}" if f.get("reason") and
                                                                   f["status"] != FAST_FAILED else ""))
    statuses = [f["status"] for f in paths.values()]
    failed = [fw for fw, f in paths.items() if f["status"] == FAST_FAILED]
    status = FAIL if failed else PASS if statuses and all(st == FAST_PASSED for st in statuses) else INFO
    return CertificateCheck(
        f"fast_paths_{precision}",
        f"The fast path of each framework, proven at start-up against a float64 recomputation ({precision})",
        status, RULE, "; ".join(parts) or "none recorded",
        reason="; ".join(f"{fw}: {paths[fw]['reason']}" for fw in failed), details={"fast_paths": paths})


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


def latency_step(arch, opts: CertifyOptions, official, say) -> CertificateCheck:
    """parity.latency.bench.measure_latency on the certified weights: every framework
    in eager and best inference mode, plus the input pipeline's images/s.
    Reported, not judged, except that each timed path's logits must match."""
    try:
        from parity.latency.bench import measure_latency
        from parity.latency.contention import caution
    except ImportError as e:
        return CertificateCheck("latency", "Latency (ms/image), both frameworks", NOT_RUN, "none (reported)", "-",
                     reason=f"the benchmark (parity.latency.bench.measure_latency) is not available: {e}")
    from parity.core.tolerances import failed

    say("latency benchmark")
    options = {"pipeline_workers": (opts.workers,), "floor": False, **opts.bench_options}
    data = measure_latency(arch, official_state=official, device=opts.device, progress=say, **options)
    timed = [r for r in data["results"] if "skipped" not in r]
    wrong = [r["label"] for r in timed if failed(r["check"])]
    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    medians = "; ".join(f"{r['framework']} {r['mode']} {short.get(r['dtype'], r['dtype'])}"
                        f"{' BN-folded' if r['bn_folded'] else ''} {r['ms_per_image']['median']:.3g}" for r in timed)
    skipped = [f"{r['framework']} {r['mode']} {r['dtype']} (not run: {r['skipped']})"
               for r in data["results"] if "skipped" in r]
    load = data["environment"].get("load_average")
    other = data["environment"].get("other_load")  # parity.latency.contention
    pipeline = "; ".join(f"input pipeline {p['images_per_s']:.3g} images/s with {p['workers']} worker(s)"
                         for p in data.get("pipeline", []))
    measured = "; ".join([f"median ms/image: {medians or 'none timed'}", *skipped,
                          f"{data['batch_note']}, {data['warmup']} warm-up + {data['iters']} timed iterations",
                          *([f"load average {load[0]:.2f} on {data['environment'].get('cpu_count')} cores at the "
                             "start (other work slows every figure)"] if load else []),
                          *([f"other work kept {other['cores_busy']:.2f} of {other['cpu_count']} cores busy while "
                             "timing"] if other else []),
                          *([pipeline] if pipeline else [])])
    reasons = ([f"logits differ from the reference for: {', '.join(wrong)}"] if wrong else []) + \
        [x for x in [caution(data)] if x]
    return CertificateCheck("latency", "Latency (ms/image, median after warm-up), eager and best inference mode",
                            FAIL if wrong else INFO,
                            "reported beside the published figure; each timed path's logits must match torch eager "
                            "float32", measured, reason="; ".join(reasons), details=data)


def _predictions(results_path: str) -> List[dict]:
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


# ---------------------------------------------------------------- the run
def given_evaluation(opts, arch, dataset, samples, source, paddle_path) -> dict:
    """The summary of `opts.eval_results`, a finished float32 results file of
    both frameworks (a run of both, or `merge --results` of a torch-only and
    a Paddle-only run), after checking that it evaluated what this
    certificate certifies: these weights (the Paddle side: their conversion
    by the mapping table, or the very --pdparams given here), this list and
    limit, the official preprocessing of this arch, float32, every image."""
    from converters.files.source import sha256_file

    from parity.accuracy.evaluate import make_header, summarize
    from parity.accuracy.results import RECORD_TYPES, read_results
    from parity.inputs.data import DataError

    path = opts.eval_results
    header, records = read_results(path)
    ours = make_header(arch, "float32", "cpu", {}, {}, dataset, opts.limit, None, len(samples))
    weights = header.get("weights") or {}
    given_pdparams = (weights.get("pdparams") or {}).get("sha256")
    wanted_pdparams = sha256_file(opts.pdparams) if opts.pdparams else None
    differ = [f for f in ("arch", "precision", "dataset", "limit", "preprocessing") if header.get(f) != ours[f]]
    if weights.get("sha256") != source.sha256:
        differ.append(f"weights.sha256 ({weights.get('sha256') or weights.get('source')} vs {source.sha256} of "
                      f"{opts.weights})")
    if given_pdparams != wanted_pdparams:
        differ.append(f"weights.pdparams (Paddle evaluated {given_pdparams or 'the conversion of the weights'}, "
                      f"this certificate {wanted_pdparams or 'the conversion of the weights'})")
    if differ:
        raise DataError(path, f"is not an evaluation of what this certificate certifies: it differs in "
                              f"{', '.join(differ)}")
    if sorted(header.get("frameworks") or []) != ["paddle", "torch"]:
        raise DataError(path, f"holds {'+'.join(header.get('frameworks') or [])} only: give a run of both "
                              "frameworks, or pair two runs with `genet-parity merge TORCH PADDLE --results PATH`")
    done = {r["index"] for r in records if r["type"] in RECORD_TYPES}
    if done != {s.index for s in samples}:
        raise DataError(path, f"is unfinished or of other images: {len(done)} images, {len(samples)} to certify")
    summary = summarize(header, records)
    for key in ("environments", "paired_from"):
        if header.get(key):
            summary[key] = header[key]
    summary["given"] = {"results": os.path.abspath(path), "sha256": sha256_file(path)}
    return summary


def _evaluate(opts, arch, dataset, samples, official, paddle_state, paddle_name, source, device, precision, say,
              progress, on_batch, step, job):
    """The evaluation step at one precision: (summary, results path); under
    a job, this rank's slice of it (the summary None but at rank 0)."""
    from parity.accuracy.evaluate import RunTimes, batch_detail, build_runners, evaluate, logit_check, make_header

    share = len(samples) if job is None else len(samples[job.rank::job.world])
    step(f"evaluation ({precision}, {len(samples):,} images)", total=share, unit="images")
    if progress is not None:
        on_batch = (lambda n, counts: progress.update(advance=n, detail=batch_detail(counts, ["torch", "paddle"])))
    runners = build_runners(arch, ["torch", "paddle"], official, paddle_state, device, precision,
                            runner=opts.runner, say=say)
    header = make_header(arch, precision, device, runners,
                         {"source": os.path.basename(opts.weights), "sha256": source.sha256,
                          "num_classes": source.num_classes, "paddle": paddle_name},
                         dataset, opts.limit, None, len(samples))
    results_path = f"{opts.out_prefix}.eval_{precision}.jsonl"
    times = RunTimes()
    run = evaluate
    if job is not None:
        from functools import partial

        from parity.accuracy.distributed import evaluate_job

        run = partial(evaluate_job, job, say=say)
    summary = run(runners, dataset, samples, header, results_path,
                  resume=opts.resume, skip_bad=opts.skip_bad, batch_size=opts.batch_size,
                  workers=opts.workers, on_batch=on_batch,
                  check=logit_check(arch, official, runners, device, precision), times=times)
    if summary is not None and "throughput" not in summary:
        summary["throughput"] = times.summary(list(runners))
    return summary, results_path


def certify(opts: CertifyOptions, say: Callable[[str], None] = print, on_batch=None, progress=None,
            job=None) -> Optional[dict]:
    """Run every step; `progress` (a parity.core.progress.Progress) shows each step
    with what comes next and counts modules and images; without it `say`
    gets one line per step and `on_batch` the evaluation's batches.
    job: a parity.accuracy.distributed.Job: its rank 0 runs every step and
    every rank a slice of the evaluations; the certificate is rank 0's
    (None elsewhere), the one a single process would write."""
    from converters.files.load import load_weights, to_layout

    from parity.inputs.data import class_note, open_dataset, select
    from parity.inputs.decode import Decoder
    from parity.accuracy.evaluate import normalize_device

    start = time.perf_counter()
    if progress is not None:
        say = progress.say
    device = normalize_device(opts.device)
    opts.device = device
    # Every input is checked (weights identified, list parsed, every label within the head the
    # weights hold, files present) before long work.
    source = load_weights(opts.weights, arch=opts.arch, weights_key=opts.weights_key)
    arch = canonical_arch(source.arch)
    if opts.pdparams:
        given = load_weights(opts.pdparams, arch=arch, layout="paddle")
        if given.num_classes != source.num_classes:
            from converters.table.errors import CheckpointError

            raise CheckpointError(opts.pdparams, f"has a {given.num_classes}-class head, {opts.weights} a "
                                                 f"{source.num_classes}-class head: it cannot hold their conversion")
    dataset = open_dataset(opts.data, opts.list_file, source.num_classes)
    if source.state_dict.note:
        say(f"{opts.weights}: {source.state_dict.note}")
    dataset_note = class_note(dataset, source.num_classes)
    if dataset_note:
        say(dataset_note)
    card = CARDS[arch]
    os.makedirs(os.path.dirname(os.path.abspath(opts.out_prefix)), exist_ok=True)
    inputs = [_file_record("weights", opts.weights)]
    if opts.pdparams:
        inputs.append(_file_record("pdparams", opts.pdparams))
    if opts.list_file:
        inputs.append(_file_record("list", opts.list_file))

    samples = select(dataset.samples, opts.limit)
    precisions = ["float32"] + (["float16"] if device != "cpu" else [])
    plan = (["conversion with verification", "layer diff"]
            + [f"evaluation ({p}, {len(samples):,} images)" for p in precisions] + (["latency"] if opts.bench else []))

    def step(name, total=None, unit=""):
        k = plan.index(name)
        text = f"step {k + 1}/{len(plan)}: {name}" + (f" (next: {plan[k + 1]})" if k + 1 < len(plan) else "")
        if progress is not None:
            progress.stage(text, total=total, unit=unit)
        else:
            say(text)

    lead = job is None or job.rank == 0
    official = to_layout(source, "official")
    checks, paddle_state, paddle_name, paddle_path = [], None, None, None
    if lead:
        step("conversion with verification")
        checks, paddle_path = conversion_step(opts, arch, say)
        if paddle_path:
            paddle_state = to_layout(load_weights(paddle_path, arch=arch, layout="paddle"), "paddle")
            paddle_name = os.path.basename(paddle_path)
        if paddle_path and paddle_path != opts.pdparams:
            inputs.append({**_file_record("converted", paddle_path), "role": "converted pdparams (written here)"})
    if job is not None:
        # The other ranks evaluate exactly the Paddle weights rank 0 verified (none: the conversion failed).
        if not lead:
            say("waiting for rank 0's conversion and layer diff")
        paddle_state, paddle_name = job.broadcast((paddle_state, paddle_name) if lead else None, "converted")

    evaluations, predictions, accuracy = {}, {}, {}
    if not lead:
        if paddle_state is not None:
            for precision in precisions:
                if precision == "float32" and opts.eval_results:
                    continue  # rank 0 reads the given evaluation
                _evaluate(opts, arch, dataset, samples, official, paddle_state, paddle_name, source, device,
                          precision, say, progress, on_batch, step, job)
        return None
    if paddle_state is None:
        reason = "the conversion failed, so there is no Paddle model to compare"
        checks.append(CertificateCheck("layer_diff", "Layer diff", NOT_RUN, "-", "-", reason=reason))
        checks.append(CertificateCheck("evaluation_float32", "Evaluation (float32)", NOT_RUN, "-", "-", reason=reason))
    else:
        n_ld = max(1, min(opts.layer_diff_images, len(samples)))
        with Decoder(arch, dataset.abspath, workers=0, batch_size=n_ld) as dec:
            first = next(dec.batches(samples[:n_ld]))
        info = {"source": f"the first {len(first.samples)} evaluation images",
                "paths": [s.path for s in first.samples]}
        step("layer diff", total=None, unit="segments")
        on_layer = (lambda done, total, label: progress.update(done=done, total=total, detail=label)) \
            if progress is not None else None
        checks.append(layer_diff_step(arch, official, paddle_state, first.inputs, info, device, say, on_layer))
        for precision in precisions:
            if precision == "float32" and opts.eval_results:
                step(f"evaluation ({precision}, {len(samples):,} images)")
                summary, results_path = given_evaluation(opts, arch, dataset, samples, source, paddle_path), \
                    opts.eval_results
                say(f"evaluation: {opts.eval_results} ({summary['n_evaluated']:,} images, not rerun here)")
            else:
                summary, results_path = _evaluate(opts, arch, dataset, samples, official, paddle_state, paddle_name,
                                                  source, device, precision, say, progress, on_batch, step, job)
            evaluations[precision] = summary
            checks.append(fast_path_row(summary, precision))
            checks.append(logit_check_row(summary, precision))
            predictions[precision] = _predictions(results_path)
            accuracy[precision] = accuracy_intervals(summary)
            if summary["n_evaluated"] == 0:
                checks.append(CertificateCheck(f"evaluation_{precision}", f"Evaluation ({precision})", FAIL, "-",
                                               "0 images", reason="no image could be evaluated"))
                continue
            checks.extend(evaluation_checks(summary, opts, arch, precision, source.num_classes))
        if device == "cpu":
            checks.append(CertificateCheck(
                "evaluation_float16", "Evaluation in float16 (the official setting, GPU only)",
                SKIPPED, "-", "-", reason="no GPU: float16 evaluation runs on a GPU (--device gpu)"))
    if opts.bench:
        step("latency")
        checks.append(latency_step(arch, opts, official, say))
    else:
        checks.append(CertificateCheck("latency", "Latency (ms/image)", NOT_RUN, "-", "-",
                                       reason="disabled with --no-bench"))

    return {
        **({"job": {"launcher": job.launch.launcher, "processes": job.world}} if job is not None else {}),
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "title": title(f"GENet_{arch}", opts.demo, source.num_classes),
        "verdict": verdict(checks, opts.demo), "demo": opts.demo, "demo_note": opts.demo_note,
        "arch": f"GENet_{arch}", "num_classes": source.num_classes, "device": device,
        "state_dict": source.state_dict.to_dict(),
        "published": {"top1": card.published_top1, "timm_top1": card.timm_top1, "timm_top5": card.timm_top5,
                      "latency_ms_per_image_v100_fp16_b64": card.published_latency_ms_v100_fp16_b64,
                      "params": card.num_params, "macs_g": card.macs_g, "resolution": card.resolution},
        "thresholds": asdict(opts.thresholds),
        "inputs": inputs,
        "dataset": {**dataset.describe(), "evaluated": len(samples), "limit": opts.limit, "note": dataset_note},
        "environment": environment(device),  # parity.core.environment
        # Where each framework of a given (--eval-results) evaluation ran: two environments for a pair.
        **({"evaluation_environments": {p: e["environments"] for p, e in evaluations.items() if e.get("environments")}}
           if any(e.get("environments") for e in evaluations.values()) else {}),
        "checks": [asdict(c) for c in checks],
        "evaluation": evaluations,
        "accuracy": accuracy,  # top-1 per framework with its 95% interval
        "predictions": predictions,  # every image's top-5 in both frameworks, by precision
        "seconds": time.perf_counter() - start,
    }
