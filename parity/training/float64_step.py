"""The float64 recomputation of one framework's training step.

A `Float64Twin` is a float64 copy of the torch model (`parity.core.reference`,
whose depthwise shortcut is differentiable). Before each step it is loaded
with the candidate's own state (parameters and BN statistics, exactly
widened), so every step is judged on its own, from where that framework
really was, not against a trajectory that drifted elsewhere.

Its ReLUs take the candidate's branches: ReLU's derivative jumps at 0, and
float32 rounding puts ~15 of GENet_small's 14 million ReLU inputs per step
(batch 8) on the other side of 0 than float64 does. Each such flip is a
correct float32 outcome, yet it changes every upstream gradient by up to 1e-2
of its size, 1000x float32 rounding; taken from the candidate (its ReLU
outputs > 0, recorded in the same forward), the backward pass of the truth
follows the same branches and what remains is rounding. Forward values are
float64's own (a flipped element differs from float32 by less than its
rounding error, and the forward comparison judges it).

The optimizer step of the twin starts from the candidate's parameters and
takes the candidate's gradients (`step_with`), so its state (momentum buffer,
Adam moments) follows the candidate's too, and the update is judged on the
optimizer's arithmetic alone; the gradients themselves are judged before.
"""
from __future__ import annotations

import types
from typing import Iterable, Mapping

import numpy as np


def _masked_relu_class():
    import torch

    class MaskedReLU(torch.autograd.Function):
        """relu(x) forward; gradient passed where `mask` (the candidate's x > 0) holds."""

        @staticmethod
        def forward(ctx, x, mask):
            ctx.save_for_backward(mask)
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, grad):
            (mask,) = ctx.saved_tensors
            return grad * mask, None

    return MaskedReLU


def _masked_forward(self, x):
    mask = self.candidate_mask
    if mask is None:
        raise AssertionError(f"float64 twin: ReLU {self.genet_path} ran without the candidate's mask (run twice?)")
    if tuple(mask.shape) != tuple(x.shape):
        raise AssertionError(f"float64 twin: ReLU {self.genet_path}: mask {tuple(mask.shape)} vs input {tuple(x.shape)}")
    self.candidate_mask = None
    self.flips = int(((x > 0) != mask).sum())
    return self.masked_relu.apply(x, mask)


class Float64Twin:
    """Float64 torch_ref GENet recomputing a candidate's steps; see the module docstring."""

    def __init__(self, model32, relu_paths: Iterable[str], trainable: Iterable[str], recipe):
        from torch import nn

        from parity.core.modules import torch_module
        from parity.core.reference import float64_copy

        self.model = float64_copy(model32).train()
        trainable = set(trainable)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        masked_relu = _masked_relu_class()
        self.relus = {}
        for path in relu_paths:
            m = torch_module(self.model, path)
            if not isinstance(m, nn.ReLU):
                raise AssertionError(f"float64 twin: {path} is a {type(m).__name__}, not a ReLU")
            m.forward = types.MethodType(_masked_forward, m)
            m.candidate_mask, m.genet_path, m.masked_relu, m.flips = None, path, masked_relu, 0
            self.relus[path] = m
        unmasked = [n for n, m in self.model.named_modules() if isinstance(m, nn.ReLU) and n not in self.relus]
        if unmasked:
            raise AssertionError(f"float64 twin: ReLUs outside the mapping table: {', '.join(unmasked)}")
        self.optimizer = recipe.torch_optimizer(p for p in self.model.parameters() if p.requires_grad)

    def load(self, state: Mapping[str, object]) -> None:
        """Parameters and buffers from an official-layout state (tensors or arrays)."""
        import torch

        with torch.no_grad():
            for key, own in self.model.state_dict().items():
                value = state[key]
                own.copy_(value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value)))

    def step_with(self, grads: Mapping[str, object]) -> None:
        """The optimizer step from the candidate's own gradients (official names,
        torch storage), exactly widened: the update is judged on its arithmetic
        alone. Adam's first step is nearly sign(g), so a gradient element below
        rounding noise would otherwise send the truth and the candidate +-lr apart."""
        import torch

        for name, p in self.model.named_parameters():
            if p.requires_grad:
                g = grads[name]
                p.grad = (g.detach() if isinstance(g, torch.Tensor) else torch.from_numpy(np.asarray(g))).double()
        self.optimizer.step()

    def set_masks(self, masks: Mapping[str, object]) -> None:
        import torch

        missing = sorted(set(self.relus) - set(masks))
        if missing:
            raise AssertionError(f"float64 twin: no candidate mask for {', '.join(missing[:5])}")
        for path, m in self.relus.items():
            mask = masks[path]
            m.candidate_mask = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))

    def flips(self) -> int:
        """ReLU inputs of the last forward whose float64 sign differs from the candidate's."""
        return sum(m.flips for m in self.relus.values())
