"""Renderings of a training-parity result (its `to_dict()`): terminal, JSON,
HTML with inline SVG plots. Every format shows the same numbers; the JSON
schema is described in docs/train.md."""
from __future__ import annotations

import html
import math
from typing import List, Optional, Sequence

from ..report import to_json, write_atomic  # noqa: F401  (re-exported: one JSON writer for every report)
from .result import PHASE_MEANS, PHASES

SERIES_COLOURS = {"Paddle": "#d62728", "torch": "#1f77b4", "torch float64": "#7f7f7f"}


def num(v, digits: int = 1) -> str:
    """Fixed-width scientific notation, so columns stay narrow and parseable."""
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.{digits}e}"


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


def verdict_line(d: dict) -> str:
    first = d["first_divergent"]
    head = "PASS" if d["pass"] else "FAIL"
    text = (f"{head}: GENet_{d['arch']} ({d['num_classes']} classes), {d['steps']} training step"
            f"{'s' if d['steps'] != 1 else ''}, {len(d['checks'])} quantities judged")
    if first:
        text += f"; first divergent: {first['label']} (margin {margin(first['margin'])})"
    return text


def setup_lines(d: dict) -> List[str]:
    r = d["recipe"]
    b = d["batches"]
    lines = [f"Recipe: {r['optimizer'].upper()} lr {r['lr']:g}, weight decay {r['weight_decay']:g}"
             + (f", momentum {r['momentum']:g}{' Nesterov' if r['nesterov'] else ''}" if r["optimizer"] == "sgd"
                else f", betas {tuple(r['betas'])}, eps {r['eps']:g}")
             + f", label smoothing {r['label_smoothing']:g}" + ("; backbone frozen" if d["frozen_backbone"] else ""),
             f"Batches: {b['steps']} x {b['batch_size']} {b['source']}, {b['preprocess']} preprocessing, seed "
             f"{b['seed']}, sha256 {b['sha256'][:12]}"]
    w = d["weights"]
    lines.append("Weights: " + (w.get("path") or w.get("source", "given")) + (f" ({w['layout']})" if w.get("layout") else ""))
    h = d["head"]
    if h.get("replaced"):
        lines.append(f"Head replaced: {', '.join(h['replaced'])} ({h['checkpoint_classes']} -> {h['num_classes']} "
                     f"classes, fresh from numpy seed {h['head_seed']}, identical in both frameworks)")
    for note in d["notes"]:
        lines.append(note)
    return lines


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


STEP_COLUMNS = ("step", "loss torch", "loss Paddle", "fwd", "loss", "grad", "update", "verdict")


def gradient_rows(d: dict, n: int = 10) -> List[List[str]]:
    cs = sorted(_checks(d, phase="backward"), key=lambda c: -c["margin"])[:n]
    return [[str(c["step"]), c["name"], num(c["rel_l2"]), num(1.0 - c["cosine"]), margin(c["margin"])] for c in cs]


GRADIENT_COLUMNS = ("step", "tensor (worst first)", "rel err", "1 - cos", "margin")


def print_report(d: dict, console=None, detail: bool = True) -> None:
    from rich.table import Table

    if console is None:
        from rich.console import Console

        console = Console()
    for line in setup_lines(d):
        console.print(line, highlight=False, soft_wrap=False)
    if detail:
        t = Table(title="Worst margin per step and phase (Paddle's error / its bound; <= 1 passes)",
                  box=None, padding=(0, 1))
        for c in STEP_COLUMNS:
            t.add_column(c, justify="left" if c in ("step", "verdict") else "right", no_wrap=True)
        for row in step_rows(d):
            t.add_row(*row, style=None if row[-1] == "pass" else "red")
        console.print(t)
        g = Table(title="Gradients (rel err = ||Paddle - f64|| / ||f64||)", box=None, padding=(0, 1))
        for c in GRADIENT_COLUMNS:
            g.add_column(c, justify="left" if c in ("step", "tensor (worst first)") else "right", no_wrap=True)
        for row in gradient_rows(d):
            g.add_row(*row)
        console.print(g)
    first = d["first_divergent"]
    if first:
        c = next(x for x in d["checks"] if (x["step"], x["phase"], x["name"]) ==
                 (first["step"], first["phase"], first["name"]))
        console.print(f"[bold red]First divergent: {first['label']}[/]: {PHASE_MEANS[first['phase']]}; Paddle "
                      f"error {num(c['error'])} vs bound {num(c['bound'])} (torch's own error {num(c['reference_error'])},"
                      f" scale {num(c['scale'])})", highlight=False)
    for f in d["failures"][:12]:
        console.print(f"[red]- {f}[/]", highlight=False)
    console.print(tolerance_line(d), highlight=False)
    colour = "green" if d["pass"] else "bold red"
    console.print(f"[{colour}]{verdict_line(d)}[/] ({d['seconds']:.1f} s)", highlight=False)


# ---------------------------------------------------------------- HTML

def _log_axis(values, default=(-9, 0)):
    positive = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not positive:
        return default
    lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return (lo, hi if hi > lo else lo + 1)


def _frame(width, height, left, top, pw, ph, ylabels, xlabel, ylabel) -> List[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(ylabel)} against {html.escape(xlabel)}">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for yy, text in ylabels:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{text}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" font-size="12">'
                 f'{html.escape(xlabel)}</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" font-size="12" transform="rotate(-90 14 {top + ph / 2})" '
                 f'text-anchor="middle">{html.escape(ylabel)}</text>')
    return parts


def _legend(parts, left, top, entries):
    for k, (name, colour, dash) in enumerate(entries):
        y = top + 12 + 15 * k
        parts.append(f'<line x1="{left + 10}" x2="{left + 28}" y1="{y}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{left + 33}" y="{y + 4}" font-size="11">{html.escape(name)}</text>')


def gradient_plot(d: dict, width: int = 960, height: int = 340) -> str:
    """Relative gradient error (max |x - f64| / max |f64|) of every trainable
    tensor against its depth (forward order), per step: Paddle solid, torch's
    own error dashed, Paddle's bound dotted; the first divergent gradient is marked."""
    grads = _checks(d, phase="backward")
    if not grads:
        return "<p>No gradient was compared.</p>"
    rel = lambda c, key: c[key] / c["scale"] if c["scale"] else 0.0  # noqa: E731
    orders = sorted({c["order"] for c in grads})
    pos = {o: k for k, o in enumerate(orders)}
    lo, hi = _log_axis([rel(c, k) for c in grads for k in ("error", "reference_error", "bound")])
    left, right, top, bottom = 70, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    x = lambda o: left + (pw * pos[o] / (len(orders) - 1) if len(orders) > 1 else pw / 2)  # noqa: E731

    def y(v):
        if v is None or not math.isfinite(v):
            return top
        if v <= 0:
            return top + ph
        return top + ph * (hi - min(max(math.log10(v), lo), hi)) / (hi - lo)

    ticks = [(top + ph * (hi - e) / (hi - lo), f"1e{e}") for e in range(lo, hi + 1)]
    parts = _frame(width, height, left, top, pw, ph, ticks,
                   f"trainable tensor, input to output ({len(orders)} tensors)", "max |error| / max |f64|")
    steps = sorted({c["step"] for c in grads})
    for s in steps:
        cs = sorted((c for c in grads if c["step"] == s), key=lambda c: c["order"])
        opacity = 0.35 + 0.65 * (s / steps[-1])
        for key, colour, dash in (("bound", "#999", "1 3"), ("reference_error", SERIES_COLOURS["torch"], "4 3"),
                                  ("error", SERIES_COLOURS["Paddle"], "")):
            pts = " ".join(f"{x(c['order']):.1f},{y(rel(c, key)):.1f}" for c in cs)
            parts.append(f'<polyline class="series-{key} step-{s}" fill="none" stroke="{colour}" '
                         f'stroke-opacity="{opacity:.2f}" stroke-width="1.4" stroke-dasharray="{dash}" points="{pts}"/>')
    first = d["first_divergent"]
    if first and first["phase"] == "backward":
        c = next(c for c in grads if c["step"] == first["step"] and c["name"] == first["name"])
        parts.append(f'<line id="divergent-marker" x1="{x(c["order"]):.1f}" x2="{x(c["order"]):.1f}" y1="{top}" '
                     f'y2="{top + ph}" stroke="red" stroke-width="2"/>')
        parts.append(f'<text x="{x(c["order"]) - 4:.1f}" y="{top + ph - 6}" text-anchor="end" fill="red" '
                     f'font-size="12">first divergent: {html.escape(first["label"])}</text>')
    _legend(parts, left, top, [("Paddle vs float64 (of Paddle's step)", SERIES_COLOURS["Paddle"], ""),
                               ("torch vs float64 (of torch's step)", SERIES_COLOURS["torch"], "4 3"),
                               ("Paddle's bound", "#999", "1 3")]
            + ([(f"later steps darker ({len(steps)} steps)", "#555", "")] if len(steps) > 1 else []))
    parts.append("</svg>")
    return "\n".join(parts)


def loss_plot(d: dict, width: int = 480, height: int = 300) -> str:
    """Loss per step of each framework, with the float64 recomputation of torch's step."""
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
    ticks = [(y(lo + (hi - lo) * k / 4), f"{lo + (hi - lo) * k / 4:.5g}") for k in range(5)]
    parts = _frame(width, height, left, top, pw, ph, ticks, "step", "loss")
    for k, s in enumerate(steps):
        parts.append(f'<text x="{x(k):.1f}" y="{top + ph + 14}" text-anchor="middle" font-size="11">{s["step"]}</text>')
    for name, key in series.items():
        colour = SERIES_COLOURS[name]
        dash = "2 3" if name == "torch float64" else ""
        pts = " ".join(f"{x(k):.1f},{y(s['losses'][key]):.1f}" for k, s in enumerate(steps))
        parts.append(f'<polyline class="loss-{key}" fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'stroke-dasharray="{dash}" points="{pts}"/>')
        for k, s in enumerate(steps):
            parts.append(f'<circle cx="{x(k):.1f}" cy="{y(s["losses"][key]):.1f}" r="3" fill="{colour}"/>')
    _legend(parts, left, top, [(n, SERIES_COLOURS[n], "2 3" if n == "torch float64" else "") for n in series])
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
{_table(STEP_COLUMNS, step_rows(d), "steps")}
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
