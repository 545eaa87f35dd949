"""Reading checkpoints never runs code from them; harmless extras are admitted;
safetensors files interoperate with the reference library; dtypes are handled."""
import argparse
import fractions
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from converters.conversion.convert import convert
from converters.files.load import load_weights
from converters.table.errors import CheckpointError
from converters.files.safetensors_format import read_safetensors, write_safetensors

from .test_convert import expected, write_source


class Payload:
    """Pickles as a call to exec that creates `marker`: real code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _torch_state(layout="official"):
    return {k: torch.from_numpy(np.asarray(v, order="C")) for k, v in expected("small", layout).items()}


def _payload_really_runs(path, loader_code):
    """Control: loading `path` unsafely in a child process does create the
    marker, so its absence after our reader is meaningful."""
    subprocess.run([sys.executable, "-c", loader_code.format(path=str(path))], check=True,
                   capture_output=True, cwd=os.path.dirname(__file__) + "/..")


def test_malicious_pth_is_refused_and_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned_pth"
    path = tmp_path / "GENet_small.pth"
    torch.save({"state_dict": _torch_state(), "meta": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        convert(str(path), str(tmp_path / "out.pdparams"))
    msg = str(e.value)
    assert "refuses the Python objects it holds: builtins.exec" in msg and "--trust-pickle" in msg
    assert not marker.exists() and not (tmp_path / "out.pdparams").exists()
    _payload_really_runs(path, "import torch; torch.load({path!r}, weights_only=False)")
    assert marker.exists()


def test_malicious_pdparams_is_refused_and_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned_pdparams"
    path = tmp_path / "GENet_small.pdparams"
    tensors = dict(expected("small", "paddle"))
    tensors["module_list.1._mean"] = Payload(marker)
    with open(path, "wb") as f:
        pickle.dump(tensors, f, protocol=4)
    with pytest.raises(CheckpointError, match="blocked global builtins.exec") as e:
        convert(str(path), str(tmp_path / "out.pth"))
    assert "nothing from the file was executed" in str(e.value)
    assert not marker.exists() and not (tmp_path / "out.pth").exists()
    _payload_really_runs(path, "import pickle\nwith open({path!r}, 'rb') as f: pickle.load(f)")
    assert marker.exists()


def test_harmless_extras_of_real_checkpoints_are_admitted(tmp_path):
    path = tmp_path / "GENet_small.pth"
    torch.save({"state_dict": _torch_state(), "epoch": 360, "best_acc1": np.float64(75.7),
                "top5": np.float32(92.1), "args": argparse.Namespace(arch="GENet_small", lr=0.1)}, path)
    w = load_weights(str(path))
    assert (w.arch, w.layout) == ("small", "official")
    assert any("epoch (int)" in n and "args (Namespace)" in n and "best_acc1 (float64)" in n for n in w.notes)


def test_numpy1_scalar_name_is_admitted(tmp_path):
    """Checkpoints written under numpy 1.x name `numpy.core.multiarray.scalar`."""
    path = tmp_path / "old.pth"
    torch.save({"state_dict": _torch_state(), "acc": np.float64(75.7)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data  # protocol-2 GLOBAL opcodes spell module\nname
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    w = load_weights(str(path))
    assert w.format == "torch-legacy" and w.layout == "official"


def test_other_globals_are_named_and_trust_pickle_is_the_only_way(tmp_path, capsys):
    path = tmp_path / "GENet_small.pth"
    torch.save({"state_dict": _torch_state(), "ratio": fractions.Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="refuses the Python objects it holds: fractions.Fraction"):
        load_weights(str(path))
    w = load_weights(str(path), trust_pickle=True)
    assert w.layout == "official" and any("weights_only=False" in n for n in w.notes)
    assert "WARNING" in capsys.readouterr().err


def test_module_prefix_and_bare_dict(tmp_path):
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in _torch_state().items()}, path)
    w = load_weights(str(path))
    assert w.layout == "official" and "stripped the 'module.' prefix from every key" in w.notes


def test_missing_step_counters_are_recreated(tmp_path):
    path = tmp_path / "no_nbt.pth"
    torch.save({k: v for k, v in _torch_state("timm").items() if not k.endswith("num_batches_tracked")}, path)
    w = load_weights(str(path))
    assert w.layout == "timm" and any("recreated as int64 0" in n for n in w.notes)
    assert w.tensors["stem.bn.num_batches_tracked"].dtype == np.int64


# --------------------------------------------------------------------------- dtypes

def test_float16_written_as_float32_unless_keep_dtype(tmp_path):
    path = tmp_path / "half.pth"
    half = {k: v.half() if v.is_floating_point() else v for k, v in _torch_state().items()}
    torch.save({"state_dict": half}, path)
    r = convert(str(path), str(tmp_path / "f32.pdparams"), verify=False)
    assert any("float16 weights written as float32" in n for n in r.notes)
    w = load_weights(str(tmp_path / "f32.pdparams"))
    assert w.tensors["fc_linear.weight"].dtype == np.float32
    np.testing.assert_array_equal(w.tensors["fc_linear.weight"], half["fc_linear.weight"].float().numpy().T)
    r = convert(str(path), str(tmp_path / "f16.safetensors"), keep_dtype=True)  # verified in float32
    assert r.verification["passed"]
    assert read_safetensors(str(tmp_path / "f16.safetensors"))[1]["fc_linear.weight"] == "float16"


def test_bfloat16_source(tmp_path):
    path = tmp_path / "bf16.pth"
    bf = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in _torch_state().items()}
    torch.save({"state_dict": bf}, path)
    convert(str(path), str(tmp_path / "f32.pdparams"), verify=False)
    w = load_weights(str(tmp_path / "f32.pdparams"))
    np.testing.assert_array_equal(w.tensors["module_list.1.weight"],
                                  bf["module_list.1.netblock.weight"].float().numpy())
    convert(str(path), str(tmp_path / "bf.safetensors"), keep_dtype=True, verify=False)
    with safetensors.safe_open(str(tmp_path / "bf.safetensors"), "pt") as f:
        t = f.get_tensor("module_list.1.netblock.weight")
    assert t.dtype == torch.bfloat16 and torch.equal(t, bf["module_list.1.netblock.weight"])
    with pytest.raises(CheckpointError, match="bfloat16 cannot be stored in a .pdparams"):
        convert(str(path), str(tmp_path / "bf.pdparams"), keep_dtype=True)


# --------------------------------------------------------------------------- safetensors interop

def test_our_safetensors_read_by_the_library(tmp_path):
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.zeros((), np.int64),
               "h": np.linspace(-1, 1, 5).astype(np.float16), "b": np.array([1.0, -2.5, 3.0e-3], np.float32)}
    path = str(tmp_path / "x.safetensors")
    write_safetensors(tensors, path, metadata={"k": "v"}, bf16_keys={"b"})
    with safetensors.safe_open(path, "pt") as f:
        assert f.metadata() == {"k": "v"}
        got = {k: f.get_tensor(k) for k in f.keys()}
    for k in ("a", "n", "h"):
        np.testing.assert_array_equal(got[k].numpy(), tensors[k])
        assert got[k].shape == tensors[k].shape
    assert got["b"].dtype == torch.bfloat16
    assert torch.equal(got["b"], torch.from_numpy(tensors["b"]).to(torch.bfloat16))


def test_library_safetensors_read_by_us(tmp_path):
    src = {"w": torch.randn(3, 4), "h": torch.randn(5).half(), "b": torch.randn(2, 2).to(torch.bfloat16),
           "n": torch.tensor(7)}
    path = str(tmp_path / "y.safetensors")
    safetensors.torch.save_file(src, path)
    tensors, dtypes, _ = read_safetensors(path)
    assert dtypes == {"w": "float32", "h": "float16", "b": "bfloat16", "n": "int64"}
    for k, v in src.items():
        np.testing.assert_array_equal(tensors[k], v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy())


def test_damaged_safetensors_offsets_are_refused(tmp_path):
    path = str(tmp_path / "z.safetensors")
    safetensors.numpy.save_file({"w": np.ones((4, 4), np.float32)}, path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[8:header_end] = data[8:header_end].replace(b"[0,64]", b"[0,96]")
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(CheckpointError, match=r"w: data offsets \[0, 96\) do not fit"):
        read_safetensors(path)


def test_legacy_torch_format(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": _torch_state()}, path, _use_new_zipfile_serialization=False)
    w = load_weights(str(path))
    assert (w.format, w.layout) == ("torch-legacy", "official")


def test_source_file_is_not_modified(tmp_path):
    src = write_source(tmp_path, "small", "timm", "safetensors")
    with open(src, "rb") as f:
        before = f.read()
    convert(src, str(tmp_path / "o.pth"), verify=False)
    with open(src, "rb") as f:
        assert f.read() == before


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    """mkstemp's private 0600 must not leak into what users receive."""
    import os
    import stat

    from converters.files.atomic import write_text_atomic

    path = tmp_path / "report.json"
    old = os.umask(0o022)
    try:
        write_text_atomic(str(path), "{}")
    finally:
        os.umask(old)
    assert path.read_text() == "{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
