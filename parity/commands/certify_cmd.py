"""`genet-parity certify`: conversion, layer diff, evaluation and latency in
one certificate (JSON + self-contained HTML). `--demo` runs it on built-in
data: seeded weights and photos bundled with scikit-image, synthetic labels."""
from __future__ import annotations

import os
import sys

HELP = "Certify a checkpoint's Paddle reproduction: conversion, layer diff, accuracy, latency -> JSON + HTML."
EXIT_INCOMPLETE = 4
DEMO_NOTE = ("DEMO on built-in data: seeded random weights (numpy seed 2020), not trained ones; real photos "
             "shipped with scikit-image; SYNTHETIC labels (class = 97 x image number mod 1000), so top-1 values are "
             "meaningless and the published-accuracy check does not apply; its handful of images is far too few "
             "to decide the other accuracy checks, which read INCONCLUSIVE (with the number of images that would "
             "decide them). It exercises every step of a real certificate; run without --demo on ImageNet val for "
             "a reproduction certificate.")


def add_arguments(p):
    from converters.files import state_dicts

    from parity.certificate.certify import Thresholds

    t = Thresholds()
    p.add_argument("--demo", action="store_true", help="built-in data: seeded weights, bundled photos, synthetic labels")
    p.add_argument("--arch", help="small, normal or large (default: identified from --weights; demo: small)")
    p.add_argument("--weights", metavar="PATH", help="the PyTorch checkpoint to certify (official or timm layout; "
                                                     "a fine-tuned head of any size)")
    state_dicts.add_argument(p)
    p.add_argument("--pdparams", metavar="PATH", help="a Paddle checkpoint to certify instead of a fresh conversion")
    p.add_argument("--data", metavar="DIR", help="ImageNet val folder (class sub-folders, or with --list)")
    p.add_argument("--list", metavar="FILE", help="val_list.txt: '<relative path> <integer label>' per line")
    p.add_argument("--out", metavar="PREFIX", help="writes PREFIX.json, PREFIX.html, PREFIX.pdparams and the "
                                                  "per-image results (default certificate_GENet_<arch>)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (the published-top-1 check "
                                                         "then does not apply)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, help="decoding processes (default: number of cores)")
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N; float16 is evaluated too on a GPU")
    p.add_argument("--runner", choices=["fast", "eager"], default="fast",
                   help="fast (default): Paddle evaluated on its inference predictor, checked at start-up; eager")
    p.add_argument("--skip-bad", action="store_true", help="skip undecodable images (listed in the certificate)")
    p.add_argument("--resume", action="store_true", help="continue interrupted evaluations from their results files")
    p.add_argument("--eval-results", metavar="PATH",
                   help="certify this finished float32 evaluation instead of running it: a run of both frameworks "
                        "of these weights and list, or `genet-parity merge TORCH PADDLE --results PATH` of a "
                        "torch-only and a Paddle-only run made in two environments")
    p.add_argument("--torch-top1-tolerance", type=float, default=t.torch_top1_points, metavar="POINTS",
                   help=f"|torch top-1 - published| allowed (default {t.torch_top1_points})")
    p.add_argument("--paddle-top1-tolerance", type=float, default=t.paddle_top1_points, metavar="POINTS",
                   help=f"|Paddle top-1 - torch top-1| allowed (default {t.paddle_top1_points})")
    p.add_argument("--min-agreement", type=float, default=t.min_agreement_pct, metavar="PCT",
                   help=f"minimum top-1 agreement in float32 (default {t.min_agreement_pct})")
    p.add_argument("--pdparams-atol", type=float, default=t.pdparams_max_abs, metavar="ABS",
                   help="largest tensor difference allowed between --pdparams and the conversion (default 0)")
    p.add_argument("--no-bench", action="store_true", help="leave the latency benchmark out (reported as not run)")
    p.add_argument("--bench-warmup", type=int, help="latency warm-up iterations (default: the benchmark's, 20)")
    p.add_argument("--bench-iters", type=int, help="timed latency iterations (default: the benchmark's, 100)")
    p.add_argument("--bench-batch-size", type=int, help="latency batch (default: 64 on a GPU, 1 on a CPU)")
    p.add_argument("--threads", type=int, help="threads for both frameworks (default: all cores)")
    from parity.commands.eval_cmd import add_job_arguments

    add_job_arguments(p)


def make_demo_data(folder: str):
    """Bundled photos (plus a grayscale and a CMYK JPEG made from them, as
    ImageNet val has) in the list layout with synthetic labels."""
    import shutil

    from PIL import Image

    from parity.inputs.sample_images import bundled_photos

    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    names = []
    for path in bundled_photos():
        name = os.path.basename(path)
        shutil.copyfile(path, os.path.join(images, name))
        names.append(name)
    with Image.open(bundled_photos(("chelsea.png",))[0]) as im:
        im.convert("L").save(os.path.join(images, "chelsea_gray.jpg"), quality=90)
        im.convert("CMYK").save(os.path.join(images, "chelsea_cmyk.jpg"), quality=90)
    names += ["chelsea_gray.jpg", "chelsea_cmyk.jpg"]
    list_file = os.path.join(folder, "val_list.txt")
    with open(list_file, "w") as f:
        for i, name in enumerate(names):
            f.write(f"{name} {97 * i % 1000}\n")
    return images, list_file


def bench_options(args, demo=False) -> dict:
    """Latency settings given on the command line; the demo times few
    iterations so that it finishes quickly (stated in its certificate)."""
    given = {"warmup": args.bench_warmup, "iters": args.bench_iters, "batch_size": args.bench_batch_size}
    if demo:
        given = {"warmup": 3, "iters": 10, **{k: v for k, v in given.items() if v is not None}}
    return {k: v for k, v in given.items() if v is not None}


def build_options(args, job=None):
    """job: the launched job this process is a rank of (None: a plain process)."""
    from genet_arch import canonical_arch

    from parity.certificate.certify import CertifyOptions, Thresholds
    from parity.inputs.data import DataError
    from parity.core.runtime import default_threads

    thresholds = Thresholds(args.torch_top1_tolerance, args.paddle_top1_tolerance, args.min_agreement,
                            args.pdparams_atol)
    workers = default_threads() if args.workers is None else args.workers
    if args.demo:
        if args.weights or args.data or args.list or args.pdparams or args.weights_key or args.eval_results:
            raise DataError(None, "--demo uses built-in weights and data; drop --weights/--weights-key/--pdparams/"
                                  "--data/--list/--eval-results")
        from converters.files.torch_format import write_torch

        from parity.core.seeded import seeded_state

        arch = canonical_arch(args.arch or "small")
        prefix = args.out or f"genet_demo_certificate_{arch}"
        # Each rank of a job writes its own copy of the demo data: no two processes write one file.
        folder = f"{prefix}_data" + (f"_rank{job.rank}" if job is not None and job.rank else "")
        data, list_file = make_demo_data(folder)
        if not args.resume:  # a demo is rebuilt from scratch each time; its old per-image results go
            from parity.accuracy.distributed import part_path

            for precision in ("float32", "float16"):
                stale = f"{prefix}.eval_{precision}.jsonl"
                # the one results file is rank 0's; a partial file its rank's
                mine = [] if job is not None and job.rank else [stale]
                if job is not None:
                    mine.append(part_path(stale, job.rank, job.world))
                for path in mine:
                    if os.path.exists(path):
                        os.remove(path)
        weights = os.path.join(folder, f"GENet_{arch}_seeded.pth")
        write_torch(seeded_state(arch), weights)
        return CertifyOptions(arch=arch, weights=weights, data=data, list_file=list_file, out_prefix=prefix,
                              demo=True, demo_note=DEMO_NOTE, limit=args.limit, batch_size=min(args.batch_size, 8),
                              workers=workers, device=args.device, runner=getattr(args, 'runner', 'fast'),
                              skip_bad=args.skip_bad, resume=args.resume, thresholds=thresholds, bench=not args.no_bench,
                              bench_options=bench_options(args, demo=True))
    missing = [flag for flag, v in (("--weights", args.weights), ("--data", args.data)) if not v]
    if missing:
        raise DataError(None, f"certify needs {' and '.join(missing)} (or --demo for the built-in demo)")
    from parity.inputs.data import resolve_list

    args.list, note = resolve_list(args.list, args.data)
    if note and (job is None or job.rank == 0):
        print(f"certify: {note}", file=sys.stderr)
    arch = canonical_arch(args.arch) if args.arch else None
    prefix = args.out or f"certificate_GENet_{arch or os.path.splitext(os.path.basename(args.weights))[0]}"
    refuse_outputs(prefix, args)
    return CertifyOptions(arch=arch, weights=args.weights, pdparams=args.pdparams, data=args.data,
                          list_file=args.list, out_prefix=prefix, limit=args.limit, batch_size=args.batch_size,
                          workers=workers, device=args.device, runner=getattr(args, 'runner', 'fast'),
                          skip_bad=args.skip_bad, resume=args.resume,
                          thresholds=thresholds, bench=not args.no_bench, bench_options=bench_options(args),
                          weights_key=args.weights_key, eval_results=args.eval_results)


def outputs(prefix: str) -> list:
    """(what, path) of every file a certificate run writes."""
    return [("the certificate", f"{prefix}.json"), ("its HTML page", f"{prefix}.html"),
            ("the converted weights", f"{prefix}.pdparams"),
            ("the float32 results", f"{prefix}.eval_float32.jsonl"),
            ("the float16 results", f"{prefix}.eval_float16.jsonl")]


def refuse_outputs(prefix: str, args) -> None:
    """No file certify writes may be one of its inputs (checked before any
    work); with --resume its results files are inputs it continues."""
    from converters.files.paths import refuse_output_is_input

    written = outputs(prefix)
    inputs = [("--weights", args.weights), ("--pdparams", args.pdparams), ("--list", args.list)]
    if args.resume:
        inputs += [(f"--out {what}", path) for what, path in written if path.endswith(".jsonl")]
        written = [(what, path) for what, path in written if not path.endswith(".jsonl")]
    refuse_output_is_input([(f"--out {what}", path) for what, path in written], inputs)


def exit_code(cert: dict) -> int:
    """0 PASS, 1 FAIL, 4 INCOMPLETE or INCONCLUSIVE. A demo's few images can
    never decide the accuracy checks, so its INCONCLUSIVE is its expected
    outcome and exits 0 (the verdict still says INCONCLUSIVE)."""
    from parity.certificate.certify import FAIL, INCONCLUSIVE, PASS, core_verdict

    core = core_verdict(cert["verdict"])
    if core == PASS or (cert.get("demo") and core == INCONCLUSIVE):
        return 0
    return 1 if core == FAIL else EXIT_INCOMPLETE


def run(args) -> int:
    from parity.accuracy.distributed import Job, detect, rank_device

    launch = detect()
    if launch is None:
        return _run(args)
    with Job(launch, rank_device(args.device, launch), args.collective_timeout) as job:
        args.device = rank_device(args.device, launch)
        return _run(args, job)


def _run(args, job=None) -> int:
    from parity.certificate.page import print_certificate, to_html, to_json
    from parity.certificate.certify import certify
    from parity.core.progress import Progress
    from parity.layers.report import write_atomic
    from parity.core.textout import Out

    out = Out()
    opts = build_options(args, job)
    t = opts.thresholds
    if job is not None and job.rank:  # rank 0 prints and writes the certificate; this rank evaluates its slice
        with Progress(f"certify rank {job.rank}/{job.world}") as progress:
            certify(opts, progress=progress, job=job)
        return 0
    out.print(f"Thresholds: torch top-1 within {t.torch_top1_points:g} points of the published figure; Paddle "
              f"top-1 within {t.paddle_top1_points:g} points of torch's; top-1 agreement >= "
              f"{t.min_agreement_pct:g}% (float32), each decided on its 95% interval; a given .pdparams within "
              f"{t.pdparams_max_abs:g} of the conversion.")
    with Progress("certify" if job is None else f"certify rank 0/{job.world}") as progress:
        cert = certify(opts, progress=progress, job=job)
    json_path, html_path = f"{opts.out_prefix}.json", f"{opts.out_prefix}.html"
    write_atomic(json_path, to_json(cert))
    write_atomic(html_path, to_html(cert))
    print_certificate(cert, out)
    out.fields([("Certificate", os.path.abspath(json_path)), ("", os.path.abspath(html_path))])
    return exit_code(cert)
