"""The certificate page on a phone and a desktop: rendered by headless
Chromium at 390 and 1280 px, its screenshots checked, and a measuring script
(added to a copy of the page, never to the page itself) reports where the
status badges lie, how wide the page is and how large the figures' text is
drawn. Also: the warning beside a latency figure timed on a busy machine."""
from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from parity.certificate import page
from parity.certificate.page import FIGURE_MIN_WIDTH, STYLE, print_certificate, to_html
from parity.latency import contention

MIN_TEXT_PX = 10  # figure text below this is unreadable on a phone

MEASURE = """<script>
(function () {
  function box(e) { var r = e.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width}; }
  var fonts = [];
  document.querySelectorAll('figure svg').forEach(function (svg) {
    var scale = svg.getScreenCTM().a;
    svg.querySelectorAll('text').forEach(function (t) {
      fonts.push(parseFloat(getComputedStyle(t).fontSize) * scale);
    });
  });
  var out = {width: window.innerWidth, scroll_width: document.documentElement.scrollWidth,
             badges: Array.from(document.querySelectorAll('table.checks .badge')).map(box),
             values: Array.from(document.querySelectorAll('table.checks td[data-label=value]')).map(box),
             fonts: fonts};
  parent.document.getElementById('measure').textContent = JSON.stringify(out);
})();
</script>"""


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium on PATH (chromium, chromium-browser or google-chrome): the page's layout "
                "at 390 and 1280 px is checked only where one is installed (Debian: apt-get install chromium)")


def run_chromium(args, width, height=2400):
    # --no-sandbox: Chromium refuses to run as root otherwise (containers, CI)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--window-size={width},{height}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def measure(html_text, tmp_path, width):
    """The page in a `width`-px frame (headless Chromium's --dump-dom window is
    never narrower than 500 px; a frame is), measured by MEASURE."""
    inner = html_text.replace("</body>", MEASURE + "</body>")
    path = tmp_path / f"measure_{width}.html"
    path.write_text(f'<!DOCTYPE html><html><body style="margin:0"><iframe style="border:0;width:{width}px;'
                    f'height:2400px" srcdoc="{html.escape(inner, quote=True)}"></iframe><pre id="measure"></pre>'
                    "</body></html>")
    proc = run_chromium(["--dump-dom", path.as_uri()], 1400)
    m = re.search(r'<pre id="measure">(.*?)</pre>', proc.stdout, re.S)
    assert m and m.group(1), (proc.returncode, proc.stderr[-2000:])
    return json.loads(html.unescape(m.group(1)))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.fixture(scope="module")
def html_page(demo_certificate):
    return to_html(demo_certificate[0])


def test_the_page_declares_a_viewport_and_titles_every_figure(html_page):
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html_page
    assert "<script" not in html_page
    latency = html_page[html_page.index('id="fig-latency"'):]
    latency = latency[:latency.index("</svg>")]
    assert re.search(r'<text [^>]*font-weight="600">latency per image of every timed path</text>', latency)
    # synthetic labels: the top-1 panel says what its numbers are
    assert "top-1, SYNTHETIC labels, 95% interval" in html_page and "% matching the synthetic labels" in html_page


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_at_phone_and_desktop_width(html_page, tmp_path, width):
    path = tmp_path / "certificate.html"
    path.write_text(html_page)
    shot = tmp_path / f"shot_{width}.png"
    proc = run_chromium([f"--screenshot={shot}", path.as_uri()], width, 1600)
    assert shot.exists(), proc.stderr[-2000:]
    assert png_size(shot) == (width, 1600)
    from PIL import Image

    with Image.open(shot) as im:  # not a blank page: text, badges and the verdict's colours
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50

    m = measure(html_page, tmp_path, width)
    assert m["width"] == width
    assert m["scroll_width"] <= width, "the page itself scrolls sideways: something does not fit"
    assert len(m["badges"]) == len(html_page.split('<table class="checks">')[1].split("</table>")[0]
                                   .split("<tr")) - 2  # one badge per check (less the header row)
    for b in m["badges"]:  # every status is on screen, and not squeezed to nothing
        assert 0 <= b["left"] and b["right"] <= width and b["width"] >= 30, b
    for v in m["values"]:  # the measured values are readable, not a column one character wide
        assert v["width"] >= (250 if width == 390 else 150), v
    assert m["fonts"] and min(m["fonts"]) >= MIN_TEXT_PX, min(m["fonts"])


def test_the_measurement_catches_the_page_without_its_narrow_layout(html_page, tmp_path):
    """The old page (no viewport, no reflow, figures shrinking with the screen)
    fails the same measurement: the checks above can fail."""
    narrow = STYLE[STYLE.index("@media"):]  # the phone layout closes the style sheet
    assert narrow.endswith("}}") and narrow in html_page
    old = html_page.replace(narrow, "").replace(f"figure .scroll svg{{min-width:{FIGURE_MIN_WIDTH}px}}", "")
    assert old != html_page
    m = measure(old, tmp_path, 390)
    squeezed = any(b["right"] > 390 for b in m["badges"]) or any(v["width"] < 250 for v in m["values"])
    assert squeezed and min(m["fonts"]) < MIN_TEXT_PX


# ---------------------------------------------------------------- a busy machine
def latency_data(other_per_core=None, load=None):
    env = {"cpu_count": 2, "load_average": load or [0.1, 0.1, 0.1], "load_average_end": load or [0.2, 0.1, 0.1]}
    if other_per_core is not None:
        env["other_load"] = {"cores_busy": 2 * other_per_core, "per_core": other_per_core, "cpu_count": 2,
                             "seconds": 10.0, "source": "test"}
    return {"environment": env}


@pytest.mark.parametrize("data, unreliable", [
    (latency_data(other_per_core=0.1), False),
    (latency_data(other_per_core=0.25), False),  # at the threshold: still allowed
    (latency_data(other_per_core=0.6), True),
    # the measure wins over the load average, which counts the benchmark's own threads
    (latency_data(other_per_core=0.0, load=[3.9, 2.0, 1.0]), False),
    # records without the measure: the load average per core, above what the benchmark alone causes
    (latency_data(load=[2.9, 1.0, 1.0]), False),
    (latency_data(load=[3.2, 1.0, 1.0]), True),
])
def test_caution_follows_the_recorded_load(data, unreliable):
    text = contention.caution(data)
    assert (text is not None) == unreliable, text
    if unreliable:
        assert text.startswith("UNRELIABLE") and "2 cores" in text


def test_other_load_is_busy_time_less_this_process():
    # 3 busy core-seconds in 2 s, 1.5 of them this process's: 0.75 cores of other work
    got = contention.other_load({"wall": 10.0, "busy": 100.0, "own": 5.0}, {"wall": 12.0, "busy": 103.0, "own": 6.5})
    assert got["cores_busy"] == pytest.approx(0.75) and got["per_core"] == pytest.approx(0.75 / os.cpu_count())
    assert contention.other_load({"wall": 0.0, "busy": None, "own": 0.0}, {"wall": 1.0, "busy": None, "own": 0}) \
        is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the busy-time counters are Linux's /proc/stat")
def test_other_load_sees_another_process_burning_a_core():
    """A child spinning for the whole window (not yet reaped, so not this
    process's time) shows as about one core of other work: at least 0.5,
    whatever else the machine runs."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"])
    try:
        time.sleep(0.5)  # the child has started spinning
        start = contention.reading()
        time.sleep(1.5)
        got = contention.other_load(start)
    finally:
        child.kill()
        child.wait()
    assert got["cores_busy"] >= 0.5, got


def test_a_busy_machine_is_said_beside_the_figure_and_in_the_text(demo_certificate, monkeypatch):
    import io

    import parity.latency.bench as bench
    from parity.certificate.options import CertifyOptions
    from parity.certificate.steps import latency_step
    from parity.core.textout import Out

    cert = copy.deepcopy(demo_certificate[0])
    lat = next(c for c in cert["checks"] if c["id"] == "latency")
    other = lat["details"]["environment"]["other_load"]
    assert other["source"].startswith("/proc/stat") and other["cpu_count"] == os.cpu_count()  # recorded
    other.update(cores_busy=1.6, per_core=0.8, cpu_count=2)
    busy = page.to_html(cert)
    assert 'id="latency-caution"' in busy and "other work kept 1.60 of 2 cores busy" in busy
    # beside the latency figure: after its svg, before the next figure
    assert busy.index('id="fig-latency"') < busy.index('id="latency-caution"') < busy.index('id="fig-accuracy"')

    # the certificate's own latency row (JSON and terminal) says the same
    monkeypatch.setattr(bench, "measure_latency", lambda *a, **k: lat["details"])
    opts = CertifyOptions(arch="small", weights=None, data="", list_file=None, out_prefix="x")
    row = latency_step("small", opts, None, lambda m: None)
    assert row.reason.startswith("UNRELIABLE") and "other work kept 1.60 of 2 cores busy" in row.measured
    lat["reason"] = row.reason
    buf = io.StringIO()
    print_certificate(cert, Out(buf, width=100, terminal=False))
    assert "UNRELIABLE: other work kept 1.60 of 2 cores" in " ".join(buf.getvalue().split())

    other.update(cores_busy=0.1, per_core=0.05)
    assert 'id="latency-caution"' not in page.to_html(cert)
    assert latency_step("small", opts, None, lambda m: None).reason == ""
