"""Parity tools: layer diff, accuracy, latency and certificates for GENet in
PyTorch and PaddlePaddle. Heavy imports happen inside the functions."""


def __getattr__(name):
    if name == "preprocess":
        from parity.inputs.preprocessing import preprocess

        return preprocess
    raise AttributeError(f"module 'parity' has no attribute {name!r}")
