"""The Paddle form of a `Recipe`: what a correct translation of the PyTorch
fine-tuning step looks like, convention by convention.

- BatchNorm: Paddle's momentum weights the running statistic (torch's the
  batch statistic), so paddle_genet builds BN with 1 - torch momentum; torch
  stores the unbiased batch variance, Paddle the biased one, so paddle_genet's
  BatchNorm2D adds the difference (paddle_genet.batchnorm).
- SGD: torch's SGD(momentum, nesterov, weight_decay) is Paddle's Momentum
  (there is no momentum in paddle.optimizer.SGD) with use_nesterov and an
  L2Decay regulariser; both add decay * w to the gradient before the momentum
  and start the buffer at the first gradient, so the formulas are equal.
- AdamW: both decouple the decay (w *= 1 - lr * decay) and bias-correct the
  moments; Paddle folds the corrections into the step size and scales eps by
  sqrt(1 - beta2^t), the same number in exact arithmetic.
- Loss: cross_entropy with label_smoothing and a mean over the batch on both
  sides (Paddle's older softmax_with_cross_entropy returns per-sample losses).

`mistakes` (parity.training.mistakes) inject the wrong translations.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from parity.training.recipe import Recipe


def apply_model_mistakes(model, mistakes: Sequence[str] = ()) -> None:
    from paddle import nn

    for layer in model.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            if "bn-momentum" in mistakes:
                layer._momentum = 1.0 - layer._momentum  # torch's number
            if "bn-biased-variance" in mistakes:
                layer.unbiased_running_variance = False


def paddle_optimizer(recipe: Recipe, parameters: Iterable, mistakes: Sequence[str] = ()):
    import paddle
    from paddle.regularizer import L2Decay

    params = list(parameters)
    decay = recipe.weight_decay
    if "weight-decay-twice" in mistakes and decay > 0:
        for p in params:
            p.regularizer = L2Decay(decay)  # what ParamAttr(regularizer=L2Decay(decay)) sets
    if recipe.optimizer == "sgd":
        nesterov = recipe.nesterov != ("nesterov-one-side" in mistakes)
        return paddle.optimizer.Momentum(learning_rate=recipe.lr, momentum=recipe.momentum, parameters=params,
                                         use_nesterov=nesterov, weight_decay=L2Decay(decay) if decay else None)
    beta1, beta2 = recipe.betas
    if "adamw-as-adam-l2" in mistakes:
        return paddle.optimizer.Adam(learning_rate=recipe.lr, beta1=beta1, beta2=beta2, epsilon=recipe.eps,
                                     parameters=params, weight_decay=L2Decay(decay) if decay else None)
    return paddle.optimizer.AdamW(learning_rate=recipe.lr, beta1=beta1, beta2=beta2, epsilon=recipe.eps,
                                  parameters=params, weight_decay=decay)


def paddle_loss(recipe: Recipe, logits, labels, mistakes: Sequence[str] = ()):
    import paddle.nn.functional as F

    smoothing = recipe.label_smoothing
    if "label-smoothing-one-side" in mistakes:
        smoothing = 0.0 if smoothing > 0 else 0.1
    reduction = "sum" if "loss-sum" in mistakes else "mean"
    return F.cross_entropy(logits, labels, reduction=reduction, label_smoothing=smoothing)
