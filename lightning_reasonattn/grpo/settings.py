"""Plain frozen dataclasses of RhythmGRPO's settings (LightningCLI reads and writes them as YAML).

Frozen, so a default instance in a signature is safe to share. Every choice is a ``Literal`` (``reasonattn fit
--help`` lists the choices and the parser refuses a typo) and every number is checked in ``__post_init__``, so a
bad setting fails when the settings are built, before any model loads. The ``Attributes`` sections give the
help text of each ``--model.<section>.<field>`` option: one line per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Literal

from ..deprecation import renamed_keywords
from ..functional._checks import check_choice, check_number
from ..functional.credit import ALPHA, GAMMA_AMP, Strategy
from ..models import LoraSettings
from ..rollout.dense import Backend
from ..settings import RhythmSettings
from ..settings import SamplingSettings as CommonSampling
from ..settings.rhythm import RENAMED as RHYTHM_RENAMED
from ..tasks.splits import DEFAULT_DIFFICULTY
from ..tasks.table import TASKS, TaskStyle
from .advantages import ScaleRewards, SignMode
from .loss import LOSS_ALIASES, LossType

Optimizer = Literal["adamw", "adamw_8bit"]

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
        seed: generator seed of a generated task.
        chat: prompts as chat messages (None: when the tokenizer has a chat template).
        difficulty: difficulty preset of arithmetic and word problems, 0 (easiest) to 5.
        style: prompt style: 'r1' (think / answer tags), 'short' (arithmetic: the number only) or 'plain' (word
            problems: the question alone).
        prompt_column: prompt column of a file.
        answer_column: reference-answer column of a file (renamed 'answer'; None: the file's 'answer' column).
    """

    name: str = "countdown"
    n_train: int = 2000
    n_test: int = 200
    seed: int = 0
    chat: bool | None = None
    difficulty: int = DEFAULT_DIFFICULTY
    style: TaskStyle = "r1"
    prompt_column: str = "prompt"
    answer_column: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"task.name={self.name!r} is invalid: use 'countdown', 'arithmetic', 'word_problems' or a file path."
            )
        check_number("task.n_train", self.n_train, low=1, integer=True)
        check_number("task.n_test", self.n_test, low=0, integer=True)
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
    num_iterations: int = 1
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
    optimizer: Optimizer = "adamw"

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
