"""`genet-parity eval`: ImageNet-val accuracy of both frameworks on identical inputs."""
from __future__ import annotations

import json
import os

HELP = "Top-1/top-5 of PyTorch and PaddlePaddle on the same preprocessed images, with paired statistics."
DISAGREEMENTS_SHOWN = 10


def add_weight_arguments(p):
    from converters.files import state_dicts

    p.add_argument("--arch", help="small, normal or large (GENet_*/gernet_* accepted; "
                                  "default: identified from --weights)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="PATH",
                     help="checkpoint in any supported layout (official .pth, timm, Paddle .pdparams), with a head of "
                          "any size (a fine-tuned checkpoint's: labels must then lie below its number of classes)")
    src.add_argument("--seeded", action="store_true",
                     help="seeded random weights (numpy seed 2020): exercises the tools, not a trained model")
    p.add_argument("--pdparams", metavar="PATH",
                   help="Paddle weights to evaluate instead of converting --weights (e.g. genet-convert's output); "
                        "checked module by module against the torch weights first (the layer diff)")
    state_dicts.add_argument(p)


def add_data_arguments(p):
    p.add_argument("--data", required=True, metavar="DIR", help="image folder (class sub-folders, or with --list)")
    p.add_argument("--list", metavar="FILE", help="val_list.txt: '<relative path> <integer label>' per line")


def add_arguments(p):
    from parity.accuracy.runners import PRECISIONS

    add_weight_arguments(p)
    add_data_arguments(p)
    p.add_argument("--framework", choices=["both", "torch", "paddle"], default="both")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float16 on GPU is model.half() (Paddle: amp O2); on CPU torch runs real float16/bfloat16 "
                        "kernels and Paddle a labelled float16 emulation")
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N (default cpu)")
    p.add_argument("--runner", choices=["fast", "eager"], default="fast",
                   help="fast (default): torch on channels-last tensors and Paddle on its inference predictor, "
                        "each checked at start-up against the float64 recomputation, eager (said loudly) where a "
                        "path is unavailable or fails; eager: both eager")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, help="decoding processes (default: number of cores; 0 = in-process)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images of the list")
    p.add_argument("--shard", metavar="K/N", help="evaluate slice K of N (K from 0), or 'auto' under torchrun / "
                                                  "paddle.distributed.launch; combine with `genet-parity merge`. "
                                                  "Without it, under a launcher, the ranks evaluate one job together "
                                                  "and rank 0 writes the one results file and summary")
    add_job_arguments(p)
    p.add_argument("--results", metavar="PATH", help="per-image predictions, JSON lines "
                                                     "(default genet_eval_<arch>_<precision>_<list or data folder name>"
                                                     "[_shardKofN].jsonl, beside --json if given, else here)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its --results file")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images that fail to decode, count and list them (default: stop at the first)")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")


def add_job_arguments(p):
    from parity.accuracy.distributed import DEFAULT_TIMEOUT_S

    p.add_argument("--collective-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="under torchrun or paddle.distributed.launch: how long a rank may be silent (killed, hung, "
                        f"unreachable) before the whole job ends with an error (default {DEFAULT_TIMEOUT_S:g})")


def load_states(arch, weights=None, seeded=False, pdparams=None, need_torch=True, need_paddle=True,
                weights_key=None):
    """(arch, official-layout state, Paddle-layout state, provenance) from the
    command line's weight arguments. Conversion goes through the mapping
    table; the provenance records the head's size (`num_classes`) and, for a
    training checkpoint, which state dict was taken (`state_dict`)."""
    from converters.files.load import load_weights, to_layout
    from converters.table.errors import CheckpointError
    from converters.table.mapping import convert_state
    from genet_arch import DEFAULT_NUM_CLASSES, canonical_arch

    from parity.inputs.data import DataError
    from parity.core.seeded import WEIGHT_SEED, seeded_state, state_sha256

    if seeded:
        if not arch:
            raise DataError(None, "--seeded needs --arch")
        if weights_key:
            raise DataError(None, "--weights-key chooses a state dict of --weights, not of --seeded weights")
        arch = canonical_arch(arch)
        official = seeded_state(arch)
        provenance = {"source": f"seeded (numpy default_rng({WEIGHT_SEED}))", "state_sha256": state_sha256(official),
                      "num_classes": DEFAULT_NUM_CLASSES}
        paddle_state = convert_state(official, arch, "official", "paddle", source="seeded weights")
    else:
        loaded = load_weights(weights, arch=arch, weights_key=weights_key)
        arch = loaded.arch
        official, paddle_state = to_layout(loaded, "official"), to_layout(loaded, "paddle")
        # File names, not paths: shards on other machines are the same run.
        provenance = {"source": os.path.basename(weights), "sha256": loaded.sha256, "layout": loaded.layout,
                      "num_classes": loaded.num_classes}
        if loaded.state_dict.key is not None:
            provenance["state_dict"] = loaded.state_dict.to_dict()
    if pdparams and need_paddle:
        given = load_weights(pdparams, arch=arch, layout="paddle")
        if given.num_classes != provenance["num_classes"]:
            raise CheckpointError(pdparams, f"has a {given.num_classes}-class head, the torch weights a "
                                            f"{provenance['num_classes']}-class head: both frameworks must "
                                            f"evaluate the same model")
        paddle_state = to_layout(given, "paddle")
        provenance["pdparams"] = {"source": os.path.basename(pdparams), "sha256": given.sha256}
    return arch, official if need_torch else None, paddle_state if need_paddle else None, provenance


def check_pdparams(arch, official, paddle_state, pdparams: str, weights: str, device: str = "cpu") -> dict:
    """A given .pdparams against the torch weights, module by module: the
    layer diff (`parity.layers.diff`, every mapped module isolated and
    accumulated, judged by the project's rule against float64, on its seeded
    batch), as `genet-parity layers` and `certify` run it. A fault the logits
    of a few inputs cannot show (a BN whose channel a ReLU then zeroes) shows
    at the module itself. Raises VerificationError (exit 1, nothing
    evaluated) when any module fails; returns the record for the summary."""
    from converters.table.errors import VerificationError

    from parity.layers.diff import run_layer_diff

    d = run_layer_diff(arch, official, paddle_state, device="cpu" if device == "cpu" else "gpu").to_dict()
    record = {"what": "layer diff of the given .pdparams against the torch weights (every mapped module, "
                      "isolated and accumulated, against a float64 recomputation)",
              "pass": d["pass"], "first_divergent": d["first_divergent"], "coverage": d["coverage"],
              "failures": d["failures"], "input": d["input"], "seconds": d["seconds"]}
    if not d["pass"]:
        first = d["first_divergent"]
        where = f"first divergent module {first['torch_name']} ({first['reason']}); " if first else ""
        raise VerificationError(
            f"{pdparams} does not compute what {weights} computes: {where}{'; '.join(d['failures'][:3])}. "
            f"Nothing was evaluated (`genet-parity layers --weights ... --pdparams {pdparams}` shows every module)")
    return record


def refuse_outputs(args, results, dataset) -> None:
    """--results and --json may name no input (and not each other): checked
    before any work, and again once the default results name and the images
    are known. --results is an input too when resumed, never an output of
    another kind."""
    from converters.files.paths import refuse_output_is_input

    inputs = [("--weights", args.weights), ("--pdparams", args.pdparams), ("--list", args.list)]
    outputs = [("--json", args.json)]
    if not args.resume:
        outputs.insert(0, ("--results", results))
    else:
        inputs.append(("--results", results))
    refuse_output_is_input(outputs, inputs)
    if dataset is not None:
        from converters.files.paths import identity

        for what, path in outputs + [("--results", results)]:
            if path and identity(path).inode in dataset.inodes:
                from parity.inputs.data import DataError

                raise DataError(path, f"{what} names one of the images being evaluated; choose another path "
                                      f"(nothing was written)")


def finish(summary: dict, source: str) -> int:
    """The exit code of an evaluation's summary: an evaluation of no image is
    an error (exit 2, said plainly); a failed start-up logit check, or a fast
    path that failed its check (findings, although the run went on eager), exit 1."""
    if summary["n_evaluated"] == 0:
        from parity.inputs.data import DataError

        raise DataError(source, f"no image was evaluated ({summary['n_bad']} of {summary['n_expected']} failed to "
                                f"decode): an evaluation of no image has no accuracy")
    return 1 if summary["logit_checks_pass"] is False or summary.get("fast_paths_failed") else 0


def default_results_path(arch, precision, shard, args) -> str:
    """genet_eval_<arch>_<precision>_<data>[_shardKofN].jsonl, <data> the
    list's name (else the data folder's), so that runs over other data never
    meet in one default file; beside --json when given, else in the current
    directory."""
    import re

    data = os.path.splitext(os.path.basename(args.list))[0] if args.list else \
        os.path.basename(os.path.normpath(os.path.abspath(args.data)))
    data = re.sub(r"[^A-Za-z0-9._-]+", "-", data).strip("-.") or "data"
    suffix = f"_shard{shard[0]}of{shard[1]}" if shard else ""
    name = f"genet_eval_{arch}_{precision}_{data}{suffix}.jsonl"
    return os.path.join(os.path.dirname(args.json), name) if args.json else name


def refuse_existing_results(results: str, resume: bool) -> None:
    """The results file's own refusal (parity.accuracy.results), said before
    seconds of model building rather than after: a results file that holds a
    run is continued with --resume or left alone."""
    from parity.accuracy.results import already_holds_a_run

    try:
        size = os.stat(results).st_size
    except OSError:
        return  # absent (or unreadable: the writer names the problem)
    if size > 0 and not resume:
        raise already_holds_a_run(results)


def run_eval(args, console=None) -> dict:
    """Everything `eval` does, returning the summary. Progress goes to stderr
    (or to `console.file`). Under a launcher (torchrun,
    paddle.distributed.launch) without --shard, every rank runs this as one
    job (parity.accuracy.distributed); the summary is rank 0's, None elsewhere."""
    from parity.accuracy.distributed import Job, detect, rank_device

    launch = detect() if args.shard is None else None
    if launch is None:
        return _run_eval(args, console)
    with Job(launch, rank_device(args.device, launch), args.collective_timeout) as job:
        return _run_eval(args, console, job)


def _run_eval(args, console=None, job=None):
    import time

    from parity.accuracy.evaluate import RunTimes, batch_detail, evaluate
    from parity.accuracy.runners import build_runners, logit_check, normalize_device
    from parity.accuracy.summary import make_header
    from parity.core.progress import Progress
    from parity.core.runtime import default_threads
    from parity.inputs.data import class_note, launcher_rank, open_dataset, parse_shard, select

    started = time.perf_counter()
    shard = parse_shard(args.shard)
    device = normalize_device(args.device)
    launched = launcher_rank() if args.shard and args.shard.strip().lower() == "auto" else None
    if launched and device == "gpu:0" and args.device.strip().lower() in ("gpu", "cuda") and launched[2] is not None:
        device = f"gpu:{launched[2]}"  # each launched process on its own GPU
    if job is not None:
        from parity.accuracy.distributed import rank_device

        device = rank_device(args.device, job.launch)
    if args.limit is not None and args.limit < 1:
        from parity.inputs.data import DataError

        raise DataError(None, f"--limit {args.limit}: must be >= 1")
    frameworks = ["torch", "paddle"] if args.framework == "both" else [args.framework]
    name = "eval" if job is None else f"eval rank {job.rank}/{job.world}"
    progress = Progress(name, stream=getattr(console, "file", None))
    from parity.inputs.data import resolve_list

    args.list, list_note = resolve_list(args.list, args.data)
    if list_note:
        progress.note(list_note)
    refuse_outputs(args, args.results, None)
    if args.results:
        refuse_existing_results(args.results, args.resume)
    progress.stage("reading the weights")
    # The torch-layout weights are needed even for --framework paddle: the
    # start-up logit check's float64 recomputation is built from them.
    arch, official, paddle_state, provenance = load_states(
        args.arch, args.weights, args.seeded, args.pdparams, need_torch=True, need_paddle="paddle" in frameworks,
        weights_key=args.weights_key)
    if provenance.get("state_dict", {}).get("note"):
        progress.note(f"{args.weights}: {provenance['state_dict']['note']}")
    num_classes = provenance["num_classes"]
    # The data are checked (every listed file present, every label within the
    # head read from the weights) before any model is built.
    dataset = open_dataset(args.data, args.list, num_classes)
    results = args.results or default_results_path(arch, args.precision, shard, args)
    refuse_outputs(args, results, dataset)  # now that the default name and the images are known
    refuse_existing_results(results, args.resume)  # before the models are built, not after
    note = class_note(dataset, num_classes)
    if note:
        progress.note(note)
    samples = select(dataset.samples, args.limit, shard)
    pdparams_check = None
    if args.pdparams and "paddle" in frameworks:
        progress.stage(f"checking {os.path.basename(args.pdparams)} against the torch weights: the layer diff "
                       "(every mapped module)")
        pdparams_check = check_pdparams(arch, official, paddle_state, args.pdparams, args.weights or "--seeded",
                                        device)
        progress.note(f"{args.pdparams}: every one of {pdparams_check['coverage']['total']} mapped modules within "
                      f"the rule ({pdparams_check['seconds']:.1f} s)")
    progress.stage("building the runners (the fast path is checked at start-up)")
    runners = build_runners(arch, frameworks, official, paddle_state, device, args.precision, runner=args.runner,
                            say=progress.note)
    header = make_header(arch, args.precision, device, runners, provenance, dataset, args.limit, shard, len(samples))
    from parity.core.environment import environment

    # Where this run ran (not part of its identity): a torch-only and a Paddle-only run paired by
    # `merge` keep both environments.
    header["environment"] = environment(device, args.precision)
    workers = default_threads() if args.workers is None else args.workers
    for label in header["runners"].values():
        progress.note(label)
    share = len(samples) if job is None else len(samples[job.rank::job.world])  # this process's images
    progress.stage(f"GENet_{arch}, {args.precision}, batches of {args.batch_size}", total=share, unit="images")
    times = RunTimes()
    startup_s = time.perf_counter() - started
    run = evaluate
    if job is not None:
        from functools import partial

        from parity.accuracy.distributed import evaluate_job

        run = partial(evaluate_job, job, say=progress.note)
    with progress:
        summary = run(runners, dataset, samples, header, results, resume=args.resume, skip_bad=args.skip_bad,
                      batch_size=args.batch_size, workers=workers,
                      on_batch=lambda n, counts: progress.update(advance=n,
                                                                 detail=batch_detail(counts, frameworks)),
                      check=logit_check(arch, official, runners, device, args.precision), times=times)
    if summary is None:  # a rank other than 0 of a job: rank 0 reports
        return None
    summary["throughput"] = {**summary.get("throughput", times.summary(frameworks)), "startup_s": startup_s}
    summary["dataset_note"] = note
    if pdparams_check is not None:
        summary["pdparams_check"] = pdparams_check
    summary["results_file"] = os.path.abspath(results)
    progress.note(f"per-image predictions: {os.path.abspath(results)}")
    return summary


def print_summary(out, s: dict):
    """The summary at the width of `out` (a parity.core.textout.Out)."""
    from parity.core.textout import Column

    def pct(v):
        return "n/a" if v is None else f"{v:.3f}"

    out.table([Column("framework"), Column("top-1 %", align="right"), Column("top-5 %", align="right"),
               Column("runner", priority=1)],
              [[fw, pct(s["top1"][fw]), pct(s["top5"][fw]), s["runners"][fw]] for fw in s["frameworks"]],
              title=f"GENet_{s['arch']} ({s['num_classes']}-class head) on {s['n_evaluated']} images "
                    f"({s['precision']}, {s['device']})",
              hint="--json writes them")
    if "paired" in s:
        p = s["paired"]
        ci = p["top1_difference_ci_points"]
        diff = "n/a" if s["logit_max_abs_diff"] is None else f"{s['logit_max_abs_diff']:.3g}"
        out.print(f"Top-1 agreement {pct(s['agreement_top1'])}% ({s['n_disagree']} images differ); "
                  f"largest logit difference {diff}")
        if ci:
            out.print(f"Top-1 {p['a']} - {p['b']}: {p['top1_difference_points']:+.3f} points, "
                      f"{100 * p['confidence']:.0f}% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]; McNemar exact p = "
                      f"{p['mcnemar_exact_p']:.4g} ({p['a_only_correct']} right only in {p['a']}, "
                      f"{p['b_only_correct']} only in {p['b']})")
        for d in s["disagreements"][:DISAGREEMENTS_SHOWN]:
            out.print(f"  differs: {d['path']} (label {d['label']}): "
                      + ", ".join(f"{fw} {d[fw]}" for fw in s["frameworks"]), indent="    ")
        if s["n_disagree"] > DISAGREEMENTS_SHOWN:
            out.print(f"  ... and {s['n_disagree'] - DISAGREEMENTS_SHOWN} more (all in the JSON summary)")
    for line, style in check_lines(s):
        out.print(line, style=style)
    if s.get("throughput"):
        out.print(throughput_line(s["throughput"]))
    if s["n_bad"]:
        out.print(f"Skipped {s['n_bad']} image(s) that failed to decode:", style="yellow")
        for b in s["bad_images"][:DISAGREEMENTS_SHOWN]:
            out.print(f"  {b['path']}: {b['error']}", indent="    ")
    if not s["complete"]:
        out.print(f"Incomplete: {s['n_evaluated'] + s['n_bad']} of {s['n_expected']} images done.", style="yellow")


def check_lines(s: dict):
    """(line, style) of each start-up logit check and each fast path that did
    not pass its check. The reference (eager torch at the precision under
    test: the bar itself) is reported as such, never as a pass."""
    from parity.accuracy.runners import FAST_FAILED, FAST_UNAVAILABLE
    from parity.core.tolerances import FACTOR, is_reference

    for c in s.get("logit_checks") or []:
        where = f" (shard {c['shard'][0]}/{c['shard'][1]})" if c.get("shard") else ""
        parts = ", ".join(f"{fw} reference (its own error {j['error']:.3g}, not judged)" if is_reference(j)
                          else f"{fw} margin {j['margin']:.3g}" for fw, j in c["judgements"].items())
        verdict = {True: "PASS", False: "FAIL", None: "reference only, nothing compared"}[c["pass"]]
        yield (f"Start-up logit check{where}, first {c['n_images']} images vs a float64 recomputation "
               f"(bar: {FACTOR:g} x torch {c['precision']} error): {parts}: {verdict}",
               "bold red" if c["pass"] is False else None)
    for fw, f in (s.get("fast_paths") or {}).items():
        if f and f["status"] == FAST_FAILED:
            margin = f"margin {f['margin']:.3g}" if f.get("margin") is not None else "no margin recorded"
            yield (f"Fast path FAILED its check: {fw} {f['path']} ({margin}); this run used eager instead. "
                   f"{f['reason']}", "bold red")
        elif f and f["status"] == FAST_UNAVAILABLE:
            yield f"Fast path unavailable: {fw} {f['path']}: {f['reason']}", "yellow"


def throughput_line(t: dict) -> str:
    """This run's images/s and each stage's on its own time (see evaluate.RunTimes)."""
    def rate(v):
        return "n/a" if v is None else f"{v:.1f}"

    stages = t["stages"]
    parts = [f"{fw} {rate(v['images_per_s'])}" for fw, v in stages.items() if fw != "decode"]
    d = stages["decode"]
    per = f" per worker x {d['workers']}" if d["workers"] else " in-process"
    parts.append(f"decode {rate(d['images_per_s'])}{per}")
    start = f"; start-up {t['startup_s']:.1f} s" if t.get("startup_s") is not None else ""
    return (f"Throughput: {t['images']} images in {t['run_s']:.1f} s = {rate(t['images_per_s'])} images/s "
            f"(each stage on its own time: {', '.join(parts)}; waited {t['decode_wait_s']:.1f} s for decoding, "
            f"{t['check_s']:.1f} s in the start-up check{start})")


def write_json(path, data):
    """Atomic: a reader never sees half a summary; a failed write (a full
    disk, a read-only folder) leaves nothing and names the file (exit 2)."""
    from converters.files.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2))


def run(args) -> int:
    from parity.core.textout import Out

    summary = run_eval(args)
    if summary is None:  # a rank other than 0 of a launched job: rank 0 prints and writes
        return 0
    print_summary(Out(), summary)
    if args.json:
        write_json(args.json, summary)
    return finish(summary, summary["results_file"])
