"""One fine-tuning recipe (optimizer, learning rate, decay, loss) and its
PyTorch form, which the float32 and the float64 torch models both use.

The Paddle form of the same recipe is `parity.training.paddle_recipe`; the
conventions that differ between the two are listed there and in docs/train.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Tuple

OPTIMIZERS = ("sgd", "adamw")
# Fine-tuning learning rates (torch's default for AdamW), torch's default
# AdamW decay and the usual ImageNet SGD decay. lr * decay = 5e-6 per step is
# ~40 float32 ulp of a weight: a decay applied twice (or not at all) shows in
# one step. From random weights at batch 2, lr 0.1 makes the loss jump from 7
# to 18 in one step, and gradients so ill-conditioned (see docs/train.md) that
# the frameworks' summation orders alone differ by more than the rule allows.
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-2}
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-3}


@dataclass(frozen=True)
class Recipe:
    optimizer: str = "sgd"
    lr: Optional[float] = None  # None: DEFAULT_LR of the optimizer
    momentum: Optional[float] = None  # SGD only; None: 0.9
    nesterov: bool = False  # SGD only
    weight_decay: Optional[float] = None  # None: DEFAULT_WEIGHT_DECAY of the optimizer
    betas: Tuple[float, float] = (0.9, 0.999)  # AdamW only
    eps: float = 1e-8  # AdamW only
    label_smoothing: float = 0.1

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])
        if self.optimizer == "adamw" and (self.nesterov or self.momentum is not None):
            raise ValueError("momentum and nesterov are SGD settings; AdamW takes betas")
        if self.momentum is None:
            object.__setattr__(self, "momentum", 0.9 if self.optimizer == "sgd" else 0.0)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        problems = []
        for name in ("lr", "momentum", "weight_decay", "eps", "label_smoothing"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr == 0:
            problems.append("lr must be > 0 (a zero learning rate trains nothing to compare)")
        if not self.label_smoothing < 1:
            problems.append(f"label_smoothing must be < 1, got {self.label_smoothing}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum <= 0:
            problems.append("nesterov needs momentum > 0")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        if self.optimizer == "sgd":
            d.pop("betas"), d.pop("eps")
        else:
            d.pop("momentum"), d.pop("nesterov")
        return d

    def describe(self) -> str:
        if self.optimizer == "sgd":
            opt = (f"SGD lr {self.lr:g}, momentum {self.momentum:g}{' (Nesterov)' if self.nesterov else ''}, "
                   f"weight decay {self.weight_decay:g}")
        else:
            opt = (f"AdamW lr {self.lr:g}, betas ({self.betas[0]:g}, {self.betas[1]:g}), eps {self.eps:g}, "
                   f"decoupled weight decay {self.weight_decay:g}")
        return f"{opt}; cross-entropy (mean), label smoothing {self.label_smoothing:g}"

    # ---------------------------------------------------------------- PyTorch

    def torch_optimizer(self, params: Iterable):
        import torch

        params = list(params)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                                   weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                 weight_decay=self.weight_decay)

    def torch_loss(self, logits, labels):
        import torch.nn.functional as F

        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
