"""Fast inference paths (torch.compile, the Paddle predictor), each proven equal before use."""
