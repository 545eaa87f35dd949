"""The runners that evaluate a batch in each framework, and the checks that
decide which of them a run may trust: each framework's fast path proven at
start-up (else eager, said so), and the start-up logit check of every runner
on the first batch evaluated, both judged against the float64 recomputation
with the project's rule."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from parity.inputs.data import DataError

FRAMEWORKS = ("torch", "paddle")
PRECISIONS = ("float32", "float16", "bfloat16")


def normalize_device(device: str) -> str:
    """'cpu' | 'gpu' | 'gpu:N' (also accepts torch's 'cuda[:N]')."""
    d = (device or "cpu").strip().lower().replace("cuda", "gpu")
    if d == "cpu":
        return d
    if d == "gpu":
        return "gpu:0"
    if d.startswith("gpu:") and d[4:].isdigit():
        return d
    raise DataError(None, f"--device {device!r}: expected cpu, gpu or gpu:N")


# ---------------------------------------------------------------- runners
class TorchRunner:
    """The official model in PyTorch. float16 is `model.half()` as in the
    official evaluation (on CPU too: torch has CPU half convolutions).
    channels_last: the same eager model with NHWC tensors (oneDNN's native
    layout on CPU: no reorder around each convolution), checked at start-up
    by `check()` before a run trusts it."""

    name = "torch"

    def __init__(self, arch: str, official_state, device: str = "cpu", precision: str = "float32",
                 channels_last: bool = False):
        import torch

        from parity.core.frameworks import torch_device, torch_dtype, torch_model

        self.arch, self.official_state, self.precision, self.device = arch, official_state, precision, device
        if device != "cpu" and not torch.cuda.is_available():
            raise DataError(None, f"--device {device}: this PyTorch build sees no CUDA GPU")
        self.torch_device, self.dtype = torch_device(device), torch_dtype(precision)
        self.model = torch_model(arch, official_state, device=device, dtype=precision)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=self.memory_format)
        # Contiguous eager torch at this precision is the start-up checks' bar itself.
        self.is_reference = not channels_last
        mode = "eager channels-last" if channels_last else "eager"
        self.label = f"torch {torch.__version__} {mode}, {precision}, {device.split(':')[0]}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(device=self.torch_device, dtype=self.dtype)
            out = self.model(t.contiguous(memory_format=self.memory_format))
            return out.float().cpu().numpy()

    def check(self) -> dict:
        """This runner's logits on a seeded batch judged by the project's rule
        against the float64 recomputation (bar: eager torch, contiguous);
        raises VerificationError when they fail it."""
        from parity.core.reference import startup_check

        return startup_check(self, self.label, self.arch, self.official_state, self.precision, self.device)


class PaddleRunner:
    """The Paddle model. float16 on a GPU: `paddle.amp.decorate(level='O2')`,
    Paddle's `model.half()` (it keeps BatchNorm statistics in float32, which
    its float16 kernels require). Paddle has no CPU float16 kernels: there,
    float16 is the layer-diff tool's emulation and is labelled so."""

    name = "paddle"

    def __init__(self, arch: str, paddle_state, device: str = "cpu", precision: str = "float32"):
        import paddle

        import paddle_genet
        from converters.table.head import state_classes

        if device != "cpu" and not paddle.device.is_compiled_with_cuda():
            raise DataError(None, f"--device {device}: this PaddlePaddle build has no CUDA support")
        paddle.set_device(device)
        self.precision = precision
        self.emulated = precision == "float16" and device == "cpu"
        if precision == "bfloat16":
            raise DataError(None, "PaddlePaddle has no bfloat16 path here: evaluate with --framework torch "
                                  "for bfloat16, or use --precision float32/float16")
        if self.emulated:
            from parity.core.modules import round_state_f16

            paddle_state = round_state_f16(paddle_state)
        model = paddle_genet.load_state(paddle_genet.build(arch, state_classes(paddle_state, arch, "paddle")),
                                        paddle_state, source="paddle weights")
        model.eval()
        if self.emulated:
            self._round_every_layer(model, arch)
        elif precision == "float16":
            model = paddle.amp.decorate(models=model, level="O2", dtype="float16")
        self.model = model
        mode = "float16 EMULATED on CPU (float32 kernels, float16 rounding)" if self.emulated else precision
        self.label = f"paddle {paddle.__version__} eager, {mode}, {device.split(':')[0]}"

    @staticmethod
    def _round_every_layer(model, arch):
        """The layer-diff tool's emulation: weights, input and the output of
        every mapped module rounded to float16, arithmetic in float32."""
        from converters.table.mapping import mapping_table

        from parity.core.modules import paddle_layer, round_f16_paddle

        for row in mapping_table(arch).modules:
            paddle_layer(model, row.paddle).register_forward_post_hook(round_f16_paddle)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import paddle

        with paddle.no_grad():
            if self.emulated:
                x = x.astype(np.float16).astype(np.float32)
            t = paddle.to_tensor(x)
            if self.precision == "float16" and not self.emulated:
                # The documented way to run an O2-decorated model (untested here: no GPU in CI).
                with paddle.amp.auto_cast(enable=True, level="O2", dtype="float16"):
                    return self.model(t.astype("float16")).astype("float32").numpy()
            return self.model(t).astype("float32").numpy()


RUNNERS = ("fast", "eager")


def build_runners(arch: str, frameworks: Sequence[str], official_state=None, paddle_state=None,
                  device: str = "cpu", precision: str = "float32", runner: str = "eager",
                  say: Callable[[str], None] = lambda line: None) -> Dict[str, object]:
    """One runner per framework. runner='fast': each framework on its fastest
    path proven equal here, at start-up, against the float64 recomputation
    with the project's rule: torch eager on channels-last tensors, Paddle its
    inference predictor (oneDNN on CPU). Where a fast path is unavailable or
    fails its check, that framework runs eager and `say` reports why (never
    silently). runner='eager': both eager, contiguous.
    torch.compile is not used: its compilation (tens of seconds per input
    shape on CPU) costs more than it saves on all but the largest runs."""
    if runner not in RUNNERS:
        raise DataError(None, f"unknown runner {runner!r}; expected {', '.join(RUNNERS)}")
    runners = {}
    for fw in frameworks:
        if fw == "torch":
            eager = lambda: TorchRunner(arch, official_state, device, precision)  # noqa: E731
            fast = lambda: _checked(  # noqa: E731
                TorchRunner(arch, official_state, device, precision, channels_last=True))
            runners[fw] = _fast_or_eager(fw, "the channels-last path", fast, eager, None, runner, say)
        elif fw == "paddle":
            from parity.fastpath.inference import predictor_unavailable

            eager = lambda: PaddleRunner(arch, paddle_state, device, precision)  # noqa: E731
            from parity.fastpath.inference import PredictorRunner

            fast = lambda: PredictorRunner(arch, paddle_state, device, precision)  # noqa: E731
            runners[fw] = _fast_or_eager(fw, "the predictor", fast, eager, predictor_unavailable(device, precision),
                                         runner, say)
        else:
            raise DataError(None, f"unknown framework {fw!r}; expected {', '.join(FRAMEWORKS)}")
    return runners


def _checked(runner):
    runner.startup_check = runner.check()
    return runner


# What became of a framework's fast path (each runner's `fast_path["status"]`).
# FAST_FAILED is a finding (the fast path computes wrong logits): eval exits 1
# and the certificate fails; FAST_UNAVAILABLE only means it could not run here.
FAST_PASSED, FAST_FAILED, FAST_UNAVAILABLE, FAST_NOT_TRIED = (
    "passed its check", "failed its check", "unavailable", "not tried")


def _fast_or_eager(fw, what, build_fast, build_eager, unavailable, runner, say):
    """The fast runner when it builds and passes its start-up check, else the
    eager one, with a WARNING line saying why (`unavailable`: the reason the
    fast path cannot run here at all, asked before building anything). The
    runner returned carries `fast_path`: the status, the path, why, and the
    start-up check's judgement (with its margin) where one was made."""
    if runner == "eager":
        eager = build_eager()
        eager.fast_path = {"status": FAST_NOT_TRIED, "path": what, "reason": "--runner eager"}
        return eager
    why, judgement, status = unavailable, None, FAST_UNAVAILABLE
    if why is None:
        from converters.table.errors import VerificationError

        try:
            fast = build_fast()
            say(f"{fw}: {fast.label}, start-up check passed (margin {fast.startup_check['margin']:.2g})")
            fast.fast_path = {"status": FAST_PASSED, "path": what, "reason": "",
                              "judgement": fast.startup_check, "margin": fast.startup_check["margin"]}
            return fast
        except VerificationError as e:
            status, judgement = FAST_FAILED, getattr(e, "judgement", None)
            why = str(e)
        except (RuntimeError, ValueError, OSError) as e:  # what the frameworks raise for a path they cannot build
            why = f"{what} could not be built ({type(e).__name__}: {e})"
    eager = build_eager()
    if status == FAST_FAILED:
        margin = judgement["margin"] if judgement else None
        say(f"WARNING: {fw}: {what} FAILED its start-up check"
            + (f" (margin {margin:.3g}: its logits lie {margin:.3g} x the bound from the float64 recomputation)"
               if margin is not None else "")
            + f"; this run falls back to eager, and the failure is reported as a finding: {why}")
        eager.label += " (fast path failed its check)"
        eager.fast_path = {"status": FAST_FAILED, "path": what, "reason": why, "judgement": judgement,
                           "margin": margin}
    else:
        say(f"WARNING: {fw} falls back to eager: {why}")
        eager.label += " (fast path unavailable)"
        eager.fast_path = {"status": FAST_UNAVAILABLE, "path": what, "reason": why}
    return eager


def fast_paths_failed(fast_paths: Optional[dict]) -> List[str]:
    """The frameworks whose fast path failed its start-up check."""
    return [fw for fw, f in (fast_paths or {}).items() if f and f.get("status") == FAST_FAILED]


# ---------------------------------------------------------------- start-up logit check
CHECK_IMAGES = 8  # images of the first batch the check judges (float64 is a few times float32's cost)


def logit_check(arch: str, official_state, runners: Dict[str, object], device: str = "cpu",
                precision: str = "float32", n_images: int = CHECK_IMAGES) -> Callable[[np.ndarray], dict]:
    """A function that judges every runner's logits on (the first
    `n_images` of) a batch with the project's rule: the truth is the float64
    recomputation with `official_state`, the bar eager torch at `precision`.
    `evaluate` calls it on the first batch it runs and records the result."""
    import torch

    from parity.core.reference import float64_logits, torch_logits
    from parity.core.tolerances import is_reference, judge, reference_row

    # A Paddle-only run on a GPU in an environment whose torch is a CPU build (paddlepaddle-gpu and CUDA
    # torch often cannot share one): torch's bar at this precision is measured on the CPU, and said so.
    bar_device = device
    if "torch" not in runners and device != "cpu" and not torch.cuda.is_available():
        bar_device = "cpu"
    bar_label = f"torch eager {precision}" + (" on the CPU (this environment's torch has no CUDA)"
                                              if bar_device != device else "")

    def check(x: np.ndarray) -> dict:
        x = np.ascontiguousarray(x[:n_images])
        truth = float64_logits(arch, official_state, x)
        bar = torch_logits(arch, official_state, x, device=bar_device, dtype=precision)
        judgements = {}
        for fw, run in runners.items():
            name = f"GENet_{arch} logits"
            if getattr(run, "is_reference", False):  # the bar itself: judging it would compare it with itself
                judgements[fw] = reference_row(name, bar, truth, precision, run.label)
            else:
                judgements[fw] = judge(name, run(x), truth, reference=bar, dtype=precision, candidate_label=run.label,
                                       reference_label=bar_label).to_dict()
        judged = [j["passed"] for j in judgements.values() if not is_reference(j)]
        return {"type": "check", "n_images": int(len(x)), "precision": precision, "bar": bar_label,
                "truth": "torch_ref float64 recomputation, same weights and images",
                # None: only the reference ran, nothing was compared
                "judgements": judgements, "pass": all(judged) if judged else None,
                # this run's (or resumption's, or shard's) fast paths: a failure in any of them is kept
                "fast_paths": {fw: getattr(run, "fast_path", None) for fw, run in runners.items()}}
    return check
