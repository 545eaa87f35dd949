"""The eager models of both frameworks as every tool builds them, and what
the machine offers them: device and dtype names, the unfused or BN-folded
states, native bfloat16, TensorRT."""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def layout_states(arch: str, official_state: Mapping[str, np.ndarray], fuse_bn: bool = False
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(torch state, Paddle state) for the unfused or BN-folded models."""
    from converters.table import fuse
    from converters.table.mapping import convert_state

    if fuse_bn:
        return (fuse.fuse_state(official_state, arch, fuse.FUSED),
                fuse.fuse_state(official_state, arch, fuse.PADDLE_FUSED))
    return dict(official_state), convert_state(official_state, arch, "official", "paddle")


def torch_device(device: str) -> str:
    return "cpu" if device == "cpu" else device.replace("gpu", "cuda")


def torch_dtype(dtype: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[check_dtype(dtype)]


def torch_model(arch: str, state: Mapping[str, np.ndarray], fused: bool = False, device: str = "cpu",
                dtype: str = "float32"):
    """Eager torch GENet with `state` (official layout, or 'fused' when fused;
    the head it holds)."""
    import torch_ref
    from converters.table.head import state_classes

    num_classes = state_classes(state, arch, "fused" if fused else "official")
    model = torch_ref.load_state(torch_ref.build(arch, num_classes, fused=fused), state, source="torch weights")
    return model.to(device=torch_device(device), dtype=torch_dtype(dtype)).eval()


def paddle_model(arch: str, state: Mapping[str, np.ndarray], fused: bool = False):
    """Eager float32 Paddle GENet with `state` (Paddle layout, or 'paddle_fused';
    the head it holds)."""
    import paddle_genet
    from converters.table.head import state_classes

    num_classes = state_classes(state, arch, "paddle_fused" if fused else "paddle")
    model = paddle_genet.load_state(paddle_genet.build(arch, num_classes, fused=fused), state,
                                    source="paddle weights")
    model.eval()
    return model


def cpu_has_bf16() -> bool:
    """Native bfloat16 instructions (AVX512-BF16 or AMX): oneDNN's bfloat16
    kernels are only faster than float32 with them."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def tensorrt_available() -> bool:
    from paddle import inference

    return tuple(inference.get_trt_compile_version()) != (0, 0, 0)
