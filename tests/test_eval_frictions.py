"""eval's first minutes as a new user meets them: a relative --list found
beside the data (and said so), a default results file named after the data
and kept beside --json, and a results file that already holds a run refused
before any model is built."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from parity.commands.cli import main
from parity.commands.eval_cmd import default_results_path
from parity.inputs.data import DataError, resolve_list
from parity.inputs.sample_images import bundled_photos

EVAL = ["eval", "--arch", "small", "--seeded", "--workers", "0", "--threads", "1", "--runner", "eager"]


@pytest.fixture
def val(tmp_path):
    root = tmp_path / "val"
    root.mkdir()
    for i, p in enumerate(bundled_photos()[:2]):
        shutil.copy(p, root / f"{i}.png")
    (root / "val_list.txt").write_text("0.png 3\n1.png 7\n")
    return root


def test_a_relative_list_is_read_from_the_data_folder_when_not_here(val, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, note = resolve_list("val_list.txt", str(val))
    assert path == os.path.join(str(val), "val_list.txt")
    assert "not in the current directory" in note and "relative to --data" in note
    (tmp_path / "val_list.txt").write_text("0.png 1\n")
    assert resolve_list("val_list.txt", str(val)) == ("val_list.txt", None)  # the current directory comes first
    assert resolve_list(None, str(val)) == (None, None)


def test_a_list_found_nowhere_names_both_places(val, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        resolve_list("nope.txt", str(val))
    message = str(e.value)
    assert str(tmp_path) in message and os.path.join(str(val), "nope.txt") in message


def test_default_results_name_says_which_data_and_sits_beside_json(tmp_path):
    class Args:
        list = "/x/val_list.txt"
        data = "/data/val"
        json = None

    assert default_results_path("small", "float32", None, Args) == "genet_eval_small_float32_val_list.jsonl"
    Args.list, Args.json = None, str(tmp_path / "out" / "s.json")
    assert default_results_path("small", "float32", (1, 4), Args) == \
        str(tmp_path / "out" / "genet_eval_small_float32_val_shard1of4.jsonl")
    Args.data = "/data/my val (2)/"
    assert os.path.basename(default_results_path("small", "float32", None, Args)) == \
        "genet_eval_small_float32_my-val-2.jsonl"


def test_existing_results_are_refused_before_any_model_is_built(val, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    results.write_text('{"a previous run": 1}\n')
    before = results.read_bytes()
    started = time.perf_counter()
    code = main(EVAL + ["--data", str(val), "--list", "val_list.txt", "--results", str(results)])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2 and "already exists; pass --resume" in err
    assert "building the runners" not in err and "reading the weights" not in err  # refused first
    assert results.read_bytes() == before and elapsed < 30


def test_the_list_beside_the_data_is_used_and_said(val, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o").mkdir()
    code = main(EVAL + ["--data", str(val), "--list", "val_list.txt", "--framework", "torch",
                        "--json", str(tmp_path / "o" / "s.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "relative to --data" in err
    written = tmp_path / "o" / "genet_eval_small_float32_val_list.jsonl"
    assert written.exists() and not (tmp_path / "genet_eval_small_float32_val_list.jsonl").exists()
