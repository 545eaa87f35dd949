"""Small inline-SVG charts for self-contained HTML reports (no scripts, no
fonts or styles from the network). Each function takes plain numbers and
returns one `<svg>` element as text."""
from __future__ import annotations

import html
import math
from typing import List, Optional, Sequence, Tuple

FONT = 'font-family="system-ui, sans-serif"'
GRID, AXIS, TEXT_MUTED = "#e5e7eb", "#9ca3af", "#57606a"


def _esc(v) -> str:
    return html.escape(str(v))


def nice_ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    """Round tick values covering [lo, hi] (about n of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + 1e-9 * step:
        out.append(round(v, 12))
        v += step
    return out


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 0.01:
        return f"{v:.0e}"
    return f"{v:g}"


def _open(width, height, fig_id, label) -> List[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" id="{fig_id}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}" {FONT} font-size="12">',
            f"<title>{_esc(label)}</title>"]


# ---------------------------------------------------------------- log-scale series against depth
def depth_panels(panels: Sequence[dict], n: int, fig_id: str, label: str, width: int = 1000,
                 panel_height: int = 220, marker: Optional[Tuple[int, str]] = None,
                 x_label: Optional[str] = None) -> str:
    """Stacked log-y line panels sharing an x axis of `n` positions.
    panels: [{"title": str, "series": [{"name", "values" (None = gap), "colour", "dash" (optional),
    "width" (optional)}]}]. Zeros sit on the bottom edge, inf/nan on the top edge.
    marker: (position, text) drawn as a red vertical line on every panel.
    x_label: what the positions are (default: modules in forward order)."""
    left, right, top_pad, gap, bottom = 70, 170, 24, 38, 34
    pw = width - left - right
    height = top_pad + len(panels) * panel_height + (len(panels) - 1) * gap + bottom
    values = [v for p in panels for s in p["series"] for v in s["values"]
              if v is not None and math.isfinite(v) and v > 0]
    lo = math.floor(math.log10(min(values))) if values else -8
    hi = math.ceil(math.log10(max(values))) if values else 0
    if hi <= lo:
        hi = lo + 1

    def x(i):
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    parts = _open(width, height, fig_id, label)
    for k, panel in enumerate(panels):
        top = top_pad + k * (panel_height + gap)
        ph = panel_height

        def y(v, top=top, ph=ph):
            if v is None or not math.isfinite(v):
                return top
            if v <= 0:
                return top + ph
            return top + ph * (hi - max(math.log10(v), lo)) / (hi - lo)

        parts.append(f'<text x="{left}" y="{top - 8}" font-weight="600">{_esc(panel["title"])}</text>')
        step = max(1, (hi - lo) // 6)
        for e in range(lo, hi + 1, step):
            yy = y(10.0 ** e)
            parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{GRID}"/>')
            parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="{TEXT_MUTED}">'
                         f'1e{e}</text>')
        parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="{AXIS}"/>')
        if marker is not None:
            mx = x(marker[0])
            parts.append(f'<line class="divergent-marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + ph}" '
                         f'stroke="#cf222e" stroke-width="2"/>')
            if k == 0:  # the label on the side of the line with the room
                anchor, tx = ("end", mx - 4) if mx > left + pw / 2 else ("start", mx + 4)
                parts.append(f'<text x="{tx:.1f}" y="{top + 14}" text-anchor="{anchor}" fill="#cf222e">'
                             f'{_esc(marker[1])}</text>')
        for s_k, s in enumerate(panel["series"]):
            segments, current = [], []
            for i, v in enumerate(s["values"]):
                if v is None:
                    if current:
                        segments.append(current)
                    current = []
                    continue
                current.append(f"{x(i):.1f},{y(v):.1f}")
            if current:
                segments.append(current)
            dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
            for seg in segments:
                parts.append(f'<polyline class="series-{_esc(s["name"]).replace(" ", "-")}" fill="none" '
                             f'stroke="{s["colour"]}" stroke-width="{s.get("width", 1.5)}"{dash} '
                             f'points="{" ".join(seg)}"/>')
            ly = top + 14 + 18 * s_k
            parts.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 34}" y1="{ly - 4}" y2="{ly - 4}" '
                         f'stroke="{s["colour"]}" stroke-width="2"{dash}/>')
            parts.append(f'<text x="{left + pw + 40}" y="{ly}">{_esc(s["name"])}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" fill="{TEXT_MUTED}">'
                 f'{_esc(x_label or f"module, in forward order (mapping table), {n} in all")}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------- distributions
def strip_chart(rows: Sequence[dict], fig_id: str, label: str, unit: str, width: int = 1000,
                row_height: int = 34, title: Optional[str] = None) -> str:
    """One row per distribution: every value as a dot, the median as a black
    bar (its value at the right), the 90th percentile as a grey bar. rows:
    [{"label", "values", "median", "p90", "short_unit"}]; a linear axis from 0,
    or a log axis when the values span more than 20x. title: drawn above, as
    the other charts' panel titles."""
    left, right, top, bottom = 230, 150, 36 if title else 14, 40
    pw = width - left - right
    height = top + row_height * max(1, len(rows)) + bottom
    values = [v for r in rows for v in (list(r["values"]) + [r["median"], r["p90"]]) if v > 0]
    vmin, vmax = (min(values), max(values)) if values else (1.0, 1.0)
    log = vmax / vmin > 20  # outliers (a busy machine) would squash every median against zero
    if log:
        lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
        hi = max(hi, lo + 1)
        ticks = [m * 10.0 ** e for e in range(lo, hi + 1) for m in (1, 2, 5) if 10.0 ** lo <= m * 10.0 ** e <= 10.0 ** hi]

        def x(v):
            return left + pw * (math.log10(max(v, 10.0 ** lo)) - lo) / (hi - lo)
    else:
        ticks = nice_ticks(0, vmax * 1.05)
        span = max(ticks[-1], vmax * 1.05)

        def x(v):
            return left + pw * v / span

    parts = _open(width, height, fig_id, label)
    if title:
        parts.append(f'<text x="{left - 220}" y="{top - 14}" font-weight="600">{_esc(title)}</text>')
    for t in ticks:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + row_height * len(rows)}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + row_height * len(rows) + 16}" text-anchor="middle" '
                     f'fill="{TEXT_MUTED}">{_fmt_tick(t)}</text>')
    for k, r in enumerate(rows):
        cy = top + row_height * k + row_height / 2
        parts.append(f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end">{_esc(r["label"])}</text>')
        for v in r["values"]:
            parts.append(f'<circle cx="{x(v):.1f}" cy="{cy:.1f}" r="3" fill="#0969da" fill-opacity="0.35"/>')
        parts.append(f'<line x1="{x(r["p90"]):.1f}" x2="{x(r["p90"]):.1f}" y1="{cy - 9:.1f}" y2="{cy + 9:.1f}" '
                     f'stroke="{AXIS}" stroke-width="2"/>')
        parts.append(f'<line x1="{x(r["median"]):.1f}" x2="{x(r["median"]):.1f}" y1="{cy - 11:.1f}" '
                     f'y2="{cy + 11:.1f}" stroke="#1f2328" stroke-width="3"/>')
        parts.append(f'<text x="{left + pw + 10}" y="{cy + 4:.1f}">{r["median"]:.3g} {_esc(r.get("short_unit", ""))}'
                     '</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="{TEXT_MUTED}">'
                 f'{_esc(unit)}{", log scale" if log else ""} (dots: every timed iteration; black bar: median; '
                 'grey bar: 90th percentile)</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------- intervals
def interval_panels(panels: Sequence[dict], fig_id: str, label: str, width: int = 1000, row_height: int = 30) -> str:
    """Side-by-side panels of point estimates with confidence intervals.
    panels: [{"title", "unit", "rows": [{"label", "value", "interval": [lo, hi], "colour"}],
    "band": [lo, hi] or None (the allowed region, shaded green), "line": (value, text) or None}]."""
    gap, top, bottom, label_w, right = 40, 30, 44, 120, 16
    pw = (width - right - gap * (len(panels) - 1)) / len(panels) - label_w
    n_rows = max(len(p["rows"]) for p in panels) if panels else 1
    height = top + row_height * n_rows + bottom
    parts = _open(width, height, fig_id, label)
    for k, p in enumerate(panels):
        x0 = k * (pw + label_w + gap) + label_w
        vals = [v for r in p["rows"] for v in [r["value"], *r["interval"]] if v is not None]
        if p.get("band"):
            vals += [b for b in p["band"] if math.isfinite(b)]
        if p.get("line"):
            vals.append(p["line"][0])
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        pad = (hi - lo) * 0.08 or max(abs(hi), 1.0) * 0.05
        lo, hi = lo - pad, hi + pad
        if p.get("clip"):
            lo, hi = max(lo, p["clip"][0]), min(hi, p["clip"][1])

        def x(v, x0=x0, lo=lo, hi=hi):
            return x0 + pw * (min(max(v, lo), hi) - lo) / (hi - lo)

        y_end = top + row_height * len(p["rows"])
        parts.append(f'<text x="{x0 - label_w + 4}" y="{top - 12}" font-weight="600">{_esc(p["title"])}</text>')
        if p.get("band"):
            b_lo, b_hi = p["band"]
            xa, xb = x(b_lo if math.isfinite(b_lo) else lo), x(b_hi if math.isfinite(b_hi) else hi)
            if xb - xa < 3:  # narrower than a line at this scale: drawn 3 px wide, centred
                xa, xb = (xa + xb) / 2 - 1.5, (xa + xb) / 2 + 1.5
            parts.append(f'<rect class="allowed" x="{xa:.1f}" y="{top}" width="{max(0.0, xb - xa):.1f}" '
                         f'height="{y_end - top}" fill="#1a7f37" fill-opacity="0.25"/>')
            if p.get("band_label"):
                anchor, bx = (("end", xb) if xb > x0 + 0.9 * pw else ("start", xa) if xa < x0 + 0.1 * pw
                              else ("middle", (xa + xb) / 2))
                parts.append(f'<text x="{bx:.1f}" y="{top - 1}" text-anchor="{anchor}" fill="#1a7f37" '
                             f'font-size="12">{_esc(p["band_label"])}</text>')
        for t in nice_ticks(lo, hi, 4):
            parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{y_end}" stroke="{GRID}"/>')
            parts.append(f'<text x="{x(t):.1f}" y="{y_end + 15}" text-anchor="middle" fill="{TEXT_MUTED}">'
                         f'{_fmt_tick(t)}</text>')
        if p.get("line"):
            lx = x(p["line"][0])
            parts.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="{top - 4}" y2="{y_end}" stroke="#9a6700" '
                         f'stroke-dasharray="4 3" stroke-width="1.5"/>')
            parts.append(f'<text x="{lx:.1f}" y="{y_end + 30}" text-anchor="middle" fill="#9a6700">'
                         f'{_esc(p["line"][1])}</text>')
        for i, r in enumerate(p["rows"]):
            cy = top + row_height * i + row_height / 2
            parts.append(f'<text x="{x0 - 8}" y="{cy + 4:.1f}" text-anchor="end">{_esc(r["label"])}</text>')
            a, b = r["interval"]
            colour = r.get("colour", "#0969da")
            parts.append(f'<line class="ci" x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                         f'stroke="{colour}" stroke-width="2"/>')
            for end in (a, b):
                parts.append(f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{cy - 6:.1f}" y2="{cy + 6:.1f}" '
                             f'stroke="{colour}" stroke-width="2"/>')
            parts.append(f'<circle cx="{x(r["value"]):.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}"/>')
        parts.append(f'<text x="{x0 + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="{TEXT_MUTED}">'
                     f'{_esc(p["unit"])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
