"""Models: loading a base, token sequences and log-probs, LoRA adapters and their exact merge, the tiny architecture."""
