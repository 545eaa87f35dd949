"""Training-step parity (`parity.training`, `genet-parity train`).

References are independent of the code under test: the float64 torch
recomputation inside the tool, and for the fault injections the quantity the
test itself corrupted, derived from the mapping table here. Small batches
(2) keep the suite fast; the architecture is never changed.
"""
from __future__ import annotations

import json

import pytest

from converters.table.mapping import mapping_table
from converters.files.pretrained import with_head
from parity.training import Recipe, make_batches, run_training_parity
from parity.training.result import PHASES
from parity.core.seeded import seeded_state

FC_IN = {"small": 1920, "normal": 2560, "large": 2560}


def _run(arch="small", steps=1, batch=2, recipe=None, mistakes=(), num_classes=1000, freeze=False):
    state, _ = with_head(seeded_state(arch), arch, num_classes)
    batches = make_batches(arch, steps, batch, num_classes)
    return run_training_parity(arch, state, batches, recipe or Recipe(), freeze_backbone=freeze, mistakes=mistakes)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _margins(result):
    return {p: max(c.margin for c in result.checks if c.phase == p) for p in PHASES}


# ---------------------------------------------------------------- clean runs

CLEAN = {  # arch -> (steps, batch, recipe): both optimizers, Nesterov, optimizer state carried over steps
    "small": (2, 2, Recipe(nesterov=True)),
    "normal": (1, 2, Recipe(optimizer="adamw")),
    "large": (1, 1, Recipe()),
}


@pytest.mark.parametrize("arch", sorted(CLEAN))
def test_clean_training_steps_pass_with_margins(arch):
    steps, batch, recipe = CLEAN[arch]
    result = _run(arch, steps=steps, batch=batch, recipe=recipe)
    margins = _margins(result)
    print(f"GENet_{arch} {recipe.optimizer} {steps} steps: worst margins {margins}")
    assert result.passed, result.failures
    table = mapping_table(arch)
    params = [r for r in table.rows if r.role in ("weight", "bias")]
    stats = [r for r in table.rows if r.role in ("mean", "variance")]
    per_step = len(table.modules) + 1 + len(params) + len(params) + len(stats)
    assert len(result.checks) == steps * per_step  # every layer, the loss, every gradient, every tensor after
    assert all(0 < m <= 1 for m in margins.values())


def test_frozen_backbone_with_replaced_head_trains_only_the_head():
    result = _run("small", steps=1, num_classes=10, freeze=True)
    assert result.passed, result.failures
    grads = {c.name for c in result.checks if c.phase == "backward"}
    assert grads == {"fc_linear.weight", "fc_linear.bias"}
    # Frozen tensors are unchanged in Paddle: exactly the float64 copy of where they started.
    frozen = [c for c in result.checks if c.phase == "update" and c.kind in ("weight", "bias")
              and not c.name.startswith("fc_linear")]
    assert frozen and all(c.error == 0 for c in frozen)


# ---------------------------------------------------------------- fault injection

def _first_param(arch="small"):
    return next(r.official for r in mapping_table(arch).rows if r.role == "weight")


def _first_bn(arch, role):
    return next(r.official for r in mapping_table(arch).rows if r.role == role)


FAULTS = {
    # mistake: (recipe, num_classes, expected phase, expected name or None for "a parameter")
    "bn-momentum": (Recipe(), 1000, "update", _first_bn("small", "mean")),
    "weight-decay-twice": (Recipe(optimizer="adamw"), 1000, "update", None),
    "fc-grad-untransposed": (Recipe(), FC_IN["small"], "backward", "fc_linear.weight"),
    "nesterov-one-side": (Recipe(), 1000, "update", _first_param()),
    "label-smoothing-one-side": (Recipe(), 1000, "loss", "loss"),
}


@pytest.mark.parametrize("mistake", sorted(FAULTS))
def test_fault_is_named_as_the_first_divergence(mistake):
    recipe, num_classes, phase, name = FAULTS[mistake]
    result = _run(recipe=recipe, mistakes=[mistake], num_classes=num_classes)
    first = result.first_divergent
    print(f"{mistake}: first divergent {first and first.label}, margin {first and first.margin:.3g}")
    assert not result.passed and first is not None
    assert (first.step, first.phase) == (1, phase)
    if name is None:
        # Decay acts on parameters only: no layer, loss, gradient or BN statistic moves.
        assert first.kind in ("weight", "bias")
        assert all(c.passed for c in result.checks if c.phase != "update" or c.kind in ("mean", "variance"))
    else:
        assert first.name == name
    assert first.margin > 5  # far over the bound, not a rounding accident
    assert result.mistakes == [mistake] and "INJECTED" in result.notes[0]


def test_mistakes_are_checked_against_the_recipe():
    with pytest.raises(ValueError, match="square head"):
        _run(mistakes=["fc-grad-untransposed"])
    with pytest.raises(ValueError, match="adamw"):
        _run(mistakes=["adamw-as-adam-l2"])
    with pytest.raises(ValueError, match="unknown mistake"):
        _run(mistakes=["no-such-mistake"])


# ---------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from converters.files.torch_format import write_torch

    path = tmp_path_factory.mktemp("train") / "GENet_small.pth"
    write_torch(seeded_state("small"), str(path))
    return str(path)


def test_cli_names_the_replaced_head_and_the_fault_in_every_report(checkpoint, tmp_path, capsys, monkeypatch):
    from parity.commands.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    out = {ext: str(tmp_path / f"train.{ext}") for ext in ("json", "html")}
    rc = main(["train", "--weights", checkpoint, "--num-classes", str(FC_IN["small"]), "--steps", "1",
               "--batch-size", "2", "--inject", "fc-grad-untransposed", "--json", out["json"], "--html", out["html"]])
    text = capsys.readouterr().out
    printed = " ".join(text.split())
    assert rc == 1
    # An 80-column log: nothing longer, no box drawing, the gradient table's numbers parse.
    assert not [line for line in text.splitlines() if len(line) > 80] and not set(text) & set("─━│┃┏┓┗┛┡┩╇")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("step  tensor"))
    for line in lines[header + 2:header + 12]:
        step, tensor, *numbers = line.split()
        assert int(step) == 1 and all(float(v) >= 0 for v in numbers), line
    assert "first divergent: step 1, backward, fc_linear.weight" in printed
    assert "head replaced: fc_linear.weight, fc_linear.bias (1000 -> 1920 classes" in printed
    d = json.loads(_read(out["json"]))
    assert d["schema"] == "genet-parity/train" and d["pass"] is False
    assert d["first_divergent"]["name"] == "fc_linear.weight" and d["first_divergent"]["phase"] == "backward"
    assert d["head"]["replaced"] == ["fc_linear.weight", "fc_linear.bias"] and d["head"]["num_classes"] == 1920
    assert d["weights"]["layout"] == "official" and len(d["weights"]["sha256"]) == 64
    page = _read(out["html"])
    assert page.count("<svg") == 2 and 'class="divergent-marker"' in page
    assert "first divergent: step 1, backward, fc_linear.weight" in page


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one of --weights"),
    (["--random-weights", "--optimizer", "adamw", "--nesterov"], "SGD settings"),
    (["--random-weights", "--inject", "fc-grad-untransposed"], "square head"),
    (["--random-weights", "--steps", "0"], "--steps must be >= 1"),
    (["--random-weights", "--label-smoothing", "1.5"], "label_smoothing must be < 1"),
])
def test_cli_bad_input_exits_2(argv, message, capsys):
    from parity.commands.cli import main

    assert main(["train"] + argv) == 2
    assert message in capsys.readouterr().err
