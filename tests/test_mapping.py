"""The shared mapping table against the spec files and both models."""
import io

import numpy as np
import pytest
from rich.console import Console

import paddle_genet
import torch_ref
from converters.table.errors import CheckpointError
from converters.table.mapping import identify, mapping_table
from converters.table.mapping import DROP, TRANSPOSE
from parity.core.seeded import seeded_state

from .conftest import spec_name, spec_rows


@pytest.mark.parametrize("layout", ["official", "paddle", "timm"])
def test_table_lists_every_spec_key_once_in_order(arch, layout):
    table = mapping_table(arch)
    expected = [(k, s) for k, s, _ in spec_rows(spec_name(layout, arch))]
    assert table.expected(layout) == expected
    keys = [r.key(layout) for r in table.rows if r.key(layout)]
    assert len(keys) == len(set(keys))


def test_table_agrees_with_both_models_real_state_dicts(arch):
    table = mapping_table(arch)
    t_sd = torch_ref.build(arch).state_dict()
    p_sd = paddle_genet.build(arch).state_dict()
    assert [(k, tuple(v.shape)) for k, v in t_sd.items()] == table.expected("official")
    assert [(k, tuple(v.shape)) for k, v in p_sd.items()] == table.expected("paddle")
    for r in table.rows:
        assert str(t_sd[r.official].dtype) == f"torch.{r.dtype}"


def test_transforms_are_explicit(arch):
    rows = mapping_table(arch).rows
    transposed = [r.official for r in rows if r.action == TRANSPOSE]
    dropped = [r for r in rows if r.action == DROP]
    assert transposed == ["fc_linear.weight"]
    assert dropped and all(r.official.endswith("num_batches_tracked") and r.reason for r in dropped)
    assert len(dropped) == sum(1 for k, _, _ in spec_rows(spec_name("official", arch)) if k.endswith("num_batches_tracked"))


def test_module_rows_cover_every_layer_kind_with_real_paths():
    table = mapping_table("small")
    kinds = {m.kind for m in table.modules}
    assert kinds == {"conv", "bn", "relu", "unit", "block", "pool", "fc"}
    t, p = torch_ref.build("small"), paddle_genet.build("small")
    p_names = dict(p.named_sublayers())
    for m in table.modules:
        t.get_submodule(m.official)  # raises if the path is wrong
        assert m.paddle in p_names, m.paddle
    n_units = sum(len(b.units) for b in table.arch.super_blocks)
    assert sum(m.kind == "unit" for m in table.modules) == n_units


def test_convert_round_trips_every_layout(arch):
    table = mapping_table(arch)
    official = seeded_state(arch)
    paddle_sd = table.convert(official, "official", "paddle")
    assert [(k, v.shape) for k, v in paddle_sd.items()] == table.expected("paddle")
    np.testing.assert_array_equal(paddle_sd["fc_linear.weight"], official["fc_linear.weight"].T)
    timm = table.convert(paddle_sd, "paddle", "timm")
    back = table.convert(timm, "timm", "official")
    assert list(back) == list(official)
    for k in official:
        assert back[k].dtype == official[k].dtype and np.array_equal(back[k], official[k]), k


def test_convert_refuses_and_lists_every_problem():
    table = mapping_table("small")
    state = seeded_state("small")
    state["fc_linear.weight"] = state["fc_linear.weight"].T
    del state["module_list.9.netblock.running_var"]
    state["module_list.9.netblock.running_varr"] = np.zeros(1920, np.float32)
    with pytest.raises(CheckpointError) as e:
        table.convert(state, "official", "paddle", source="bad.pth")
    msg = str(e.value)
    assert msg.startswith("bad.pth: does not match the official layout of GENet_small")
    assert "fc_linear.weight: expected (1000, 1920), got (1920, 1000) (transposed?)" in msg
    assert "Missing (1): module_list.9.netblock.running_var (closest in file: module_list.9.netblock.running_varr)" in msg
    assert "Unexpected (1): module_list.9.netblock.running_varr" in msg


def test_identify_names_arch_and_layout():
    shapes = {k: s for k, s in mapping_table("normal").expected("timm")}
    assert identify(shapes) == [("normal", "timm")]
    shapes.pop("head.fc.bias")
    assert identify(shapes) == []


def test_version_is_stable_and_distinguishes_archs():
    assert mapping_table("small").version == mapping_table("GENet_small").version
    assert len({mapping_table(a).version for a in ("small", "normal", "large")}) == 3


def test_table_prints_for_humans():
    out = io.StringIO()
    Console(file=out, width=250).print(mapping_table("small").to_rich_table())
    text = out.getvalue()
    assert "module_list.8.netblock.weight" in text and "stages.0.0.shortcut.conv.weight" in text
    assert "transpose" in text and "drop: torch BatchNorm step counter" in text
