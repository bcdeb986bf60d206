"""The tiny default's models: the Qwen3-architecture student and its tokenizer, and their pretraining (base and teacher)."""
