"""Every command's output read in an 80-column log: COLUMNS=80, stdout a pipe
(pytest's capture), no line longer than 80 characters, every module name of
the layer table in full or in its documented short form, every number in a
numeric column parseable."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from parity.commands.cli import main

WIDTH = 80
# docs/layers.md: the short form reads block.unit.part.layer (restated here, not imported)
SHORT_FORMS = [
    (r"^module_list\.(\d+)\.netblock$", r"\1"),
    (r"^module_list\.(\d+)$", r"\1"),
    (r"^module_list\.(\d+)\.(conv_list|shortcut_list)\.(\d+)\.(\d+)$", r"\1.\3.\2.\4"),
    (r"^module_list\.(\d+)\.unit_relu\.(\d+)$", r"\1.\2.unit_relu"),
]


def short_form(name: str) -> str:
    for pattern, repl in SHORT_FORMS:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return name


def test_short_forms_by_hand():
    assert short_form("module_list.4.conv_list.1.3") == "4.1.conv_list.3"
    assert short_form("module_list.3.shortcut_list.0.1") == "3.0.shortcut_list.1"
    assert short_form("module_list.4.unit_relu.2") == "4.2.unit_relu"
    assert short_form("module_list.1.netblock") == short_form("module_list.1") == "1"
    assert short_form("fc_linear") == "fc_linear"


@pytest.fixture(autouse=True)
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def assert_fits(text: str):
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"{len(long)} line(s) over {WIDTH} characters, the first: {long[0]!r}"
    assert not set(text) & set("─━│┃┏┓┗┛┡┩╇"), "box drawing in a log"


def table_rows(text: str, first_header: str):
    """(headers, rows) of the plain table whose header line starts with
    `first_header`: cells split on runs of two or more spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(first_header))
    headers = re.split(r"\s{2,}", lines[start].strip())
    assert set(lines[start + 1].replace(" ", "")) == {"-"}
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(headers):
            break
        rows.append(dict(zip(headers, cells)))
    return headers, rows


def parseable(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return cell == "-"


def test_layers(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["layers", "--random-weights", "--arch", "small", "--batch-size", "1", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert_fits(out)
    layers = json.loads(report.read_text())["layers"]
    headers, rows = table_rows(out, "#")
    assert len(rows) == len(layers) == 137
    assert "module" in headers and "verdict" in headers
    for layer, row in zip(layers, rows):
        assert row["module"] in (layer["torch_name"], short_form(layer["torch_name"]))
        assert row["verdict"] == ("pass" if layer["pass"] else row["verdict"])
        numeric = [h for h in headers if h not in ("module", "kind", "verdict", "shape")]
        assert numeric and all(parseable(row[h]) for h in numeric), row
        assert float(row["acc err"]) == pytest.approx(layer["paddle_error_f64"], rel=0.06)
    assert "Not shown at 80 columns" in out and "PASS: GENet_small" in out


def test_layers_wide_shows_every_column_and_full_names(capsys):
    assert main(["layers", "--random-weights", "--arch", "small", "--batch-size", "1", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "module_list.4.conv_list.1.3" in out and "cosine" in out and "Not shown" not in out


def test_bench(tmp_path, capsys):
    report = tmp_path / "b.json"
    assert main(["bench", "--arch", "small", "--framework", "torch", "--mode", "eager", "--batch-size", "1",
                 "--warmup", "0", "--iters", "2", "--no-floor", "--pipeline-workers", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert_fits(out)
    headers, rows = table_rows(out, "path")
    (row,) = rows
    assert row["path"] == "torch eager fp32" and row["logits"] == "reference"  # the bar itself: not judged
    for h in headers:
        if h not in ("path", "logits"):
            assert parseable(row[h]), (h, row[h])
    data = json.loads(report.read_text())
    assert float(row["ms/img"]) == pytest.approx(data["results"][0]["ms_per_image"]["median"], abs=0.006)
    assert len(data["results"][0]["iteration_ms"]) == 2
    assert "Load average" in out


def test_mapping_compact_and_full(capsys):
    from converters.table.mapping import mapping_table

    table = mapping_table("small")
    assert main(["mapping", "small"]) == 0
    out = capsys.readouterr().out
    assert_fits(out)
    _, rows = table_rows(out, "official module")
    modules = list(dict.fromkeys(r.module for r in table.rows))
    assert [r["official module"] for r in rows] == modules  # one line per module, not 1,679 lines
    assert len(out.splitlines()) < len(table.rows)
    assert main(["mapping", "small", "--full"]) == 0
    out = capsys.readouterr().out
    assert_fits(out)
    _, rows = table_rows(out, "official key")
    assert [r["official key"] for r in rows] == [r.official for r in table.rows]


def test_convert(tmp_path, capsys):
    from converters.cli import main as convert_main
    from converters.files.torch_format import write_torch
    from parity.core.seeded import seeded_state

    src = tmp_path / "GENet_small_seeded.pth"
    write_torch(seeded_state("small"), str(src))
    assert convert_main([str(src), str(tmp_path / "out.pdparams")]) == 0
    out = capsys.readouterr().out
    assert_fits(out)
    assert re.search(r"^verification\s+PASS$", out, re.M)
    m = re.search(r"^judged\s+paddle GENet_small \(paddle\): logits max abs error (\S+),\s+bound (\S+) ", out, re.M)
    assert float(m[1]) <= float(m[2])
    assert re.search(r"^tensors\s+272 read, 227 written$", out, re.M)


def test_eval(tmp_path, capsys):
    from parity.inputs.sample_images import bundled_photos

    (tmp_path / "img").mkdir()
    lines = []
    for i, p in enumerate(bundled_photos()[:4]):
        name = f"a_rather_long_directory_name_for_an_image_{i:02d}_{os.path.basename(p)}"
        shutil.copy(p, tmp_path / "img" / name)
        lines.append(f"{name} {i}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    assert main(["eval", "--seeded", "--arch", "small", "--data", str(tmp_path / "img"), "--list",
                 str(tmp_path / "val.txt"), "--batch-size", "2", "--workers", "0",
                 "--results", str(tmp_path / "r.jsonl")]) == 0
    captured = capsys.readouterr()
    assert_fits(captured.out)
    headers, rows = table_rows(captured.out, "framework")
    assert [r["framework"] for r in rows] == ["torch", "paddle"]
    assert all(parseable(r["top-1 %"]) and parseable(r["top-5 %"]) for r in rows)
    # progress in the log: a plain line per stage, with the elapsed time
    assert re.search(r"^\[\s*\d+\.\d s\] eval: .*4/4 images", captured.err, re.M), captured.err
