"""The float64 recomputation every verdict of this project is judged against.

One model: `torch_ref` (the official module layout) with float64 parameters
and buffers. It is the truth in the layer diff, in conversion verification,
in the fast paths' start-up checks and in the training-step comparison; the
pass rule that uses it is `parity.core.tolerances`.
"""
from __future__ import annotations

import copy
import types
import warnings
from typing import Mapping

import numpy as np


def _depthwise_f64(self, x):
    """Depthwise conv as k*k shifted multiply-adds: the same sum, but torch's
    float64 depthwise kernel with stride 2 is ~100x slower than this on CPU."""
    import torch.nn.functional as F

    k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
    xp = F.pad(x, (p, p, p, p))
    h, w = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
    out = None
    for i in range(k):
        for j in range(k):
            shifted = xp[:, :, i:i + s * (h - 1) + 1:s, j:j + s * (w - 1) + 1:s]
            weight = self.weight[:, 0, i, j].view(1, -1, 1, 1)
            # Accumulated in place: one output buffer instead of two new tensors per tap.
            out = shifted * weight if out is None else out.addcmul_(shifted, weight)
    return out if self.bias is None else out.add_(self.bias.view(1, -1, 1, 1))


def _per_image_f64(self, x):
    """A dense k x k conv one image at a time: torch's float64 CPU kernel
    unfolds the whole batch at once (k*k times the input's size: ~300 MB for
    one 3x3 conv of GENet_large at batch 8), the largest temporary of the
    float64 model. Each image's result is the kernel's own."""
    if x.dim() != 4 or x.shape[0] <= 1:
        return self._conv_forward(x, self.weight, self.bias)
    import torch

    return torch.cat([self._conv_forward(x[i:i + 1], self.weight, self.bias) for i in range(x.shape[0])])


def fast_float64(model):
    """Route `model`'s depthwise convs through `_depthwise_f64` and its dense
    k x k convs through `_per_image_f64` (in place); returns the model.
    Differentiable, so it serves training steps too."""
    from torch import nn

    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.groups == m.in_channels == m.out_channels > 1 \
                and m.dilation == (1, 1) and m.padding_mode == "zeros" and len(set(m.kernel_size)) == 1:
            m.forward = types.MethodType(_depthwise_f64, m)
        elif m.groups == 1 and max(m.kernel_size) > 1:
            m.forward = types.MethodType(_per_image_f64, m)
    return model


def float64_copy(model):
    """A float64 deep copy of a torch GENet (same weights, same mode)."""
    return fast_float64(copy.deepcopy(model).double())


def float64_model(arch: str, state: Mapping[str, np.ndarray], fused: bool = False):
    """An eval-mode float64 `torch_ref` GENet holding `state` (official layout,
    or the official fused layout when `fused`; with the head it holds),
    checked key by key. Built on the meta device: no float32 copy and no
    random initialisation happen."""
    import torch

    import torch_ref
    from converters.table.checks import check_keys
    from converters.table.head import state_classes
    from converters.files.load import expected

    layout = "fused" if fused else "official"
    num_classes = state_classes(state, arch, layout)
    check_keys({k: tuple(np.shape(v)) for k, v in state.items()}, expected(arch, layout, num_classes),
               f"the {layout} layout of GENet_{arch}")
    with torch.device("meta"):
        model = torch_ref.build(arch, num_classes, fused=fused)
    with warnings.catch_warnings():
        # Read-only (memory-mapped) arrays: the float64 copies below are new memory.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {k: torch.from_numpy(np.asarray(v)).to(torch.float64 if np.asarray(v).dtype.kind == "f"
                                                         else torch.int64) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    return fast_float64(model.eval())


def float64_logits(arch: str, state: Mapping[str, np.ndarray], x: np.ndarray, fused: bool = False) -> np.ndarray:
    """Logits of the float64 recomputation for the float32 input `x`."""
    import torch

    model = float64_model(arch, state, fused)
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x)).to(torch.float64)).numpy()


def torch_logits(arch: str, state: Mapping[str, np.ndarray], x: np.ndarray, fused: bool = False,
                 device: str = "cpu", dtype: str = "float32") -> np.ndarray:
    """Logits of eager torch (the reference framework) at `dtype` on `device`."""
    import torch

    from parity.core.frameworks import torch_device, torch_model

    model = torch_model(arch, state, fused=fused, device=device, dtype=dtype)
    with torch.inference_mode():
        out = model(torch.from_numpy(np.asarray(x, np.float32)).to(device=torch_device(device), dtype=model.fc_linear.weight.dtype))
    return out.float().cpu().numpy()


def judge_logits(name: str, arch: str, state: Mapping[str, np.ndarray], x: np.ndarray, candidate: np.ndarray,
                 dtype: str = "float32", fused: bool = False, device: str = "cpu", candidate_label: str = "",
                 reference=None, f64=None):
    """`parity.core.tolerances.judge` of a model's logits for `x`: the truth is the
    float64 recomputation with `state` (torch layout, `fused` or not), the bar
    eager torch at `dtype` on `device` (each computed unless given)."""
    from parity.core.tolerances import judge

    f64 = float64_logits(arch, state, x, fused=fused) if f64 is None else f64
    if reference is None:
        reference = torch_logits(arch, state, x, fused=fused, device=device, dtype=dtype)
    return judge(name, candidate, f64, reference=reference, dtype=dtype, candidate_label=candidate_label,
                 reference_label=f"torch eager {dtype}")


def startup_check(run, label: str, arch: str, state: Mapping[str, np.ndarray], dtype: str = "float32",
                  device: str = "cpu", fused: bool = False, x=None) -> dict:
    """A fast path's start-up check: `run`'s logits for `x` (a seeded batch
    of 2 when None) judged by `judge_logits` against the float64
    recomputation with `state`; raises VerificationError naming `label`
    when they fail it, else returns the judgement as a dict."""
    from converters.table.errors import VerificationError

    from parity.core.seeded import seeded_input

    x = seeded_input(arch, 2) if x is None else np.asarray(x, np.float32)
    j = judge_logits(f"GENet_{arch} logits", arch, state, x, run(x), dtype=dtype, fused=fused, device=device,
                     candidate_label=label)
    if not j.passed:
        err = VerificationError(f"{label}: start-up check failed: {j.describe()}")
        err.judgement = {**j.to_dict(), "batch": int(x.shape[0]), "pass": False}  # its margin, for reports
        raise err
    return {**j.to_dict(), "batch": int(x.shape[0]), "pass": True}


def torch_state_of_paddle(model, arch: str, fused: bool = False):
    """The torch-layout weights of a Paddle GENet (the mapping table's
    inverse relayout): what its float64 recomputation is built from."""
    from converters.table import fuse
    from converters.table.mapping import mapping_table

    tensors = {k: v.numpy() for k, v in model.state_dict().items()}
    if fused:
        return fuse.between_fused(tensors, fuse.PADDLE_FUSED, fuse.FUSED, arch)
    return mapping_table(arch, model.arch.classifier.out_features).convert(tensors, "paddle", "official")
