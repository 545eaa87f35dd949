"""As a careless user: every command refuses an output that is one of its
inputs (by any name) before any work, and every bad input ends in exit 2 with
one line naming the file, never exit 3 or a hang."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.commands.cli import main
from parity.inputs.sample_images import bundled_photos


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("Error:")]
    assert len(errors) == 1 and "Internal error" not in "\n".join(err), err
    return errors[0]


@pytest.fixture
def inputs(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    lines = []
    for i, p in enumerate(bundled_photos()[:3]):
        shutil.copy(p, img / f"{i}.png")
        lines.append(f"{i}.png {i}")
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read: the refusal comes first")
    return {"img": str(img), "list": str(lst), "weights": str(weights), "tmp": tmp_path}


def unchanged(*paths):
    return {p: Path(p).read_bytes() for p in paths}


EVAL = ["eval", "--arch", "small", "--workers", "0", "--threads", "1"]


@pytest.mark.parametrize("target", ["list", "weights", "link_to_list", "dot_list"])
def test_eval_json_naming_an_input_is_refused_before_any_work(inputs, capsys, target):
    tmp = inputs["tmp"]
    os.symlink(inputs["list"], tmp / "link.txt")
    json_path = {"list": inputs["list"], "weights": inputs["weights"], "link_to_list": str(tmp / "link.txt"),
                 "dot_list": os.path.join(os.path.dirname(inputs["list"]), ".", "list.txt")}[target]
    before = unchanged(inputs["list"], inputs["weights"])
    code = main(EVAL + ["--weights", inputs["weights"], "--data", inputs["img"], "--list", inputs["list"],
                        "--json", json_path, "--results", str(tmp / "r.jsonl")])
    assert code == 2
    line = error_line(capsys)
    assert "--json names the same file as the input" in line and "nothing was written" in line
    assert unchanged(inputs["list"], inputs["weights"]) == before and not (tmp / "r.jsonl").exists()


def test_eval_json_equal_to_results_is_refused(inputs, capsys):
    r = str(inputs["tmp"] / "r.jsonl")
    assert main(EVAL + ["--seeded", "--data", inputs["img"], "--list", inputs["list"], "--json", r,
                        "--results", r]) == 2
    assert "--json names the same file as --results" in error_line(capsys)
    Path(r).write_text("x\n")
    before = unchanged(r)
    assert main(EVAL + ["--seeded", "--data", inputs["img"], "--list", inputs["list"], "--json", r,
                        "--results", r, "--resume"]) == 2
    assert "--json names the same file as the input --results" in error_line(capsys)
    assert unchanged(r) == before


def test_eval_output_naming_an_image_is_refused(inputs, capsys):
    image = os.path.join(inputs["img"], "0.png")
    before = unchanged(image)
    assert main(EVAL + ["--seeded", "--data", inputs["img"], "--list", inputs["list"], "--json", image,
                        "--results", str(inputs["tmp"] / "r.jsonl"), "--runner", "eager"]) == 2
    assert "--json names one of the images being evaluated" in error_line(capsys)
    assert unchanged(image) == before


@pytest.mark.parametrize("make, message", [
    (lambda t: "/dev/zero", "is a character device"),
    (lambda t: (os.mkfifo(t / "fifo"), str(t / "fifo"))[1], "is a FIFO"),
    (lambda t: str(t), "is a directory"),
])
def test_eval_list_that_is_not_a_regular_file(inputs, capsys, make, message):
    assert main(EVAL + ["--seeded", "--data", inputs["img"], "--list", make(inputs["tmp"]),
                        "--results", str(inputs["tmp"] / "r.jsonl")]) == 2
    assert message in error_line(capsys)


def test_merge_refuses_bad_shards_and_outputs(inputs, capsys):
    tmp = inputs["tmp"]
    os.mkfifo(tmp / "fifo")
    for shard, message in (("/dev/zero", "is a character device"), (str(tmp / "fifo"), "is a FIFO"),
                           (str(tmp), "is a directory"), (str(tmp / "none.jsonl"), "no such results file")):
        assert main(["merge", shard]) == 2, shard
        assert message in error_line(capsys)
    for text, message in (("null\n", "line 1 is null, not a record"), ("[]\n", "line 1 is list, not a record"),
                          ("\xff\n", "line 1 is not valid JSON")):
        (tmp / "bad.jsonl").write_text(text)
        assert main(["merge", str(tmp / "bad.jsonl")]) == 2
        assert message in error_line(capsys)
    shard = tmp / "s.jsonl"
    shard.write_text("kept\n")
    before = unchanged(shard)
    assert main(["merge", str(shard), "--json", str(shard)]) == 2
    assert "--json names the same file as the input shard" in error_line(capsys)
    assert unchanged(shard) == before


@pytest.mark.parametrize("command", [
    ["layers", "--random-weights", "--arch", "small", "--json", "{w}", "--weights", "{w}"],
    ["layers", "--weights", "{w}", "--html", "{w}"],
    ["layers", "--weights", "{w}", "--markdown", "{tmp}/m.md", "--html", "{tmp}/m.md"],
    ["train", "--weights", "{w}", "--json", "{w}"],
    ["bench", "--weights", "{w}", "--json", "{w}"],
    ["certify", "--weights", "{w}", "--data", "{img}", "--out", "{stem}"],
    ["certify", "--weights", "{w}", "--data", "{img}", "--list", "{list}", "--out", "{list_stem}"],
])
def test_every_command_refuses_a_report_naming_an_input(inputs, capsys, command):
    tmp = inputs["tmp"]
    fill = {"w": inputs["weights"], "tmp": str(tmp), "img": inputs["img"], "list": inputs["list"],
            "stem": os.path.splitext(inputs["weights"])[0] + ".pth",  # --out X writes X.pdparams, X.json, ...
            "list_stem": os.path.splitext(inputs["list"])[0]}
    # certify --out P writes P.json: make the weights file that name.
    if command[0] == "certify" and "{stem}" in command:
        shutil.copy(inputs["weights"], fill["stem"] + ".json")
        fill["w"] = fill["stem"] + ".json"
    if "{list_stem}" in command:
        os.rename(inputs["list"], fill["list_stem"] + ".html")
        fill["list"] = fill["list_stem"] + ".html"
    argv = [a.format(**fill) for a in command]
    before = unchanged(fill["w"])
    assert main(argv) == 2
    line = error_line(capsys)
    assert "names the same file as" in line
    assert unchanged(fill["w"]) == before


def test_zero_images_evaluated_is_a_failure(inputs, capsys):
    for f in Path(inputs["img"]).iterdir():
        f.write_bytes(b"not an image")
    code = main(EVAL + ["--seeded", "--runner", "eager", "--data", inputs["img"], "--list", inputs["list"],
                        "--skip-bad", "--results", str(inputs["tmp"] / "r.jsonl")])
    assert code == 2
    assert "no image was evaluated (3 of 3 failed to decode)" in error_line(capsys)


def test_a_non_utf8_image_name_in_the_folder_layout_is_exit_2(inputs, capsys):
    root = inputs["tmp"] / "val"
    (root / "c0").mkdir(parents=True)
    shutil.copy(bundled_photos()[0], os.path.join(str(root / "c0"), os.fsdecode(b"x\xff.png")))
    assert main(EVAL + ["--seeded", "--data", str(root), "--results", str(inputs["tmp"] / "r.jsonl")]) == 2
    assert "is not valid UTF-8" in error_line(capsys)


def test_a_json_summary_that_cannot_be_written_names_the_file(inputs, capsys):
    from parity.accuracy.evaluate import evaluate
    from parity.accuracy.summary import make_header
    from parity.inputs.data import open_dataset

    class Fixed:
        label = "stand-in"

        def __call__(self, x):
            return np.eye(1000, dtype=np.float32)[: len(x)]

    ds = open_dataset(inputs["img"], inputs["list"])
    r = str(inputs["tmp"] / "r.jsonl")
    header = make_header("small", "float32", "cpu", {"torch": Fixed()}, {"source": "x"}, ds, None, None, len(ds))
    evaluate({"torch": Fixed()}, ds, ds.samples, header, r)
    assert main(["merge", r, "--json", "/proc/version/m.json"]) == 2
    assert "/proc/version/m.json: could not be written" in error_line(capsys)
