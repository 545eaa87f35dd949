"""Load any supported GENet checkpoint and say what it is.

`load_weights(path)` reads the file safely (format from its content), then
identifies the architecture and layout from the tensors' names and shapes.
`to_layout(w, layout)` renames/transforms the tensors into another layout,
strictly, through the shared mapping table (or the BN folding of
`converters.table.fuse`). The converter, the layer diff, the evaluation and the
benchmarks all load checkpoints this way.

Layouts: 'official', 'timm', 'paddle' (unfused), 'fused' (official after
`fuse_bn`), 'paddle_fused' (the same in Paddle storage: fc weight [in, out]).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from genet_arch import ARCH_NAMES, DEFAULT_NUM_CLASSES, canonical_arch

from converters.table import fuse
from converters.table.checks import key_report
from converters.files.state_dicts import StateDictChoice
from converters.files.tensor_check import check_dtype
from converters.table.errors import CheckpointError
from converters.files.checkpoint import read_checkpoint
from converters.files.source import sha256_file
from converters.table.head import head_classes
from converters.table.mapping import mapping_table

UNFUSED_LAYOUTS = ("official", "timm", "paddle")
ALL_LAYOUTS = UNFUSED_LAYOUTS + fuse.FUSED_LAYOUTS
TORCH_STORAGE = ("official", "timm", "fused")  # read by torch models; the rest by Paddle models
NBT = "num_batches_tracked"


@dataclass
class LoadedWeights:
    path: str
    sha256: str
    arch: str  # 'small' | 'normal' | 'large'
    layout: str  # 'official' | 'timm' | 'paddle' | 'fused' | 'paddle_fused'
    tensors: Dict[str, np.ndarray]  # as read (after unwrap / prefix strip / bf16 widening)
    notes: List[str] = field(default_factory=list)  # casts, dropped or recreated entries, extras found
    format: str = ""  # torch-zip | torch-legacy | safetensors | pdparams
    dtypes: Dict[str, str] = field(default_factory=dict)  # dtype each tensor had in the file
    size_bytes: int = 0
    num_classes: int = DEFAULT_NUM_CLASSES  # the head's size, read from the classifier's tensors
    state_dict: StateDictChoice = field(default_factory=StateDictChoice)  # which entry of the file was read

    @property
    def framework(self) -> str:
        return "torch" if self.layout in TORCH_STORAGE else "paddle"

    @property
    def fused(self) -> bool:
        return self.layout in fuse.FUSED_LAYOUTS


def expected(arch: str, layout: str, num_classes: int = DEFAULT_NUM_CLASSES) -> List[Tuple[str, Tuple[int, ...]]]:
    """(key, shape) of every tensor of `arch` in `layout` with a `num_classes` head."""
    if layout in fuse.FUSED_LAYOUTS:
        return fuse.expected(arch, layout, num_classes)
    if layout not in UNFUSED_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {ALL_LAYOUTS}")
    return mapping_table(arch, num_classes).expected(layout)


def _without_nbt(items):
    return {k: tuple(v) for k, v in items if not k.endswith("." + NBT)}


def _expected_for(shapes: Mapping[str, Tuple[int, ...]], arch: str, layout: str):
    """(expected (key, shape) list, head size) of (arch, layout) with the head `shapes` hold."""
    n = head_classes(shapes, arch, layout)
    return expected(arch, layout, n), n


def _matches(shapes: Mapping[str, Tuple[int, ...]], arch: str, layout: str) -> Optional[Tuple[str, int]]:
    """('exact', head size) if `shapes` is exactly (arch, layout) with the
    head it holds; ('no-nbt', ...) if it is, except that every BN step counter
    is absent (some exporters drop them); else None."""
    exp, n = _expected_for(shapes, arch, layout)
    exp = dict(exp)
    if shapes == exp:
        return "exact", n
    if layout in ("official", "timm") and not any(k.endswith("." + NBT) for k in shapes) \
            and shapes == _without_nbt(exp.items()):
        return "no-nbt", n
    return None


def _closest_candidate(shapes, archs, layouts):
    """The (arch, layout) sharing the most key+shape pairs with `shapes`."""
    best, best_score = None, -1
    found = set(shapes.items())
    for a in archs:
        for lay in layouts:
            score = len(found & set((k, tuple(s)) for k, s in _expected_for(shapes, a, lay)[0]))
            if score > best_score:
                best, best_score = (a, lay), score
    return best


def identify_weights(shapes: Mapping[str, Tuple[int, ...]], path: str, arch: Optional[str] = None,
                     layout: Optional[str] = None) -> Tuple[str, str, str, int]:
    """(arch, layout, how, number of classes) of a checkpoint from its keys
    and shapes; `arch` and `layout` restrict the search. The head may have any
    number of classes (a fine-tuned checkpoint's); everything else must match
    exactly. Refuses unknown or ambiguous content."""
    archs = (canonical_arch(arch),) if arch else ARCH_NAMES
    if layout is not None and layout not in ALL_LAYOUTS:
        raise CheckpointError(path, f"unknown layout {layout!r}; expected one of {', '.join(ALL_LAYOUTS)}")
    layouts = (layout,) if layout else ALL_LAYOUTS
    shapes = {k: tuple(v) for k, v in shapes.items()}
    hits = [(a, lay) + m for a in archs for lay in layouts for m in [_matches(shapes, a, lay)] if m]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        listed = ", ".join(f"GENet_{a} ({lay})" for a, lay, _, _ in hits)
        raise CheckpointError(path, f"is ambiguous: its tensors match {listed}; pass --arch and --layout")
    # Nothing matched as asked: say what it is (if anything) and how it differs.
    if arch or layout:
        anywhere = [(a, lay) for a in ARCH_NAMES for lay in ALL_LAYOUTS if _matches(shapes, a, lay)]
        if anywhere:
            a, lay = anywhere[0]
            asked = (f"GENet_{archs[0]} in the {layout} layout" if arch and layout
                     else f"GENet_{archs[0]}" if arch else f"a checkpoint in the {layout} layout")
            raise CheckpointError(path, f"is GENet_{a} in the {lay} layout, not {asked} as asked; "
                                        f"drop or correct --arch/--layout")
    a, lay = _closest_candidate(shapes, archs, layouts)
    exp, n = _expected_for(shapes, a, lay)
    head = "" if n == DEFAULT_NUM_CLASSES else f" with a {n}-class head"
    report = key_report(shapes, exp, f"the {lay} layout of GENet_{a}{head}")
    raise CheckpointError(path, f"is not a GENet checkpoint this tool knows ({len(shapes)} tensors). Closest: "
                                f"GENet_{a} in the {lay} layout; the file {report}")


def step_counter_keys(arch: str, layout: str, num_classes: int = DEFAULT_NUM_CLASSES) -> List[str]:
    """The BatchNorm step counters of `layout` (the mapping table's int64 rows)."""
    if layout in fuse.FUSED_LAYOUTS:
        return []
    return [r.key(layout) for r in mapping_table(arch, num_classes).rows if r.dtype.startswith("int") and r.key(layout)]


def check_dtypes(dtypes: Mapping[str, str], arch: str, layout: str, source: Optional[str],
                 num_classes: int = DEFAULT_NUM_CLASSES) -> None:
    """Each tensor of the kind its mapping-table row says: float for all but
    the BatchNorm step counters; those, any number type the readers accept
    (their values: `check_step_counters`)."""
    counters = set(step_counter_keys(arch, layout, num_classes))
    for k, d in dtypes.items():
        check_dtype(source, k, d, integer=None if k in counters else False)


def check_step_counters(tensors: Dict[str, np.ndarray], keys, source: Optional[str]) -> List[str]:
    """BatchNorm step counters are metadata (no conversion keeps them, eval
    never reads them): one stored as a float (a state dict cast with `.half()`
    casts them too) is accepted when it holds a whole non-negative number,
    and every counter becomes int64 in `tensors`, in place. Anything else is
    refused by name. Returns the keys that were not integers in the file."""
    widened = []
    for k in keys:
        if k not in tensors:
            continue
        v = np.asarray(tensors[k])
        x = float(v) if v.dtype.kind == "f" else int(v)
        whole = bool(np.isfinite(x) and x == np.floor(x)) if v.dtype.kind == "f" else True
        if not whole or x < 0:
            raise CheckpointError(source, f"{k}: a BatchNorm step counter holding {x!r} ({v.dtype}); expected a "
                                          f"whole non-negative number")
        if v.dtype.kind == "f":
            widened.append(k)
        if v.dtype != np.int64:
            tensors[k] = np.array(int(x), dtype=np.int64)
    return widened


def check_finite(tensors: Mapping[str, np.ndarray], source: Optional[str]) -> None:
    """NaN/Inf anywhere is an error naming the tensor and the first bad element."""
    bad = []
    for k, v in tensors.items():
        if v.dtype.kind != "f":
            continue
        # A float64 sum is finite exactly when every element is (no overflow
        # is possible from float32/float16 values) and needs no temporary.
        if np.isfinite(np.sum(v, dtype=np.float64)):
            continue
        flat = np.asarray(v).reshape(-1)
        i = int(np.flatnonzero(~np.isfinite(flat))[0])
        idx = tuple(int(j) for j in np.unravel_index(i, v.shape)) if v.ndim else ()
        n = int(np.count_nonzero(~np.isfinite(flat)))
        bad.append(f"{k}: {n} of {flat.size} values are NaN/Inf (first {flat[i]} at index {list(idx)})")
    if bad:
        raise CheckpointError(source, "holds non-finite weights, which no conversion can verify: "
                                      + "; ".join(bad[:8])
                                      + (f"; and {len(bad) - 8} more tensors" if len(bad) > 8 else ""))


def load_weights(path: str, arch: Optional[str] = None, layout: Optional[str] = None,
                 trust_pickle: bool = False, allow_nonfinite: bool = False,
                 weights_key: Optional[str] = None) -> LoadedWeights:
    """Read `path` safely and identify it; see the module docstring.
    `weights_key`: the state dict of a training checkpoint to read
    (converters.files.state_dicts).

    Raises CheckpointError (one paragraph: what was expected, what was found)
    for unreadable, unknown, ambiguous or non-finite checkpoints.
    """
    import os

    path = str(path)
    try:
        arch_name = canonical_arch(arch) if arch else None
    except ValueError as e:
        raise CheckpointError(path, str(e)) from None
    raw = read_checkpoint(path, trust_pickle=trust_pickle, weights_key=weights_key)
    shapes = {k: tuple(np.shape(v)) for k, v in raw.tensors.items()}
    a, lay, how, num_classes = identify_weights(shapes, path, arch_name, layout)
    notes = list(raw.notes)
    tensors = raw.tensors
    # Files keep their own key order (safetensors sorts by offset); use the layout's.
    order = [k for k, _ in expected(a, lay, num_classes)]
    if how == "no-nbt":
        n = sum(1 for k in order if k.endswith("." + NBT))
        notes.append(f"{NBT} absent for all {n} BN layers: recreated as int64 0 (eval never reads it)")
        tensors = {k: tensors[k] if k in tensors else np.zeros((), np.int64) for k in order}
    else:
        tensors = {k: tensors[k] for k in order}
    check_dtypes(raw.dtypes, a, lay, path, num_classes)
    counters = check_step_counters(tensors, step_counter_keys(a, lay, num_classes), path)
    if counters:
        kinds = "/".join(sorted({raw.dtypes[k] for k in counters}))
        notes.append(f"{len(counters)} BatchNorm step counters stored as {kinds} (whole numbers) read as int64")
    widened = sorted(k for k, d in raw.dtypes.items() if d == "bfloat16")
    if widened:
        notes.append(f"{len(widened)} bfloat16 tensors held as float32 in memory (exact)")
    if not allow_nonfinite:
        check_finite(tensors, path)
    return LoadedWeights(path=path, sha256=sha256_file(path), arch=a, layout=lay, tensors=tensors, notes=notes,
                         format=raw.format, dtypes=dict(raw.dtypes), size_bytes=os.path.getsize(path),
                         num_classes=num_classes, state_dict=raw.state_dict)


def to_layout(w: LoadedWeights, layout: str) -> Dict[str, np.ndarray]:
    """`w`'s tensors in `layout`, strictly (every tensor consumed or dropped by
    a mapping-table rule). Arrays are shared, not copied, unless transformed.
    A fused checkpoint cannot be unfused."""
    if layout not in ALL_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {ALL_LAYOUTS}")
    if w.layout in fuse.FUSED_LAYOUTS:
        if layout not in fuse.FUSED_LAYOUTS:
            raise CheckpointError(w.path, f"is BN-fused ({w.layout}); folded BN cannot be recovered, so it cannot "
                                          f"be written in the unfused {layout} layout (use a fused layout)")
        return fuse.between_fused(w.tensors, w.layout, layout, w.arch, w.path)
    table = mapping_table(w.arch, w.num_classes)
    if layout in fuse.FUSED_LAYOUTS:
        return fuse.fuse_state(table.convert(w.tensors, w.layout, "official", w.path), w.arch, layout, w.path)
    return table.convert(w.tensors, w.layout, layout, w.path)
