"""Modules of both models by their mapping-table paths, and the CPU float16
emulation (weights, input and every mapped module's output rounded to
float16, arithmetic in float32) that the layer diff and eval share."""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np


def torch_module(model, path: str):
    """The torch module at `path`; a mistyped path raises, naming the missing part."""
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        raise LookupError(f"torch model has no module {path!r}: {e}") from None


def paddle_layer(model, path: str):
    """The Paddle layer at `path`, walked through registered sublayers only, so
    a mistyped path raises instead of landing on a parent or attribute."""
    layer = model
    for i, part in enumerate(path.split(".")):
        children = layer._sub_layers
        if part not in children:
            known = ", ".join(list(children)[:8]) or "none"
            raise LookupError(f"Paddle model has no layer {path!r}: "
                              f"{'.'.join(path.split('.')[:i]) or 'the model'} has no {part!r} (has: {known})")
        layer = children[part]
    return layer


def round_f16_torch(module, args, out):
    """Forward hook of the CPU float16 emulation: a module's output rounded to float16."""
    return out.half().float()


def round_f16_paddle(layer, inputs, out):
    return out.astype("float16").astype("float32")


def round_state_f16(state: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in state.items()}
