"""GENet (small, normal, large) in PyTorch, key-for-key the official model."""
from .load import build, load_checkpoint, load_state
from .model import GENet

__all__ = ["GENet", "build", "load_checkpoint", "load_state"]
