"""`genet-parity layers` end to end: weight files in, exit codes and report files out."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.files.pdparams import write_pdparams
from converters.files.torch_format import write_torch
from converters.table.mapping import mapping_table
from parity.commands.cli import main
from parity.core.seeded import seeded_state


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The small model's seeded weights as an official .pth, and a .pdparams
    converted from them with one conv of stage 3 zeroed."""
    d = tmp_path_factory.mktemp("layers")
    arch = "small"
    state = seeded_state(arch)
    table = mapping_table(arch)
    conv = [m for m in table.modules if m.kind == "conv" and m.node.site.stage == 3][2]
    key = next(r.paddle for r in table.rows if r.module == conv.official and r.role == "weight")
    paddle_state = table.convert(state, "official", "paddle")
    paddle_state[key] = np.zeros_like(paddle_state[key])
    write_torch(state, str(d / "small.pth"))
    write_pdparams(paddle_state, str(d / "broken.pdparams"))
    return d, conv


def test_fault_exits_1_and_every_report_names_the_layer(files, capsys):
    d, conv = files
    out = {ext: str(d / f"report.{ext}") for ext in ("json", "html", "md")}
    rc = main(["layers", "--weights", str(d / "small.pth"), "--pdparams", str(d / "broken.pdparams"),
               "--json", out["json"], "--html", out["html"], "--markdown", out["md"]])
    printed = capsys.readouterr().out
    assert rc == 1
    assert f"first divergent: {conv.official}" in " ".join(printed.split())
    j = json.loads(_read(out["json"]))
    assert j["pass"] is False and j["first_divergent"]["torch_name"] == conv.official
    assert j["weights"]["torch"]["layout"] == "official" and j["weights"]["paddle"]["layout"] == "paddle"
    assert len(j["weights"]["paddle"]["sha256"]) == 64
    assert f"first divergent: {conv.official}" in _read(out["html"])
    assert conv.official in _read(out["md"]).split("Failing layers:")[1]


def test_clean_weights_on_images_exit_0(files, tmp_path, capsys):
    from PIL import Image

    d, _ = files
    paths = []
    for k, size in enumerate(((300, 240), (180, 260))):
        rng = np.random.default_rng(k)
        img = Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8))
        paths.append(str(tmp_path / f"img{k}.png"))
        img.save(paths[-1])
    j = str(tmp_path / "r.json")
    rc = main(["layers", "--weights", str(d / "small.pth"), "--image", *paths, "--json", j, "--summary-only"])
    assert rc == 0, capsys.readouterr()
    r = json.loads(_read(j))
    assert r["pass"] is True and r["first_divergent"] is None
    assert r["input"]["source"] == "images" and r["input"]["shape"] == [2, 3, 192, 192]
    assert r["weights"]["paddle"]["converted_from"] == "torch"


@pytest.mark.parametrize("argv, message", [
    (["layers", "--arch", "small"], "no weights"),
    (["layers", "--random-weights"], "needs --arch"),
    (["layers", "--random-weights", "--arch", "small", "--atol", "1e-3"], "together"),
    (["layers", "--random-weights", "--arch", "tiny"], "tiny"),
])
def test_bad_options_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_weights_of_another_arch_exit_2(files, capsys):
    d, _ = files
    assert main(["layers", "--weights", str(d / "small.pth"), "--arch", "large"]) == 2
    err = capsys.readouterr().err
    assert "small.pth" in err and "large" in err


def test_unreadable_image_exit_2(files, tmp_path, capsys):
    d, _ = files
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"no image here")
    assert main(["layers", "--weights", str(d / "small.pth"), "--image", str(bad)]) == 2
    assert "not-an-image.jpg" in capsys.readouterr().err


def test_gpu_without_cuda_exit_2(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["layers", "--random-weights", "--arch", "small", "--device", "gpu"]) == 2
    assert "--device gpu" in capsys.readouterr().err
