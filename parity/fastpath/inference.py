"""Fast inference paths, each proven equal to the eager model before use.

- torch "best": `torch.compile` with Inductor's weight freezing on a
  channels-last model (`torch.jit.trace`/`freeze` is deprecated in this torch
  and warns on every call, so it is not offered).
- Paddle "best": the inference export (`paddle.jit.save`) run by a
  `paddle.inference` predictor: oneDNN on CPU (optionally bfloat16, where the
  CPU has native bfloat16 instructions), CUDA on a GPU, TensorRT where the
  Paddle build has it.
- BN folding: `fused=True` models loaded with `converters.table.fuse` (the one
  implementation of the algebra, in numpy).

A predictor's output is compared with the eager model's once at start-up
(`PaddlePredictor(check=True)`); a mismatch beyond the precision's tolerance
raises VerificationError instead of handing back a wrong fast path.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Optional, Tuple

import numpy as np

from converters.files.atomic import remove, temporary_dir
from genet_arch import canonical_arch, get_arch

from parity.core.frameworks import check_dtype, cpu_has_bf16, paddle_model, tensorrt_available
from parity.core.runtime import configured_threads, set_paddle_threads

# ---------------------------------------------------------------- torch best mode
class TorchCompiled:
    """`torch.compile` with Inductor freezing (weights folded into the graph as
    constants, conv+bias+ReLU fused, oneDNN weight pre-packing on CPU) on a
    channels-last model. Compilation happens on the first call per input
    shape, so warm up with the shape you will time."""

    def __init__(self, model, channels_last: bool = True):
        import torch

        self.channels_last = channels_last
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        with _torch_jit_deprecation_ignored():
            self.compiled = torch.compile(model, options={"freezing": True}, dynamic=False)

    def prepare(self, x):
        """The input in the memory format the compiled graph was built for."""
        import torch

        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x):
        import torch

        with torch.inference_mode(), _torch_jit_deprecation_ignored():
            return self.compiled(x)


@contextlib.contextmanager
def _torch_jit_deprecation_ignored():
    """Inductor imports torch.utils.mkldnn, which is written with torch.jit
    decorators that torch itself now deprecates: torch's warning to torch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"`torch\.jit\.")
        yield


# ---------------------------------------------------------------- Paddle inference export
def export_paddle(model, directory: str, resolution: int, name: str = "genet",
                  blocks_as_is: bool = True) -> Tuple[str, str]:
    """`paddle.jit.save` with a dynamic batch; returns (model file, params file).

    blocks_as_is=False leaves dy2static to transform every block's forward,
    the slower way, measured against the default by the benchmark script; it
    has its effect only in a process that never exported with the default
    (Paddle keeps the list of modules it runs as they are for the process)."""
    import paddle
    from paddle.static import InputSpec

    import genet_arch.walk
    import paddle_genet.batchnorm
    import paddle_genet.model

    # The network's forward code has no control flow that depends on tensor
    # values (its loops run over the fixed list of blocks), so it is run as it
    # is while the program is recorded, instead of dy2static re-parsing and
    # transforming the source of every block's forward for each new model
    # (benchmark section 8 measures both ways). Only the entry point is
    # transformed. A program that came out wrong would fail the predictor's
    # start-up check (its logits against a float64 recomputation).
    if blocks_as_is:
        paddle.jit.ignore_module([genet_arch.walk, paddle_genet.model, paddle_genet.batchnorm])
    prefix = os.path.join(directory, name)
    paddle.jit.save(model, prefix, input_spec=[InputSpec([None, 3, resolution, resolution], "float32", "x")])
    params = prefix + ".pdiparams"
    for suffix in (".json", ".pdmodel"):  # PIR programs are .json; the legacy format .pdmodel
        if os.path.isfile(prefix + suffix):
            return prefix + suffix, params
    raise RuntimeError(f"paddle.jit.save wrote no program next to {params} (found {os.listdir(directory)})")


def predictor_unavailable(device: str, precision: str) -> Optional[str]:
    """Why the Paddle predictor cannot run `precision` on `device`, or None."""
    if device == "cpu" and precision == "float16":
        return "the Paddle predictor has no float16 CPU kernels; use float32 or bfloat16 on CPU"
    if device == "cpu" and precision == "bfloat16" and not cpu_has_bf16():
        return "the bfloat16 predictor needs a CPU with native bfloat16 (AVX512-BF16 or AMX); this one has neither"
    if device != "cpu" and precision == "bfloat16":
        return "the bfloat16 predictor is a CPU (oneDNN) path; use float16 on a GPU"
    return None


class PaddlePredictor:
    """A `paddle.inference` predictor of an eager Paddle GENet.

    precision: 'float32'; 'bfloat16' (oneDNN, CPU with native bf16 only);
    'float16' (GPU only). Input and output stay float32 arrays.
    check: run `check_input` (a seeded batch of 2 when None) through the
    predictor and raise VerificationError unless its logits pass the
    project's rule (`parity.core.tolerances`): within FACTOR x eager torch's own
    error at this precision of the float64 recomputation (see `verify`).
    The predictor sets Paddle's thread count to 1 after every run; each run
    here restores the configured count (`threads`).
    """

    def __init__(self, model, arch: str, precision: str = "float32", device: str = "cpu",
                 threads: Optional[int] = None, check: bool = True, check_input: Optional[np.ndarray] = None,
                 tensorrt: Optional[bool] = None, max_batch_size: int = 64):
        from paddle import inference

        self.arch = canonical_arch(arch)
        self.precision = check_dtype(precision)
        self.device = device
        self.threads = int(threads or configured_threads())
        resolution = get_arch(self.arch).resolution
        why = predictor_unavailable(device, self.precision)
        if why:
            raise ValueError(why)
        start = time.perf_counter()
        self._dir = temporary_dir("genet_predictor_")
        try:
            model_file, params_file = export_paddle(model, self._dir, resolution)
            config = inference.Config(model_file, params_file)
            config.disable_glog_info()
            self.tensorrt = False
            if device == "cpu":
                config.disable_gpu()
                config.enable_onednn()
                config.set_cpu_math_library_num_threads(self.threads)
                if precision == "bfloat16":
                    config.enable_onednn_bfloat16()
            else:
                gpu_id = int(device.split(":")[1]) if ":" in device else 0
                kind = inference.PrecisionType.Half if precision == "float16" else inference.PrecisionType.Float32
                config.enable_use_gpu(256, gpu_id, kind)
                self.tensorrt = tensorrt_available() if tensorrt is None else tensorrt
                if self.tensorrt:
                    config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=max_batch_size,
                                                  min_subgraph_size=3, precision_mode=kind, use_static=False,
                                                  use_calib_mode=False)
                    shape = lambda b: {"x": [b, 3, resolution, resolution]}  # noqa: E731
                    config.set_trt_dynamic_shape_info(shape(1), shape(max_batch_size), shape(max_batch_size))
            self.predictor = inference.create_predictor(config)
        except BaseException:
            remove(self._dir)
            raise
        self._in = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._out = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self.build_seconds = time.perf_counter() - start
        backend = ("oneDNN" if device == "cpu" else "TensorRT" if self.tensorrt else "CUDA")
        self.label = f"paddle predictor ({backend}, {precision})"
        self.startup_check = None
        if check:
            self.startup_check = self.verify(model, check_input)

    def set_input(self, x: np.ndarray) -> None:
        """Copy a float32 batch into the predictor (once; runs reuse it)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._in.reshape(list(x.shape))
        self._in.copy_from_cpu(x)

    def run(self) -> None:
        self.predictor.run()
        # The predictor leaves Paddle on one thread after each run.
        set_paddle_threads(self.threads)

    def output(self) -> np.ndarray:
        return self._out.copy_to_cpu()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.run()
        return self.output()

    def verify(self, model, x: Optional[np.ndarray] = None) -> dict:
        """The start-up check (see the class doc): the predictor's logits for
        `x` judged by the project's rule against the float64 recomputation of
        the eager `model`'s weights, the bar set by eager torch at the same
        precision."""
        import paddle

        from parity.core.reference import startup_check, torch_state_of_paddle

        if self.device != "cpu":
            paddle.set_device(self.device)
        fused = bool(getattr(model, "fused", False))
        return startup_check(self, self.label, self.arch, torch_state_of_paddle(model, self.arch, fused),
                             dtype=self.precision, device=self.device, fused=fused, x=x)

    def close(self) -> None:
        remove(self._dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PredictorRunner:
    """The evaluation runner interface (name, label, __call__(float32 batch) ->
    float32 logits) over a PaddlePredictor, for `genet-parity eval`."""

    name = "paddle"

    def __init__(self, arch: str, paddle_state, device: str = "cpu", precision: str = "float32",
                 fused: bool = False):
        import paddle

        if device != "cpu":
            paddle.set_device(device)
        model = paddle_model(arch, paddle_state, fused=fused)
        self.predictor = PaddlePredictor(model, arch, precision=precision, device=device)
        self.startup_check = self.predictor.startup_check
        self.label = f"paddle {paddle.__version__} {self.predictor.label.replace('paddle ', '', 1)}, {device.split(':')[0]}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.predictor(x)
