"""RL fine-tuning with rhythm credit: GRPO and relatives (see docs/train.md)."""

from .advantages import group_advantages, token_advantages
from .loss import k3_kl, policy_loss
from .module import RhythmGRPO

__all__ = ["RhythmGRPO", "group_advantages", "k3_kl", "policy_loss", "token_advantages"]
