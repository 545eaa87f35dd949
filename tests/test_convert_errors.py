"""genet-convert on bad input and failures: one clear error, the right exit
code, and never a destination file (or a changed one) left behind."""
import importlib
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from converters.conversion.convert import convert
from converters.table.errors import CheckpointError, VerificationError
from converters.cli import main

from .test_conversion_verdicts import inject
from .test_convert import expected, write_source

convert_module = importlib.import_module("converters.conversion.convert")


@pytest.fixture()
def src(tmp_path):
    return write_source(tmp_path, "small", "official", "pth", "GENet_small.pth")


def _listing(folder):
    return sorted(os.listdir(folder))


def _refused(tmp_path, path, match, **kw):
    """Converting `path` fails with CheckpointError matching `match`, and
    nothing appears in the destination folder."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    with pytest.raises(CheckpointError, match=match) as e:
        convert(path, str(out / "x.pdparams"), **kw)
    assert _listing(out) == []
    return str(e.value)


def _save_state(tmp_path, state, name="bad.pth"):
    path = tmp_path / name
    torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v, order="C")) for k, v in state.items()}}, path)
    return str(path)


@pytest.mark.parametrize("layout,fmt,match", [
    ("official", "pth", "damaged or truncated"),
    ("paddle", "pdparams", "truncated"),
    ("timm", "safetensors", "truncated"),
])
@pytest.mark.parametrize("keep", [0.5, 100])
def test_truncated_file(tmp_path, layout, fmt, match, keep):
    path = write_source(tmp_path, "small", layout, fmt)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep) if keep < 1 else keep])
    _refused(tmp_path, path, match)


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    _refused(tmp_path, str(tmp_path / "empty.pth"), r"is empty \(0 bytes\)")


@pytest.mark.parametrize("content,match", [
    (b"# just some text\n", "is not a checkpoint: it starts with text"),
    (bytes(range(7, 200)), "is not a checkpoint: it starts with binary data"),
])
def test_not_a_checkpoint(tmp_path, content, match):
    (tmp_path / "x.pth").write_bytes(content)
    _refused(tmp_path, str(tmp_path / "x.pth"), match)


def test_zip_that_is_not_a_torch_checkpoint(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.pth", "w") as z:
        z.writestr("readme.txt", "hello")
    _refused(tmp_path, str(tmp_path / "x.pth"), "cannot be read as a PyTorch checkpoint")


def test_wrong_arch(tmp_path, src):
    msg = _refused(tmp_path, src, "is GENet_small in the official layout, not GENet_large", arch="large")
    assert "--arch" in msg


def test_wrong_layout_forced(tmp_path, src):
    _refused(tmp_path, src, "is GENet_small in the official layout, not a checkpoint in the timm layout as asked",
             src_layout="timm")


def test_missing_tensor(tmp_path):
    state = dict(expected("small", "official"))
    del state["module_list.4.conv_list.1.3.weight"]
    msg = _refused(tmp_path, _save_state(tmp_path, state), "Closest: GENet_small in the official layout")
    assert "Missing (1): module_list.4.conv_list.1.3.weight" in msg


def test_extra_tensor(tmp_path):
    state = dict(expected("small", "official"), **{"module_list.4.conv_list.1.9.weight": np.zeros((3,), np.float32)})
    msg = _refused(tmp_path, _save_state(tmp_path, state), "Unexpected")
    assert "Unexpected (1): module_list.4.conv_list.1.9.weight" in msg


def test_misshaped_tensor(tmp_path):
    state = dict(expected("small", "official"))
    state["fc_linear.weight"] = state["fc_linear.weight"].T
    msg = _refused(tmp_path, _save_state(tmp_path, state), "Wrong shape")
    assert "fc_linear.weight: expected (1000, 1920), got (1920, 1000) (transposed?)" in msg


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weight_is_named(tmp_path, value):
    state = dict(expected("small", "official"))
    w = state["module_list.4.conv_list.2.3.weight"].copy()
    w[1, 0, 2, 1] = value
    state["module_list.4.conv_list.2.3.weight"] = w
    msg = _refused(tmp_path, _save_state(tmp_path, state), "non-finite")
    assert (f"module_list.4.conv_list.2.3.weight: 1 of {w.size} values are NaN/Inf "
            f"(first {value} at index [1, 0, 2, 1])") in msg


def test_existing_destination_is_refused_and_untouched(tmp_path, src):
    dst = tmp_path / "x.pdparams"
    dst.write_bytes(b"precious")
    with pytest.raises(CheckpointError, match="already exists; pass --force"):
        convert(src, str(dst))
    assert dst.read_bytes() == b"precious" and not (tmp_path / "x.pdparams.json").exists()
    convert(src, str(dst), force=True, verify=False)
    assert dst.read_bytes()[:2] == b"\x80\x04"


@pytest.mark.parametrize("how", ["same path", "dot-dot path", "symlink", "hard link"])
def test_source_equal_to_destination_is_refused(tmp_path, how):
    src = write_source(tmp_path, "small", "paddle", "pdparams", "GENet_small.pdparams")
    with open(src, "rb") as f:
        before = f.read()
    sub = tmp_path / "sub"
    sub.mkdir()
    dst = {"same path": src, "dot-dot path": str(sub / ".." / "GENet_small.pdparams"),
           "symlink": str(tmp_path / "link.pdparams"), "hard link": str(tmp_path / "hard.pdparams")}[how]
    if how == "symlink":
        os.symlink(src, dst)
    if how == "hard link":
        os.link(src, dst)
    with pytest.raises(CheckpointError, match="is the source file itself"):
        convert(src, dst, force=True)
    with open(src, "rb") as f:
        assert f.read() == before


def test_unknown_destination_extension(tmp_path, src):
    with pytest.raises(CheckpointError, match="unknown destination extension '.bin'"):
        convert(src, str(tmp_path / "x.bin"))


def test_missing_destination_folder(tmp_path, src):
    with pytest.raises(CheckpointError, match="destination folder .* does not exist"):
        convert(src, str(tmp_path / "nope" / "x.pdparams"))


# --------------------------------------------------------------------------- no partial output

def _failing_writer(exc):
    def write(tensors, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x80\x04 half a checkpoint")
        raise exc
    return write


@pytest.mark.parametrize("exc,error", [
    (OSError(28, "No space left on device"), CheckpointError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, src, exc, error, existing):
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "x.pdparams"
    if existing:
        dst.write_bytes(b"old")
    monkeypatch.setattr(convert_module, "write_pdparams", _failing_writer(exc))
    with pytest.raises(error) as e:
        convert(src, str(dst), force=existing)
    if error is CheckpointError:
        assert "No space left on device" in str(e.value) and "nothing was written" in str(e.value)
    assert _listing(out) == (["x.pdparams"] if existing else [])  # no temporary left either
    if existing:
        assert dst.read_bytes() == b"old"


def test_verification_failure_writes_nothing(tmp_path, monkeypatch, src):
    inject(monkeypatch, "small", "fc weight scaled by 1.001")  # a converter bug the models must catch
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VerificationError, match="not written") as e:
        convert(src, str(out / "x.pdparams"))
    assert e.value.result.status == "verification_failed" and not e.value.result.verification["passed"]
    assert _listing(out) == []


def test_corrupted_write_is_caught_by_read_back(tmp_path, monkeypatch, src):
    real = convert_module.write_pdparams

    def flip_one_weight(tensors, path):
        tensors = dict(tensors)
        tensors["module_list.0.netblock.weight"] = tensors["module_list.0.netblock.weight"] + np.float32(1e-3)
        real(tensors, path)

    monkeypatch.setattr(convert_module, "write_pdparams", flip_one_weight)
    with pytest.raises(VerificationError, match="module_list.0.netblock.weight read back differs"):
        convert(src, str(tmp_path / "x.pdparams"))
    assert not (tmp_path / "x.pdparams").exists()


# --------------------------------------------------------------------------- CLI

def test_cli_ok_table_json_quiet(tmp_path, src, capsys):
    assert main([src, str(tmp_path / "a.pth"), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "GENet_small official (torch-zip) -> official (torch)" in out and "skipped (--no-verify)" in out
    assert main([src, str(tmp_path / "b.pdparams"), "--json", "--no-verify"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert (res["status"], res["exit_code"], res["dst_layout"], res["summary"]["dropped"]) == ("ok", 0, "paddle", 45)
    assert main([src, str(tmp_path / "c.safetensors"), "--quiet", "--no-verify"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_bad_input_exit_2(tmp_path, src, capsys):
    (tmp_path / "t.pth").write_text("text")
    assert main([str(tmp_path / "t.pth"), str(tmp_path / "x.pdparams")]) == 2
    err = capsys.readouterr().err.splitlines()
    # one Error paragraph, after the progress lines a log gets ("[  0.0 s] genet-convert: reading ...")
    assert err[-1].startswith("Error: ") and all(line.startswith("[") for line in err[:-1])
    assert main([str(tmp_path / "t.pth"), str(tmp_path / "x.pdparams"), "--json"]) == 2
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "error" and res["exit_code"] == 2 and "is not a checkpoint" in res["error"]
    assert not (tmp_path / "x.pdparams").exists()


def test_cli_verification_failed_exit_1(tmp_path, monkeypatch, src, capsys):
    inject(monkeypatch, "small", "BN variance +1% on channel 0 of the last BN")
    assert main([src, str(tmp_path / "x.pdparams")]) == 1
    captured = capsys.readouterr()
    assert "Verification failed" in captured.err and "first out of the rule: pool" in captured.err
    assert "FAIL" in captured.out and "first divergent" in captured.out
    assert main([src, str(tmp_path / "x.pdparams"), "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "verification_failed" and res["exit_code"] == 1
    assert not (tmp_path / "x.pdparams").exists()


def test_weights_that_overflow_in_the_forward_name_the_layer(tmp_path, capsys):
    """Finite weights that are huge: float32 overflows to Inf inside the net.
    Verification fails (exit 1) naming the first layer that produced a
    non-finite value, without numpy's RuntimeWarnings (pytest -W error)."""
    state = dict(expected("small", "official"))
    key = "module_list.4.conv_list.0.0.weight"  # the first conv of super block 1
    state[key] = state[key] * np.float32(1e38)  # finite (|w| < 3.4), but its sums overflow float32
    path = _save_state(tmp_path, state)
    out = tmp_path / "out"
    out.mkdir()
    assert main([path, str(out / "x.pdparams"), "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    v = res["verification"]
    assert res["status"] == "verification_failed" and not v["passed"]
    assert "torch GENet_small (official): first at module_list.4.conv_list.0.0" in v["nonfinite"], v["nonfinite"]
    assert "paddle GENet_small (paddle): first at module_list.4.conv_list.0.0" in v["nonfinite"], v["nonfinite"]
    assert "non-finite logits" in res["error"]
    assert _listing(out) == []


def test_cli_internal_error_exit_3(tmp_path, monkeypatch, src, capsys):
    def broken(*a, **k):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(convert_module, "to_layout", broken)
    assert main([src, str(tmp_path / "x.pdparams")]) == 3
    assert "Internal error: RuntimeError: a bug of ours" in capsys.readouterr().err


def test_killed_process_leaves_nothing(tmp_path):
    """A real `kill` (SIGTERM) while the output is being written or verified."""
    import signal
    import subprocess
    import sys
    import time

    src = write_source(tmp_path, "large", "official", "pth", "GENet_large.pth")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "converters.cli", src, str(out / "x.pdparams"), "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(name.endswith(".tmp") for name in os.listdir(out)):
        assert proc.poll() is None and time.time() < deadline, "converter ended before its output was started"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Interrupted." in err
    assert _listing(out) == []
