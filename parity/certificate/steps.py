"""The certificate's measuring steps: the conversion (or a given .pdparams
held to it), the layer diff and the latency benchmark, each as certificate
rows. A step that cannot run says so ("NOT RUN", with the reason)."""
from __future__ import annotations

import os

from parity.certificate.options import CertifyOptions
from parity.certificate.verdict import FAIL, INFO, NOT_RUN, PASS, CertificateCheck


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
