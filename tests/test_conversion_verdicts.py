"""genet-convert's verdicts by the project's rule: correct conversions of
awkward weights are accepted, faulty ones refused (exit 1, nothing written).

Faults are injected where a broken converter would put them: into the
tensors it writes (the read-back check then passes, since the file holds what
was meant), so only the comparison of the models can catch them.
"""
import importlib
import json
import os

import numpy as np
import pytest
import torch

from converters.cli import main
from converters.files.torch_format import write_torch
from converters.table.mapping import mapping_table
from genet_arch import BatchNorm, Conv, get_arch, naming
from parity.core.reference import float64_model
from parity.core.seeded import seeded_input, seeded_state

from .conftest import ARCHS

convert_module = importlib.import_module("converters.conversion.convert")


def cancelling_state(arch, images=4):
    """Seeded weights whose classifier bias cancels the mean pooled feature of
    the first `images` seeded inputs (the verification input among them):
    fc.bias = -fc.weight @ mean feature, computed in float64. The logits
    become small against the noise of the sums that produce them."""
    state = seeded_state(arch)
    model = float64_model(arch, state)
    pooled = []
    model.fc_linear.register_forward_hook(lambda m, i, o: pooled.append(i[0]))
    with torch.no_grad():
        model(torch.from_numpy(seeded_input(arch, images)).double())
    mean = pooled[0].numpy().mean(axis=0)
    state = dict(state)
    state["fc_linear.bias"] = (-(state["fc_linear.weight"].astype(np.float64) @ mean)).astype(np.float32)
    return state


def _convert(tmp_path, state, *extra):
    src, dst = tmp_path / "src.pth", tmp_path / "out" / "x.pdparams"
    dst.parent.mkdir(exist_ok=True)
    write_torch(state, str(src))
    code = main([str(src), str(dst), "--json", *extra])
    return code, dst


@pytest.mark.parametrize("arch", ARCHS)
def test_cancelling_classifier_bias_is_accepted(tmp_path, capsys, arch):
    state = cancelling_state(arch)
    code, dst = _convert(tmp_path, state)
    result = json.loads(capsys.readouterr().out)
    v = result["verification"]
    print(f"GENet_{arch}, cancelling bias: margin {v['margin']:.3g}, logits relative L2 {v['rel_l2']:.3g}")
    assert code == 0 and result["status"] == "ok" and dst.exists(), v
    assert v["margin"] <= 1 and v["first_divergent"] is None
    # Really cancellation-heavy: the logits shrink by more than an order of magnitude, so their relative
    # noise grows as much (a fixed relative gate of 1e-5 refused exactly such files).
    plain = float64_model(arch, seeded_state(arch))
    with torch.no_grad():
        plain_scale = float(plain(torch.from_numpy(seeded_input(arch, 1)).double()).abs().max())
    (logits,) = [j for j in v["judgements"] if j["name"] == "logits"]
    assert logits["scale"] < 0.1 * plain_scale


def _paddle_key(arch, layer, role):
    a, table = get_arch(arch), mapping_table(arch)
    module = naming.layer_path(a, layer, "official")
    return next(r.paddle for r in table.rows if r.module == module and r.role == role)


def _last_stage_bn(a):
    return [x for x in a.super_blocks[-1].units[-1].branch if isinstance(x, BatchNorm)][-1]


def _swap_two_channels(t, key):
    v = t[key].copy()
    v[[0, 1]] = v[[1, 0]]
    t[key] = v


def _scale_channel(t, key, factor):
    v = t[key].copy()
    v[0] *= np.float32(factor)
    t[key] = v


def _block(a, stage):
    return naming.block_path(a, a.super_blocks[stage], "official")


FAULTS = {
    # name: (where, how, first checkpoint out of the rule) on the Paddle tensors genet-convert writes
    "BN running mean, two channels swapped, last BN of the last stage":
        (lambda a: _paddle_key(a.name, _last_stage_bn(a), "mean"), _swap_two_channels, lambda a: _block(a, -1)),
    "fc weight scaled by 1.001":
        (lambda a: "fc_linear.weight", lambda t, k: t.__setitem__(k, (t[k] * np.float32(1.001)).astype(np.float32)),
         lambda a: "logits"),
    "one 3x3 conv weight zeroed (stage 1, last unit)":
        (lambda a: _paddle_key(a.name, [x for x in a.super_blocks[1].units[-1].branch
                                        if isinstance(x, Conv) and x.kernel_size == 3][0], "weight"),
         lambda t, k: t.__setitem__(k, np.zeros_like(t[k])), lambda a: _block(a, 1)),
    "BN variance +1% on channel 0 of the last BN":
        (lambda a: _paddle_key(a.name, [b for b in a.body if isinstance(b, BatchNorm)][-1], "variance"),
         lambda t, k: _scale_channel(t, k, 1.01), lambda a: "pool"),
}


def inject(monkeypatch, arch, fault):
    """Make genet-convert write `fault` into its output tensors."""
    where, how, _ = FAULTS[fault]
    key = where(get_arch(arch))
    real = convert_module.to_layout

    def faulty(w, layout):
        tensors = dict(real(w, layout))
        how(tensors, key)
        return tensors

    monkeypatch.setattr(convert_module, "to_layout", faulty)
    return key


@pytest.mark.parametrize("fault", list(FAULTS))
def test_faults_are_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys, fault):
    key = inject(monkeypatch, "small", fault)
    code, dst = _convert(tmp_path, seeded_state("small"))
    result = json.loads(capsys.readouterr().out)
    v = result["verification"]
    print(f"GENet_small, {fault} ({key}): margin {v['margin']:.3g}, first divergent {v['first_divergent']}")
    assert code == 1 and result["status"] == "verification_failed" and result["exit_code"] == 1
    assert os.listdir(dst.parent) == []  # neither the checkpoint, its provenance nor a temporary
    # Named where it first shows: the super block that holds it (the pool after the last BN, the
    # logits for the classifier), in the Paddle model.
    assert v["margin"] > 1 and v["first_divergent"].endswith("of paddle GENet_small (paddle)")
    assert v["first_divergent"].split(" ")[0] == FAULTS[fault][2](get_arch("small"))


def test_cancelling_bias_and_fault_together_is_refused(tmp_path, monkeypatch, capsys):
    """The bar widened by cancellation does not hide a real fault."""
    inject(monkeypatch, "small", "fc weight scaled by 1.001")
    code, _ = _convert(tmp_path, cancelling_state("small"))
    v = json.loads(capsys.readouterr().out)["verification"]
    assert code == 1 and v["margin"] > 10
