"""Conversion of a checkpoint to .pdparams, verified by running both models."""
