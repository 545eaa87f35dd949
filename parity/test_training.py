"""Certification: a fine-tuning step of your weights gives the same forward,
loss, gradients, parameters and BN statistics in Paddle as in PyTorch.

Default: GENet_small on seeded random weights. With --genet-weights: your
checkpoint (its own arch), converted through the mapping table for Paddle.
A failure names the first divergent quantity; `genet-parity train` gives the
full report.
"""
from __future__ import annotations

import pytest

STEPS, BATCH = 2, 2


def test_training_steps_match(user_weights):
    from converters.files.load import to_layout
    from genet_arch import DEFAULT_NUM_CLASSES
    from parity.core.seeded import seeded_state
    from parity.training import Recipe, make_batches, run_training_parity

    classes = DEFAULT_NUM_CLASSES
    if user_weights is None:
        arch, state, what = "small", seeded_state("small"), "seeded random weights (numpy seed 2020)"
    elif user_weights.fused:
        pytest.skip(f"{user_weights.path} is BN-fused ({user_weights.layout}); training needs the BN layers")
    else:
        arch, state, what = user_weights.arch, to_layout(user_weights, "official"), user_weights.path
        classes = user_weights.num_classes  # a fine-tuned checkpoint trains with its own head
    result = run_training_parity(arch, state, make_batches(arch, STEPS, BATCH, classes), Recipe())
    margins = {p: max(c.margin for c in result.checks if c.phase == p) for p in ("forward", "loss", "backward", "update")}
    print(f"GENet_{arch}, {what}: {STEPS} SGD steps at batch {BATCH}, worst margins {margins}")
    first = result.first_divergent
    assert result.passed, (f"GENet_{arch}, {what}: training parity FAILED; first divergent quantity: "
                           f"{first.label if first else 'none'}\n  " + "\n  ".join(result.failures[:10])
                           + "\n(run `genet-parity train` with the same weights for the full report)")
