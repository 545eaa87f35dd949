"""What a training-parity run found: one `QuantityCheck` per judged quantity, in the
order the quantities arise (step by step; within a step the forward of every
layer, the loss, the gradients in backpropagation order, then every
parameter and BN statistic after the update)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

SCHEMA = "genet-parity/train"
SCHEMA_VERSION = 1
PHASES = ("forward", "loss", "backward", "update")
PHASE_MEANS = {
    "forward": "train-mode output of the layer (BN with batch statistics)",
    "loss": "the loss of the step",
    "backward": "gradient of the parameter",
    "update": "parameter or BN running statistic after the optimizer step",
}


@dataclass
class QuantityCheck:
    """One quantity of one training step (an output, the loss, a gradient, an updated tensor), judged."""

    step: int  # 1-based
    phase: str  # forward | loss | backward | update
    kind: str  # forward: conv|bn|relu|unit|block|pool|fc; loss; else the tensor's role (weight|bias|mean|variance)
    name: str  # official (torch) name
    paddle_name: str
    order: int  # position in forward order: mapping-table module row, or tensor row
    shape: List[int]
    error: float  # max |Paddle - float64 recomputation of Paddle's step|
    reference_error: float  # max |torch - float64 recomputation of torch's step|
    bound: float
    scale: float  # max |float64|
    margin: float  # error / bound
    passed: bool
    rel_l2: Optional[float] = None  # ||Paddle - f64|| / ||f64|| (gradients)
    cosine: Optional[float] = None  # cos(Paddle, f64) (gradients)

    @classmethod
    def of(cls, step, phase, kind, name, paddle_name, order, shape, judgement, rel_l2=None,
           cosine=None) -> "QuantityCheck":
        return cls(step=step, phase=phase, kind=kind, name=name, paddle_name=paddle_name or name, order=order,
                   shape=[int(d) for d in shape], error=judgement.error, reference_error=judgement.reference_error,
                   bound=judgement.bound, scale=judgement.scale, margin=judgement.margin, passed=judgement.passed,
                   rel_l2=rel_l2, cosine=cosine)

    @property
    def label(self) -> str:
        if self.phase == "loss":
            return f"step {self.step}, loss"
        names = self.name if self.paddle_name == self.name else f"{self.name} (Paddle {self.paddle_name})"
        return f"step {self.step}, {self.phase}, {names}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("passed")
        return d


@dataclass
class StepSummary:
    step: int
    losses: Dict[str, float]  # torch, paddle and the float64 recomputation of each
    relu_branches: Dict[str, int]  # ReLU inputs whose float32 sign differs from float64's, per framework
    drift: Dict[str, object]  # largest relative Paddle - torch parameter difference after the step (information)
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    arch: str
    num_classes: int
    recipe: dict
    steps: int
    frozen_backbone: bool
    mistakes: List[str]
    batches: dict
    weights: dict
    head: dict
    checks: List[QuantityCheck]
    step_summaries: List[StepSummary]
    tolerance: dict
    environment: dict
    seconds: float
    timings: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def first_divergent(self) -> Optional[QuantityCheck]:
        return next((c for c in self.checks if not c.passed), None)

    def worst(self, phase: str, n: int = 10, step: Optional[int] = None) -> List[QuantityCheck]:
        """The `n` checks of `phase` with the largest margins (the worst first)."""
        cs = [c for c in self.checks if c.phase == phase and (step is None or c.step == step)]
        return sorted(cs, key=lambda c: -c.margin)[:n]

    @property
    def failures(self) -> List[str]:
        out = []
        for step in range(1, self.steps + 1):
            for phase in PHASES:
                bad = [c for c in self.checks if c.step == step and c.phase == phase and not c.passed]
                if bad:
                    worst = max(bad, key=lambda c: c.margin)
                    out.append(f"step {step} {phase}: {len(bad)} out of bound, first {bad[0].name} "
                               f"(margin {bad[0].margin:.3g}), worst {worst.name} (margin {worst.margin:.3g})")
        if not self.checks:
            out.append("nothing was compared")
        return out

    def to_dict(self) -> dict:
        first = self.first_divergent
        margins = {p: max((c.margin for c in self.checks if c.phase == p), default=None) for p in PHASES}
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "pass": self.passed,
            "first_divergent": None if first is None else {
                "step": first.step, "phase": first.phase, "name": first.name, "paddle_name": first.paddle_name,
                "kind": first.kind, "margin": first.margin, "label": first.label},
            "failures": self.failures, "worst_margin": margins,
            "arch": self.arch, "num_classes": self.num_classes, "steps": self.steps,
            "frozen_backbone": self.frozen_backbone, "recipe": dict(self.recipe), "mistakes": list(self.mistakes),
            "batches": dict(self.batches), "weights": dict(self.weights), "head": dict(self.head),
            "tolerance": dict(self.tolerance), "environment": dict(self.environment),
            "seconds": self.seconds, "timings_s": dict(self.timings), "notes": list(self.notes),
            "steps_summary": [s.to_dict() for s in self.step_summaries],
            "checks": [c.to_dict() for c in self.checks],
        }
