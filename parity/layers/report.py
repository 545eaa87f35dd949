"""Renderings of a layer-diff result: rich table, JSON, HTML, Markdown.

The result (parity.layers.records.LayerDiffResult) is collected first; this module
only renders its `to_dict()`, so every format shows the same numbers. The
JSON schema is documented in docs/layers.md.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import List

from genet_arch import DEFAULT_NUM_CLASSES


def _fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        return f"{v:.{digits}g}"
    return str(v)


def _verdict_line(d: dict) -> str:
    cov = d["coverage"]
    first = d["first_divergent"]
    head = "PASS" if d["pass"] else "FAIL"
    parts = [f"{head}: GENet_{d['arch']} ({d.get('num_classes', DEFAULT_NUM_CLASSES)}-class head), {d['dtype']} on "
             f"{d['device']}",
             f"coverage {cov['compared']}/{cov['total']} modules"]
    if first:
        parts.append(f"first divergent: {first['torch_name']} (Paddle {first['paddle_name']}, {first['reason']})")
    elif not d["pass"]:
        parts.append("no layer diverges in isolation; see failures")
    return "; ".join(parts)


def _tolerance_line(d: dict) -> str:
    t = d["tolerance"]
    return f"Tolerance ({t['mode']}): {t['rule']}"


def _names(layer: dict) -> str:
    if layer["paddle_name"] == layer["torch_name"]:
        return layer["torch_name"]
    return f"{layer['torch_name']} | paddle: {layer['paddle_name']}"


def _status(layer: dict) -> str:
    if layer["pass"]:
        return "pass"
    why = []
    if not layer["isolated_pass"]:
        why.append("isolated")
    if not layer["accumulated_pass"]:
        why.append("accumulated")
    if layer["hparam_mismatches"]:
        why.append("hparams")
    return "FAIL (" + ", ".join(why) + ")"


COLUMNS = ("#", "kind", "module (torch | paddle)", "shape", "max abs", "mean abs", "max rel", "rel L2",
           "cosine", "isolated max abs", "amplif.", "tolerance", "verdict")


def _row(layer: dict) -> List[str]:
    return [str(layer["index"]), layer["kind"], _names(layer), "x".join(map(str, layer["shape"])),
            _fmt(layer["max_abs"]), _fmt(layer["mean_abs"]), _fmt(layer["max_rel"]), _fmt(layer["rel_l2"]),
            f"{layer['cosine']:.9f}", _fmt(layer["isolated_max_abs"]), _fmt(layer["amplification"]),
            _fmt(layer["isolated_tolerance"]), _status(layer)]


# ---------------------------------------------------------------- terminal

_SHORT = (
    (re.compile(r"^module_list\.(\d+)(?:\.netblock)?$"), r"\1"),
    (re.compile(r"^module_list\.(\d+)\.(conv_list|shortcut_list)\.(\d+)\.(\d+)$"), r"\1.\3.\2.\4"),
    (re.compile(r"^module_list\.(\d+)\.unit_relu\.(\d+)$"), r"\1.\2.unit_relu"),
)


def short_name(path: str) -> str:
    """The short form of a module path, read block.unit.part.layer
    (docs/layers.md): module_list.4.conv_list.1.3 -> 4.1.conv_list.3,
    module_list.4.unit_relu.1 -> 4.1.unit_relu, module_list.1.netblock -> 1;
    the pool and the fc keep their names. Unique within a table: torch's and
    Paddle's paths of one module share it."""
    for pattern, repl in _SHORT:
        if pattern.match(path):
            return pattern.sub(repl, path)
    return path


def _verdict_cell(layer: dict) -> str:
    if layer["pass"]:
        return "pass"
    why = [w for w, bad in (("iso", not layer["isolated_pass"]), ("acc", not layer["accumulated_pass"]),
                            ("hparams", bool(layer["hparam_mismatches"]))) if bad]
    return "FAIL " + "+".join(why)


def _judged(layer: dict, isolated: bool):
    """(error, bound) the verdict compared: Paddle's error against the float64
    recomputation and its bound; with --atol/--rtol, |Paddle - torch| and atol."""
    if isolated:
        err = layer.get("isolated_paddle_error_f64")
        return (layer["isolated_max_abs"] if err is None else err), layer.get("isolated_tolerance")
    err = layer.get("paddle_error_f64")
    return (layer["max_abs"] if err is None else err), layer.get("tolerance")


def terminal_columns(wide: bool = False):
    from parity.core.textout import Column

    return [Column("#", 3, "right"), Column("module (torch | paddle)" if wide else "module"), Column("kind", 2),
            Column("shape", 5), Column("acc err", 1, "right"), Column("acc bound", 1, "right"),
            Column("iso err", 1, "right"), Column("iso bound", 1, "right"), Column("max abs", 4, "right"),
            Column("iso max abs", 4, "right"), Column("mean abs", 6, "right"), Column("max rel", 6, "right"),
            Column("rel L2", 6, "right"), Column("cosine", 7, "right"), Column("amplif.", 6, "right"),
            Column("verdict")]


def terminal_rows(d: dict, wide: bool = False) -> List[List[str]]:
    from parity.core.textout import sci

    rows = []
    for layer in d["layers"]:
        acc, acc_b = _judged(layer, False)
        iso, iso_b = _judged(layer, True)
        rows.append([str(layer["index"]), _names(layer) if wide else short_name(layer["torch_name"]), layer["kind"],
                     "x".join(map(str, layer["shape"])), sci(acc), sci(acc_b), sci(iso), sci(iso_b),
                     sci(layer["max_abs"]), sci(layer["isolated_max_abs"]), sci(layer["mean_abs"]),
                     sci(layer["max_rel"]), sci(layer["rel_l2"]), f"{layer['cosine']:.9f}",
                     sci(layer["amplification"]), _verdict_cell(layer)])
    return rows


TERMINAL_NOTE = ("acc: both models end to end; iso: the Paddle module fed torch's own input. err: Paddle's max abs "
                 "error against the float64 recomputation (|Paddle - torch| with --atol/--rtol), bound: what it "
                 "may reach. module: short form block.unit.part.layer (docs/layers.md; --wide: full paths).")


def print_report(d: dict, out=None, table: bool = True, wide: bool = False) -> None:
    """The verdict and, with `table`, every layer, at the width of `out` (a
    parity.core.textout.Out; stdout by default)."""
    from parity.core.textout import Out

    out = out or Out(wide=wide)
    if table:
        first = d["first_divergent"]
        styles = [("bold white on red" if first and layer["index"] == first["index"] else
                   None if layer["pass"] else "red") for layer in d["layers"]]
        out.table(terminal_columns(wide), terminal_rows(d, wide),
                  title=f"GENet_{d['arch']} layer diff: Paddle vs PyTorch ({d['dtype']}, {d['device']})",
                  row_styles=styles, hint="--wide shows every column")
        out.print(TERMINAL_NOTE, style="dim")
    if d.get("precision_note"):
        out.print(d["precision_note"], style="bold yellow")
    out.print(_tolerance_line(d))
    for f in d["failures"][:20]:
        out.print(f"- {f}", style="red", indent="  ")
    if len(d["failures"]) > 20:
        out.print(f"- and {len(d['failures']) - 20} more", style="red")
    out.print(f"{_verdict_line(d)} ({d['seconds']:.1f} s)", style="green" if d["pass"] else "bold red")


# ---------------------------------------------------------------- files

def write_atomic(path: str, text: str) -> None:
    """A failure never leaves a half-written report (converters.files.atomic.AtomicFile)."""
    from converters.files.atomic import write_text_atomic

    write_text_atomic(path, text)


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def to_json(d: dict) -> str:
    # Strict JSON: non-finite floats become null (NaN) or "inf" strings.
    return json.dumps(_json_safe(d), indent=2, allow_nan=False)


def to_json_line(d: dict) -> str:
    """`to_json` on one line (JSON-lines output, `--json` on stdout)."""
    return json.dumps(_json_safe(d), allow_nan=False)


def to_markdown(d: dict, max_rows: int = 400) -> str:
    lines = [f"### GENet_{d['arch']} layer diff: **{'PASS' if d['pass'] else 'FAIL'}**", "",
             f"- {_verdict_line(d)}", f"- {_tolerance_line(d)}"]
    if d.get("precision_note"):
        lines.append(f"- **{d['precision_note']}**")
    env = d["environment"]
    lines.append(f"- torch {env['torch']}, paddle {env['paddle']}, numpy {env['numpy']}, {env['platform']}, "
                 f"threads {env['threads']['torch']}; input {d['input'].get('source')} {d['input']['shape']}")
    for f in d["failures"][:20]:
        lines.append(f"- failure: {f}")
    lines.append("")

    def table(layers):
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for layer in layers:
            cells = [c.replace("|", "\\|") for c in _row(layer)]
            if d["first_divergent"] and layer["index"] == d["first_divergent"]["index"]:
                cells = [f"**{c}**" for c in cells]
            out.append("| " + " | ".join(cells) + " |")
        return out

    bad = [layer for layer in d["layers"] if not layer["pass"]]
    if bad:
        lines += ["Failing layers:", ""] + table(bad) + [""]
    lines += ["<details><summary>All layers</summary>", ""] + table(d["layers"][:max_rows])
    if len(d["layers"]) > max_rows:
        lines.append(f"\n({len(d['layers']) - max_rows} more rows in the JSON report)")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

def _svg_plot(d: dict, width=960, height=320) -> str:
    """Accumulated and isolated max abs error against depth (mapping-table
    order), log scale; zeros are drawn on the bottom edge; the first divergent
    layer is marked by a red line."""
    layers = d["layers"]
    if not layers:
        return "<p>No layer was compared.</p>"
    series = {"accumulated": [x["max_abs"] for x in layers], "isolated": [x["isolated_max_abs"] for x in layers]}
    positive = [v for vals in series.values() for v in vals if v is not None and v > 0 and math.isfinite(v)]
    lo = math.floor(math.log10(min(positive))) if positive else -8
    hi = math.ceil(math.log10(max(positive))) if positive else 0
    if hi <= lo:
        hi = lo + 1
    left, right, top, bottom = 70, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    n = len(layers)

    def x(i):
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v):
        if v is None or not math.isfinite(v):
            return top  # inf / nan: the top edge
        if v <= 0:
            return top + ph
        return top + ph * (hi - max(math.log10(v), lo)) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="error against depth">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for e in range(lo, hi + 1):
        yy = top + ph * (hi - e) / (hi - lo)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">1e{e}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" font-size="12">'
                 f'layer (forward order of the mapping table, {n} modules)</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" font-size="12" transform="rotate(-90 14 {top + ph / 2})" '
                 f'text-anchor="middle">max abs |Paddle - torch|</text>')
    first = d["first_divergent"]
    if first:
        pos = next(i for i, layer in enumerate(layers) if layer["index"] == first["index"])
        parts.append(f'<line id="divergent-marker" x1="{x(pos):.1f}" x2="{x(pos):.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="red" stroke-width="2"/>')
        parts.append(f'<text x="{x(pos) + 4:.1f}" y="{top + 12}" fill="red" font-size="12">first divergent: '
                     f'{html.escape(first["torch_name"])}</text>')
    colours = {"accumulated": "#1f77b4", "isolated": "#ff7f0e"}
    for name, vals in series.items():
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vals))
        parts.append(f'<polyline class="series-{name}" fill="none" stroke="{colours[name]}" stroke-width="1.5" '
                     f'points="{pts}"/>')
    for k, (name, colour) in enumerate(colours.items()):
        parts.append(f'<rect x="{left + 10}" y="{top + 22 + 16 * k}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{left + 28}" y="{top + 27 + 16 * k}" font-size="11">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(d: dict) -> str:
    esc = html.escape
    verdict = "PASS" if d["pass"] else "FAIL"
    env = d["environment"]
    rows = []
    for layer in d["layers"]:
        cls = "divergent" if d["first_divergent"] and layer["index"] == d["first_divergent"]["index"] else (
            "fail" if not layer["pass"] else "")
        cells = "".join(f"<td>{esc(c)}</td>" for c in _row(layer))
        mism = esc("; ".join(layer["hparam_mismatches"]))
        rows.append(f'<tr class="{cls}" title="{mism}">{cells}</tr>')
    failures = "".join(f"<li>{esc(f)}</li>" for f in d["failures"])
    note = f'<p class="note">{esc(d["precision_note"])}</p>' if d.get("precision_note") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>GENet_{esc(d['arch'])} layer diff: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; font-family: monospace; }}
tr.fail td {{ color: #b00; }}
tr.divergent td {{ background: #c00; color: #fff; font-weight: bold; }}
.verdict-PASS {{ color: #070; }} .verdict-FAIL {{ color: #c00; }}
.note {{ background: #ffd; padding: .5em; font-weight: bold; }}
</style></head><body>
<h1>GENet_{esc(d['arch'])} layer diff: <span class="verdict-{verdict}">{verdict}</span></h1>
<p id="verdict">{esc(_verdict_line(d))}</p>
{note}
<p>{esc(_tolerance_line(d))}</p>
<ul id="failures">{failures}</ul>
<p>torch {esc(env['torch'])}, paddle {esc(env['paddle'])}, numpy {esc(env['numpy'])}, {esc(env['platform'])};
threads {env['threads']['torch']}; input {esc(str(d['input'].get('source')))} {esc(str(d['input']['shape']))};
{d['seconds']:.1f} s</p>
<h2>Error against depth</h2>
{_svg_plot(d)}
<h2>Every layer</h2>
<p>max abs .. cosine: accumulated (both models end to end); isolated: the Paddle module fed torch's input;
amplif. = accumulated / isolated max abs.</p>
<table id="layers"><thead><tr>{''.join(f'<th>{esc(c)}</th>' for c in COLUMNS)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""
