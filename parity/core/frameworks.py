"""The eager models of both frameworks as every tool builds them, and what
the machine offers them: Paddle's quiet import, device and dtype names, the
unfused or BN-folded states, native bfloat16, TensorRT, the TF32 pin."""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")


_PADDLE_IMPORT_NOISE = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")


def import_paddle():
    """`import paddle` without its two import-time notices: one about a C++
    compiler cache (for building extensions, never done here), one about
    OMP_NUM_THREADS > 1 (which this tool sets on purpose, for speed). Anything
    else Paddle prints still reaches stderr."""
    import contextlib
    import io
    import sys
    import warnings

    from parity.core.runtime import paddle_log_flags  # its C++ log keeps errors only (see there)

    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    from converters.files.atomic import reclaim_signal_handlers, signals_deferred

    buf = io.StringIO()
    # Never interrupted half-way (a half-imported Paddle can crash the interpreter
    # on exit): a signal that arrives meanwhile is handled right after.
    with signals_deferred(), warnings.catch_warnings(), contextlib.redirect_stderr(buf), paddle_log_flags():
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle
    # Paddle's import takes SIGTERM over at the C level; this tool's cleanup needs it back.
    reclaim_signal_handlers()
    kept = [line for line in buf.getvalue().splitlines() if line and not line.startswith(_PADDLE_IMPORT_NOISE)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
    return paddle


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


# Ampere and later GPUs may compute float32 convolutions and matmuls in TF32
# (10-bit mantissa): Paddle does by default, torch does for cuDNN convs by
# default. Either would change float32 results by ~1e-3 relative and make the
# float32 comparisons of this project measure TF32 instead of the port.
TF32_OVERRIDE_ENV = "NVIDIA_TF32_OVERRIDE"


def pin_tf32_off() -> dict:
    """Turn TF32 off for every library that could use it in this process, and
    return the settings as recorded in reports (`tf32_settings`). Set before
    the first CUDA call: NVIDIA's libraries read the variable when they start."""
    import os
    import sys

    os.environ[TF32_OVERRIDE_ENV] = "0"
    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    if sys.modules.get("paddle") is not None:  # never imported here only for this: Paddle may be absent
        from paddle.base import core

        if core.is_compiled_with_cuda():
            core.set_cublas_switch(False)
            core.set_cudnn_switch(False)
    return tf32_settings()


def tf32_settings() -> dict:
    """TF32 as each framework in this process would use it now."""
    import os
    import sys

    out = {TF32_OVERRIDE_ENV: os.environ.get(TF32_OVERRIDE_ENV, "unset")}
    if "torch" in sys.modules:
        import torch

        out.update({"torch_cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                    "torch_cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)})
    if sys.modules.get("paddle") is not None:
        from paddle.base import core

        if core.is_compiled_with_cuda():
            out.update({"paddle_cublas_tf32": bool(core.get_cublas_switch()),
                        "paddle_cudnn_tf32": bool(core.get_cudnn_switch())})
    return out


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def tensorrt_available() -> bool:
    from paddle import inference

    return tuple(inference.get_trt_compile_version()) != (0, 0, 0)
