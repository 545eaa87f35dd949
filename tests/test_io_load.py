"""converters.files.load: format from content, arch and layout from names + shapes, strict relayout."""
import numpy as np
import pytest

from converters.files.load import load_weights, to_layout
from converters.table.errors import CheckpointError
from converters.table.mapping import mapping_table
from converters.files.pdparams import write_pdparams
from converters.files.safetensors_format import write_safetensors
from converters.files.torch_format import write_torch
from parity.core.seeded import seeded_state

from .conftest import spec_name, spec_rows


@pytest.fixture(scope="module")
def small():
    return seeded_state("small")


def _write(tmp_path, state, layout, fmt, name="ckpt.bin"):
    """Write `state` (official layout) as `layout` in `fmt`, under a name that
    says nothing about either (detection must read the content)."""
    tensors = mapping_table("small").convert(state, "official", layout)
    path = str(tmp_path / name)
    {"torch": write_torch, "pdparams": write_pdparams, "safetensors": write_safetensors}[fmt](tensors, path)
    return path


@pytest.mark.parametrize("layout,fmt,expect_fmt", [
    ("official", "torch", "torch-zip"), ("timm", "torch", "torch-zip"), ("timm", "safetensors", "safetensors"),
    ("paddle", "pdparams", "pdparams"), ("official", "safetensors", "safetensors")])
def test_detects_format_arch_layout_from_content(tmp_path, small, layout, fmt, expect_fmt):
    w = load_weights(_write(tmp_path, small, layout, fmt))
    assert (w.arch, w.layout, w.format) == ("small", layout, expect_fmt)
    assert [k for k, *_ in spec_rows(spec_name(layout, "small"))] == list(w.tensors)
    back = to_layout(w, "official")
    for k, v in small.items():
        assert back[k].shape == v.shape and np.array_equal(back[k], v), k


def test_fused_layouts_match_official_fuse_bn_spec(tmp_path, small):
    w = load_weights(_write(tmp_path, small, "official", "torch"))
    fused = to_layout(w, "fused")
    assert [(k, s) for k, s, _ in spec_rows("official_small_fused")] == [(k, v.shape) for k, v in fused.items()]
    path = str(tmp_path / "f.pdparams")
    write_pdparams(to_layout(w, "paddle_fused"), path)
    back = load_weights(path)
    assert back.layout == "paddle_fused"
    np.testing.assert_array_equal(back.tensors["fc_linear.weight"], small["fc_linear.weight"].T)


def test_forced_arch_that_does_not_match_says_what_it_is(tmp_path, small):
    with pytest.raises(CheckpointError, match="is GENet_small in the official layout, not GENet_large"):
        load_weights(_write(tmp_path, small, "official", "torch"), arch="large")


def test_unknown_tensors_are_refused_with_closest_match(tmp_path, small):
    """A head's size is read from its weight; a bias of another size is named."""
    state = dict(small)
    state["fc_linear.weight"] = np.zeros((10, 1920), np.float32)
    path = str(tmp_path / "x.pth")
    write_torch(state, path)
    with pytest.raises(CheckpointError) as e:
        load_weights(path)
    assert "Closest: GENet_small in the official layout" in str(e.value)
    assert "with a 10-class head" in str(e.value)
    assert "Wrong shape (1): fc_linear.bias: expected (10,), got (1000,)" in str(e.value)


def test_paddle_save_of_a_model_state_dict_is_read(tmp_path, small):
    """What the Paddle reproduction ships: paddle.save(model.state_dict()),
    Tensors stored as (name, array) plus a structured-name map."""
    import paddle

    import paddle_genet

    tensors = mapping_table("small").convert(small, "official", "paddle")
    model = paddle_genet.load_state(paddle_genet.build("small"), tensors)
    path = str(tmp_path / "model.pdparams")
    paddle.save(model.state_dict(), path)
    w = load_weights(path)
    assert (w.arch, w.layout) == ("small", "paddle")
    assert any("StructuredToParameterName@@" in n for n in w.notes)
    for k, v in tensors.items():
        np.testing.assert_array_equal(w.tensors[k], v)
