"""genet-convert on seeded weights: every source layout and destination, all
three archs, checked against references built independently of the converter
(the layout spec files' row order, float64 BN folding, the official outputs)."""
import hashlib
import json
from functools import lru_cache

import numpy as np
import paddle
import pytest
import safetensors.numpy
import torch

import torch_ref
from converters.cli import summary_rows
from converters.conversion.convert import convert
from converters.conversion.verify import READ_BACK, same_model, summary_of
from parity.core.seeded import seeded_state

from .conftest import ARCHS, assert_matches_official, reference, spec_name, spec_rows


# --------------------------------------------------------------------------- independent references

def _spec_keys(layout, arch):
    return [k for k, _, _ in spec_rows(spec_name(layout, arch))]


@lru_cache(maxsize=None)
def official(arch):
    return seeded_state(arch)


@lru_cache(maxsize=None)
def fused_reference(arch):
    """Float64 BN folding, pairing tensors by the spec files' row order alone:
    in the official order every 4-d conv weight is followed by its BN's
    weight, bias, running_mean, running_var, num_batches_tracked."""
    state, rows = official(arch), spec_rows(spec_name("official", arch))
    values = []
    i = 0
    while i < len(rows):
        key, shape, _ = rows[i]
        if len(shape) == 4:
            g, b, m, v = (state[rows[i + j][0]].astype(np.float64) for j in range(1, 5))
            assert rows[i + 5][0].endswith("num_batches_tracked")
            scale = g / np.sqrt(v + 1e-5)
            values.append((state[key].astype(np.float64) * scale[:, None, None, None]).astype(np.float32))
            values.append((b - m * scale).astype(np.float32))
            i += 6
        else:
            values.append(state[key])
            i += 1
    keys = _spec_keys("fused", arch)
    assert len(keys) == len(values)
    return dict(zip(keys, values))


def expected(arch, layout):
    """The tensors a checkpoint of `layout` must hold, by spec row order."""
    state = official(arch)
    if layout == "official":
        return dict(state)
    if layout == "timm":  # same order as the official file
        return dict(zip(_spec_keys("timm", arch), state.values()))
    if layout == "paddle":
        values = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
        out = dict(zip(_spec_keys("paddle", arch), values))
        out["fc_linear.weight"] = state["fc_linear.weight"].T
        return out
    if layout == "fused":
        return fused_reference(arch)
    if layout == "paddle_fused":
        out = dict(fused_reference(arch))
        out["fc_linear.weight"] = out["fc_linear.weight"].T
        return out
    raise ValueError(layout)


# --------------------------------------------------------------------------- independent writers/readers

def write_source(tmp_path, arch, layout, fmt, name=None):
    """A source checkpoint written by the frameworks' own savers, under a
    name that does not give the format or layout away."""
    tensors = expected(arch, layout)
    path = tmp_path / (name or f"{arch}-{layout}-{fmt}.ckpt")
    if fmt == "pth":
        sd = {k: torch.from_numpy(np.asarray(v, order="C")) for k, v in tensors.items()}
        torch.save(sd if layout == "timm" else {"state_dict": sd}, path)
    elif fmt == "safetensors":
        safetensors.numpy.save_file({k: np.asarray(v, order="C") for k, v in tensors.items()}, str(path))
    elif fmt == "pdparams":  # what the Paddle reproduction's paddle.save(state_dict()) writes
        paddle.save({k: paddle.to_tensor(np.asarray(v, order="C")) for k, v in tensors.items()}, str(path))
    else:
        raise ValueError(fmt)
    return str(path)


def read_output(path):
    """The destination read by the frameworks' own loaders (our files only)."""
    if path.endswith(".pth"):
        obj = torch.load(path, weights_only=True)
        sd = obj["state_dict"] if "state_dict" in obj else obj
        return {k: v.numpy() for k, v in sd.items()}
    if path.endswith(".safetensors"):
        return safetensors.numpy.load_file(path)
    return paddle.load(path, return_numpy=True)


def assert_holds(path, arch, layout, ordered=True, fused=False):
    got, want = read_output(path), expected(arch, layout)
    assert (list(got) if ordered else sorted(got)) == (list(want) if ordered else sorted(want))
    for k, v in want.items():
        assert got[k].shape == v.shape, k
        if fused:  # folded here and in the test in float64, each rounded once
            np.testing.assert_allclose(got[k], v, rtol=2e-7, atol=1e-7, err_msg=k)
        else:
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


SOURCES = {  # name: (layout, format)
    "official.pth": ("official", "pth"), "timm.pth": ("timm", "pth"), "timm.safetensors": ("timm", "safetensors"),
    "paddle.pdparams": ("paddle", "pdparams"), "fused.pth": ("fused", "pth"),
    "paddle_fused.pdparams": ("paddle_fused", "pdparams"),
}
# (source, destination file, options, destination layout): one per pair of
# models the verification compares (torch/Paddle, unfused/fused). Conversions
# within one model (official <-> timm) compare no models: SAME_MODEL below.
DIRECTIONS = [
    ("official.pth", "out.pdparams", {}, "paddle"),
    ("paddle.pdparams", "out.pth", {}, "official"),
    ("official.pth", "out.pdparams", {"fuse_bn": True}, "paddle_fused"),
    ("timm.safetensors", "out.pth", {"fuse_bn": True}, "fused"),
    ("paddle_fused.pdparams", "out.pth", {}, "fused"),
]
# Beyond small, each source layout and destination format once (no models).
SPOT_CHECKS = [
    ("official.pth", "pdparams", {}, "paddle"), ("timm.safetensors", "pth", {}, "official"),
    ("paddle.pdparams", "safetensors", {}, "official"), ("fused.pth", "pdparams", {}, "paddle_fused"),
    ("paddle_fused.pdparams", "safetensors", {}, "fused"), ("timm.pth", "pth", {"fuse_bn": True}, "fused"),
]


def _direction_id(s, d, o):
    return f"{s}->{d}" + ("+fuse" if o.get("fuse_bn") else "") + (f"/{o['dst_layout']}" if "dst_layout" in o else "")


@pytest.mark.parametrize("src,dst,options,dst_layout", DIRECTIONS,
                         ids=[_direction_id(s, d, o) for s, d, o, _ in DIRECTIONS])
def test_verified_conversion_small(tmp_path, src, dst, options, dst_layout):
    layout, fmt = SOURCES[src]
    result = convert(write_source(tmp_path, "small", layout, fmt), str(tmp_path / dst), **options)
    assert (result.status, result.arch, result.src_layout, result.dst_layout) == ("ok", "GENet_small", layout,
                                                                                   dst_layout)
    v = result.verification
    # Judged by the rule against the float64 recomputation: every model that is not the torch float32
    # reference, and so every Paddle model of the pair.
    assert v["passed"] and v["margin"] <= 1 and v["judgements"] and v["nonfinite"] is None
    assert all(j["passed"] and j["error"] <= j["bound"] for j in v["judgements"])
    paddle_side = [m for m in (v["source_model"], v["destination_model"]) if m.startswith("paddle")]
    assert sorted({j["candidate"] for j in v["judgements"] if j["candidate"].startswith("paddle")}) == paddle_side
    # ...at every super block, the pool and the logits
    assert {j["name"] for j in v["judgements"]} == set(v["compared"]) and v["compared"][-2:] == ["pool", "logits"]
    assert v["top1_agreement"] == 1.0
    assert_holds(str(tmp_path / dst), "small", dst_layout, ordered=not dst.endswith(".safetensors"),
                 fused=dst_layout in ("fused", "paddle_fused") and layout not in ("fused", "paddle_fused"))


# Conversions whose destination model is the source model (one framework, one layout, the same tensors).
SAME_MODEL = [
    ("official.pth", "out.safetensors", {"dst_layout": "timm"}, "timm", "torch GENet_small (official)"),
    ("timm.pth", "out.pth", {}, "official", "torch GENet_small (official)"),
    ("timm.safetensors", "out.pth", {"dst_layout": "timm"}, "timm", "torch GENet_small (official)"),
    ("paddle.pdparams", "out.pdparams", {}, "paddle", "paddle GENet_small (paddle)"),
    ("fused.pth", "out.safetensors", {}, "fused", "torch GENet_small (fused)"),
]


@pytest.mark.parametrize("src,dst,options,dst_layout,model", SAME_MODEL,
                         ids=[_direction_id(s, d, o) for s, d, o, _, _ in SAME_MODEL])
def test_same_model_conversion_says_read_back_not_compared(tmp_path, src, dst, options, dst_layout, model):
    """A model compared with itself cannot fail: such a conversion reports
    what it proved (bit-identical tensors), never a model comparison."""
    layout, fmt = SOURCES[src]
    out = str(tmp_path / dst)
    result = convert(write_source(tmp_path, "small", layout, fmt), out, **options)
    v = result.verification
    assert (result.status, result.dst_layout) == ("ok", dst_layout)
    assert v["method"] == READ_BACK and v["passed"] is True
    assert v["judgements"] == [] and v["compared"] == [] and v["margin"] is None and v["top1_agreement"] is None
    assert v["source_model"] == v["destination_model"] == model
    assert v["proven"].startswith(f"read back bit-identical ({v['tensors_read_back']} tensors)")
    assert "no model comparison" in v["proven"] and "layout specs" in v["proven"]
    assert summary_of(v) == v["proven"]
    with open(out + ".json") as f:  # the provenance record says the same
        assert json.load(f)["verification"]["method"] == READ_BACK
    rows = dict((label, value[0] if isinstance(value, tuple) else value) for label, value in summary_rows(
        result.to_dict()))
    assert rows["verification"].startswith("read back bit-identical") and "PASS" not in rows["verification"]
    assert "judged" not in rows and rows["proven"] == v["proven"]
    assert_holds(out, "small", dst_layout, ordered=not dst.endswith(".safetensors"))


def test_same_layout_with_other_tensors_is_compared():
    """The shortcut needs the same bits: one changed value makes the models two."""
    state = seeded_state("small")
    other = dict(state)
    k = next(k for k in state if k.endswith("running_var"))
    other[k] = state[k].copy()
    other[k][0] *= np.float32(1.01)
    assert same_model(state, dict(state)) and not same_model(state, other)
    assert not same_model(state, {k: v for k, v in state.items() if k != "fc_linear.bias"})


def test_every_layout_and_direction_small(tmp_path):
    """All sources x all destinations (no models: --no-verify), file contents
    against the spec-order references."""
    for src, (layout, fmt) in SOURCES.items():
        path = write_source(tmp_path, "small", layout, fmt)
        fused = layout in ("fused", "paddle_fused")
        for ext, dst_layout in (("pdparams", "paddle_fused" if fused else "paddle"),
                                ("pth", "fused" if fused else "official"),
                                ("safetensors", "fused" if fused else "official")):
            dst = str(tmp_path / f"{src}.{ext}")
            r = convert(path, dst, verify=False)
            assert (r.status, r.src_layout, r.dst_layout, r.verification) == ("ok", layout, dst_layout, None)
            assert_holds(dst, "small", dst_layout, ordered=ext != "safetensors")
        if not fused:
            for ext, dst_layout in (("pdparams", "paddle_fused"), ("pth", "fused")):
                dst = str(tmp_path / f"{src}.fused.{ext}")
                convert(path, dst, verify=False, fuse_bn=True)
                assert_holds(dst, "small", dst_layout, fused=True)


@pytest.mark.parametrize("arch", ["normal", "large"])
def test_each_layout_and_format_larger_archs(tmp_path, arch):
    for src, ext, options, dst_layout in SPOT_CHECKS:
        layout, fmt = SOURCES[src]
        dst = str(tmp_path / f"{src}.{ext}")
        r = convert(write_source(tmp_path, arch, layout, fmt), dst, verify=False, **options)
        assert (r.arch, r.src_layout, r.dst_layout) == (f"GENet_{arch}", layout, dst_layout)
        assert_holds(dst, arch, dst_layout, ordered=ext != "safetensors",
                     fused=bool(options.get("fuse_bn")))


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_torch_paddle_torch_is_bit_exact(tmp_path, arch):
    src = write_source(tmp_path, arch, "official", "pth", "GENet.pth")
    # Models are compared in the tests above; here only the bytes matter.
    convert(src, str(tmp_path / "mid.pdparams"), verify=False)
    convert(str(tmp_path / "mid.pdparams"), str(tmp_path / "back.pth"), verify=False)
    before = torch.load(src, weights_only=True)["state_dict"]
    after = torch.load(str(tmp_path / "back.pth"), weights_only=True)["state_dict"]
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype and after[k].shape == before[k].shape, k
        assert after[k].numpy().tobytes() == before[k].numpy().tobytes(), k


def test_written_pth_loads_into_official_layout_model_strictly(tmp_path):
    src = write_source(tmp_path, "small", "paddle", "pdparams")
    convert(src, str(tmp_path / "GENet_small.pth"), verify=False)
    ckpt = torch.load(str(tmp_path / "GENet_small.pth"), weights_only=True)
    assert list(ckpt) == ["state_dict"]  # what the official code indexes
    model = torch_ref.build("small")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    x = torch.from_numpy(np.random.default_rng(2021).standard_normal((2, 3, 192, 192)).astype(np.float32))
    with torch.no_grad():
        out = model(x).numpy()
    assert_matches_official("small", seeded_state("small"), x.numpy(), out, reference("small_logits.npy"))


def test_large_verified_once(tmp_path):
    r = convert(write_source(tmp_path, "large", "official", "pth"), str(tmp_path / "GENet_large.pdparams"))
    v = r.verification
    assert r.status == "ok" and v["passed"] and v["tensors_read_back"] == len(expected("large", "paddle"))
    # The Paddle destination, against float64 with torch float32 (the source) as the bar, at every checkpoint.
    assert {j["candidate"] for j in v["judgements"]} == {"paddle GENet_large (paddle)"}
    assert len(v["judgements"]) == 5 + 2 and all(j["error"] <= j["bound"] for j in v["judgements"])
    assert v["margin"] == max(j["margin"] for j in v["judgements"]) <= 1
    assert r.summary["transposed"] == 1 and r.summary["dropped"] == 344 - 287 and r.summary["written_tensors"] == 287


def test_provenance_record(tmp_path):
    src = write_source(tmp_path, "small", "timm", "safetensors")
    dst = str(tmp_path / "out.pdparams")
    r = convert(src, dst)  # timm safetensors -> Paddle, verified
    assert r.verification["passed"] and r.verification["top1_agreement"] == 1.0
    with open(dst + ".json") as f:
        rec = json.load(f)
    with open(src, "rb") as f:
        assert rec["source"]["sha256"] == hashlib.sha256(f.read()).hexdigest() == r.src_sha256
    assert rec["arch"] == "GENet_small" and rec["source"]["layout"] == "timm"
    assert rec["mapping_table_version"] == r.mapping_table_version and rec["tool_version"]
    assert rec["verification"]["passed"] is True
    written = paddle.load(dst, return_numpy=True)
    assert list(rec["tensors"]) == list(written)
    for k, v in written.items():
        assert rec["tensors"][k]["sha256"] == hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(), k
        assert rec["tensors"][k]["shape"] == list(v.shape)


def test_no_verify_still_writes_provenance(tmp_path):
    dst = str(tmp_path / "out.pth")
    convert(write_source(tmp_path, "small", "paddle", "pdparams"), dst, verify=False)
    with open(dst + ".json") as f:
        assert json.load(f)["verification"] == "skipped (--no-verify)"


def test_folder_destination_defaults_to_pdparams(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = convert(write_source(tmp_path, "small", "official", "pth", "GENet_small.pth"), str(out), verify=False)
    assert r.dst == str(out / "GENet_small.pdparams") and r.dst_layout == "paddle"
    assert_holds(r.dst, "small", "paddle")


def test_no_verify_builds_no_model_and_never_imports_paddle(tmp_path):
    """The lean path: read, relayout, write; no throw-away model, no Paddle import."""
    import subprocess
    import sys

    src = write_source(tmp_path, "small", "official", "pth")
    code = ("import sys; from converters.conversion.convert import convert; "
            "convert(sys.argv[1], sys.argv[2], verify=False); "
            "loaded = [m for m in ('paddle', 'torch_ref', 'paddle_genet') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code, src, str(tmp_path / "out.pdparams")], check=True)
    assert_holds(str(tmp_path / "out.pdparams"), "small", "paddle")
