"""The genet-parity commands (one module each), the demo and the benchmark script."""
