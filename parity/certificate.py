"""Renderings of a certificate dict (parity.certify): JSON, a self-contained
HTML page (inline CSS, no scripts, no external resources) and a rich table.
Only renders: every number comes from the dict."""
from __future__ import annotations

import html
import json

from .report import _json_safe

COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "NOT RUN": "#9a6700", "N/A": "#9a6700", "SKIPPED": "#57606a",
           "INFO": "#0969da"}
DISAGREEMENTS_IN_HTML = 200


def to_json(cert: dict) -> str:
    return json.dumps(_json_safe(cert), indent=2, allow_nan=False)


def _e(v) -> str:
    return html.escape("-" if v is None else str(v))


def _table(headers, rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#57606a")
    return f'<span class="badge" style="background:{colour}">{_e(status)}</span>'


def _kv(d: dict) -> str:
    return _table(["", ""], [[_e(k), _e(json.dumps(v) if isinstance(v, (dict, list)) else v)] for k, v in d.items()])


def to_html(cert: dict) -> str:
    v = cert["verdict"]
    colour = COLOURS["FAIL"] if v.startswith("FAIL") or "(FAIL;" in v else (
        COLOURS["PASS"] if v == "PASS" else COLOURS["NOT RUN"])
    parts = [f"<h1>{_e(cert['arch'])} reproduction certificate</h1>",
             f'<p class="verdict" style="border-color:{colour}">Verdict: <b style="color:{colour}">{_e(v)}</b></p>']
    if cert.get("demo"):
        parts.append(f'<p class="demo">{_e(cert.get("demo_note"))}</p>')
    parts.append(f"<p>Created {_e(cert['created_utc'])}, in {cert['seconds']:.1f} s. "
                 f"Schema {_e(cert['schema'])} v{cert['schema_version']}.</p>")
    parts.append("<h2>Checks</h2>")
    parts.append(_table(["check", "status", "threshold", "measured", "reason"],
                        [[f"<b>{_e(c['title'])}</b><br><code>{_e(c['id'])}</code>", _badge(c["status"]),
                          _e(c["threshold"]), _e(c["measured"]), _e(c["reason"])] for c in cert["checks"]]))
    p = cert["published"]
    parts.append("<h2>Published targets</h2>")
    parts.append(_kv({"top-1 (paper, ImageNet-1k val, %)": p["top1"], "top-1 measured by timm (%)": p["timm_top1"],
                      "top-5 measured by timm (%)": p["timm_top5"],
                      "latency, ms/image (V100, FP16, batch 64)": p["latency_ms_per_image_v100_fp16_b64"],
                      "parameters": p["params"], "MACs (G)": p["macs_g"], "resolution": p["resolution"]}))
    parts.append("<h2>Thresholds</h2>" + _kv(cert["thresholds"]))
    parts.append("<h2>Inputs</h2>")
    parts.append(_table(["role", "path", "bytes", "SHA-256"],
                        [[_e(i["role"]), _e(i["path"]), _e(i["bytes"]), f"<code>{_e(i['sha256'])}</code>"]
                         for i in cert["inputs"]]))
    parts.append("<h2>Dataset</h2>" + _kv(cert["dataset"]))
    for precision, s in cert.get("evaluation", {}).items():
        parts.append(f"<h2>Evaluation, {_e(precision)}</h2>")
        parts.append(_table(["framework", "top-1 %", "top-5 %", "runner"],
                            [[_e(fw), f"{s['top1'][fw]:.3f}", f"{s['top5'][fw]:.3f}", _e(s["runners"][fw])]
                             for fw in s["frameworks"]]))
        pr = s["paired"]
        parts.append(f"<p>{s['n_evaluated']} images, {s['n_bad']} undecodable (skipped). Agreement "
                     f"{s['agreement_top1']:.3f}%; McNemar exact p = {pr['mcnemar_exact_p']:.4g}; top-1 "
                     f"{_e(pr['a'])} - {_e(pr['b'])} = {pr['top1_difference_points']:+.3f} points, 95% CI "
                     f"[{pr['top1_difference_ci_points'][0]:+.3f}, {pr['top1_difference_ci_points'][1]:+.3f}]; "
                     f"largest logit difference {s['logit_max_abs_diff']:.3g}.</p>")
        if s["disagreements"]:
            rows = [[_e(d["path"]), _e(d["label"]), _e(d["torch"]), _e(d["paddle"])]
                    for d in s["disagreements"][:DISAGREEMENTS_IN_HTML]]
            parts.append("<details><summary>Images whose top-1 differs between the frameworks "
                         f"({s['n_disagree']})</summary>" + _table(["image", "label", "torch", "paddle"], rows)
                         + ("<p>(first 200; all in the JSON)</p>" if s["n_disagree"] > DISAGREEMENTS_IN_HTML else "")
                         + "</details>")
        if s["bad_images"]:
            parts.append("<details><summary>Undecodable images</summary>"
                         + _table(["image", "error"], [[_e(b["path"]), _e(b["error"])] for b in s["bad_images"]])
                         + "</details>")
    parts.append("<h2>Environment</h2>" + _kv(cert["environment"]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}"
             "table{border-collapse:collapse;margin:0.5em 0;width:100%}td,th{border:1px solid #d0d7de;padding:4px 8px;"
             "text-align:left;vertical-align:top;font-size:14px}th{background:#f6f8fa}"
             ".badge{color:#fff;border-radius:4px;padding:2px 8px;font-weight:600;white-space:nowrap}"
             ".verdict{border-left:6px solid;padding:0.5em 1em;font-size:1.2em;background:#f6f8fa}"
             ".demo{background:#fff8c5;padding:0.5em 1em;border:1px solid #d4a72c}code{font-size:12px}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(cert['arch'])} certificate"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def print_certificate(cert: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{cert['arch']} certificate", show_lines=False)
    for col in ("check", "status", "threshold", "measured"):
        t.add_column(col, overflow="fold")
    for c in cert["checks"]:
        colour = {"PASS": "green", "FAIL": "bold red", "INFO": "cyan"}.get(c["status"], "yellow")
        t.add_row(c["title"], f"[{colour}]{c['status']}[/]", c["threshold"],
                  c["measured"] + (f"\n[dim]{c['reason']}[/]" if c["reason"] else ""))
    console.print(t)
    if cert.get("demo"):
        console.print(f"[yellow]{cert['demo_note']}[/]")
    colour = "green" if cert["verdict"] == "PASS" else ("bold red" if "FAIL" in cert["verdict"].split(";")[0]
                                                        else "yellow")
    console.print(f"Verdict: [{colour}]{cert['verdict']}[/]")
