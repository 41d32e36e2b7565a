"""The training-step benchmark against this machine's matrix-product rate."""
