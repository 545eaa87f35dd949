"""Fine-tuned checkpoints everywhere: a 10-class GENet_small and GENet_large,
fine-tuned in the test with torch_ref from seeded weights (the README's
recipe: pretrained model, new head, one SGD step), saved the ways people keep
them (official `{'state_dict': sd}`, timm's bare state dict, Paddle's
`paddle.save`), go through genet-convert (both ways, verified), the layer
diff, eval on generated images with 10 labels, the training-parity command,
certify and both `build(..., pretrained=...)`; training checkpoints with EMA
weights convert the state dict asked for; a state dict cast with `.half()`
converts. Large-model cases are few and run at batch 1-2."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from converters.table.errors import CheckpointError
from converters.table.mapping import mapping_table
from parity.core.seeded import seeded_state

CLASSES = 10
ARCHS = ("small", "large")


def _torch_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _fine_tune(arch: str, folder) -> dict:
    """torch_ref.build(arch, num_classes=10, pretrained=<seeded 1000-class
    file>), one SGD step in train mode on seeded data: the official-layout
    state of a fine-tuned model (BN statistics and step counters moved too)."""
    import torch

    import torch_ref
    from converters.files.torch_format import write_torch
    from parity.core.seeded import seeded_input

    pretrained = os.path.join(folder, f"GENet_{arch}_imagenet.pth")
    write_torch(seeded_state(arch), pretrained)
    torch.manual_seed(0)
    model = torch_ref.build(arch, num_classes=CLASSES, pretrained=pretrained).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.from_numpy(seeded_input(arch, 2))
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([3, 7]), label_smoothing=0.1)
    loss.backward()
    opt.step()
    os.remove(pretrained)
    return model.eval()


@pytest.fixture(scope="module", params=ARCHS)
def ckpt(request, tmp_path_factory):
    """{arch, state (official arrays), official/timm/paddle file paths} of the fine-tuned model."""
    import paddle
    import torch

    import paddle_genet

    arch = request.param
    d = tmp_path_factory.mktemp(f"finetuned_{arch}")
    model = _fine_tune(arch, str(d))
    state = _torch_state(model)
    table = mapping_table(arch, CLASSES)
    files = {"official": str(d / "official.pth"), "timm": str(d / "timm.pth"), "paddle": str(d / "model.pdparams")}
    torch.save({"state_dict": model.state_dict()}, files["official"])  # the official code's way
    torch.save({k: torch.from_numpy(v) for k, v in table.convert(state, "official", "timm").items()}, files["timm"])
    p_model = paddle_genet.load_state(paddle_genet.build(arch, CLASSES), table.convert(state, "official", "paddle"))
    paddle.save(p_model.state_dict(), files["paddle"])  # the Paddle reproduction's way
    return {"arch": arch, "state": state, "dir": d, **files}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The fine-tuned GENet_small alone, for the cases run on one arch."""
    import torch

    d = tmp_path_factory.mktemp("finetuned_small_only")
    model = _fine_tune("small", str(d))
    path = str(d / "official.pth")
    torch.save({"state_dict": model.state_dict()}, path)
    pdparams = str(d / "model.pdparams")
    from converters.files.pdparams import write_pdparams

    write_pdparams(mapping_table("small", CLASSES).convert(_torch_state(model), "official", "paddle"), pdparams)
    return {"arch": "small", "state": _torch_state(model), "dir": d, "official": path, "paddle": pdparams}


def _trained(key):
    return not key.endswith("num_batches_tracked")


def _convert(argv, capsys):
    from converters.cli import main

    rc = main(argv + ["--json"])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# ---------------------------------------------------------------- the table and the layouts

@pytest.mark.parametrize("num_classes", [1, CLASSES, 1920])
def test_mapping_table_takes_any_head_and_nothing_else_changes(num_classes):
    base, table = mapping_table("small"), mapping_table("small", num_classes)
    assert len(base.rows) == len(table.rows)
    for a, b in zip(base.rows, table.rows):
        if a.module == "fc_linear":
            want = (num_classes, 1920) if a.role == "weight" else (num_classes,)
            assert b.torch_shape == want and b.paddle_shape == (tuple(reversed(want)) if a.role == "weight" else want)
        else:
            assert a == b
    assert table.version != base.version  # the provenance names the table of this head


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_a_head_of_no_classes_is_refused(bad):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        mapping_table("small", bad)


def test_mapping_command_prints_the_table_of_a_head(capsys):
    from parity.commands.cli import main

    assert main(["mapping", "small", "--num-classes", str(CLASSES), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    fc = {r["official"]: r for r in d["rows"] if r["official"].startswith("fc_linear.")}
    assert d["num_classes"] == CLASSES and fc["fc_linear.weight"]["torch_shape"] == [CLASSES, 1920]
    assert fc["fc_linear.weight"]["paddle_shape"] == [1920, CLASSES] and fc["fc_linear.bias"]["torch_shape"] == [CLASSES]
    assert main(["mapping", "small", "--num-classes", "0"]) == 2
    assert "--num-classes: num_classes must be an integer >= 1" in capsys.readouterr().err


def test_every_layout_is_read_with_its_head(ckpt):
    from converters.files.load import load_weights

    for layout in ("official", "timm", "paddle"):
        w = load_weights(ckpt[layout])
        assert (w.arch, w.layout, w.num_classes) == (ckpt["arch"], layout, CLASSES)


def test_a_head_whose_bias_disagrees_or_that_is_missing_is_refused_by_name(small, tmp_path):
    from converters.files.torch_format import write_torch
    from converters.files.load import load_weights

    state = dict(small["state"])
    state["fc_linear.bias"] = np.zeros(CLASSES + 1, np.float32)
    write_torch(state, str(tmp_path / "bias.pth"))
    with pytest.raises(CheckpointError, match=r"fc_linear.bias: expected \(10,\), got \(11,\)"):
        load_weights(str(tmp_path / "bias.pth"))
    state["fc_linear.bias"] = small["state"]["fc_linear.bias"]
    state["fc_linear.weight"] = np.ascontiguousarray(state["fc_linear.weight"].T)
    write_torch(state, str(tmp_path / "transposed.pth"))
    with pytest.raises(CheckpointError, match=r"fc_linear.weight: expected \(10, 1920\), got \(1920, 10\) "
                                              r"\(transposed\?\)"):
        load_weights(str(tmp_path / "transposed.pth"))
    headless = {k: v for k, v in small["state"].items() if not k.startswith("fc_linear.")}
    write_torch(headless, str(tmp_path / "headless.pth"))
    with pytest.raises(CheckpointError, match=r"Missing \(2\): fc_linear.weight.*fc_linear.bias"):
        load_weights(str(tmp_path / "headless.pth"))


# ---------------------------------------------------------------- genet-convert

def test_convert_both_ways_verified(ckpt, capsys):
    """official .pth -> .pdparams -> official .pth: verified each way, the
    head read from the file and recorded, every tensor back bit for bit."""
    from converters.files.checkpoint import read_torch
    from converters.files.pdparams import read_pdparams

    d, state = ckpt["dir"], ckpt["state"]
    rc, there = _convert([ckpt["official"], str(d / "out.pdparams"), "--force"], capsys)
    assert rc == 0 and there["verification"]["passed"] and there["num_classes"] == CLASSES
    pd = read_pdparams(str(d / "out.pdparams"))
    assert np.array_equal(pd["fc_linear.weight"], state["fc_linear.weight"].T)
    assert pd["fc_linear.weight"].shape == (state["fc_linear.weight"].shape[1], CLASSES)
    with open(str(d / "out.pdparams.json")) as f:
        record = json.load(f)
    assert record["num_classes"] == CLASSES and record["source"]["state_dict"]["key"] == "state_dict"
    assert record["mapping_table_version"] == mapping_table(ckpt["arch"], CLASSES).version != \
        mapping_table(ckpt["arch"]).version
    rc, back = _convert([str(d / "out.pdparams"), str(d / "back.pth"), "--force"], capsys)
    assert rc == 0 and back["verification"]["passed"] and back["num_classes"] == CLASSES
    again = read_torch(str(d / "back.pth"))
    assert list(again) == list(state)
    for k, v in state.items():
        if _trained(k):
            assert again[k].dtype == v.dtype and np.array_equal(again[k], v), k


def test_timm_and_paddle_saved_files_convert_verified(ckpt, capsys):
    d = ckpt["dir"]
    sources = [("timm", ".safetensors")] + ([("paddle", ".pth")] if ckpt["arch"] == "small" else [])
    for layout, ext in sources:
        rc, result = _convert([ckpt[layout], str(d / f"from_{layout}{ext}"), "--force"], capsys)
        assert rc == 0 and result["verification"]["passed"], layout
        assert (result["src_layout"], result["num_classes"]) == (layout, CLASSES)


# ---------------------------------------------------------------- layers, eval, train, certify

def test_layer_diff_of_the_finetuned_model(ckpt, tmp_path, capsys):
    from parity.commands.cli import main

    argv = ["layers", "--weights", ckpt["official"], "--batch-size", "1", "--summary-only",
            "--json", str(tmp_path / "layers.json")]
    if ckpt["arch"] == "small":
        argv += ["--pdparams", ckpt["paddle"]]
    assert main(argv) == 0, capsys.readouterr().err
    d = json.loads((tmp_path / "layers.json").read_text())
    assert d["pass"] and d["num_classes"] == CLASSES and d["coverage"]["missing"] == []
    assert d["layers"][-1]["torch_name"] == "fc_linear" and d["weights"]["torch"]["num_classes"] == CLASSES
    assert f"GENet_{ckpt['arch']} ({CLASSES}-class head)" in " ".join(capsys.readouterr().out.split())


def _images(folder, n, size=(72, 88)):
    """`n` generated RGB images (seeded noise over a gradient), as PNG files."""
    rng = np.random.default_rng(7)
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(n):
        ramp = np.linspace(0, 255, size[1])[None, :, None] * np.array([1.0, 0.5, 0.2]) * (i + 1) / n
        pixels = np.clip(ramp + rng.normal(0, 40, (size[0], size[1], 3)), 0, 255).astype(np.uint8)
        name = f"img{i}.png"
        Image.fromarray(pixels).save(os.path.join(folder, name))
        names.append(name)
    return names


def _torch_top1(arch, state, paths):
    """Independent of the eval loop: torch_ref on each image's official preprocessing."""
    import torch

    import torch_ref
    from parity.inputs.preprocessing import preprocess

    model = torch_ref.load_state(torch_ref.build(arch, CLASSES), state)
    x = []
    for p in paths:
        with Image.open(p) as im:
            x.append(preprocess(im.convert("RGB"), arch))
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(x))).numpy().argmax(axis=1)


def test_eval_on_ten_labels(ckpt, tmp_path, capsys):
    """Generated images listed with labels 0-9: the first half labelled with
    torch_ref's own prediction, the rest not, so top-1 is exactly 50% in both
    frameworks. GENet_small on the fast paths (the Paddle predictor export),
    GENet_large eager."""
    from parity.commands.cli import main

    arch, n = ckpt["arch"], 4 if ckpt["arch"] == "small" else 2
    names = _images(str(tmp_path / "img"), n)
    top1 = _torch_top1(arch, ckpt["state"], [str(tmp_path / "img" / x) for x in names])
    labels = [int(t) if i < n // 2 else (int(t) + 1) % CLASSES for i, t in enumerate(top1)]
    (tmp_path / "list.txt").write_text("".join(f"{x} {y}\n" for x, y in zip(names, labels)))
    rc = main(["eval", "--weights", ckpt["official"], "--data", str(tmp_path / "img"), "--list",
               str(tmp_path / "list.txt"), "--workers", "0", "--batch-size", str(n), "--runner",
               "fast" if arch == "small" else "eager", "--results", str(tmp_path / "r.jsonl"),
               "--json", str(tmp_path / "s.json")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["num_classes"] == CLASSES and s["weights"]["num_classes"] == CLASSES
    assert s["top1"] == {"torch": 50.0, "paddle": 50.0} and s["agreement_top1"] == 100.0
    assert s["logit_checks_pass"] is True
    if arch == "small":
        assert "predictor" in s["runners"]["paddle"], s["runners"]
    assert f"({CLASSES}-class head)" in captured.out


def test_eval_labels_are_checked_against_the_head(small, tmp_path, capsys):
    from parity.commands.cli import main

    names = _images(str(tmp_path / "img"), 2)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{names[0]} 9\n{names[1]} {CLASSES}\n")
    base = ["eval", "--weights", small["official"], "--workers", "0", "--runner", "eager"]
    assert main(base + ["--data", str(tmp_path / "img"), "--list", str(lst)]) == 2
    err = capsys.readouterr().err
    assert str(lst) in err and f"line 2: label {CLASSES} outside [0, {CLASSES})" in err

    folders = tmp_path / "folders"
    for c in range(4):
        _images(str(folders / f"class{c}"), 1)
    rc = main(base + ["--data", str(folders), "--results", str(tmp_path / "f.jsonl"), "--json",
                      str(tmp_path / "f.json")])
    assert rc == 0
    assert f"4 class folders: labels 0-3 of a {CLASSES}-class head" in capsys.readouterr().err
    assert json.loads((tmp_path / "f.json").read_text())["dataset_note"].startswith("4 class folders")
    for c in range(4, CLASSES + 1):
        _images(str(folders / f"class{c}"), 1)
    assert main(base + ["--data", str(folders), "--results", str(tmp_path / "g.jsonl")]) == 2
    assert f"has {CLASSES + 1} class folders, the model has {CLASSES} classes" in capsys.readouterr().err


def test_training_continues_from_the_finetuned_checkpoint(ckpt, tmp_path, capsys):
    """One more step in both frameworks with its own 10-class head, judged by
    the training-parity command; GENet_small also from the Paddle file with a
    new 5-class head."""
    from parity.commands.cli import main

    runs = [(ckpt["official"], None)] + ([(ckpt["paddle"], 5)] if ckpt["arch"] == "small" else [])
    for weights, new_head in runs:
        out = str(tmp_path / "train.json")
        argv = ["train", "--weights", weights, "--steps", "1", "--random-input", "--summary-only",
                "--batch-size", "2" if ckpt["arch"] == "small" and not new_head else "1", "--json", out]
        assert main(argv + (["--num-classes", str(new_head)] if new_head else [])) == 0, capsys.readouterr().out
        with open(out) as f:
            d = json.load(f)
        assert d["pass"] and d["head"]["checkpoint_classes"] == CLASSES
        if new_head:
            assert d["num_classes"] == new_head and d["head"]["replaced"] == ["fc_linear.weight", "fc_linear.bias"]
        else:
            assert d["num_classes"] == CLASSES and d["head"]["replaced"] == []
            assert any(c["name"] == "fc_linear.weight" and c["phase"] == "backward" for c in d["checks"])
    capsys.readouterr()


def test_python_api_builds_the_finetuned_model_in_both_frameworks(ckpt):
    import paddle_genet
    import torch_ref

    state = ckpt["state"]
    t = torch_ref.build(ckpt["arch"], pretrained=ckpt["paddle"])  # the head's size comes from the file
    assert t.fc_linear.out_features == CLASSES and t.load_report.replaced == []
    own = _torch_state(t)
    assert all(np.array_equal(own[k], v) for k, v in state.items() if _trained(k))
    p = paddle_genet.build(ckpt["arch"], num_classes=CLASSES, pretrained=ckpt["official"])
    assert np.array_equal(p.fc_linear.weight.numpy(), state["fc_linear.weight"].T)
    new = torch_ref.build(ckpt["arch"], num_classes=3, pretrained=ckpt["timm"])
    assert new.load_report.replaced == ["fc_linear.weight", "fc_linear.bias"]
    assert "(10 -> 3 classes" in str(new.load_report)
    with pytest.raises(CheckpointError, match=r"has a 10-class head, the model 1000 classes"):
        torch_ref.load_state(torch_ref.build(ckpt["arch"]), state)


def test_certify_a_finetuned_checkpoint(small, tmp_path, capsys):
    from parity.commands.cli import main

    names = _images(str(tmp_path / "img"), 2)
    (tmp_path / "list.txt").write_text(f"{names[0]} 3\n{names[1]} 9\n")
    prefix = str(tmp_path / "cert")
    main(["certify", "--weights", small["official"], "--data", str(tmp_path / "img"), "--list",
          str(tmp_path / "list.txt"), "--out", prefix, "--no-bench", "--workers", "0", "--runner", "eager"])
    capsys.readouterr()
    with open(prefix + ".json") as f:
        cert = json.load(f)
    status = {c["id"]: c for c in cert["checks"]}
    assert cert["num_classes"] == CLASSES and f"({CLASSES}-class head)" in cert["title"]
    assert status["conversion"]["status"] == "PASS" and status["layer_diff"]["status"] == "PASS"
    assert status["logits_float32"]["status"] == "PASS"
    published = status["torch_top1_vs_published_float32"]
    assert published["status"] == "N/A" and "10-class head" in published["reason"]


# ---------------------------------------------------------------- training checkpoints: EMA, .half()

@pytest.fixture(scope="module")
def ema_checkpoint(small):
    """timm's training checkpoint: raw and EMA weights (different numbers),
    optimizer state and counters beside them."""
    import torch

    raw = small["state"]
    rng = np.random.default_rng(5)
    ema = {k: (v + rng.standard_normal(v.shape).astype(v.dtype) * 0.01) if v.dtype.kind == "f" else v
           for k, v in raw.items()}
    path = str(small["dir"] / "train_checkpoint.pth")
    torch.save({"epoch": 12, "arch": "genet_small", "state_dict": {k: torch.from_numpy(v) for k, v in raw.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
                "state_dict_ema": {k: torch.from_numpy(v) for k, v in ema.items()}, "metric": 71.5}, path)
    return path, raw, ema


@pytest.mark.parametrize("key", [None, "state_dict", "state_dict_ema"])
def test_ema_checkpoint_converts_the_weights_asked_for(ema_checkpoint, tmp_path, capsys, key):
    from converters.files.pdparams import read_pdparams

    path, raw, ema = ema_checkpoint
    dst = str(tmp_path / "out.pdparams")
    rc, result = _convert([path, dst] + (["--weights-key", key] if key else []), capsys)
    assert rc == 0 and result["verification"]["passed"]
    want = ema if key == "state_dict_ema" else raw
    other = raw if want is ema else ema
    converted = mapping_table("small", CLASSES).convert(want, "official", "paddle")
    got = read_pdparams(dst)
    assert all(np.array_equal(got[k], v) for k, v in converted.items())
    assert not np.array_equal(got["fc_linear.bias"], other["fc_linear.bias"])
    choice = result["state_dict"]
    assert choice["key"] == (key or "state_dict") and choice["candidates"] == ["state_dict", "state_dict_ema"]
    assert choice["asked"] is (key is not None)
    if key is None:  # the default is said, with the way to take the other
        assert "--weights-key state_dict_ema" in choice["note"]
    with open(dst + ".json") as f:
        assert json.load(f)["source"]["state_dict"] == choice


def test_a_missing_weights_key_names_the_state_dicts_there(ema_checkpoint, tmp_path, capsys):
    from converters.cli import main
    from parity.commands.cli import main as parity_main

    path = ema_checkpoint[0]
    assert main([path, str(tmp_path / "x.pdparams"), "--weights-key", "model_ema"]) == 2
    err = capsys.readouterr().err
    assert "has no entry 'model_ema' (--weights-key)" in err and "state_dict, state_dict_ema" in err
    assert not os.path.exists(tmp_path / "x.pdparams")
    assert parity_main(["train", "--weights", path, "--weights-key", "epoch"]) == 2
    assert "entry 'epoch' (--weights-key) is not a state dict" in capsys.readouterr().err


def test_layers_takes_the_ema_weights_when_asked(ema_checkpoint, small, capsys):
    """The EMA side against Paddle weights converted from the raw side must
    fail; against its own conversion, pass: the layer diff read the EMA weights."""
    from parity.commands.cli import main

    path = ema_checkpoint[0]
    base = ["layers", "--weights", path, "--batch-size", "1", "--summary-only", "--pdparams", small["paddle"]]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "took the state dict 'state_dict', one of 2" in " ".join(out.split())
    assert main(base + ["--weights-key", "state_dict_ema"]) == 1
    capsys.readouterr()


def test_a_half_state_dict_converts(small, tmp_path, capsys):
    """`{k: v.half()}` casts the BN step counters too: they are metadata,
    read as the whole numbers they hold."""
    import torch

    from converters.files.pdparams import read_pdparams

    path = str(tmp_path / "half.pth")
    torch.save({k: torch.from_numpy(v).half() for k, v in small["state"].items()}, path)
    rc, result = _convert([path, str(tmp_path / "half.pdparams")], capsys)
    assert rc == 0 and result["verification"]["passed"]
    assert any("BatchNorm step counters stored as float16" in n for n in result["notes"])
    got = read_pdparams(str(tmp_path / "half.pdparams"))
    want = mapping_table("small", CLASSES).convert(
        {k: v.astype(np.float16).astype(np.float32) if v.dtype.kind == "f" else v for k, v in small["state"].items()},
        "official", "paddle")
    assert all(np.array_equal(got[k], v) for k, v in want.items())

    counters = {k: torch.from_numpy(v) for k, v in small["state"].items()}
    counters["module_list.1.netblock.num_batches_tracked"] = torch.tensor(2.5, dtype=torch.float16)
    torch.save(counters, path)
    from converters.cli import main

    assert main([path, str(tmp_path / "bad.pdparams")]) == 2
    assert "holding 2.5 (float16); expected a whole non-negative number" in capsys.readouterr().err
