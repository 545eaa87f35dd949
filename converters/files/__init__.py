"""Safe reading and atomic writing of checkpoint files: no pickle code ever runs."""
