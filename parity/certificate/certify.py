"""The reproduction certificate: every check the project can run on one
checkpoint, each with its threshold, measured value and verdict.

Steps, in order: hash the inputs; convert the weights to Paddle with
verification (or check a given .pdparams against that conversion); the layer
diff on real evaluation images; the evaluation of both frameworks in float32
(and float16 on a GPU); the latency benchmark. A step that cannot run says
so ("NOT RUN", with the reason): nothing is ever reported as passed that was
not measured. `parity.certificate.page` renders the result as JSON, HTML and
terminal text.

This module runs the steps in order; the steps themselves are in
`parity.certificate.steps` (conversion, layer diff, latency) and
`parity.certificate.evaluation_rows` (the rows of each evaluation), the
statuses and the verdict in `parity.certificate.verdict`, the record's
parts in `parity.certificate.record`.
"""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict
from typing import Callable, Optional

from genet_arch import CARDS, canonical_arch

from parity.certificate.evaluation_rows import evaluation_checks, fast_path_row, logit_check_row
from parity.certificate.options import CertifyOptions
from parity.certificate.record import (SCHEMA, SCHEMA_VERSION, accuracy_intervals, file_record, image_predictions,
                                       title)
from parity.certificate.steps import conversion_step, latency_step, layer_diff_step
from parity.certificate.verdict import FAIL, NOT_RUN, SKIPPED, CertificateCheck, verdict
from parity.core.environment import environment


def given_evaluation(opts, arch, dataset, samples, source, paddle_path) -> dict:
    """The summary of `opts.eval_results`, a finished float32 results file of
    both frameworks (a run of both, or `merge --results` of a torch-only and
    a Paddle-only run), after checking that it evaluated what this
    certificate certifies: these weights (the Paddle side: their conversion
    by the mapping table, or the very --pdparams given here), this list and
    limit, the official preprocessing of this arch, float32, every image."""
    from converters.files.source import sha256_file

    from parity.accuracy.summary import make_header, summarize
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
    from parity.accuracy.evaluate import RunTimes, batch_detail, evaluate
    from parity.accuracy.runners import build_runners, logit_check
    from parity.accuracy.summary import make_header

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
    from parity.accuracy.runners import normalize_device

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
    inputs = [file_record("weights", opts.weights)]
    if opts.pdparams:
        inputs.append(file_record("pdparams", opts.pdparams))
    if opts.list_file:
        inputs.append(file_record("list", opts.list_file))

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
            inputs.append({**file_record("converted", paddle_path), "role": "converted pdparams (written here)"})
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
            predictions[precision] = image_predictions(results_path)
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
