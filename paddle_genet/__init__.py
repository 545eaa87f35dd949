"""GENet (small, normal, large) in PaddlePaddle, key-for-key the Paddle reproduction."""
from paddle_genet.load import build, load_pdparams, load_state
from paddle_genet.model import GENet

__all__ = ["GENet", "build", "load_pdparams", "load_state"]
