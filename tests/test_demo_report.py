"""The README's default job as a person runs it into a log: `genet-parity demo`
in a subprocess, COLUMNS=80, stdout and stderr pipes. Its output fits, its
progress shows, Paddle's C++ logger says nothing, and the certificate it
writes reads INCONCLUSIVE where 18 images cannot decide, with figures, every
layer and every image in its HTML."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w.]+:\d+\] ")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOG_")}
    env.update(COLUMNS="80", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "parity.commands.cli", "demo", "--arch", "small",
                           "--out", str(out / "d")],
                          cwd=out, env=env, capture_output=True, text=True, timeout=900)
    prefix = out / "d" / "certificate_GENet_small"
    return proc, json.loads((prefix.with_suffix(".json")).read_text()), (prefix.with_suffix(".html")).read_text()


def test_the_demo_exits_0_and_its_log_fits_80_columns(demo):
    proc, _, _ = demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    long = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert not long, long[:3]
    assert "Verdict: DEMO (INCONCLUSIVE; not a reproduction certificate)" in proc.stdout
    # progress in the log: every step of the certificate, with the elapsed time and what comes next
    for step in ("step 1/4: conversion", "step 2/4: layer diff", "step 3/4: evaluation", "step 4/4: latency"):
        assert re.search(rf"^\[\s*\d+\.\d s\] certify: {step}", proc.stderr, re.M), (step, proc.stderr[-2000:])
    assert "(next: layer diff)" in proc.stderr and re.search(r"timing \d+ paths x 10 iterations", proc.stderr)


def test_the_compiled_torch_path_ran_and_passed_the_rule(demo):
    """The project's test of torch's compiled path (parity.fastpath.inference.TorchCompiled:
    Inductor, frozen weights, channels-last): the README's job builds and times it, after its
    logits were judged against a float64 recomputation of the weights, the bar torch eager's own
    error (parity.core.tolerances). A wrong compiled graph fails here."""
    _, cert, _ = demo
    (latency,) = [c for c in cert["checks"] if c["id"] == "latency"]
    rows = {(r["framework"], r["mode"]): r for r in latency["details"]["results"]}
    best = rows[("torch", "best")]
    assert "compile (Inductor, frozen weights, channels-last)" in best["label"], best["label"]
    check = best["check"]
    assert check["passed"] is True and check["dtype"] == "float32", check
    assert 0 < check["error"] <= check["bound"] and check["margin"] == pytest.approx(check["error"] / check["bound"])
    assert check["reference_error"] == rows[("torch", "eager")]["check"]["error"] > 0
    assert best["iters"] == 10 and best["ms_per_image"]["median"] > 0


def test_paddle_cpp_logger_is_silent(demo):
    proc, _, _ = demo
    noise = [line for line in proc.stderr.splitlines() if GLOG_LINE.match(line)]
    assert not noise, noise
    assert "eager_utils.cc" not in proc.stderr


def test_accuracy_checks_are_inconclusive_with_the_images_needed(demo):
    _, cert, _ = demo
    checks = {c["id"]: c for c in cert["checks"]}
    for key in ("paddle_top1_vs_torch_float32", "agreement_float32"):
        c = checks[key]
        assert c["status"] == "INCONCLUSIVE" and c["images_needed"] > 3000, c
        assert c["details"]["n"] == 18 and "95% CI" in c["interval"]
    assert checks["conversion"]["status"] == "PASS" and checks["layer_diff"]["status"] == "PASS"
    assert cert["verdict"] == "DEMO (INCONCLUSIVE; not a reproduction certificate)"
    assert cert["title"].startswith("DEMO certificate for GENet_small")


class Page(HTMLParser):
    """Collects what a reader of the page would look for."""

    def __init__(self):
        super().__init__()
        self.svgs, self.rows, self.external, self.scripts = [], {}, [], 0
        self.titles, self._in_title, self.row_text, self._row, self._in_svg = [], False, {}, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append(a.get("id"))
            self._in_svg = True
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in a and re.match(r"^(https?:)?//", a[key] or ""):
                self.external.append(a[key])
        if tag == "link":
            self.external.append(a.get("href"))
        if tag == "tr":
            for cls in (a.get("class") or "").split():
                self.rows.setdefault(cls, 0)
                self.rows[cls] += 1
            self._row = a.get("class") or ""
            self.row_text.setdefault(self._row, []).append("")
        if tag in ("title", "h1") and not self._in_svg:  # an SVG's <title> labels the figure
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "svg":
            self._in_svg = False
        if tag in ("title", "h1"):
            self._in_title = False
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._in_title:
            self.titles.append(data)
        if self._row is not None:
            self.row_text[self._row][-1] += data + " "


def test_the_html_has_figures_every_layer_and_every_image(demo):
    _, cert, page = demo
    p = Page()
    p.feed(page)
    assert {"fig-layers", "fig-latency", "fig-accuracy"} <= set(p.svgs)
    assert p.scripts == 0 and not p.external
    layers = next(c for c in cert["checks"] if c["id"] == "layer_diff")["details"]["layers"]
    assert p.rows["layer-row"] == len(layers) == 137
    assert p.rows["image-row"] == len(cert["predictions"]["float32"]) == 18
    assert p.rows["check"] == len(cert["checks"])
    titles = {t.strip() for t in p.titles}
    assert titles == {cert["title"]}  # one title, the <title> and the <h1>
    assert all("DEMO" in t for t in titles)
    for text in p.row_text.get("image-row", []):
        assert text.split()[0].isdigit()
    # the load average is shown beside the latency it concerns
    load = next(c for c in cert["checks"] if c["id"] == "latency")["details"]["environment"]["load_average"]
    assert f"load average {load[0]:.2f}" in page
    # a CPU run shows no cuDNN or TF32 settings
    env_html = page.split("Environment (")[1]
    assert "cudnn" not in env_html.lower() and "tf32" not in env_html.lower()


def test_disagreements_are_listed_first(demo):
    from parity.certificate.page import to_html

    _, cert, _ = demo
    preds = cert["predictions"]["float32"]
    last = preds[-1]
    last["paddle"] = [(last["torch"][0] + 1) % 1000] + last["paddle"][1:]
    p = Page()
    p.feed(to_html(cert))
    rows = [r for r in p.row_text if "image-row" in r]
    assert p.rows["disagree"] == 1
    html = to_html(cert)
    first_row = html.index('class="image-row')
    assert html[first_row:].startswith('class="image-row disagree"')
    assert last["path"] in html[first_row:first_row + 400] and rows
