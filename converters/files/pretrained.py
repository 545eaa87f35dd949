"""Pretrained weights for fine-tuning: any supported checkpoint (a
fine-tuned one too, whatever its head's size), loaded strictly, with a head
of another size than asked for replaced by a fresh one.

`pretrained_state(path, arch, num_classes, layout)` reads the checkpoint the
safe way (`converters.files.load.load_weights`: format and layout from the content),
converts it through the mapping table into `layout`, and, when `num_classes`
differs from the checkpoint's head, replaces `fc_linear` by a freshly
initialised head. Everything else must match key for key, or nothing is
produced. `torch_ref.build(..., pretrained=PATH)` and
`paddle_genet.build(..., pretrained=PATH)` both call it, so one seed gives the
same new head, number for number, in both frameworks.

The fresh head follows the distribution torch's `nn.Linear` initialises with,
U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, but drawn by numpy
(`Generator(seed)`, weight [out, in] row-major first, then the bias), so the
numbers do not depend on either framework's random state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from genet_arch import canonical_arch, check_num_classes, get_arch, naming

from converters.table.errors import CheckpointError
from converters.table.mapping import mapping_table

HEAD_SEED = 2022
UNFUSED = ("official", "timm", "paddle")


@dataclass
class LoadReport:
    """What a pretrained build loaded, and what it replaced (by name)."""

    source: str  # the checkpoint path, or a description of in-memory weights
    arch: str
    layout: str  # layout of the returned tensors
    num_classes: int
    checkpoint_classes: int
    loaded: List[str]  # keys (in `layout`) taken from the checkpoint, strictly
    replaced: List[str]  # keys (in `layout`) of the fresh head; empty when the head was kept
    head_seed: Optional[int] = None
    sha256: str = ""
    checkpoint_layout: str = ""
    notes: List[str] = field(default_factory=list)
    state_dict: dict = field(default_factory=dict)  # converters.files.state_dicts.StateDictChoice.to_dict()

    def __str__(self) -> str:
        head = (f"head replaced: {', '.join(self.replaced)} ({self.checkpoint_classes} -> {self.num_classes} classes, "
                f"fresh U(-1/sqrt(in), 1/sqrt(in)) from numpy seed {self.head_seed})" if self.replaced
                else f"head kept ({self.num_classes} classes)")
        return (f"GENet_{self.arch} from {self.source} ({self.checkpoint_layout or 'given'} layout): "
                f"{len(self.loaded)} tensors loaded strictly; {head}")

    def to_dict(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "arch": self.arch, "layout": self.layout,
                "checkpoint_layout": self.checkpoint_layout, "num_classes": self.num_classes,
                "checkpoint_classes": self.checkpoint_classes, "loaded": len(self.loaded),
                "replaced": list(self.replaced), "head_seed": self.head_seed, "notes": list(self.notes),
                "state_dict": dict(self.state_dict)}


def fresh_head(in_features: int, num_classes: int, seed: int = HEAD_SEED) -> Tuple[np.ndarray, np.ndarray]:
    """(weight [num_classes, in_features], bias [num_classes]) float32, torch storage."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    bound = 1.0 / np.sqrt(in_features)
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-bound, bound, (num_classes, in_features)).astype(np.float32)
    bias = rng.uniform(-bound, bound, (num_classes,)).astype(np.float32)
    return weight, bias


def _fc_rows(arch: str, num_classes: int):
    fc = naming.fc_path("official")
    return [r for r in mapping_table(arch, num_classes).rows if r.module == fc]


def with_head(official: Mapping[str, np.ndarray], arch: str, num_classes: int, seed: int = HEAD_SEED,
              source: Optional[str] = None) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """`official` (an official-layout state with a head of any size) with a
    `num_classes` head: the checkpoint's own when it has that size, else a
    fresh one. Returns (state, official keys replaced)."""
    arch = canonical_arch(arch)
    fc_rows = _fc_rows(arch, num_classes)
    weight_key = next(r.official for r in fc_rows if r.role == "weight")
    found = tuple(np.shape(official.get(weight_key, ())))
    if found == (num_classes, get_arch(arch).classifier.in_features):
        return dict(official), []
    weight, bias = fresh_head(get_arch(arch).classifier.in_features, num_classes, seed)
    out = dict(official)
    for r in fc_rows:
        if r.official not in out:
            raise CheckpointError(source, f"has no {r.official}; a head cannot be replaced where there is none")
        out[r.official] = weight if r.role == "weight" else bias
    return out, [r.official for r in fc_rows]


def pretrained_state(path: str, arch: Optional[str] = None, num_classes: Optional[int] = None,
                     layout: str = "official", head_seed: int = HEAD_SEED, trust_pickle: bool = False,
                     weights_key: Optional[str] = None) -> Tuple[Dict[str, np.ndarray], LoadReport]:
    """(tensors in `layout`, LoadReport) of the checkpoint at `path` for a
    `num_classes` model (default: the checkpoint's own head, whatever its
    size: a fine-tuned checkpoint continues as it is). `layout`: official,
    timm or paddle; a BN-fused checkpoint is refused, since fine-tuning trains
    the BN layers it no longer has. `weights_key`: which state dict of a
    training checkpoint (converters.files.state_dicts)."""
    from converters.files.load import load_weights, to_layout

    if layout not in UNFUSED:
        raise ValueError(f"pretrained weights are given in an unfused layout ({', '.join(UNFUSED)}), not {layout!r}")
    if num_classes is not None:
        num_classes = check_num_classes(num_classes)  # the caller's error, found before any reading
    w = load_weights(path, arch=arch, trust_pickle=trust_pickle, weights_key=weights_key)
    if w.fused:
        raise CheckpointError(path, f"is BN-fused ({w.layout}): its BN layers were folded away, so it cannot be "
                                    "loaded into a model that trains them; use the unfused checkpoint")
    checkpoint_classes = w.num_classes
    num_classes = checkpoint_classes if num_classes is None else num_classes
    official, replaced = with_head(to_layout(w, "official"), w.arch, num_classes, head_seed, path)
    table = mapping_table(w.arch, num_classes)
    tensors = official if layout == "official" else table.convert(official, "official", layout, source=path)
    replaced = [table.row("official", k).key(layout) for k in replaced]
    report = LoadReport(source=path, arch=w.arch, layout=layout, num_classes=num_classes,
                        checkpoint_classes=checkpoint_classes, loaded=[k for k in tensors if k not in replaced],
                        replaced=replaced, head_seed=head_seed if replaced else None, sha256=w.sha256,
                        checkpoint_layout=w.layout, notes=list(w.notes), state_dict=w.state_dict.to_dict())
    return tensors, report

