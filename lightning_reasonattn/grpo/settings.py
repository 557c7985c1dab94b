"""Plain frozen dataclasses of RhythmGRPO's settings (LightningCLI reads and writes them as YAML).

Frozen, so a default instance in a signature is safe to share. Every choice is a ``Literal`` (``reasonattn fit
--help`` lists the choices and the parser refuses a typo) and every number is checked in ``__post_init__``, so a
bad setting fails when the settings are built, before any model loads. The ``Attributes`` sections give the
help text of each ``--model.<section>.<field>`` option: one line per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, get_args

from ..deprecation import renamed_keywords
from ..functional._checks import check_choice, check_number
from ..functional.credit import ALPHA, GAMMA_AMP, Strategy
from ..models import LoraSettings, Quantization
from ..rollout.dense import Backend
from ..settings import RhythmSettings
from ..settings import SamplingSettings as CommonSampling
from ..settings.rhythm import RENAMED as RHYTHM_RENAMED
from ..tasks.splits import DEFAULT_DIFFICULTY
from ..tasks.table import TASKS, TaskStyle
from .advantages import ScaleRewards, SignMode
from .loss import LOSS_ALIASES, LossType

Optimizer = Literal["adamw", "adamw_8bit"]
Finetune = Literal["auto", "lora", "full"]
"""What RhythmGRPO trains: ``lora``, an adapter (the model's weights frozen); ``full``, all the weights; ``auto``,
``lora`` for a Hugging Face model and ``full`` for any other module."""

FIXED_FOR_MODEL, FIXED_FOR_RUN = "model", "run"
"""The resume rule of a setting, in its field's metadata (``{"fixed": ..., "why": ...}``): ``model``, it defines the
trained policy (a checkpoint is only used with the value it was trained with); ``run``, a resumed training run must
keep it (validation may change it). Settings without it may change on resume (the resume rule, grpo/checkpoint.py)."""


def fixed(kind: str, why: str, **metadata) -> dict:
    """A field's metadata: its resume rule (see ``FIXED_FOR_MODEL``) and why."""
    return {"fixed": kind, "why": why, **metadata}


def _task_fixed(default) -> Any:
    why = "the task defines the prompt stream and the held-out split"
    return field(default=default, metadata=fixed(FIXED_FOR_RUN, why))


LOSS_TYPE_HINTS = {"bnpo": "TRL's 'bnpo' normalises by each mini-batch's tokens: use 'token-mean', TRL's 'dapo'"}
"""TRL names without an equal loss here (``bnpo`` differs from every loss here once the batch is split)."""


def _prefixed(section: str, check, *args) -> None:
    """Run a check and prefix its message (``name=value ...``) with the settings section."""
    try:
        check(*args)
    except ValueError as err:
        raise ValueError(f"{section}.{err}") from None


@dataclass(frozen=True)
class TaskSettings:
    """Where prompts come from.

    Attributes:
        name: 'countdown', 'arithmetic' or 'word_problems' (generated offline), or a local JSONL / JSON / parquet
            file or dataset folder.
        n_train: problems generated for training (generated tasks only).
        n_test: problems held out for evaluation, never trained on (generated tasks only; 0: none).
        seed: generator seed of a generated task (and of the prompt order, unless shuffle_seed is set).
        shuffle_seed: seed of the order in which the training prompts come (None: seed); the split stays seed's.
        chat: prompts as chat messages (None: when the tokenizer has a chat template).
        difficulty: difficulty preset of arithmetic and word problems, 0 (easiest) to 5.
        style: prompt style: 'r1' (think / answer tags), 'short' (arithmetic: the number only) or 'plain' (word
            problems: the question alone).
        prompt_column: prompt column of a file.
        answer_column: reference-answer column of a file (renamed 'answer'; None: the file's 'answer' column).
    """

    name: str = _task_fixed("countdown")
    n_train: int = 2000
    n_test: int = _task_fixed(200)
    seed: int = _task_fixed(0)
    shuffle_seed: int | None = _task_fixed(None)
    chat: bool | None = _task_fixed(None)
    difficulty: int = _task_fixed(DEFAULT_DIFFICULTY)
    style: TaskStyle = _task_fixed("r1")
    prompt_column: str = _task_fixed("prompt")
    answer_column: str | None = _task_fixed(None)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"task.name={self.name!r} is invalid: use 'countdown', 'arithmetic', 'word_problems' or a file path."
            )
        check_number("task.n_train", self.n_train, low=1, integer=True)
        check_number("task.n_test", self.n_test, low=0, integer=True)
        if self.shuffle_seed is not None:
            check_number("task.shuffle_seed", self.shuffle_seed, integer=True, fix=" (null: task.seed)")
        check_number("task.difficulty", self.difficulty, low=0, high=5, integer=True)
        check_choice("task.style", self.style, TaskStyle)
        styles = TASKS[self.name].styles if self.name in TASKS else ()
        if styles and self.style not in styles:
            raise ValueError(
                f"task.style={self.style!r} does not apply to task {self.name!r}: use one of {', '.join(styles)}."
            )


@dataclass(frozen=True, kw_only=True)
class SamplingSettings(CommonSampling):
    """Rollout settings: the [`SamplingSettings`][lightning_reasonattn.settings.sampling.SamplingSettings] of every
    command (the defaults of ``fit``), with a temperature > 0, and the backend that samples (validation always decodes
    greedily, whatever the temperature).

    Attributes:
        max_new_tokens: completion length cap; a completion without EOS by then counts as truncated.
        temperature: sampling temperature of the rollouts (> 0; the log-probabilities use the same).
        top_p: nucleus sampling: keep the smallest set of tokens whose probability reaches top_p, in (0, 1].
        top_k: keep the k most likely tokens (None or 0: no top-k cut).
        backend: 'policy' samples from the policy, 'dense' from a dense copy with the adapter merged, 'auto' picks.
    """

    backend: Backend = "auto"

    def __post_init__(self):
        _prefixed("sampling", super().__post_init__)
        check_number(
            "sampling.temperature",
            self.temperature,
            low=0,
            low_open=True,
            fix=" (GRPO needs sampled completions; validation is greedy on its own)",
        )
        check_choice("sampling.backend", self.backend, Backend)


@renamed_keywords(**RHYTHM_RENAMED)
@dataclass(frozen=True, kw_only=True)
class CreditSettings(RhythmSettings):
    """Which tokens get extra credit (docs/rhythm.md has the definitions): the strategy, and the rhythm it reads.

    The rhythm's knobs (``layers``, ``window``, ``horizon``, ``head_fraction``, ``q``, ``look_back``, ``block_size``)
    are those of [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings], with the spec's defaults.

    Attributes:
        strategy: 'uniform' (plain GRPO), 'random', 'entropy', 'local_chunk', 'global_anchor' or 'coupled'.
        sign_mode: 'both' scales every advantage, 'positive' only the positive ones.
        gamma_amp: advantage multiplier of a selected token (> 0; 1.5 in the paper).
        alpha: share of a dominated anchor's bonus moved to its introductory token, in [0, 1].
        normalize: rescale gamma so its mean over each response is 1.
        seed: seed of the 'random' strategy.
    """

    strategy: Strategy = "coupled"
    sign_mode: SignMode = "both"
    gamma_amp: float = GAMMA_AMP
    alpha: float = ALPHA
    normalize: bool = False
    seed: int = 0

    def __post_init__(self):
        check_choice("credit.strategy", self.strategy, Strategy)
        check_choice("credit.sign_mode", self.sign_mode, SignMode)
        _prefixed("credit", super().__post_init__)
        check_number("credit.gamma_amp", self.gamma_amp, low=0, low_open=True, fix=" (the paper uses 1.5)")
        check_number("credit.alpha", self.alpha, low=0, high=1)


@dataclass(frozen=True)
class LossSettings:
    """Policy update settings (names as in TRL's GRPOConfig where it has them).

    Attributes:
        epsilon_low: lower clipping range of the ratio, 1 - epsilon_low (>= 0).
        epsilon_high: upper clipping range of the ratio, 1 + epsilon_high (>= 0; DAPO uses 0.28).
        beta: KL penalty weight (0: no reference pass at all).
        loss_type: 'token-mean' (TRL's 'dapo'), 'seq-mean-token-mean' (TRL's 'grpo') or 'dr-grpo' (TRL's 'dr_grpo').
        scale_rewards: divide advantages by the std of the 'group', of the 'batch', or 'none'.
        num_iterations: passes (and optimizer steps) over each batch of rollouts (>= 1).
        mini_batch_size: rollouts per forward / backward, gradients accumulate over the batch (None: all at once).
        mask_truncated: leave completions without EOS out of the loss.
        max_grad_norm: gradient clipping norm (None: no clipping).
    """

    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    loss_type: LossType = "token-mean"
    scale_rewards: ScaleRewards = "group"
    num_iterations: int = field(
        default=1, metadata=fixed(FIXED_FOR_RUN, "the step counts optimizer steps, num_iterations per batch of prompts")
    )
    mini_batch_size: int | None = None
    mask_truncated: bool = False
    max_grad_norm: float | None = 1.0

    def __post_init__(self):
        check_number("loss.epsilon_low", self.epsilon_low, low=0, high=1, high_open=True)
        check_number("loss.epsilon_high", self.epsilon_high, low=0)
        check_number("loss.beta", self.beta, low=0)
        hint = LOSS_TYPE_HINTS.get(self.loss_type)
        check_choice("loss.loss_type", self.loss_type, LossType, f" ({hint})" if hint else "")
        object.__setattr__(self, "loss_type", LOSS_ALIASES.get(self.loss_type, self.loss_type))
        check_choice("loss.scale_rewards", self.scale_rewards, ScaleRewards)
        check_number("loss.num_iterations", self.num_iterations, low=1, integer=True)
        if self.mini_batch_size is not None:
            check_number(
                "loss.mini_batch_size",
                self.mini_batch_size,
                low=1,
                integer=True,
                fix=" (null: the whole batch at once)",
            )
        if self.max_grad_norm is not None:
            check_number("loss.max_grad_norm", self.max_grad_norm, low=0, low_open=True, fix=" (null: no clipping)")


@dataclass(frozen=True)
class OptimSettings:
    """The optimizer of the adapter: AdamW, then a linear warm-up of the learning rate to a constant.

    Attributes:
        lr: learning rate (> 0).
        weight_decay: decoupled weight decay (>= 0).
        warmup_steps: optimizer steps of linear warm-up (0: none).
        optimizer: 'adamw' (torch) or 'adamw_8bit' (bitsandbytes, CUDA).
    """

    lr: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    optimizer: Optimizer = field(
        default="adamw", metadata=fixed(FIXED_FOR_RUN, "the saved optimizer state belongs to that optimizer")
    )

    def warmup(self, step: int) -> float:
        """The learning-rate multiplier at ``step``: linear warm-up over ``warmup_steps``, then 1."""
        return min(1.0, (step + 1) / max(1, self.warmup_steps))

    def configure(self, params: list) -> dict:
        """The optimizer of ``params`` and its per-step warm-up schedule, as Lightning's ``configure_optimizers``
        returns them."""
        import torch

        if self.optimizer == "adamw_8bit":
            import bitsandbytes as bnb  # only when asked for: its CUDA optimizers

            opt = bnb.optim.AdamW8bit(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        # a lambda, not a bound method: LambdaLR leaves a function out of its state (checkpoints stay plain data)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.warmup(step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def __post_init__(self):
        check_number("optim.lr", self.lr, low=0, low_open=True)
        check_number("optim.weight_decay", self.weight_decay, low=0)
        check_number("optim.warmup_steps", self.warmup_steps, low=0, integer=True)
        check_choice("optim.optimizer", self.optimizer, Optimizer)


@dataclass(frozen=True)
class RewardSettings:
    """Reward functions, with TRL's signature fn(prompts, completions, **columns) -> list[float].

    Attributes:
        functions: built-in names ('countdown', 'numeric', 'format') or 'package.module:function' (empty: the task's).
        weights: one weight per function, summed into the reward (None: all 1).
    """

    functions: list[str] = field(default_factory=list)
    weights: list[float] | None = None

    def __post_init__(self):
        for name in self.functions:
            if not isinstance(name, str) or not name:
                raise ValueError(f"rewards.functions has {name!r}: name a built-in or 'package.module:function'.")
        if self.weights is None:
            return
        if not self.functions:
            raise ValueError(
                f"rewards.weights={self.weights!r} without rewards.functions: name the functions the weights "
                "belong to (e.g. functions: [numeric, format]), or drop the weights."
            )
        if len(self.weights) != len(self.functions):
            raise ValueError(
                f"rewards.weights has {len(self.weights)} values for {len(self.functions)} functions "
                f"({', '.join(self.functions)}): give one weight per function."
            )
        for i, w in enumerate(self.weights):
            check_number(f"rewards.weights[{i}]", w)


def _count(default: int, low: int, fix: str = "") -> Any:
    """An integer argument of RhythmGRPO: at least ``low`` (``fix``: what the message adds)."""
    return field(default=default, metadata={"low": low, "fix": fix})


def _model_fixed(default, why: str, expect: str) -> Any:
    return field(default=default, metadata=fixed(FIXED_FOR_MODEL, why, expect=expect))


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """RhythmGRPO's own arguments, besides its settings sections (``lora``, ``task``, ...): one place that checks
    them, for the module and for a checkpoint's hyper-parameters alike (their help is RhythmGRPO's docstring).

    A field's metadata says what it must be (``low``: an integer at least that; ``expect``: in words) and, with
    ``fixed``, its resume rule.
    """

    model: str | dict | None = _model_fixed(
        None, "the trained weights belong to that model", "a string, null or a module's {'class_path': ...}"
    )
    quantization: Quantization | None = _model_fixed(
        None, "the adapter was trained on that quantized base", f"null or one of {get_args(Quantization)}"
    )
    double_quant: bool = _model_fixed(True, "the adapter was trained on that quantized base", "true or false")
    finetune: Finetune = _model_fixed("auto", "the checkpoint holds those weights", f"one of {get_args(Finetune)}")
    gradient_checkpointing: bool = field(default=False, metadata={"expect": "true or false"})
    prompts_per_step: int = _count(4, 1)
    group_size: int = _count(8, 2, " (GRPO compares completions of a prompt)")
    score_batch_size: int = _count(16, 1)
    log_completions_every_n_steps: int = _count(10, 0, " (0: never)")
    eval_batch_size: int = _count(16, 1)

    def __post_init__(self):
        model = self.model
        if isinstance(model, dict) and not (set(model) == {"class_path"} and isinstance(model["class_path"], str)):
            raise ValueError(f"model={model!r} is invalid: a module is recorded as {{'class_path': 'pkg.mod.Class'}}.")
        if model is not None and not isinstance(model, (str, dict)):
            raise ValueError(f"model={model!r} is invalid: name a hub model or a local folder (null: the default)")
        if self.quantization is not None:
            check_choice("quantization", self.quantization, Quantization)
        check_choice("finetune", self.finetune, Finetune)
        for name in ("double_quant", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: use true or false.")
        for f in fields(self):
            if "low" in f.metadata:
                low, fix = f.metadata["low"], f.metadata["fix"]
                value = check_number(f.name, getattr(self, f.name), low=low, integer=True, fix=fix)
                object.__setattr__(self, f.name, value)
        # "auto" and null resolved: a Hugging Face model trains a LoRA adapter on a 4-bit NF4 base, a module all its
        # weights in full precision (what a checkpoint records, and what the resume rule compares)
        if self.finetune == "auto":
            object.__setattr__(self, "finetune", "full" if self.is_module else "lora")
        if self.quantization is None:
            object.__setattr__(self, "quantization", "none" if self.is_module or self.finetune == "full" else "nf4")
        if self.finetune == "full" and self.quantization != "none":
            raise ValueError(
                f"quantization={self.quantization!r} with finetune='full': quantized weights are frozen. Use "
                "finetune: lora (an adapter over the quantized weights) or quantization: none."
            )

    @property
    def is_module(self) -> bool:
        """The model is a PyTorch module given as an object (recorded by its class), not a Hugging Face model."""
        return isinstance(self.model, dict)


def settings_sections() -> dict[str, type]:
    """RhythmGRPO's argument name of every settings dataclass (``{"lora": LoraSettings, "task": ...}``)."""
    return {
        "lora": LoraSettings,
        "task": TaskSettings,
        "rewards": RewardSettings,
        "sampling": SamplingSettings,
        "credit": CreditSettings,
        "loss": LossSettings,
        "optim": OptimSettings,
    }


def as_settings(cls: type, value):
    """``value`` as a ``cls`` instance: a dict (as YAML and checkpoints hold it) is built into one (and checked)."""
    return cls(**value) if isinstance(value, dict) else value


def plain(value):
    """Settings as plain data (dataclasses to dicts, tuples to lists), as YAML and ``weights_only`` loads take."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
