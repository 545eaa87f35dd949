"""The one environment record every report carries (parity/core/environment.py)."""
from __future__ import annotations

import json
import os

from parity.core.environment import RENAMED, SCHEMA, environment
from parity.core.runtime import configured_threads

GPU_ONLY_FLAGS = {"cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_enabled", "cudnn_deterministic",
                  "cudnn_benchmark", "paddle_tensorrt"}


def test_cpu_record_has_the_documented_keys_and_no_gpu_setting():
    env = environment("cpu", "float32")
    assert env["schema"] == SCHEMA == "genet-parity/environment/1"
    for key in ("python", "platform", "machine", "cpu", "cpu_count", "load_average", "torch", "paddle", "numpy",
                "pillow", "device", "cuda_available", "precision", "threads", "precision_flags", "paddle_flags"):
        assert key in env, key
    assert env["device"] == "cpu" and env["precision"] == "float32" and "gpu" not in env
    assert len(env["load_average"]) == 3 and env["cpu_count"] == os.cpu_count()
    assert env["threads"]["configured"] == configured_threads()
    assert not GPU_ONLY_FLAGS & set(env["precision_flags"])
    assert not any("cudnn" in k for k in env["paddle_flags"])
    assert "FLAGS_use_onednn" in env["paddle_flags"]
    # Every old key names where its content is now, and that place exists.
    for old, new in RENAMED.items():
        top = new.split(".")[0]
        assert old != new and top in env, (old, new)
    json.dumps(env)  # JSON-ready as it is


def test_gpu_record_adds_the_gpu_settings():
    env = environment("gpu:0", "float16")
    assert env["device"] == "gpu:0" and env["precision"] == "float16"
    assert GPU_ONLY_FLAGS <= set(env["precision_flags"])
    assert {"FLAGS_cudnn_deterministic", "FLAGS_cudnn_exhaustive_search"} <= set(env["paddle_flags"])
