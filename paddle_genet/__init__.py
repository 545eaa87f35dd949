"""GENet (small, normal, large) in PaddlePaddle, key-for-key the Paddle reproduction."""
from .load import build, load_pdparams, load_state
from .model import GENet

__all__ = ["GENet", "build", "load_pdparams", "load_state"]
