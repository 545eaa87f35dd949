"""The GPU checks' torch side (scripts/gpu_torch.py) and the TF32 pin, exercised on the CPU.

The GPU machine has CUDA torch but no Paddle, so the script must run with
Paddle absent; a dry run on the CPU keeps it from rotting between the rare
sessions that have a GPU."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_torch.py")
NO_PADDLE = "import sys; sys.modules['paddle'] = None\n"  # `import paddle` raises ImportError


def _script():
    spec = importlib.util.spec_from_file_location("gpu_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pin_tf32_off_turns_every_switch_off(monkeypatch):
    import torch

    from parity.core.frameworks import pin_tf32_off

    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision())
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        settings = pin_tf32_off()
        assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
        assert settings == {"NVIDIA_TF32_OVERRIDE": "0", "torch_cuda_matmul_allow_tf32": False,
                            "torch_cudnn_allow_tf32": False}  # a CPU build of Paddle has no TF32 switches
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.set_float32_matmul_precision(before[2])


def test_environment_record_without_paddle():
    code = NO_PADDLE + ("import json; from parity.core.environment import environment; "
                        "print(json.dumps(environment('cpu')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert env["paddle"] == "not installed" and env["paddle_flags"] == {}
    assert env["torch"] and "tf32" not in env["precision_flags"]  # a CPU record shows no GPU setting


def test_dry_run_without_paddle(tmp_path):
    argv = ["--out", str(tmp_path), "--device", "cpu", "--archs", "small", "--layer-archs", "small",
            "--batch-size", "4", "--layer-batch", "1", "--warmup", "1", "--iters", "2", "--photos", "2",
            "--cpu-half-rows", "2", "--no-compile"]
    code = NO_PADDLE + f"import runpy; sys.argv = {[SCRIPT] + argv!r}; runpy.run_path({SCRIPT!r}, run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    record = json.loads((tmp_path / "gpu_torch.json").read_text())
    assert record["environment"]["paddle"] == "not installed"
    assert record["tf32"]["NVIDIA_TF32_OVERRIDE"] == "0"
    small = record["archs"]["small"]
    assert set(small["latency"]) == {"eager fp32", "eager fp16", "channels-last fp16"}
    assert all(r["iters"] == 2 and r["ms_per_image"]["median"] > 0 for r in small["latency"].values())
    paths = small["correctness"]["paths"]
    assert small["correctness"]["rows"] == {"photo": 2, "seeded": 2}
    assert all(p["judgement"]["passed"] for p in paths.values())
    # float16 really ran in float16: its error against float64 is that of a 10-bit mantissa, not float32's
    assert paths["eager fp16"]["error_vs_float64_all_rows"] > 100 * paths["eager fp32"]["error_vs_float64_all_rows"]
    from converters.table.mapping import mapping_table

    modules = small["layers_fp16"]["modules"]
    assert [m["module"] for m in modules] == [m.official for m in mapping_table("small").modules]
    assert all(0 < m["isolated_eps"] < 64 for m in modules if m["kind"] in ("conv", "fc"))


def test_a_wrong_path_fails_the_rule():
    """The judging is not a formality: logits off by 1% of their scale fail."""
    import torch

    from parity.core.seeded import seeded_state

    gpu = _script()
    state = seeded_state("small")
    x, kinds = gpu.judged_batch("small", 3, 1)
    refs = gpu.references("small", state, x, "cpu", 3, lambda msg: None)
    model, prepare = gpu.build_paths("small", state, "cpu")["eager fp32"]

    class Off(torch.nn.Module):
        def forward(self, t):
            y = model(t)
            return y + 0.01 * y.abs().max()
    out, _ = gpu.correctness("small", {"eager fp32": (model, prepare), "wrong fp32": (Off(), prepare)}, x, kinds,
                             refs)
    assert out["paths"]["eager fp32"]["judgement"]["passed"]
    wrong = out["paths"]["wrong fp32"]["judgement"]
    assert not wrong["passed"] and wrong["margin"] > 10
    assert list(kinds) == ["photo", "seeded", "seeded"] and np.isfinite(wrong["error"])


def test_no_gpu_is_a_clear_exit(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = [SCRIPT, "--out", str(tmp_path), "--device", "gpu"]
    code = NO_PADDLE + f"import runpy; sys.argv = {argv!r}; runpy.run_path({SCRIPT!r}, run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "torch sees no CUDA GPU" in out.stderr
