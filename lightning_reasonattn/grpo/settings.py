"""Plain frozen dataclasses of RhythmGRPO's settings (LightningCLI reads and writes them as YAML).

Frozen, so a default instance in a signature is safe to share."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSettings:
    """Where prompts come from.

    Attributes:
        name: ``"countdown"`` or ``"arithmetic"`` (generated offline), or a path to a local JSONL / JSON /
            parquet file or dataset folder (read with ``tasks.load_prompts``).
        n_train: problems generated for training (generated tasks only).
        n_test: problems held out (never trained on) for evaluation.
        seed: generator seed.
        chat: prompts as chat messages (``None``: when the tokenizer has a chat template).
        difficulty: arithmetic difficulty preset (0 to 5).
        style: arithmetic prompt style, ``r1`` (think/answer tags) or ``short`` (the number only).
        prompt_column: prompt column of a file.
        answer_column: reference-answer column of a file (renamed ``answer``).
    """

    name: str = "countdown"
    n_train: int = 2000
    n_test: int = 200
    seed: int = 0
    chat: bool | None = None
    difficulty: int = 2
    style: str = "r1"
    prompt_column: str = "prompt"
    answer_column: str | None = None


@dataclass(frozen=True)
class SamplingSettings:
    """Rollout settings.

    Attributes:
        max_new_tokens: completion length cap (a completion without EOS by then is "truncated").
        temperature, top_p, top_k: sampling (``top_k=None``: no top-k).
        backend: ``"auto"``, ``"policy"`` (sample from the policy itself) or ``"dense"`` (a dense copy with the
            adapter merged, synced after every step; ``auto`` picks it for a quantized policy on a CPU, and on
            CUDA while it needs at most a quarter of the free GPU memory).
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    backend: str = "auto"


@dataclass(frozen=True)
class CreditSettings:
    """Which tokens get extra credit (see docs/rhythm.md).

    Attributes:
        strategy: ``uniform`` (plain GRPO), ``random``, ``entropy``, ``local_chunk``, ``global_anchor``,
            ``coupled``.
        sign_mode: ``both`` (scale every advantage) or ``positive`` (only ``A > 0``).
        q, gamma_amp, alpha, k, normalize: as in ``credit_gamma`` / the spec.
        layers, window, horizon, head_fraction, block_size: as in ``capture_rhythm``.
        seed: seed of the ``random`` strategy.
    """

    strategy: str = "coupled"
    sign_mode: str = "both"
    q: float = 0.4
    gamma_amp: float = 1.5
    alpha: float = 0.5
    k: int = 3
    normalize: bool = False
    layers: str | list[int] = "middle"
    window: int = 10
    horizon: tuple[int, int] = (10, 100)
    head_fraction: float = 0.3
    block_size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class LossSettings:
    """Policy update settings (names as in TRL's GRPOConfig where it has them).

    Attributes:
        epsilon_low, epsilon_high: clipping range ``[1 - eps_low, 1 + eps_high]``.
        beta: KL penalty weight (0: no reference pass at all).
        loss_type: ``token-mean``, ``seq-mean-token-mean`` or ``dr-grpo``.
        scale_rewards: ``group``, ``batch`` or ``none``.
        num_iterations: passes (and optimizer steps) over each batch of rollouts.
        mini_batch_size: rollouts per forward/backward (gradients accumulate over the batch); ``None``: all.
        mask_truncated: leave completions without EOS out of the loss.
        max_grad_norm: gradient clipping (``None``: off).
    """

    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    loss_type: str = "token-mean"
    scale_rewards: str = "group"
    num_iterations: int = 1
    mini_batch_size: int | None = None
    mask_truncated: bool = False
    max_grad_norm: float | None = 1.0


@dataclass(frozen=True)
class OptimSettings:
    """AdamW on the adapter.

    Attributes:
        lr: learning rate. weight_decay: decoupled decay. warmup_steps: linear warm-up, then constant.
        optimizer: ``adamw`` (torch) or ``adamw_8bit`` (bitsandbytes, CUDA).
    """

    lr: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    optimizer: str = "adamw"


@dataclass(frozen=True)
class RewardSettings:
    """Reward functions by name: built-ins (``countdown``, ``numeric``, ``format``) or ``package.module:function``
    (any TRL-style ``fn(prompts, completions, **columns) -> list[float]``). Empty: the task's default."""

    functions: list[str] = field(default_factory=list)
    weights: list[float] | None = None
