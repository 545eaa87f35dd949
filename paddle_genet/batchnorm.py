"""Paddle's BatchNorm2D keeping torch's running-variance convention in training.

Both frameworks normalise a training batch with its biased variance (divided
by n = N*H*W), but torch folds the *unbiased* one (divided by n - 1) into the
running variance, and Paddle the biased one. The eval-mode model, and so every
converted checkpoint, is the same either way; a model fine-tuned in Paddle is
not: its running variances drift below torch's by (1 - m) * var / (n - 1) per
step, 3.5e-4 of the variance at GENet_small's last stage (batch 8, 6x6 maps).
This layer adds that term after Paddle's own update, so a Paddle fine-tuning
run keeps the statistics the official PyTorch code would.

Paddle's momentum weights the running statistic (torch's weights the batch
statistic): paddle_genet builds these layers with 1 - torch momentum.
"""
from __future__ import annotations

import warnings

import paddle
from paddle import nn

# Paddle warns on every training forward of a BN layer that it tracks the
# running statistics, which it always has; the notice says nothing about this
# model and floods a training log.
_TRACKING_NOTICE = "When training, we now always track global mean and variance."


class BatchNorm2D(nn.BatchNorm2D):
    """nn.BatchNorm2D (NCHW) whose training updates store the unbiased batch
    variance in `_variance`, as torch's BatchNorm2d does. Eval mode, keys,
    shapes and parameters are nn.BatchNorm2D's. `unbiased_running_variance =
    False` restores Paddle's own (biased) update."""

    def __init__(self, num_features: int, momentum: float = 0.9, epsilon: float = 1e-5):
        super().__init__(num_features, momentum=momentum, epsilon=epsilon)
        self.unbiased_running_variance = True

    def forward(self, x):
        if not self.training:
            return nn.BatchNorm2D.forward(self, x)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TRACKING_NOTICE)
            if not self.unbiased_running_variance:
                return nn.BatchNorm2D.forward(self, x)
            with paddle.no_grad():
                previous = self._variance.clone()
            out = nn.BatchNorm2D.forward(self, x)
        n = x.shape[0] * x.shape[2] * x.shape[3]
        if n > 1:
            with paddle.no_grad():
                # Paddle stored m * previous + (1 - m) * biased; add (1 - m) * biased / (n - 1).
                batch_part = self._variance - self._momentum * previous
                self._variance.set_value(self._variance + batch_part / (n - 1))
        return out
