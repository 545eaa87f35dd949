"""Evaluation of both frameworks on the same images, and its statistics."""
