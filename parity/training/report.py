"""Renderings of a training-parity result (its `to_dict()`): terminal, JSON,
HTML with inline SVG plots. Every format shows the same numbers; the JSON
schema is described in docs/train.md."""
from __future__ import annotations

import html
import math
from typing import List, Optional, Sequence

from parity.layers.report import short_name, to_json, write_atomic  # noqa: F401  (to_json, write_atomic re-exported)
from parity.core.textout import sci as num
from parity.training.result import PHASE_MEANS, PHASES

SERIES_COLOURS = {"Paddle": "#d62728", "torch": "#1f77b4", "torch float64": "#7f7f7f"}


def margin(v) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "inf"
    return f"{v:.2f}" if v < 100 else f"{v:.3g}"


def _checks(d: dict, step: Optional[int] = None, phase: Optional[str] = None) -> List[dict]:
    return [c for c in d["checks"] if (step is None or c["step"] == step) and (phase is None or c["phase"] == phase)]


def _worst(cs: Sequence[dict]) -> Optional[dict]:
    return max(cs, key=lambda c: c["margin"]) if cs else None


def tensor_name(name: str, wide: bool = False) -> str:
    """A tensor in the layer table's short form (module_list.4.conv_list.1.3.weight
    -> 4.1.conv_list.3.weight, docs/layers.md); `wide`: the full name."""
    module, _, suffix = name.rpartition(".")
    return name if wide or not module else f"{short_name(module)}.{suffix}"


def verdict_line(d: dict) -> str:
    first = d["first_divergent"]
    head = "PASS" if d["pass"] else "FAIL"
    text = (f"{head}: GENet_{d['arch']} ({d['num_classes']} classes), {d['steps']} training step"
            f"{'s' if d['steps'] != 1 else ''}, {len(d['checks'])} quantities judged")
    if first:
        text += f"; first divergent: {first['label']} (margin {margin(first['margin'])})"
    return text


def setup_fields(d: dict) -> List[tuple]:
    r, b, w, h = d["recipe"], d["batches"], d["weights"], d["head"]
    recipe = (f"{r['optimizer'].upper()} lr {r['lr']:g}, weight decay {r['weight_decay']:g}"
              + (f", momentum {r['momentum']:g}{' Nesterov' if r['nesterov'] else ''}" if r["optimizer"] == "sgd"
                 else f", betas ({r['betas'][0]:g}, {r['betas'][1]:g}), eps {r['eps']:g}")
              + f", label smoothing {r['label_smoothing']:g}" + ("; backbone frozen" if d["frozen_backbone"] else ""))
    fields = [("recipe", recipe),
              ("batches", f"{b['steps']} x {b['batch_size']} {b['source']}, {b['preprocess']} preprocessing, "
                          f"seed {b['seed']}, sha256 {b['sha256'][:12]}"),
              ("weights", (w.get("path") or w.get("source", "given")) + (f" ({w['layout']})" if w.get("layout") else ""))]
    if (h.get("state_dict") or {}).get("note"):
        fields.append(("state dict", h["state_dict"]["note"]))
    if h.get("replaced"):
        fields.append(("head", f"replaced: {', '.join(h['replaced'])} ({h['checkpoint_classes']} -> "
                               f"{h['num_classes']} classes, fresh from numpy seed {h['head_seed']}, identical in "
                               "both frameworks)"))
    elif h.get("num_classes"):
        fields.append(("head", f"the weights' own, {h['num_classes']} classes"))
    return fields


def setup_lines(d: dict) -> List[str]:
    return [f"{k.capitalize()}: {v}" for k, v in setup_fields(d)] + list(d["notes"])


def tolerance_line(d: dict) -> str:
    t = d["tolerance"]
    return f"Rule: {t['rule']}; truth: {t['truth']}"


def step_rows(d: dict) -> List[List[str]]:
    out = []
    for s in d["steps_summary"]:
        cells = [str(s["step"]), f"{s['losses']['torch']:.6f}", f"{s['losses']['paddle']:.6f}"]
        for phase in PHASES:
            w = _worst(_checks(d, s["step"], phase))
            cells.append(margin(w["margin"]) if w else "-")
        bad = sum(1 for c in _checks(d, s["step"]) if not c["pass"])
        cells.append("pass" if not bad else f"{bad} FAIL")
        out.append(cells)
    return out


STEP_HEADERS = ("step", "loss torch", "loss Paddle", "forward", "loss", "backward", "update", "verdict")


def step_columns():
    from parity.core.textout import Column

    return [Column("step", 0, "right"), Column("loss torch", 1, "right"), Column("loss Paddle", 1, "right")] + [
        Column(p, 0, "right") for p in PHASES] + [Column("verdict")]


def gradient_rows(d: dict, n: int = 10, wide: bool = False) -> List[List[str]]:
    cs = sorted(_checks(d, phase="backward"), key=lambda c: -c["margin"])[:n]
    return [[str(c["step"]), tensor_name(c["name"], wide), num(c["rel_l2"]), num(1.0 - c["cosine"]),
             num(c["reference_error"] / c["scale"] if c["scale"] else 0.0), margin(c["margin"])] for c in cs]


def gradient_columns(wide: bool = False):
    from parity.core.textout import Column

    return [Column("step", 0, "right"), Column("tensor (torch name)" if wide else "tensor"),
            Column("rel err", 0, "right"), Column("1 - cos", 1, "right"), Column("torch rel", 2, "right"),
            Column("margin", 0, "right")]


TERMINAL_NOTE = ("margin: Paddle's error against the float64 recomputation of its step, over its bound (<= 1 passes). "
                 "rel err: ||Paddle - f64|| / ||f64||; torch rel: torch's max error / max |f64|. tensor: short form "
                 "block.unit.part.layer (docs/layers.md; --wide: full names).")


def print_report(d: dict, out=None, detail: bool = True, wide: bool = False) -> None:
    """The setup, the verdict and, with `detail`, the steps and the worst
    gradients, at the width of `out` (a parity.core.textout.Out; stdout by default)."""
    from parity.core.textout import Out

    out = out or Out(wide=wide)
    out.fields(setup_fields(d))
    for note in d["notes"]:
        out.print(note, style="bold yellow")
    if detail:
        styles = [None if row[-1] == "pass" else "red" for row in step_rows(d)]
        out.table(step_columns(), step_rows(d), title="Worst margin per step and phase", row_styles=styles)
        out.table(gradient_columns(wide), gradient_rows(d, wide=wide), title="Gradients, the worst first",
                  hint="--wide shows every column")
        out.print(TERMINAL_NOTE, style="dim")
    first = d["first_divergent"]
    if first:
        c = next(x for x in d["checks"] if (x["step"], x["phase"], x["name"]) ==
                 (first["step"], first["phase"], first["name"]))
        out.print(f"First divergent: {first['label']}: {PHASE_MEANS[first['phase']]}; Paddle error {num(c['error'])}"
                  f" vs bound {num(c['bound'])} (torch's own error {num(c['reference_error'])}, scale "
                  f"{num(c['scale'])})", style="bold red")
    for f in d["failures"][:12]:
        out.print(f"- {f}", style="red", indent="  ")
    out.print(tolerance_line(d))
    out.print(f"{verdict_line(d)} ({d['seconds']:.1f} s)", style="green" if d["pass"] else "bold red")


# ---------------------------------------------------------------- HTML

def gradient_plot(d: dict, width: int = 1000) -> str:
    """Relative gradient error (max |x - f64| / max |f64|) of every trainable
    tensor against its depth (forward order), one panel per step: Paddle,
    torch's own error and Paddle's bound; the first divergent gradient marked."""
    from parity.core.svg import depth_panels

    grads = _checks(d, phase="backward")
    if not grads:
        return "<p>No gradient was compared.</p>"
    orders = sorted({c["order"] for c in grads})
    pos = {o: k for k, o in enumerate(orders)}
    rel = lambda c, key: c[key] / c["scale"] if c["scale"] else 0.0  # noqa: E731
    panels = []
    for s in sorted({c["step"] for c in grads}):
        by_pos = {pos[c["order"]]: c for c in grads if c["step"] == s}
        panels.append({"title": f"step {s}", "series": [
            {"name": name, "values": [rel(by_pos[k], key) if k in by_pos else None for k in range(len(orders))],
             "colour": colour, "dash": dash}
            for name, key, colour, dash in (("Paddle", "error", SERIES_COLOURS["Paddle"], ""),
                                            ("torch", "reference_error", SERIES_COLOURS["torch"], "4 3"),
                                            ("Paddle's bound", "bound", "#999", "1 3"))]})
    first = d["first_divergent"]
    marker = None
    if first and first["phase"] == "backward":
        c = next(c for c in grads if c["step"] == first["step"] and c["name"] == first["name"])
        marker = (pos[c["order"]], f"first divergent: {first['label']}")
    return depth_panels(panels, len(orders), "gradient-error", "gradient error against depth, per step", width=width,
                        panel_height=180, marker=marker,
                        x_label=f"trainable tensor, input to output ({len(orders)} tensors); "
                                "y: max |error| / max |f64|")


def loss_plot(d: dict, width: int = 480, height: int = 300) -> str:
    """Loss per step of each framework, with the float64 recomputation of torch's step."""
    from parity.core.svg import nice_ticks

    steps = d["steps_summary"]
    if not steps:
        return "<p>No step ran.</p>"
    series = {"torch": "torch", "Paddle": "paddle", "torch float64": "torch_float64"}
    values = [s["losses"][k] for s in steps for k in series.values() if math.isfinite(s["losses"][k])]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 1e-6 or 1e-6
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 80, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    x = lambda k: left + (pw * k / (len(steps) - 1) if len(steps) > 1 else pw / 2)  # noqa: E731
    y = lambda v: top + ph * (hi - v) / (hi - lo) if math.isfinite(v) else top  # noqa: E731
    ticks = [(y(v), f"{v:.6g}") for v in nice_ticks(lo, hi)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="loss-per-step" width="{width}" height="{height}" '
             'role="img" aria-label="loss per step" font-family="system-ui, sans-serif" font-size="12">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for yy, text in ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{text}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">step</text>')
    for k, s in enumerate(steps):
        parts.append(f'<text x="{x(k):.1f}" y="{top + ph + 14}" text-anchor="middle" font-size="11">{s["step"]}</text>')
    for n, (name, key) in enumerate(series.items()):
        colour = SERIES_COLOURS[name]
        dash = "2 3" if name == "torch float64" else ""
        pts = " ".join(f"{x(k):.1f},{y(s['losses'][key]):.1f}" for k, s in enumerate(steps))
        parts.append(f'<polyline class="loss-{key}" fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'stroke-dasharray="{dash}" points="{pts}"/>')
        for k, s in enumerate(steps):
            parts.append(f'<circle cx="{x(k):.1f}" cy="{y(s["losses"][key]):.1f}" r="3" fill="{colour}"/>')
        ly = top + 12 + 15 * n
        parts.append(f'<line x1="{left + 10}" x2="{left + 28}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{left + 33}" y="{ly + 4}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _table(columns, rows, cls="") -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


CHECK_COLUMNS = ("step", "phase", "quantity (torch | Paddle)", "shape", "Paddle err", "torch err", "bound", "margin",
                 "rel err", "cosine", "verdict")


def _check_row(c: dict) -> list:
    names = c["name"] if c["paddle_name"] == c["name"] else f"{c['name']} | {c['paddle_name']}"
    return [c["step"], c["phase"], names, "x".join(map(str, c["shape"])) or "scalar", num(c["error"]),
            num(c["reference_error"]), num(c["bound"]), margin(c["margin"]), num(c["rel_l2"]),
            "-" if c["cosine"] is None else f"{c['cosine']:.7f}", "pass" if c["pass"] else "FAIL"]


def to_html(d: dict) -> str:
    esc = html.escape
    verdict = "PASS" if d["pass"] else "FAIL"
    env = d["environment"]
    failures = "".join(f"<li>{esc(f)}</li>" for f in d["failures"])
    worst = [c for p in PHASES for c in sorted(_checks(d, phase=p), key=lambda c: -c["margin"])[:10]]
    failing = [c for c in d["checks"] if not c["pass"]]
    setup = "".join(f"<li>{esc(line)}</li>" for line in setup_lines(d))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>GENet_{esc(d['arch'])} training parity: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 12px; margin: .5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; font-family: monospace; }}
.verdict-PASS {{ color: #070; }} .verdict-FAIL {{ color: #c00; }}
</style></head><body>
<h1>GENet_{esc(d['arch'])} training parity: <span class="verdict-{verdict}">{verdict}</span></h1>
<p id="verdict">{esc(verdict_line(d))}</p>
<ul id="failures">{failures}</ul>
<ul id="setup">{setup}</ul>
<p>{esc(tolerance_line(d))}</p>
<h2>Steps</h2>
{_table(STEP_HEADERS, step_rows(d), "steps")}
<p>Each cell: the worst margin (Paddle's error / its bound) of that phase; 1 or less passes.</p>
<h2>Gradient error against depth</h2>
{gradient_plot(d)}
<h2>Loss per step</h2>
{loss_plot(d)}
<h2>Worst of each phase</h2>
{_table(CHECK_COLUMNS, [_check_row(c) for c in worst], "worst")}
<h2>Out of bound ({len(failing)})</h2>
{_table(CHECK_COLUMNS, [_check_row(c) for c in failing], "failing") if failing else "<p>None.</p>"}
<details><summary>Every judged quantity ({len(d['checks'])})</summary>
{_table(CHECK_COLUMNS, [_check_row(c) for c in d['checks']], "checks")}
</details>
<p>torch {esc(env['torch'])}, paddle {esc(env['paddle'])}, numpy {esc(env['numpy'])}, {esc(env['platform'])};
threads {env['threads']['torch']}; {d['seconds']:.1f} s.</p>
</body></html>
"""
