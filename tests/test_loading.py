"""Loading checkpoints into both models: accepted forms, bad input, no half-loading."""
import numpy as np
import paddle
import pytest
import torch

import paddle_genet
import torch_ref
from converters.table.errors import CheckpointError
from converters.table.mapping import mapping_table
from converters.files.pdparams import write_pdparams
from parity.core.seeded import seeded_state


@pytest.fixture(scope="module")
def state():
    return seeded_state("small")


def _tensors(state):
    return {k: torch.from_numpy(v) for k, v in state.items()}


@pytest.mark.parametrize("form", ["wrapped", "bare", "dataparallel"])
def test_official_forms_load_strictly(tmp_path, state, form):
    sd = _tensors(state)
    obj = {"wrapped": {"state_dict": sd}, "bare": sd,
           "dataparallel": {"state_dict": {f"module.{k}": v for k, v in sd.items()}}}[form]
    path = tmp_path / "GENet_small.pth"
    torch.save(obj, path)
    model = torch_ref.load_checkpoint(str(path), "GENet_small")
    w = model.state_dict()["module_list.5.conv_list.2.4.running_var"].numpy()
    np.testing.assert_array_equal(w, state["module_list.5.conv_list.2.4.running_var"])


def test_loading_uses_weights_only(tmp_path, state):
    class Payload:
        def __reduce__(self):
            return (print, ("code from a checkpoint ran",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _tensors(state), "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        torch_ref.load_checkpoint(str(path), "small")


def _mutations(state):
    missing = dict(state)
    del missing["module_list.4.conv_list.1.3.weight"]
    extra = dict(state, **{"module_list.4.conv_list.1.9.weight": np.zeros((48, 48, 3, 3), np.float32)})
    transposed = dict(state, **{"fc_linear.weight": state["fc_linear.weight"].T.copy()})
    return {
        "missing": (missing, "Missing (1): module_list.4.conv_list.1.3.weight"),
        "unexpected": (extra, "Unexpected (1): module_list.4.conv_list.1.9.weight"),
        "transposed": (transposed, "fc_linear.weight: expected (1000, 1920), got (1920, 1000) (transposed?)"),
    }


@pytest.mark.parametrize("case", ["missing", "unexpected", "transposed"])
def test_torch_bad_state_names_keys_and_loads_nothing(state, case):
    bad, message = _mutations(state)[case]
    model = torch_ref.build("small")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        torch_ref.load_state(model, bad, source="GENet_small.pth")
    assert str(e.value).startswith("GENet_small.pth: does not match the official layout of GENet_small")
    assert message in str(e.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed by a failed load"


@pytest.mark.parametrize("case", ["missing", "transposed"])
def test_paddle_bad_state_names_keys_and_loads_nothing(tmp_path, state, case):
    table = mapping_table("small")
    good = table.convert(state, "official", "paddle")
    bad = dict(good)
    if case == "missing":
        del bad["module_list.9._variance"]
        message = "Missing (1): module_list.9._variance"
    else:
        bad["fc_linear.weight"] = good["fc_linear.weight"].T.copy()
        message = "fc_linear.weight: expected (1920, 1000), got (1000, 1920) (transposed?)"
    path = tmp_path / "bad.pdparams"
    write_pdparams(bad, str(path))
    model = paddle_genet.build("small")
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"\(transposed\?\)|Missing") as e:
        paddle_genet.load_state(model, bad, source=str(path))
    assert message in str(e.value)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_wrong_arch_is_named(state):
    with pytest.raises(CheckpointError) as e:
        torch_ref.load_state(torch_ref.build("large"), state, source="ckpt.pth")
    msg = str(e.value)
    assert "ckpt.pth: is GENet_small in the official layout, not GENet_large" in msg
    assert "module_list.0.netblock.weight: expected (32, 3, 3, 3), got (13, 3, 3, 3)" in msg


def test_pdparams_written_here_load_into_paddle(tmp_path, state):
    """Our .pdparams is what paddle.save writes: both readers agree."""
    paddle_sd = mapping_table("small").convert(state, "official", "paddle")
    path = str(tmp_path / "x.pdparams")
    write_pdparams(paddle_sd, path)
    model = paddle_genet.load_pdparams(path, "small")
    # paddle.load on our own freshly written file (never on a user's).
    reloaded = paddle.load(path)
    assert list(reloaded) == list(paddle_sd)
    np.testing.assert_array_equal(model.state_dict()["fc_linear.weight"].numpy(), paddle_sd["fc_linear.weight"])


def test_folded_models_load_their_fused_layout_strictly(state):
    """BN-folded models take the fused layouts through the same strict loaders;
    the official fused keys are checked against the spec file's."""
    from converters.table.fuse import fuse_state

    from .conftest import spec_name, spec_rows

    fused = fuse_state(state, "small", "fused")
    assert [(k, tuple(v.shape)) for k, v in fused.items()] == [(k, s) for k, s, _ in
                                                              spec_rows(spec_name("fused", "small"))]
    t = torch_ref.load_state(torch_ref.build("small", fused=True), fused, source="fused.pth")
    np.testing.assert_array_equal(t.state_dict()["module_list.7.netblock.bias"].numpy(),
                                  fused["module_list.7.netblock.bias"])
    p = paddle_genet.load_state(paddle_genet.build("small", fused=True), fuse_state(state, "small", "paddle_fused"))
    assert tuple(p.state_dict()["fc_linear.weight"].shape) == (1920, 1000)
    with pytest.raises(CheckpointError, match="does not match the fused layout of GENet_small"):
        torch_ref.load_state(torch_ref.build("small", fused=True), state, source="unfused.pth")
