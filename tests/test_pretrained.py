"""`torch_ref.build` / `paddle_genet.build` with pretrained=: strict loading
of any supported checkpoint, a replaced head named and identical in both
frameworks, and paddle_genet's BN keeping torch's running-variance convention."""
from __future__ import annotations

import numpy as np
import pytest

import paddle_genet
import torch_ref
from converters.table.errors import CheckpointError
from converters.files.pdparams import write_pdparams
from converters.files.torch_format import write_torch
from converters.table.mapping import mapping_table
from converters.files.pretrained import HEAD_SEED, fresh_head
from parity.core.seeded import seeded_state


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained")
    state = seeded_state("small")
    write_torch(state, str(d / "GENet_small.pth"))
    write_pdparams(mapping_table("small").convert(state, "official", "paddle"), str(d / "GENet_small.pdparams"))
    write_torch(seeded_state("normal"), str(d / "GENet_normal.pth"))
    return d, state


@pytest.mark.parametrize("name", ["GENet_small.pth", "GENet_small.pdparams"])
def test_replaced_head_strict_elsewhere_named_and_identical(files, name):
    d, state = files
    path = str(d / name)
    t = torch_ref.build("small", num_classes=10, pretrained=path)
    p = paddle_genet.build("small", num_classes=10, pretrained=path)
    for model in (t, p):
        assert model.load_report.replaced == ["fc_linear.weight", "fc_linear.bias"]
        assert model.load_report.head_seed == HEAD_SEED and model.load_report.num_classes == 10
        assert "head replaced: fc_linear.weight, fc_linear.bias (1000 -> 10 classes" in str(model.load_report)
    # Everything but the head is the checkpoint's, bit for bit.
    own = {k: v.detach().numpy() for k, v in t.state_dict().items()}
    for k, v in state.items():
        if not k.startswith("fc_linear."):
            assert np.array_equal(own[k], v), k
    paddle_own = {k: v.numpy() for k, v in p.state_dict().items()}
    for k, v in mapping_table("small").convert(state, "official", "paddle").items():
        if not k.startswith("fc_linear."):
            assert np.array_equal(paddle_own[k], v), k
    # Both new heads: the same numbers (Paddle stores the weight [in, out]).
    assert t.fc_linear.weight.shape == (10, 1920)
    assert np.array_equal(t.fc_linear.weight.detach().numpy(), p.fc_linear.weight.numpy().T)
    assert np.array_equal(t.fc_linear.bias.detach().numpy(), p.fc_linear.bias.numpy())
    bound = 1 / np.sqrt(1920)
    w = own["fc_linear.weight"]
    assert np.all(np.abs(w) <= bound) and w.std() > bound / 2  # torch nn.Linear's default U(-b, b)


def test_head_of_the_checkpoints_size_is_kept(files):
    d, state = files
    t = torch_ref.build("small", pretrained=str(d / "GENet_small.pth"))
    assert t.load_report.replaced == [] and "head kept (1000 classes)" in str(t.load_report)
    assert np.array_equal(t.fc_linear.weight.detach().numpy(), state["fc_linear.weight"])


def test_head_seed_decides_the_fresh_head():
    a, b = fresh_head(1920, 10, 1), fresh_head(1920, 10, 2)
    assert not np.array_equal(a[0], b[0])
    assert all(np.array_equal(x, y) for x, y in zip(fresh_head(1920, 10, 1), a))


def test_other_arch_and_fused_checkpoints_are_refused(files):
    from converters.table.fuse import fuse_state

    d, state = files
    with pytest.raises(CheckpointError, match="is GENet_normal in the official layout, not GENet_small"):
        torch_ref.build("small", num_classes=10, pretrained=str(d / "GENet_normal.pth"))
    fused = str(d / "fused.pth")
    write_torch(fuse_state(state, "small"), fused)
    with pytest.raises(CheckpointError, match="BN-fused"):
        paddle_genet.build("small", num_classes=10, pretrained=fused)
    with pytest.raises(ValueError, match="unfused"):
        torch_ref.build("small", fused=True, pretrained=str(d / "GENet_small.pth"))


def test_load_state_is_strict_about_the_head_size(files):
    _, state = files
    with pytest.raises(CheckpointError, match=r"fc_linear.weight: expected \(10, 1920\), got \(1000, 1920\)"):
        torch_ref.load_state(torch_ref.build("small", num_classes=10), state)


@pytest.mark.parametrize("unbiased", [True, False])
def test_paddle_bn_running_variance_convention(unbiased):
    """Against float64 numpy: torch stores the unbiased batch variance, Paddle's
    own update the biased one; paddle_genet's BatchNorm2D stores torch's."""
    import paddle
    import torch

    from paddle_genet.batchnorm import BatchNorm2D

    x = (np.random.default_rng(0).standard_normal((2, 3, 5, 4)) * 2 + 1).astype(np.float32)
    bn = BatchNorm2D(3, momentum=0.9)
    bn.unbiased_running_variance = unbiased
    bn.train()
    bn(paddle.to_tensor(x))
    n = 2 * 5 * 4
    var = x.astype(np.float64).var(axis=(0, 2, 3)) * (n / (n - 1) if unbiased else 1.0)
    expected = 0.9 * 1.0 + 0.1 * var
    assert np.allclose(bn._variance.numpy(), expected, rtol=4 * np.finfo(np.float32).eps, atol=0)
    if unbiased:
        t = torch.nn.BatchNorm2d(3, momentum=0.1).train()
        t(torch.from_numpy(x))
        assert np.allclose(bn._variance.numpy(), t.running_var.numpy(), rtol=4 * np.finfo(np.float32).eps, atol=0)
