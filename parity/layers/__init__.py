"""The per-layer activation diff and its reports."""
