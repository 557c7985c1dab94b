"""RL fine-tuning with rhythm credit: GRPO and relatives."""
