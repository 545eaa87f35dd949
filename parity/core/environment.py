"""The one description of the machine and the frameworks that every report
carries (layer diff, training, bench, benchmarks, certificate).

Schema "genet-parity/environment/1" (docs/environment.md): python, platform,
machine, cpu, cpu_count, load_average (1/5/15-minute, when the record was
made: other work on the cores slows every figure), torch, paddle, numpy,
pillow, device, gpu (GPU devices only), cuda_available, precision, threads
(`runtime.thread_report`), precision_flags and paddle_flags. Settings that
cannot apply on a CPU (TF32, cuDNN, TensorRT, Paddle's cuDNN flags) are only
recorded for a GPU device, so a CPU report never shows a GPU setting.
"""
from __future__ import annotations

import os
import platform

SCHEMA = "genet-parity/environment/1"
PADDLE_CPU_FLAGS = ("FLAGS_use_onednn",)
PADDLE_GPU_FLAGS = ("FLAGS_cudnn_deterministic", "FLAGS_cudnn_exhaustive_search")
# Keys of older reports, and where their contents are now (docs/environment.md).
RENAMED = {"dtype": "precision", "tf32.matmul": "precision_flags.cuda_matmul_allow_tf32",
           "tf32.cudnn": "precision_flags.cudnn_allow_tf32", "cudnn.enabled": "precision_flags.cudnn_enabled",
           "cudnn.deterministic": "precision_flags.cudnn_deterministic",
           "cudnn.benchmark": "precision_flags.cudnn_benchmark", "processor": "cpu",
           "paddle_device": "device"}


def environment(device: str = "cpu", precision: str = "float32") -> dict:
    """The record for work on `device` ('cpu', 'gpu' or 'gpu:N') at `precision`."""
    import numpy
    import PIL
    import torch

    from parity.core.frameworks import cpu_has_bf16, tensorrt_available, tf32_settings

    try:  # a torch-only environment (a CUDA torch beside no paddlepaddle-gpu) is recorded as such
        import paddle
    except ImportError:
        paddle = None
    from parity.core.runtime import cpu_name, thread_report

    gpu = device != "cpu"
    env = {"schema": SCHEMA, "python": platform.python_version(), "platform": platform.platform(),
           "machine": platform.machine(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "load_average": [round(v, 2) for v in os.getloadavg()],
           "torch": torch.__version__, "paddle": paddle.__version__ if paddle else "not installed",
           "numpy": numpy.__version__, "pillow": PIL.__version__, "device": device, "cuda_available": bool(torch.cuda.is_available()),
           "precision": precision, "threads": thread_report(),
           "precision_flags": {"torch_float32_matmul_precision": torch.get_float32_matmul_precision(),
                               "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
                               "cpu_native_bfloat16": cpu_has_bf16()}}
    if gpu:
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else 0)
        env["precision_flags"].update({
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cudnn_enabled": bool(torch.backends.cudnn.enabled),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32": tf32_settings()})
        if paddle:
            env["precision_flags"]["paddle_tensorrt"] = tensorrt_available()
        if torch.cuda.is_available():
            env["cuda"] = {"torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "driver": _nvidia_driver()}
    env["paddle_flags"] = {}
    if not paddle:
        return env
    for flag in PADDLE_CPU_FLAGS + (PADDLE_GPU_FLAGS if gpu else ()):
        try:
            env["paddle_flags"][flag] = paddle.get_flags([flag])[flag]
        except ValueError:  # not compiled into this build
            env["paddle_flags"][flag] = "not in this build"
    return env


def _nvidia_driver() -> str:
    """The NVIDIA driver's version as nvidia-smi reports it ('unknown' without it)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
