"""Renderings of a certificate dict (parity.certificate.certify): JSON, a self-contained
HTML page (inline CSS and SVG, no scripts, nothing from the network) and the
terminal summary. Only renders: every number comes from the dict.

The page reads top to bottom: the verdict; one row per check (what, threshold,
value, interval, status); figures (each module's error against depth with its
bound, the latency of every timed path, top-1 with its interval per
framework); then collapsed detail: every layer, every image's prediction in
both frameworks (disagreements first), latency per path, inputs with their
SHA-256, targets and thresholds, the dataset, and the environment that
applies to the device used.

It stays one module (a little over the project's ~450 lines) because it has
one job, rendering one dict, and its parts (checks table, figures, detail,
style, terminal summary) share the same small helpers (escaping, badges,
the check lookup, the latency rows); split, they would import each other's
private helpers without making any part easier to read.
"""
from __future__ import annotations

import html
import json
from typing import List

from parity.core.tolerances import check_word
from parity.layers.report import _json_safe, short_name

COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "INCONCLUSIVE": "#bc4c00", "NOT RUN": "#9a6700", "N/A": "#9a6700",
           "SKIPPED": "#57606a", "INFO": "#0969da", "INCOMPLETE": "#9a6700"}
TERMINAL_STYLES = {"PASS": "green", "FAIL": "bold red", "INFO": "cyan", "INCONCLUSIVE": "bold yellow",
                   "SKIPPED": "dim"}
SHORT_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def to_json(cert: dict) -> str:
    return json.dumps(_json_safe(cert), indent=2, allow_nan=False)


def _e(v) -> str:
    return html.escape("-" if v is None else str(v))


def _title(cert: dict) -> str:
    from genet_arch import DEFAULT_NUM_CLASSES

    from parity.certificate.record import title

    return cert.get("title") or title(cert["arch"], cert.get("demo", False),
                                      cert.get("num_classes", DEFAULT_NUM_CLASSES))


def _core(cert: dict) -> str:
    from parity.certificate.verdict import core_verdict

    return core_verdict(cert["verdict"])


def _check(cert: dict, check_id: str):
    return next((c for c in cert["checks"] if c["id"] == check_id), None)


def _sci(v) -> str:
    return "-" if v is None else f"{float(v):.2e}"


# ---------------------------------------------------------------- HTML pieces
def _table(headers, rows, cls="", row_classes=None, scroll=True) -> str:
    """A table in a box of its own that scrolls sideways on a narrow screen
    (scroll=False: the caller's CSS reflows it instead). Each cell carries its
    column's header as data-label, which a reflowed table shows."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = []
    for i, row in enumerate(rows):
        klass = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        lines.append(f"<tr{klass}>" + "".join(f'<td data-label="{_e(h)}">{c}</td>' for h, c in zip(headers, row))
                     + "</tr>")
    klass = f' class="{cls}"' if cls else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _kv(pairs) -> str:
    """A key/value table: labels in the first column, no header row."""
    rows = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{v}</td></tr>' for k, v in pairs)
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def _value(v) -> str:
    if isinstance(v, dict):
        return "<br>".join(f"{_e(k)}: {_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return _e(", ".join(str(x) for x in v))
    return _e(v)


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#57606a")
    return f'<span class="badge" style="background:{colour}">{_e(status)}</span>'


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def _clauses(text: str) -> List[str]:
    """`text` split at the '; ' that lie outside parentheses."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text.startswith("; ", i):
            out.append(text[start:i])
            start = i + 2
    return out + [text[start:]]


def _checks_table(cert: dict) -> str:
    rows, classes = [], []
    for c in cert["checks"]:
        # the latency value lists one figure per path: one line each
        value = "<br>".join(_e(x) for x in _clauses(c["measured"])) if c["id"] == "latency" else _e(c["measured"])
        if c.get("reason"):
            value += f'<div class="reason">{_e(c["reason"])}</div>'
        status = _badge(c["status"])
        if c.get("images_needed"):
            status += f'<div class="reason">about {c["images_needed"]:,} images would decide it</div>'
        rows.append([f"<b>{_e(c['title'])}</b><br><code>{_e(c['id'])}</code>", _e(c["threshold"]), value,
                     _e(c.get("interval") or "-"), status])
        classes.append(f"check status-{c['status'].replace(' ', '-').replace('/', '')}")
    return _table(["what", "threshold", "value", "interval", "status"], rows, cls="checks", row_classes=classes,
                  scroll=False)


# ---------------------------------------------------------------- figures
def _layers_figure(d: dict) -> str:
    from parity.core.svg import depth_panels

    layers = d["layers"]
    if not layers:
        return "<p>No layer was compared.</p>"
    f64 = any(x.get("paddle_error_f64") is not None for x in layers)

    def series(isolated):
        pre = "isolated_" if isolated else ""
        if f64:
            return [{"name": "Paddle vs float64", "colour": "#0969da",
                     "values": [x.get(f"{pre}paddle_error_f64") for x in layers]},
                    {"name": "torch vs float64", "colour": "#8c959f", "width": 1,
                     "values": [x.get(f"{pre}torch_error_f64") for x in layers]},
                    {"name": "bound", "colour": "#cf222e", "dash": "5 3",
                     "values": [x.get("isolated_tolerance" if isolated else "tolerance") for x in layers]}]
        return [{"name": "|Paddle - torch|", "colour": "#0969da",
                 "values": [x["isolated_max_abs" if isolated else "max_abs"] for x in layers]},
                {"name": "atol", "colour": "#cf222e", "dash": "5 3",
                 "values": [x.get("isolated_tolerance" if isolated else "tolerance") for x in layers]}]

    first = d.get("first_divergent")
    marker = None
    if first:
        pos = next((i for i, x in enumerate(layers) if x["index"] == first["index"]), None)
        marker = None if pos is None else (pos, f"first divergent: {first['torch_name']}")
    return depth_panels([{"title": "accumulated: both models end to end", "series": series(False)},
                         {"title": "isolated: each Paddle module fed torch's own input", "series": series(True)}],
                        n=len(layers), fig_id="fig-layers", label="max abs error of every module against depth",
                        marker=marker)


def _latency_rows(data: dict) -> List[dict]:
    rows = []
    for r in data.get("results", []):
        if "skipped" in r:
            continue
        batch = r.get("batch_size") or data.get("batch_size") or 1
        rows.append({"label": f"{r['framework']} {r['mode']} {SHORT_DTYPE.get(r['dtype'], r['dtype'])}"
                              f"{' BN-folded' if r['bn_folded'] else ''}",
                     "values": [ms / batch for ms in r.get("iteration_ms", [])],
                     "median": r["ms_per_image"]["median"], "p90": r["ms_per_image"]["p90"], "short_unit": "ms",
                     "entry": r})
    return rows


def _load_text(data: dict) -> str:
    env = data.get("environment", {})
    load = env.get("load_average")
    if not load:
        return "load average not recorded"
    end = env.get("load_average_end")
    other = env.get("other_load")  # parity.latency.contention
    return (f"load average {', '.join(f'{v:.2f}' for v in load)} (1, 5, 15 min) at the start"
            + (f", {', '.join(f'{v:.2f}' for v in end)} at the end" if end else "")
            + f", on {env.get('cpu_count')} cores ({_e(env.get('cpu'))})"
            + (f"; other work kept {other['cores_busy']:.2f} cores busy while timing" if other else ""))


def _latency_figure(data: dict) -> str:
    from parity.core.svg import strip_chart

    rows = _latency_rows(data)
    if not rows:
        return "<p>No path was timed.</p>"
    return strip_chart(rows, fig_id="fig-latency", label="latency of every timed path", unit="ms per image",
                       title="latency per image of every timed path")


def _accuracy_figure(cert: dict) -> str:
    from parity.core.svg import interval_panels

    panels = []
    colours = {"torch": "#ee4c2c", "paddle": "#0969da"}
    top1_rows, diff_rows, agree_rows = [], [], []
    th = cert.get("thresholds", {})
    for precision, acc in cert.get("accuracy", {}).items():
        for fw, a in acc.items():
            if a.get("ci_pct"):
                top1_rows.append({"label": f"{fw} {SHORT_DTYPE.get(precision, precision)}", "value": a["top1_pct"],
                                  "interval": a["ci_pct"], "colour": colours.get(fw, "#57606a")})
        diff = _check(cert, f"paddle_top1_vs_torch_{precision}")
        if diff and diff.get("details", {}).get("interval_points"):
            s = cert["evaluation"][precision]
            diff_rows.append({"label": SHORT_DTYPE.get(precision, precision),
                              "value": s["top1"]["paddle"] - s["top1"]["torch"],
                              "interval": diff["details"]["interval_points"], "colour": "#57606a"})
        agree = _check(cert, f"agreement_{precision}")
        if agree and agree.get("details", {}).get("interval_pct"):
            agree_rows.append({"label": SHORT_DTYPE.get(precision, precision),
                               "value": cert["evaluation"][precision]["agreement_top1"],
                               "interval": agree["details"]["interval_pct"], "colour": "#57606a"})
    if not top1_rows:
        return "<p>No evaluation ran.</p>"
    published = cert.get("published", {}).get("top1")
    # against synthetic labels top-1 only says how often each framework picks the made-up class
    synthetic = cert.get("demo")
    panels.append({"title": ("top-1, SYNTHETIC labels, 95% interval" if synthetic
                             else "top-1 per framework, 95% interval"),
                   "unit": "% matching the synthetic labels" if synthetic else "top-1 %", "rows": top1_rows,
                   "line": None if cert.get("demo") or published is None else (published, f"published {published}"),
                   "clip": (0, 100)})
    if diff_rows:
        t = th.get("paddle_top1_points")
        panels.append({"title": "Paddle - torch, 95% interval", "unit": "points (green: allowed)", "rows": diff_rows,
                       "band": None if t is None else [-t, t], "band_label": None if t is None else f"±{t:g}"})
    if agree_rows:
        m = th.get("min_agreement_pct")
        panels.append({"title": "agreement, 95% interval", "unit": "% of images (green: allowed)",
                       "rows": agree_rows, "band": None if m is None else [m, 100.0], "clip": (0, 100),
                       "band_label": None if m is None else f">= {m:g}"})
    return interval_panels(panels, fig_id="fig-accuracy", label="top-1 accuracy and its confidence intervals")


# ---------------------------------------------------------------- detail
def _layer_rows(d: dict) -> str:
    from parity.layers.report import _judged, _verdict_cell

    rows, classes = [], []
    first = d.get("first_divergent")
    for x in d["layers"]:
        acc, acc_b = _judged(x, False)
        iso, iso_b = _judged(x, True)
        name = _e(x["torch_name"]) + ("" if x["paddle_name"] == x["torch_name"]
                                      else f'<br><span class="muted">paddle: {_e(x["paddle_name"])}</span>')
        short = short_name(x["torch_name"])
        if short != x["torch_name"]:
            name += f'<br><span class="muted">{_e(short)}</span>'
        rows.append([str(x["index"]), name,
                     _e(x["kind"]), _e("x".join(map(str, x["shape"]))), _sci(acc), _sci(acc_b), _sci(iso),
                     _sci(iso_b), _sci(x["max_abs"]), f"{x['cosine']:.9f}", _e(_verdict_cell(x))])
        divergent = first and x["index"] == first["index"]
        classes.append("layer-row" + (" divergent" if divergent else "") + ("" if x["pass"] else " fail"))
    return ("<p>err: Paddle's max abs error against the float64 recomputation (|Paddle - torch| with atol/rtol "
            "overrides); bound: what the judgement rule allows; acc: both models end to end; iso: the Paddle "
            "module fed torch's own input; max |P - T|: accumulated, Paddle against torch.</p>"
            + _table(["#", "module (torch; short form)", "kind", "shape", "acc err", "acc bound", "iso err",
                      "iso bound", "max |P - T|", "cosine", "verdict"], rows, cls="layers", row_classes=classes))


def _image_rows(predictions: List[dict]) -> str:
    def disagree(p):
        return "error" not in p and p["torch"][0] != p["paddle"][0]

    ordered = sorted(predictions, key=lambda p: (not disagree(p), "error" in p, p["index"]))
    rows, classes = [], []
    for p in ordered:
        if "error" in p:
            rows.append([_e(p["index"]), _e(p["path"]), _e(p["label"]), f'<span class="reason">not decoded: '
                         f'{_e(p["error"])}</span>', "", "", "", ""])
            classes.append("image-row bad")
            continue
        rows.append([_e(p["index"]), _e(p["path"]), _e(p["label"]), _e(p["torch"][0]), _e(p["paddle"][0]),
                     "no" if disagree(p) else "yes", _e(", ".join(map(str, p["torch"]))) + "<br>"
                     + _e(", ".join(map(str, p["paddle"]))), _sci(p.get("logit_max_abs_diff"))])
        classes.append("image-row" + (" disagree" if disagree(p) else ""))
    return _table(["#", "image", "label", "torch top-1", "paddle top-1", "agree", "top-5 (torch; paddle)",
                   "max |logit diff|"], rows, cls="images", row_classes=classes)


def _latency_detail(data: dict) -> str:
    rows = []
    for r in _latency_rows(data):
        e = r["entry"]
        ms = e["ms_per_image"]
        rows.append([_e(r["label"]), _e(e["label"]), f"{ms['median']:.4g}", f"{ms['p90']:.4g}", f"{ms['p99']:.4g}",
                     f"{e['images_per_s']:.4g}", _e(e["iters"]), check_word(e["check"]),
                     _sci(e["check"]["rel_l2"])])
    skipped = [f"{r['framework']} {r['mode']} {r['dtype']}: {r['skipped']}" for r in data.get("results", [])
               if "skipped" in r]
    pipeline = "; ".join(f"{p['images_per_s']:.3g} images/s with {p['workers']} worker(s) ({_e(p['source'])})"
                         for p in data.get("pipeline", []))
    return (f"<p>{_e(data.get('batch_note'))}; {data.get('warmup')} warm-up + {data.get('iters')} timed iterations"
            f"{', interleaved' if data.get('interleaved') else ''}; {_load_text(data)}.</p>"
            + _table(["path", "runner", "median ms/img", "p90", "p99", "images/s", "iterations", "logits",
                      "rel L2 vs torch eager"], rows)
            + (f"<p>Not run: {_e('; '.join(skipped))}</p>" if skipped else "")
            + (f"<p>Input pipeline (decode + preprocess), measured apart: {pipeline}</p>" if pipeline else ""))


_GPU_ONLY = ("tf32", "cudnn", "gpu", "cuda_available")


def applicable_environment(env: dict, device: str) -> dict:
    """The environment without what cannot apply on this device (cuDNN and
    TF32 settings, flags a CPU build of Paddle lacks)."""
    if device != "cpu":
        return env
    out = {k: v for k, v in env.items() if k not in _GPU_ONLY}
    flags = {k: v for k, v in env.get("paddle_flags", {}).items() if "cudnn" not in k and v != "not in this build"}
    if "paddle_flags" in env:
        out["paddle_flags"] = flags
    return out


# ---------------------------------------------------------------- the page
FIGURE_MIN_WIDTH = 840  # px; figures' text is 12 units in a 1000-unit viewBox: >= 10 px on screen
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1120px;margin:2em auto;padding:0 1em;color:#1f2328;"
    "line-height:1.4}h1{font-size:1.6em;margin-bottom:.3em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de}"
    "table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #d0d7de;padding:4px 8px;"
    "text-align:left;vertical-align:top;font-size:14px}thead th{background:#f6f8fa}"
    "table.kv th{background:#f6f8fa;width:16em;font-weight:600}"
    "table.layers td,table.images td{font-family:ui-monospace,monospace;font-size:12px;padding:2px 6px}"
    "tr.fail td{color:#cf222e}tr.divergent td{background:#ffebe9;font-weight:600}tr.disagree td{background:#fff8c5}"
    ".badge{color:#fff;border-radius:4px;padding:2px 8px;font-weight:600;white-space:nowrap}"
    ".verdict{border-left:8px solid;padding:.6em 1em;font-size:1.35em;background:#f6f8fa;margin:.5em 0}"
    ".demo{background:#fff8c5;padding:.5em 1em;border:1px solid #d4a72c}code{font-size:12px}"
    ".reason,.muted{color:#57606a;font-size:12px;margin-top:.3em}figure{margin:1em 0}"
    "figcaption{color:#57606a;font-size:13px}svg{max-width:100%;height:auto}"
    "details{margin:.4em 0;border:1px solid #d0d7de;border-radius:6px;padding:.3em .8em}"
    "summary{cursor:pointer;font-weight:600}"
    # Narrow screens: wide tables and figures scroll inside their own box, never the page.
    ".scroll{overflow-x:auto;max-width:100%}td{overflow-wrap:break-word}"
    ".caution{border-left:6px solid #bc4c00;background:#fff1e5;padding:.4em .8em;font-size:14px;font-weight:600}"
    # A figure is drawn 1000 units wide with 12-unit text: never narrower than
    # FIGURE_MIN_WIDTH px, so its text never renders under 10 px.
    f"figure .scroll svg{{min-width:{FIGURE_MIN_WIDTH}px}}"
    # Phones: the checks table reflows into one card per check, each value under its header.
    "@media (max-width:720px){body{margin:1em auto;padding:0 .6em}h1{font-size:1.3em}.verdict{font-size:1.1em}"
    "table.checks,table.checks tbody,table.checks tr,table.checks td{display:block;width:auto}"
    "table.checks thead{display:none}"
    "table.checks tr{display:flex;flex-direction:column;border:1px solid #d0d7de;border-radius:6px;margin:.6em 0;"
    "padding:.3em .6em}table.checks td:last-child{order:-1}"
    "table.checks td{border:none;padding:3px 0}"
    "table.checks td::before{content:attr(data-label);display:block;color:#57606a;font-size:12px;"
    "font-weight:600;text-transform:uppercase}table.kv th{width:auto}}")


def to_html(cert: dict) -> str:
    title = _title(cert)
    core = _core(cert)
    colour = COLOURS.get(core, COLOURS["NOT RUN"])
    device = cert.get("device") or cert.get("environment", {}).get("device", "cpu")
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="verdict" id="verdict" style="border-color:{colour}">Verdict: '
             f'<b style="color:{colour}">{_e(cert["verdict"])}</b></p>']
    if cert.get("demo"):
        parts.append(f'<p class="demo">{_e(cert.get("demo_note"))}</p>')
    env = cert.get("environment", {})
    cpu = env.get("cpu", env.get("processor"))  # 'processor' in certificates before environment/1
    parts.append(f'<p class="muted">Created {_e(cert["created_utc"])} in {cert["seconds"]:.1f} s on {_e(device)} '
                 f'({_e(cpu)}); torch {_e(env.get("torch"))}, paddle {_e(env.get("paddle"))}. '
                 f"Schema {_e(cert['schema'])} v{cert['schema_version']}.</p>")
    if cert.get("job"):
        parts.append(f'<p class="muted">Evaluated by one {_e(cert["job"]["launcher"])} job of '
                     f'{_e(cert["job"]["processes"])} processes (rank 0 wrote this certificate).</p>')
    for precision, envs in (cert.get("evaluation_environments") or {}).items():
        parts.append(f'<p class="muted">The {_e(precision)} evaluation ran each framework in its own environment: '
                     + "; ".join(f"{_e(fw)}: torch {_e((e or {}).get('torch'))}, paddle {_e((e or {}).get('paddle'))}, "
                                 f"{_e((e or {}).get('device'))}" for fw, e in envs.items()) + ".</p>")

    parts.append("<h2>Checks</h2>" + _checks_table(cert))
    parts.append('<p class="muted">Accuracy checks are decided on 95% confidence intervals: PASS when the whole '
                 "interval lies within the threshold, FAIL when it lies wholly outside, INCONCLUSIVE when it "
                 "straddles the threshold (too few images to tell; the number that would decide it is given).</p>")

    parts.append("<h2>Figures</h2>")
    ld = _check(cert, "layer_diff")
    if ld and ld.get("details", {}).get("layers") is not None:
        d = ld["details"]
        parts.append(f'<figure><div class="scroll">{_layers_figure(d)}</div>'
                     f"<figcaption>Every mapped module of {_e(cert['arch'])} in forward "
                     f"order ({d['coverage']['compared']}/{d['coverage']['total']} compared, on "
                     f"{_e(d['input'].get('source'))}): Paddle's max abs error against the float64 recomputation, "
                     "torch's own float32 error against it, and the bound the judgement rule allows "
                     "(log scale; zeros on the bottom edge).</figcaption></figure>")
    lat = _check(cert, "latency")
    if lat and lat.get("details", {}).get("results"):
        data = lat["details"]
        from parity.latency.contention import caution

        warning = caution(data)
        parts.append(f'<figure><div class="scroll">{_latency_figure(data)}</div>'
                     + (f'<p class="caution" id="latency-caution">{_e(warning)}</p>' if warning else "")
                     + f"<figcaption>Latency per image of every timed path, {_e(data.get('batch_note'))}; "
                     f"{_load_text(data)}: other work on the machine slows every figure.</figcaption></figure>")
    if cert.get("accuracy"):
        parts.append(f'<figure><div class="scroll">{_accuracy_figure(cert)}</div>'
                     "<figcaption>Top-1 of each framework with its 95% Wilson "
                     "interval; the paired difference Paddle - torch (Agresti-Min) and the image-by-image "
                     "agreement (Wilson) against their allowed regions."
                     + (" Synthetic labels: the top-1 values of the demo mean nothing." if cert.get("demo") else "")
                     + "</figcaption></figure>")

    parts.append("<h2>Detail</h2>")
    if ld and ld.get("details", {}).get("layers"):
        d = ld["details"]
        parts.append(_details(f"Every layer ({len(d['layers'])} modules; tolerance: {_e(d['tolerance'].get('rule'))})",
                              _layer_rows(d)))
    for precision, preds in cert.get("predictions", {}).items():
        s = cert["evaluation"].get(precision, {})
        parts.append(_details(f"Every image's prediction, {_e(precision)} ({len(preds):,} images; "
                              f"{s.get('n_disagree', 0)} disagree, listed first)", _image_rows(preds)))
    if lat and lat.get("details", {}).get("results"):
        parts.append(_details("Latency, every path", _latency_detail(lat["details"])))
    parts.append(_details("Inputs and their SHA-256", _table(
        ["role", "path", "bytes", "SHA-256"],
        [[_e(i["role"]), _e(i["path"]), _e(i["bytes"]), f"<code>{_e(i['sha256'])}</code>"] for i in cert["inputs"]])))
    p = cert["published"]
    parts.append(_details("Published targets and thresholds", _kv([
        ("top-1 (paper, ImageNet-1k val)", _e(f"{p['top1']}%")), ("top-1 measured by timm", _e(f"{p['timm_top1']}%")),
        ("top-5 measured by timm", _e(f"{p['timm_top5']}%")),
        ("latency (V100, FP16, batch 64)", _e(f"{p['latency_ms_per_image_v100_fp16_b64']} ms/image")),
        ("parameters", _e(p["params"])), ("MACs", _e(f"{p['macs_g']} G")), ("resolution", _e(p["resolution"]))]
        + [(k.replace("_", " "), _e(v)) for k, v in cert["thresholds"].items()])))
    parts.append(_details("Dataset", _kv([(k, _value(v)) for k, v in cert["dataset"].items()])))
    parts.append(_details(f"Environment ({_e(device)})",
                          _kv([(k, _value(v)) for k, v in applicable_environment(env, device).items()])))
    for precision, envs in (cert.get("evaluation_environments") or {}).items():
        for fw, e in envs.items():
            if e:
                d = e.get("device", "cpu")
                parts.append(_details(f"Environment of the {_e(precision)} evaluation's {_e(fw)} run ({_e(d)})",
                                      _kv([(k, _value(v)) for k, v in applicable_environment(e, d).items()])))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


# ---------------------------------------------------------------- terminal
def print_certificate(cert: dict, out) -> None:
    """One block per check (status and title, then threshold, measured,
    interval and reason), at the width of `out` (parity.core.textout.Out)."""
    out.print(_title(cert), style="bold")
    width = max(len(c["status"]) for c in cert["checks"]) + 2
    for c in cert["checks"]:
        out.print(f"{c['status'].ljust(width)}{c['title']}", style=TERMINAL_STYLES.get(c["status"], "yellow"),
                  indent=" " * width)
        pairs = [("threshold", c["threshold"]), ("measured", c["measured"])]
        if c.get("interval"):
            pairs.append(("interval", c["interval"]))
        if c.get("reason"):
            pairs.append(("why", c["reason"]))
        out.fields(pairs, indent=" " * width)
    if cert.get("demo"):
        out.print(cert["demo_note"], style="yellow")
    core = _core(cert)
    out.print(f"Verdict: {cert['verdict']}", style={"PASS": "bold green", "FAIL": "bold red"}.get(core, "bold yellow"))
