"""What a layer diff starts from: its checked options, both layouts of the
weights and the input batch (float16-rounded for float16 runs), the optional
reference activations keyed by mapping-table row, and the table's rows grouped
into the top-level segments the run proceeds by."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from converters.table.mapping import ModuleMapping
from genet_arch import canonical_arch

from parity.core import tolerances
from parity.core.modules import round_state_f16


def load_reference(reference, rows) -> Dict[int, np.ndarray]:
    """Reference activations keyed by official module name -> {row index: array}.
    A `NetBlock` wrapper's name stands for its `.netblock` child. Every key must
    match a row: a mistyped key is an error, not a silently empty column."""
    if reference is None:
        return {}
    data = dict(np.load(reference)) if isinstance(reference, (str, os.PathLike)) else dict(reference)
    by_name = {}
    for i, row in enumerate(rows):
        by_name[row.official] = i
        if row.official.endswith(".netblock"):
            by_name.setdefault(row.official[: -len(".netblock")], i)
    unknown = sorted(k for k in data if k not in by_name)
    if unknown:
        raise ValueError(f"reference activations: no module named {', '.join(unknown)} in the official layout")
    return {by_name[k]: np.asarray(v) for k, v in data.items()}


@dataclass
class Options:
    arch: str
    dtype: str
    device: str
    atol: Optional[float]
    rtol: Optional[float]

    @property
    def relative(self) -> bool:
        return self.atol is None

    @property
    def emulated(self) -> bool:
        return self.dtype == "float16" and self.device == "cpu"

    @property
    def native_half(self) -> bool:
        return self.dtype == "float16" and self.device == "gpu"


def options(arch, dtype, atol, rtol, device) -> Options:
    import paddle
    import torch

    arch = canonical_arch(arch)
    tolerances.check_overrides(atol, rtol)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be cpu or gpu, got {device!r}")
    if device == "gpu" and not (torch.cuda.is_available() and paddle.device.is_compiled_with_cuda()):
        raise ValueError("device 'gpu' needs a CUDA device visible to both torch and a CUDA build of Paddle")
    return Options(arch=arch, dtype=dtype, device=device, atol=atol, rtol=rtol)

def prepare(table, opts: Options, official_state, paddle_state, inputs, batch_size, input_info):
    """Both layouts of the weights and the input batch, float16-rounded for
    float16 runs (the float64 reference must see what both sides see)."""
    from parity.core.seeded import seeded_input

    if official_state is None and paddle_state is None:
        raise ValueError("give official_state, paddle_state or both")
    if official_state is None:
        official_state = table.convert(paddle_state, "paddle", "official", source="Paddle weights")
    if paddle_state is None:
        paddle_state = table.convert(official_state, "official", "paddle", source="official weights")
    if opts.dtype == "float16":
        official_state, paddle_state = round_state_f16(official_state), round_state_f16(paddle_state)
    if inputs is None:
        inputs = seeded_input(opts.arch, batch_size)
        input_info = input_info or {"source": "seeded", "seed": 2021}
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 4 or inputs.shape[1] != 3:
        raise ValueError(f"inputs: expected (N, 3, H, W), got {inputs.shape}")
    if opts.dtype == "float16":
        inputs = inputs.astype(np.float16).astype(np.float32)
    input_info = dict(input_info or {"source": "given"})
    input_info.update(shape=list(inputs.shape), batch_size=int(inputs.shape[0]),
                      eval_resolution=table.arch.resolution)
    return official_state, paddle_state, inputs, input_info


def segments(rows: Sequence[ModuleMapping]) -> List[List[int]]:
    """Row indices grouped by top-level segment. The table lists a container
    after its contents, so each depth-0 row closes the segment it heads."""
    out, pending = [], []
    for i, row in enumerate(rows):
        pending.append(i)
        if row.depth == 0:
            out.append(pending)
            pending = []
    if pending:
        raise AssertionError(f"mapping table ends inside a container: {[rows[i].official for i in pending]}")
    return out
