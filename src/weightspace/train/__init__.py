"""Training: the offline loop, online GRPO through TRL, the shared LoRA init, checkpoints, the tiny model's pretraining."""
