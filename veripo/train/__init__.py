"""Training: the engine, ranks and launcher, GRPO, DPO, the warm-up, step checkpoints."""
