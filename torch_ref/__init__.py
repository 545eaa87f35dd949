"""GENet (small, normal, large) in PyTorch, key-for-key the official model."""
from torch_ref.load import build, load_checkpoint, load_state
from torch_ref.model import GENet

__all__ = ["GENet", "build", "load_checkpoint", "load_state"]
