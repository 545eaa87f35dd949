"""The parameter-name mapping table shared by the converter, both model
loaders and the layer-diff tool.

Rows are generated from the architecture description (`genet_arch`), never
listed by hand: one `ParamMapping` per tensor, naming it in every layout, with
the transform between torch-style and Paddle-style storage. `ModuleMapping`
rows pair the modules (conv, BN, ReLU, residual unit, super block, pool, fc)
the same way, for hooks.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from genet_arch import DEFAULT_NUM_CLASSES, Architecture, BatchNorm, Conv, ReLU, check_num_classes, get_arch
from genet_arch import naming
from genet_arch.naming import LAYOUTS

from converters.table.checks import check_keys
from converters.table.errors import CheckpointError
from converters.table.fused_layout import expected as fused_expected
from converters.table.head import head_classes, state_classes

# Layouts that store tensors the torch way (Linear [out, in], BN counters).
TORCH_LAYOUTS = ("official", "timm")
TABLE_FORMAT_VERSION = 1

IDENTITY, TRANSPOSE, DROP = "identity", "transpose", "drop"
NBT_REASON = ("torch BatchNorm step counter; Paddle has no counterpart and eval never reads it "
              "(recreated as int64 0 when writing a torch layout)")


@dataclass(frozen=True)
class ParamMapping:
    """One tensor, named in every layout. `None` where a layout lacks it."""

    official: str
    paddle: Optional[str]
    timm: str
    torch_shape: Tuple[int, ...]
    paddle_shape: Optional[Tuple[int, ...]]
    dtype: str
    action: str  # from torch storage to Paddle storage: identity | transpose | drop
    reason: str = ""
    module: str = ""  # official module path of the owning layer
    role: str = ""  # weight, bias, mean, variance, num_batches_tracked

    def key(self, layout: str) -> Optional[str]:
        if layout == "fused":
            raise ValueError("the fused layout is not a renaming; see converters.table.fuse")
        return getattr(self, layout)

    def shape(self, layout: str) -> Optional[Tuple[int, ...]]:
        return self.paddle_shape if layout == "paddle" else self.torch_shape


@dataclass(frozen=True)
class ModuleMapping:
    """One module (leaf layer, residual unit, super block, pool, fc) in every layout."""

    kind: str  # conv | bn | relu | unit | block | pool | fc
    official: str
    paddle: str
    timm: str
    node: object = field(compare=False, repr=False)
    depth: int = 0  # 0 top level, 1 inside a super block, 2 inside a unit

    def path(self, layout: str) -> str:
        return getattr(self, layout)


_KIND = {Conv: "conv", BatchNorm: "bn", ReLU: "relu"}


def _param_rows(arch: Architecture) -> List[ParamMapping]:
    rows: List[ParamMapping] = []
    for layer in arch.leaves():
        module = {lay: naming.layer_path(arch, layer, lay) for lay in ("official", "paddle", "timm")}
        names = {lay: dict(naming.tensor_suffixes(layer, lay)) for lay in ("official", "paddle", "timm")}
        for role, suffix in naming.tensor_suffixes(layer, "official"):
            if isinstance(layer, Conv):
                shape = layer.weight_shape if role == "weight" else (layer.out_channels,)
            else:
                shape = () if role == "num_batches_tracked" else (layer.channels,)
            dropped = role not in names["paddle"]
            rows.append(ParamMapping(
                official=f"{module['official']}.{suffix}",
                paddle=None if dropped else f"{module['paddle']}.{names['paddle'][role]}",
                timm=f"{module['timm']}.{names['timm'][role]}",
                torch_shape=shape, paddle_shape=None if dropped else shape,
                dtype="int64" if role == "num_batches_tracked" else "float32",
                action=DROP if dropped else IDENTITY, reason=NBT_REASON if dropped else "",
                module=module["official"], role=role))
    fc = arch.classifier
    for role, suffix in naming.tensor_suffixes(fc, "official"):
        keys = {lay: f"{naming.fc_path(lay)}.{suffix}" for lay in ("official", "paddle", "timm")}
        if role == "weight":
            rows.append(ParamMapping(keys["official"], keys["paddle"], keys["timm"], fc.torch_weight_shape,
                                     fc.paddle_weight_shape, "float32", TRANSPOSE,
                                     "torch Linear stores [out, in], Paddle Linear [in, out]",
                                     naming.fc_path("official"), role))
        else:
            rows.append(ParamMapping(keys["official"], keys["paddle"], keys["timm"], (fc.out_features,),
                                     (fc.out_features,), "float32", IDENTITY, "", naming.fc_path("official"), role))
    return rows


def _module_rows(arch: Architecture) -> List[ModuleMapping]:
    lays = ("official", "paddle", "timm")
    rows: List[ModuleMapping] = []

    def leaf(layer, depth):
        rows.append(ModuleMapping(_KIND[type(layer)], *(naming.layer_path(arch, layer, x) for x in lays),
                                  node=layer, depth=depth))

    for block in arch.body:
        if not hasattr(block, "units"):
            leaf(block, 0)
            continue
        for unit in block.units:
            for layer in (unit.shortcut or ()) + unit.branch:
                leaf(layer, 2)
            rows.append(ModuleMapping("unit", *(naming.unit_path(arch, unit, x) for x in lays), node=unit, depth=1))
        rows.append(ModuleMapping("block", *(naming.block_path(arch, block, x) for x in lays), node=block))
    rows.append(ModuleMapping("pool", *(naming.pool_path(x) for x in lays), node=arch.pool))
    rows.append(ModuleMapping("fc", *(naming.fc_path(x) for x in lays), node=arch.classifier))
    return rows


class MappingTable:
    """All tensors of one architecture in every layout; validated on creation."""

    def __init__(self, arch: Architecture):
        self.arch = arch
        self.rows: Tuple[ParamMapping, ...] = tuple(_param_rows(arch))
        self.modules: Tuple[ModuleMapping, ...] = tuple(_module_rows(arch))
        self._validate()
        self._by_key: Dict[str, Dict[str, ParamMapping]] = {
            lay: {r.key(lay): r for r in self.rows if r.key(lay) is not None} for lay in ("official", "paddle", "timm")}

    def _validate(self) -> None:
        for lay in ("official", "paddle", "timm"):
            keys = [r.key(lay) for r in self.rows if r.key(lay) is not None]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                raise AssertionError(f"mapping table {self.arch.name}: {lay} keys appear twice: {dup}")
            paths = [m.path(lay) for m in self.modules]
            dup = sorted({p for p in paths if paths.count(p) > 1})
            if dup:
                raise AssertionError(f"mapping table {self.arch.name}: {lay} module paths appear twice: {dup}")
        for r in self.rows:
            if r.action == TRANSPOSE and r.paddle_shape != tuple(reversed(r.torch_shape)):
                raise AssertionError(f"{r.official}: transpose row with shapes {r.torch_shape} / {r.paddle_shape}")
            if r.action == IDENTITY and r.paddle_shape != r.torch_shape:
                raise AssertionError(f"{r.official}: identity row with shapes {r.torch_shape} / {r.paddle_shape}")
            if (r.action == DROP) != (r.paddle is None):
                raise AssertionError(f"{r.official}: only dropped rows lack a Paddle key")

    @property
    def version(self) -> str:
        """Content hash of the rows: changes whenever any name, shape or action does."""
        h = hashlib.sha256(f"v{TABLE_FORMAT_VERSION}".encode())
        for r in self.rows:
            h.update(repr((r.official, r.paddle, r.timm, r.torch_shape, r.paddle_shape, r.dtype, r.action)).encode())
        return f"{TABLE_FORMAT_VERSION}-{h.hexdigest()[:16]}"

    def expected(self, layout: str) -> List[Tuple[str, Tuple[int, ...]]]:
        """(key, shape) of every tensor a checkpoint of `layout` holds, in file order."""
        return [(r.key(layout), r.shape(layout)) for r in self.rows if r.key(layout) is not None]

    def row(self, layout: str, key: str) -> ParamMapping:
        return self._by_key[layout][key]

    def convert(self, tensors: Mapping[str, np.ndarray], src: str, dst: str,
                source: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Rename and transform every tensor of layout `src` into layout `dst`.

        Strict: the input must hold exactly the tensors of `src` with their
        shapes, or nothing is produced and the error lists every problem.
        Arrays are not copied unless transposed.
        """
        for lay in (src, dst):
            if lay not in ("official", "paddle", "timm"):
                raise ValueError(f"unknown layout {lay!r}; expected official, paddle or timm")
        check_keys({k: tuple(np.shape(v)) for k, v in tensors.items()}, self.expected(src),
                   f"the {src} layout of GENet_{self.arch.name}", source)
        out: Dict[str, np.ndarray] = {}
        for r in self.rows:
            dst_key = r.key(dst)
            if dst_key is None:
                continue  # dropped: documented in r.reason
            src_key = r.key(src)
            if src_key is None:  # paddle -> torch: the step counter has no source
                out[dst_key] = np.zeros((), dtype=np.int64)
                continue
            value = tensors[src_key]
            if r.action == TRANSPOSE and (src == "paddle") != (dst == "paddle"):
                value = np.ascontiguousarray(np.asarray(value).T)
            if tuple(np.shape(value)) != r.shape(dst):
                raise CheckpointError(source, f"{dst_key}: expected {r.shape(dst)} after transform, "
                                              f"got {tuple(np.shape(value))}")
            out[dst_key] = value
        return out

    def to_rich_table(self, layouts=("official", "paddle", "timm")):
        from rich.table import Table

        t = Table(title=f"GENet_{self.arch.name} parameter mapping (table {self.version}, {len(self.rows)} rows)")
        for lay in layouts:
            t.add_column(f"{lay} key", overflow="fold")
        t.add_column("torch shape")
        t.add_column("paddle shape")
        t.add_column("transform")
        for r in self.rows:
            action = r.action if r.action != DROP else f"drop: {r.reason}"
            t.add_row(*(r.key(lay) or "-" for lay in layouts), str(r.torch_shape),
                      str(r.paddle_shape) if r.paddle_shape is not None else "-", action)
        return t


def mapping_table(arch: str, num_classes: int = DEFAULT_NUM_CLASSES) -> MappingTable:
    """The table of `arch` with a `num_classes` head (any number >= 1: a
    fine-tuned checkpoint's; only the classifier's rows depend on it)."""
    return _table(arch, check_num_classes(num_classes))


@lru_cache(maxsize=None)
def _table(arch: str, num_classes: int) -> MappingTable:
    return MappingTable(get_arch(arch, num_classes))


def convert_state(tensors: Mapping[str, np.ndarray], arch: str, src: str, dst: str,
                  source: Optional[str] = None) -> Dict[str, np.ndarray]:
    """`MappingTable.convert` with the table of the head `tensors` hold
    (converters.table.head): what to call on a state that may be fine-tuned."""
    return mapping_table(arch, state_classes(tensors, arch, src)).convert(tensors, src, dst, source)


def layouts() -> Tuple[str, ...]:
    return LAYOUTS


def identify(shapes: Mapping[str, Tuple[int, ...]]) -> List[Tuple[str, str]]:
    """Every (arch, layout) whose tensors match `shapes` exactly, key for key
    (with the head the shapes hold)."""
    from genet_arch import ARCH_NAMES

    found = {k: tuple(v) for k, v in shapes.items()}
    return [(a, lay) for a in ARCH_NAMES for lay in ("official", "paddle", "timm")
            if dict(mapping_table(a, head_classes(found, a, lay)).expected(lay)) == found]


def check_state(tensors: Mapping[str, np.ndarray], arch: str, layout: str, source: Optional[str] = None,
                num_classes: int = DEFAULT_NUM_CLASSES) -> None:
    """Raise CheckpointError unless `tensors` is exactly the `layout` state of
    `arch` with a `num_classes` head; when it is another variant or layout, say which."""
    table = mapping_table(arch, num_classes)
    shapes = {k: tuple(np.shape(v)) for k, v in tensors.items()}
    from converters.table.checks import key_report

    if layout in ("fused", "paddle_fused"):  # BN folded: not a renaming, listed by converters.table.fused_layout
        expected = fused_expected(table.arch.name, layout, num_classes)
    else:
        expected = table.expected(layout)
    head = "" if num_classes == DEFAULT_NUM_CLASSES else f" with a {num_classes}-class head"
    report = key_report(shapes, expected, f"the {layout} layout of GENet_{table.arch.name}{head}")
    if report is None:
        return
    matches = identify(shapes)
    if (table.arch.name, layout) in matches:  # the right model, another head size
        report = (f"has a {head_classes(shapes, table.arch.name, layout)}-class head, the model "
                  f"{num_classes} classes (build it with that num_classes). In detail, it " + report)
    elif matches:
        other = ", ".join(f"GENet_{a} in the {lay} layout" for a, lay in matches)
        report = (f"is {other}, not GENet_{table.arch.name} in the {layout} layout (pass the matching "
                  f"arch or layout). In detail, it " + report)
    raise CheckpointError(source, report)
