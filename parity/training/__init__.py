"""Training-step parity: the same fine-tuning steps in PyTorch and Paddle,
compared quantity by quantity (train-mode forward of every layer, the loss,
every gradient, every parameter and BN statistic after each step) against a
float64 recomputation of each framework's own step.

    from parity.training import Recipe, run_training_parity, make_batches

`genet-parity train` is the command; docs/train.md describes the method.
"""
from parity.training.batches import Batches, make_batches
from parity.training.mistakes import MISTAKES
from parity.training.recipe import Recipe
from parity.training.result import QuantityCheck, TrainResult
from parity.training.run import run_training_parity

__all__ = ["Batches", "QuantityCheck", "MISTAKES", "Recipe", "TrainResult", "make_batches", "run_training_parity"]
