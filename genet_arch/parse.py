"""Parse the official GENet structure strings into `Architecture` nodes.

Grammar (official PlainNet notation, blocks separated by whitespace):
    ConvKX(in,out,k,stride)  BN(c)  RELU(c)
    SuperResKXKX(in,out,k,stride,expansion,sublayers)   also K1KXK1, K1DWK1
    AdaptiveAvgPool(c,1)
A flatten and a Linear classifier follow the pool; they are not in the string.
"""
from __future__ import annotations

import numbers
import re
from typing import List, Tuple

from genet_arch.nodes import (AdaptiveAvgPool, Architecture, BatchNorm, Conv, Linear, ReLU,
                              ResidualUnit, Site, SuperBlock, TopLevel, units_mid)

_TOKEN = re.compile(r"\s*([A-Za-z0-9]+)\(([^()]*)\)\s*")
_SUPER_KINDS = {"SuperResKXKX": "KXKX", "SuperResK1KXK1": "K1KXK1", "SuperResK1DWK1": "K1DWK1"}
_ARITY = {"ConvKX": 4, "BN": 1, "RELU": 1, "AdaptiveAvgPool": 2, **{k: 6 for k in _SUPER_KINDS}}


class StructureError(ValueError):
    pass


def _tokens(structure: str) -> List[Tuple[str, List[str], int]]:
    pos, out = 0, []
    while pos < len(structure):
        if structure[pos:].strip() == "":
            break
        m = _TOKEN.match(structure, pos)
        if not m:
            raise StructureError(f"cannot parse structure at character {pos}: {structure[pos:pos + 40]!r}")
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if name not in _ARITY:
            raise StructureError(f"unknown block {name!r} at character {pos}; known: {sorted(_ARITY)}")
        if len(args) != _ARITY[name]:
            raise StructureError(f"{name} at character {pos} takes {_ARITY[name]} arguments, got {len(args)}: {m.group(0).strip()}")
        out.append((name, args, pos))
        pos = m.end()
    return out


def _int(v: str, what: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise StructureError(f"{what}: expected an integer, got {v!r}") from None


def _unit(kind: str, top: int, stage: int, index: int, cin: int, cout: int, k: int, stride: int,
          expansion: float) -> ResidualUnit:
    mid = units_mid(cout, expansion)

    def site(part, position):
        return Site(top=top, stage=stage, unit=index, part=part, position=position)

    layers: List = []

    def conv_bn(cin_, cout_, k_, s_, groups=1, relu=True):
        p = len(layers)
        layers.append(Conv(site("branch", p), cin_, cout_, k_, s_, groups))
        layers.append(BatchNorm(site("branch", p + 1), cout_))
        if relu:
            layers.append(ReLU(site("branch", p + 2), cout_))

    if kind == "KXKX":
        # Stride on the first kxk conv.
        conv_bn(cin, mid, k, stride)
        conv_bn(mid, cout, k, 1, relu=False)
    else:
        # Bottlenecks: stride on the middle kxk conv; depthwise in K1DWK1.
        conv_bn(cin, mid, 1, 1)
        conv_bn(mid, mid, k, stride, groups=mid if kind == "K1DWK1" else 1)
        conv_bn(mid, cout, 1, 1, relu=False)
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = (Conv(site("shortcut", 0), cin, cout, 1, stride),
                    BatchNorm(site("shortcut", 1), cout))
    return ResidualUnit(stage, index, cin, cout, stride, tuple(layers), shortcut)


# The official models' head: ImageNet-1k. A fine-tuned checkpoint's head has
# its own size, read from the file (converters.table.head); this is the size
# where there is no file.
DEFAULT_NUM_CLASSES = 1000


def check_num_classes(num_classes) -> int:
    """`num_classes` as an int, if it is an integer >= 1; else ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return int(num_classes)


def parse_structure(structure: str, name: str, resolution: int,
                    num_classes: int = DEFAULT_NUM_CLASSES) -> Architecture:
    num_classes = check_num_classes(num_classes)
    tokens = _tokens(structure)
    body: List[TopLevel] = []
    pool = None
    channels = None
    stage = 0
    for name_, args, pos in tokens:
        if pool is not None:
            raise StructureError(f"{name_} at character {pos} follows AdaptiveAvgPool; the pool must be last")
        where = f"{name_} at character {pos}"
        top = len(body)
        if name_ == "ConvKX":
            cin, cout, k, s = (_int(a, where) for a in args)
            node, cin_, cout_ = Conv(Site(top), cin, cout, k, s), cin, cout
        elif name_ in ("BN", "RELU"):
            c = _int(args[0], where)
            node = BatchNorm(Site(top), c) if name_ == "BN" else ReLU(Site(top), c)
            cin_ = cout_ = c
        elif name_ == "AdaptiveAvgPool":
            c, size = (_int(a, where) for a in args)
            pool, cin_, cout_ = AdaptiveAvgPool(c, size), c, c
            node = None
        else:
            kind = _SUPER_KINDS[name_]
            cin, cout, k, s = (_int(a, where) for a in args[:4])
            try:
                expansion = float(args[4])
            except ValueError:
                raise StructureError(f"{where}: expansion must be a number, got {args[4]!r}") from None
            depth = _int(args[5], where)
            if depth < 1:
                raise StructureError(f"{where}: sublayers must be >= 1, got {depth}")
            units = tuple(
                _unit(kind, top, stage, u, cin if u == 0 else cout, cout, k, s if u == 0 else 1, expansion)
                for u in range(depth))
            node = SuperBlock(Site(top, stage=stage), kind, cin, cout, k, s, expansion, depth, units)
            stage += 1
            cin_, cout_ = cin, cout
        if channels is not None and cin_ != channels:
            raise StructureError(f"{where}: takes {cin_} channels but the previous block gives {channels}")
        channels = cout_
        if node is not None:
            body.append(node)
    if pool is None:
        raise StructureError("structure has no AdaptiveAvgPool(c,1) at its end")
    if pool.output_size != 1:
        raise StructureError(f"AdaptiveAvgPool output size must be 1, got {pool.output_size}")
    return Architecture(name=name, structure=structure, body=tuple(body), pool=pool,
                        classifier=Linear(pool.channels, num_classes), resolution=resolution)
