"""The rule's headroom measurement (`python -m parity.commands.headroom`) on a tiny case."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import torch_ref
from parity.commands import headroom
from parity.core.seeded import seeded_input, seeded_state
from parity.core.tolerances import FACTOR


def test_headroom_script_on_a_tiny_case(tmp_path, monkeypatch, capsys):
    out = tmp_path / "rule_headroom.json"
    monkeypatch.setattr(headroom, "lscpu_model", lambda: "Test CPU 1")
    assert headroom.main(["--out", str(out), "--archs", "small", "--batches", "1", "--inputs", "seeded",
                          "--dtypes", "float32", "--threads", "2"]) == 0
    data = json.loads(out.read_text())
    (run,) = data["machines"]["Test CPU 1"]["runs"]
    assert (run["arch"], run["batch"], run["input"], run["dtype"]) == ("small", 1, "seeded", "float32")
    layers = run["layers"]
    assert layers["passed"] is True
    for side in ("isolated", "accumulated"):
        d = layers[side]
        assert 0 < d["median"] <= d["p99"] <= d["max"] < FACTOR and d["n"] > 100
        assert d["max"] == max(d["max_by_kind"].values())
    # Where torch is exact (a ReLU fed torch's input) there is no ratio: counted apart, Paddle exact too.
    assert layers["isolated"]["torch_exact"] == layers["isolated"]["torch_exact_candidate_exact_too"] > 0

    # torch eager's own logits error, recomputed here in float64 by hand from torch_ref.
    state = seeded_state("small")
    x = seeded_input("small", 1)
    model = torch_ref.load_state(torch_ref.build("small"), state).eval()
    with torch.no_grad():
        t32 = model(torch.from_numpy(x)).numpy()
        f64 = model.double()(torch.from_numpy(x).double()).numpy()
    logits = run["logits"]
    assert logits["torch_eager_error"] == pytest.approx(float(np.max(np.abs(t32 - f64))), rel=1e-6)
    for p in logits["paths"].values():
        assert p["ratio"] == pytest.approx(p["error"] / logits["torch_eager_error"])

    s = data["summary"]
    ratios = [layers[side]["max"] for side in ("isolated", "accumulated")]
    ratios += [p["ratio"] for p in logits["paths"].values()]
    assert s["worst"]["ratio"] == max(ratios) and s["headroom"] == pytest.approx(FACTOR / max(ratios))
    assert s["cpus"] == ["Test CPU 1"] and "GENet_small batch 1 seeded float32" in s["worst"]["where"]
    assert f"{s['headroom']:.2g}x headroom" in capsys.readouterr().out


def test_other_cpus_are_kept_and_the_worst_is_over_all():
    machines = {
        "CPU A": {"runs": [{"arch": "small", "batch": 1, "input": "seeded", "dtype": "float32",
                            "layers": {"isolated": {"max": 2.0, "worst_layer": "x", "worst_kind": "conv"},
                                       "accumulated": {"max": 1.5, "worst_layer": "y", "worst_kind": "bn"}},
                            "logits": {"paths": {"paddle predictor": {"ratio": 1.2}}}}]},
        "CPU B": {"runs": [{"arch": "large", "batch": 32, "input": "photo", "dtype": "bfloat16", "layers": None,
                            "logits": {"paths": {"paddle predictor": {"ratio": 4.0},
                                                 "torch channels-last": {"ratio": None}}}}]},
    }
    s = headroom.summarize(machines)
    assert s["worst"] == {"ratio": 4.0, "where": "CPU B: GENet_large batch 32 photo bfloat16, logits of paddle "
                                                 "predictor"}
    assert s["headroom"] == FACTOR / 4.0 and s["cpus"] == ["CPU A", "CPU B"] and s["configurations"] == 2


def test_photo_inputs_mirror_beyond_the_bundled_photos():
    x = headroom.inputs_for("small", "photo", 17)
    assert x.shape == (17, 3, 192, 192) and x.dtype == np.float32
    np.testing.assert_array_equal(x[16], x[0][:, :, ::-1])


def test_bad_batch_is_exit_2(tmp_path, capsys):
    assert headroom.main(["--out", str(tmp_path / "h.json"), "--batches", "0"]) == 2
    assert "--batches must be >= 1" in capsys.readouterr().err


def test_markdown_table_of_a_measurement_file(tmp_path, capsys):
    run = {"arch": "small", "batch": 8, "input": "photo", "dtype": "float32",
           "layers": {"isolated": {"n": 111, "median": 1.1, "p99": 2.5, "max": 2.9},
                      "accumulated": {"n": 137, "median": 1.0, "p99": 1.6, "max": 3.4}},
           "logits": {"paths": {"paddle eager": {"ratio": 3.4}, "paddle predictor": {"ratio": 1.3}}}}
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"schema": headroom.SCHEMA, "machines": {"CPU A": {"runs": [run]}}}))
    assert headroom.main(["--out", str(path), "--markdown"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("| CPU A | small | float32 | 8 | photo | 111 | 1.10 / 2.50 / 2.90 | 1.00 / 1.60 / 3.40 | "
                    "3.40 (paddle eager) |")
    assert headroom.main(["--out", str(tmp_path / "none.json"), "--markdown"]) == 2
