"""Reading a checkpoint of any supported format without executing code from it:
the format is detected from the file's content and the file handed to its reader.

Readers return plain `{name: numpy.ndarray}` dicts in file order, memory-mapped
where the format allows (torch zip files, safetensors), so a conversion holds
the source tensors once, as pages of the file.

Safety, in one place: only regular files are opened (`source`); `torch.load`
only ever runs with `weights_only=True` (`torch_format`) and `.pdparams` files
are read with a restricted unpickler (`pdparams`), unless an explicit
`trust_pickle=True` (the CLI's `--trust-pickle`) says otherwise; every pickle's
work is bounded by its size before it is unpickled (`pickle_scan`), numpy
objects are rebuilt from plain number types only (`safe_numpy`), and every
tensor of every format passes one check of its key, dtype, shape and bytes,
within a budget proportional to the file's size, before it becomes an array
(`tensor_check`). See docs/convert.md, "Threat model".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from converters.files.pdparams import read_pdparams
from converters.files.safetensors_format import read_safetensors
from converters.files.source import SAFETENSORS, TORCH_LEGACY, TORCH_ZIP, file_size, sniff_format
from converters.files.state_dicts import StateDictChoice
from converters.files.torch_format import load_torch_object, torch_to_numpy, unwrap_state_dict
from converters.table.errors import CheckpointError


@dataclass
class RawCheckpoint:
    """The tensors of a file as read, before any naming is interpreted."""

    format: str
    tensors: Dict[str, np.ndarray]
    dtypes: Dict[str, str] = field(default_factory=dict)  # dtype in the file, per key
    notes: List[str] = field(default_factory=list)
    state_dict: StateDictChoice = field(default_factory=StateDictChoice)  # the entry the tensors came from


def read_checkpoint(path: str, trust_pickle: bool = False, expect=None,
                    weights_key: Optional[str] = None) -> RawCheckpoint:
    """Any supported checkpoint, format detected from its content;
    `weights_key` names the state dict of a training checkpoint to read."""
    fmt = sniff_format(path)
    if expect is not None and fmt not in expect:
        raise CheckpointError(path, f"is a {fmt} file; expected {' or '.join(expect)}")
    notes: List[str] = []
    dtypes: Dict[str, str] = {}
    choice = StateDictChoice()
    if weights_key is not None and fmt not in (TORCH_ZIP, TORCH_LEGACY):
        raise CheckpointError(path, f"is a {fmt} file, which holds one state dict; --weights-key {weights_key} "
                                    f"chooses among the state dicts of a PyTorch training checkpoint")
    if fmt in (TORCH_ZIP, TORCH_LEGACY):
        obj = load_torch_object(path, fmt, trust_pickle, notes)
        state, choice = unwrap_state_dict(obj, path, notes, weights_key)
        tensors = torch_to_numpy(state, path, dtypes, file_size(path))
    elif fmt == SAFETENSORS:
        tensors, dtypes, metadata = read_safetensors(path)
        if metadata:
            notes.append(f"safetensors metadata: {json.dumps(metadata, sort_keys=True)[:200]}")
    else:
        tensors = read_pdparams(path, notes)
        dtypes = {k: str(v.dtype) for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(path, "holds no tensors")
    return RawCheckpoint(fmt, tensors, dtypes, notes, choice)


def read_torch(path: str, trust_pickle: bool = False, weights_key: Optional[str] = None) -> Dict[str, np.ndarray]:
    """A `.pth`/`.pt` state dict, loaded with `torch.load(weights_only=True)`.
    Here rather than in `torch_format`: it is `read_checkpoint` limited to the
    torch formats, and `read_checkpoint` builds on `torch_format`."""
    return read_checkpoint(path, trust_pickle=trust_pickle, expect=(TORCH_ZIP, TORCH_LEGACY),
                           weights_key=weights_key).tensors
