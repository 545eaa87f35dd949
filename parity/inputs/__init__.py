"""Images in: datasets and lists, decoding, the official preprocessing, bundled photos."""
