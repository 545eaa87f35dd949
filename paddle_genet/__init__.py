"""GENet (small, normal, large) in PaddlePaddle, key-for-key the Paddle reproduction."""
from .load import load_pdparams, load_state
from .model import GENet, build

__all__ = ["GENet", "build", "load_pdparams", "load_state"]
