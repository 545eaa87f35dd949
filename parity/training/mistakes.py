"""Named porting mistakes that can be injected into a run, each one a way a
hand translation of a PyTorch fine-tuning script to Paddle goes wrong while
every forward output stays equal. They show what the comparison reports
(`genet-parity train --inject NAME`); the tests inject each and require the
run to fail with the right quantity named first; docs/train.md lists the
size of each one's effect.
"""
from __future__ import annotations

from typing import Iterable, Tuple

MISTAKES = {
    "bn-momentum": "Paddle BatchNorm2D given torch's momentum number (0.1) instead of 1 - 0.1 = 0.9: Paddle's "
                   "momentum weights the running statistic, torch's the batch statistic",
    "bn-biased-variance": "Paddle's own running-variance update (the biased batch variance) instead of torch's "
                          "unbiased one, i.e. paddle_genet's correction turned off",
    "weight-decay-twice": "decay in the optimizer (weight_decay=) and again as an L2Decay regulariser on every "
                          "parameter; Paddle's Momentum lets the regulariser replace its own decay, AdamW applies "
                          "both",
    "nesterov-one-side": "Nesterov momentum on one side only (Paddle's use_nesterov flipped)",
    "label-smoothing-one-side": "label smoothing on one side only (Paddle's cross_entropy without it, or with "
                                "0.1 when torch has none)",
    "loss-sum": "Paddle's loss summed over the batch instead of averaged (per-sample losses, as "
                "softmax_with_cross_entropy returns them, reduced with sum)",
    "adamw-as-adam-l2": "torch AdamW translated to Paddle Adam with an L2Decay regulariser: decay coupled to the "
                        "gradient (and rescaled by Adam) instead of decoupled",
    "fc-grad-untransposed": "a comparison mistake, not a Paddle one: the fc weight gradient compared without "
                            "transposing Paddle's [in, out] back to torch's [out, in]; shape-valid only with a "
                            "square head (--num-classes equal to the fc's input features)",
}
PADDLE_SIDE = tuple(k for k in MISTAKES if k != "fc-grad-untransposed")


def check_mistakes(names: Iterable[str], optimizer: str, square_head: bool) -> Tuple[str, ...]:
    """The names, validated against the recipe they are injected into."""
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in MISTAKES]
    if unknown:
        raise ValueError(f"unknown mistake {', '.join(unknown)}; known: {', '.join(MISTAKES)}")
    if "adamw-as-adam-l2" in names and optimizer != "adamw":
        raise ValueError("adamw-as-adam-l2 mistranslates an AdamW recipe; use --optimizer adamw")
    if "fc-grad-untransposed" in names and not square_head:
        raise ValueError("fc-grad-untransposed needs a square head (--num-classes equal to the fc's input "
                         "features), or the untransposed gradient cannot even be compared")
    return names
