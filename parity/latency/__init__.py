"""Latency of every path, interleaved, against the compute floor."""
