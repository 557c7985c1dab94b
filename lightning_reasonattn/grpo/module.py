"""RhythmGRPO: GRPO-family RL fine-tuning of a 4-bit LoRA policy with attention-rhythm credit.

One training step reads top to bottom::

    rollouts = self.rollout(prompts)   # G sampled completions per prompt, no grad
    scored   = self.score(rollouts)    # rewards, group advantages
    self.update(rollouts, scored)      # per mini-batch: forward (+ RhythmTrace), credit (gamma), clipped loss

The rhythm is measured in a forward the step makes anyway: with one iteration (the default) the update's own
forward, whose detached log-probabilities are the old ones (ratio 1); with ``num_iterations > 1`` the no-grad
scoring pass that gives the old log-probabilities. Either way there is no extra pass for the attention.

The reference policy for the KL penalty is the same model with its adapter disabled; no copy is made.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch

from ..callbacks import measuring
from ..functional._checks import check_choice, check_number
from ..functional.credit import RHYTHM_STRATEGIES, credit_gamma
from ..models import LoraSettings, Quantization, add_lora, lean_lora_casts, load_model, lost_update_fraction
from ..rewards import score_completions
from .advantages import group_advantages, token_advantages
from .checkpoint import apply_optim_settings, base_record, check_resume, use_atomic_checkpoint_io
from .data import PromptStream, reward_functions, task_records
from .loss import minibatches, policy_loss
from .rollout import DenseRollout, resolve_backend, sample
from .settings import (
    CreditSettings,
    LossSettings,
    OptimSettings,
    RewardSettings,
    SamplingSettings,
    TaskSettings,
    as_settings,
    plain,
)
from .step import completion_logprobs, encode_prompts, measured_logprobs, score


def _as_is(batch):
    return batch


@dataclass
class Rollouts:
    prompts: list  # [B] prompt of every completion (each prompt repeated G times)
    columns: dict  # dataset columns, one value per completion
    ids: torch.Tensor  # [B, P + T] prompt (left-padded) + completion (right-padded)
    mask: torch.Tensor  # [B, P + T] attention mask
    completion_mask: torch.Tensor  # [B, T] bool
    truncated: torch.Tensor  # [B] bool
    texts: list[str]
    seconds: float

    @property
    def width(self) -> int:
        return self.completion_mask.shape[1]


@dataclass
class Scored:
    rewards: torch.Tensor  # [B]
    per_function: dict[str, torch.Tensor]
    advantages: torch.Tensor  # [B]
    old_logp: torch.Tensor | None = None  # [B, T]; None: the update's first forward measures (one iteration)
    entropy: torch.Tensor | None = None  # [B, T]
    gamma: torch.Tensor | None = None  # [B, T]
    traces: list = field(default_factory=list)  # RhythmTrace (or None) per row block, in row order


class RhythmGRPO(pl.LightningModule):
    """GRPO with rhythm credit on a (4-bit, LoRA) causal LM, on one device.

    Every argument is checked when the module is built, before any model loads (a settings dataclass checks
    its own fields; a dict is accepted for one and built into it).

    Args:
        model: hub name or local checkpoint folder; None: the embedded default (SmolLM2-135M-Instruct).
        quantization: base weights 'nf4' (default), 'fp4' (4-bit), 'int8' or 'none' (full precision).
        double_quant: also quantize the 4-bit quantization constants (about 0.4 bit per weight less).
        lora: adapter settings (rank, alpha, dropout, target modules, dtype).
        gradient_checkpointing: recompute activations in the update's backward (less memory, more time).
        task: where the prompts come from (a generated task or a local file).
        rewards: reward functions by name and their weights.
        prompts_per_step: prompts per training step.
        group_size: completions per prompt (G >= 2); advantages compare the completions of a prompt.
        sampling: rollout settings (max_new_tokens, temperature, top_p, top_k, backend).
        credit: which tokens get extra credit (strategy, q, gamma_amp, ...).
        loss: policy update settings (clipping, KL, loss aggregation, iterations, mini-batches).
        optim: optimizer settings (lr, weight decay, warm-up).
        score_batch_size: rollouts per no-grad scoring forward (used when num_iterations > 1).
        log_completions_every_n_steps: write sample completions to completions.jsonl in the log folder (0: never).
        eval_batch_size: held-out prompts per validation batch (one greedy completion each); validation runs
            every trainer.val_check_interval steps (an int: the prompt stream has no epochs) and in
            reasonattn validate.
    """

    def __init__(
        self,
        model: str | None = None,
        quantization: Quantization = "nf4",
        double_quant: bool = True,
        lora: LoraSettings = LoraSettings(),
        gradient_checkpointing: bool = False,
        task: TaskSettings = TaskSettings(),
        rewards: RewardSettings = RewardSettings(),
        prompts_per_step: int = 4,
        group_size: int = 8,
        sampling: SamplingSettings = SamplingSettings(),
        credit: CreditSettings = CreditSettings(),
        loss: LossSettings = LossSettings(),
        optim: OptimSettings = OptimSettings(),
        score_batch_size: int = 16,
        log_completions_every_n_steps: int = 10,
        eval_batch_size: int = 16,
    ):
        super().__init__()
        self.model_name = model
        self.quantization = quantization
        self.double_quant = double_quant
        self.lora = as_settings(LoraSettings, lora)
        self.gradient_checkpointing = gradient_checkpointing
        self.task = as_settings(TaskSettings, task)
        self.reward_settings = as_settings(RewardSettings, rewards)
        self.prompts_per_step = prompts_per_step
        self.group_size = group_size
        self.sampling = as_settings(SamplingSettings, sampling)
        self.credit_settings = as_settings(CreditSettings, credit)
        self.loss_settings = as_settings(LossSettings, loss)
        self.optim = as_settings(OptimSettings, optim)
        self.score_batch_size = score_batch_size
        self.log_completions_every_n_steps = log_completions_every_n_steps
        self.eval_batch_size = eval_batch_size
        self._check_settings()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold the adapter only
        self.policy = None
        self.tokenizer = None
        self._dense: DenseRollout | None = None
        self._splits: tuple[list[dict], list[dict]] | None = None
        self._random = torch.Generator().manual_seed(self.credit_settings.seed)
        self.reward_funcs, self.reward_weights = reward_functions(self.reward_settings, self.task)

    def _check_settings(self) -> None:
        """The module's own numbers and choices (each settings dataclass checks its fields when built)."""
        check_choice("quantization", self.quantization, Quantization)
        if not isinstance(self.double_quant, bool):
            raise ValueError(f"double_quant={self.double_quant!r} is invalid: use true or false.")
        for name in ("prompts_per_step", "group_size", "score_batch_size", "eval_batch_size"):
            check_number(name, getattr(self, name), low=1, integer=True)
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO compares completions of a prompt; use >= 2.")
        check_number("log_completions_every_n_steps", self.log_completions_every_n_steps, low=0, integer=True,
                     fix=" (0: never)")  # fmt: skip

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        use_atomic_checkpoint_io(self.trainer)  # a checkpoint is written next to its target, then renamed over it

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        base, self.tokenizer = load_model(
            self.model_name, device=device, quantization=self.quantization, double_quant=self.double_quant
        )
        self.policy = add_lora(base, self.lora, self.gradient_checkpointing)
        self.policy.train()

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.optim.optimizer == "adamw_8bit":
            import bitsandbytes as bnb

            opt = bnb.optim.AdamW8bit(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        elif self.optim.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        else:
            raise ValueError(f"optim.optimizer={self.optim.optimizer!r} is unknown: use 'adamw' or 'adamw_8bit'.")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self._warmup(step))  # a function: not pickled
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _warmup(self, step: int) -> float:
        """The learning-rate multiplier at ``step``: linear warm-up over ``optim.warmup_steps``, then 1."""
        return min(1.0, (step + 1) / max(1, self.optim.warmup_steps))

    def _task_splits(self) -> tuple[list[dict], list[dict]]:
        """``(train, test)`` records, made once (20k Countdown problems take a while)."""
        if self._splits is None:
            chat = self.task.chat if self.task.chat is not None else self.tokenizer.chat_template is not None
            self._splits = task_records(self.task, chat)
        return self._splits

    def train_dataloader(self):
        train, _ = self._task_splits()
        steps_done = lambda: self.global_step // self.loss_settings.num_iterations  # noqa: E731
        return PromptStream(train, self.prompts_per_step, self.task.seed, start=steps_done)

    def val_dataloader(self):
        """The held-out split in fixed batches (empty for a task read from a file: it has no held-out part)."""
        _, test = self._task_splits()
        n = self.eval_batch_size
        batches = [test[i : i + n] for i in range(0, len(test), n)]
        return torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=_as_is)  # a batch = list of records

    def on_fit_start(self) -> None:
        # Lightning warns that a checkpoint taken every n steps under manual optimization holds the weights
        # after the optimizer step. That is what RhythmGRPO wants: global_step counts that step, and a resumed
        # run reproduces the next one (tested), so the warning is silenced for this module's runs.
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        if self.trainer.max_steps is None or self.trainer.max_steps < 0:
            from lightning.pytorch.utilities.exceptions import MisconfigurationException

            raise MisconfigurationException(
                f"trainer.max_steps={self.trainer.max_steps}: the prompt stream never ends an epoch, so set "
                "trainer.max_steps (e.g. --trainer.max_steps 100)."
            )

    def on_train_start(self) -> None:
        self._make_dense_copy()
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        lost = lost_update_fraction(trainable, self.optim.lr)
        if lost > 0.01:  # e.g. precision="bf16-true" casts the LoRA factors to bfloat16
            dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in trainable})
            warnings.warn(
                f"{100 * lost:.0f}% of the trainable weights ({', '.join(dtypes)}) cannot change by a step of "
                f"optim.lr={self.optim.lr:g}: it is under half their float spacing, so those updates are rounded "
                "away. Use trainer.precision 'bf16-mixed' (float32 adapter, bfloat16 compute) or a larger lr.",
                stacklevel=2,
            )

    def on_validation_start(self) -> None:
        self._make_dense_copy()  # the sanity check runs before on_train_start

    def _make_dense_copy(self) -> None:
        if self._dense is None and resolve_backend(self.sampling.backend, self.policy) == "dense":
            # trainer.validate runs in inference mode, and later syncs write into the copy: make it outside
            with torch.inference_mode(False), torch.no_grad():
                self._dense = DenseRollout(self.policy)

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        if self.device.type == "cuda":  # logged as memory/peak_gib: the step's own high-water mark
            torch.cuda.reset_peak_memory_stats(self.device)
        with lean_lora_casts(self.policy):  # under bf16-mixed: no float32 copy of each LoRA input kept
            rollouts = self.rollout(batch)
            scored = self.score(rollouts)
            loss, stats = self.update(rollouts, scored)  # credit is applied inside, once the trace exists
        self._log_step(rollouts, scored, {"loss": float(loss), **stats})
        return loss

    def rollout(self, records: list[dict], group_size: int | None = None, temperature: float | None = None) -> Rollouts:
        """Sample ``G`` completions for each prompt of ``records`` (left-padded batch, no grad).

        ``group_size`` and ``temperature`` override the settings (validation: one greedy completion, ``0``).
        """
        g = group_size or self.group_size
        prompts = [r["prompt"] for r in records for _ in range(g)]
        columns = {key: [r[key] for r in records for _ in range(g)] for key in records[0] if key != "prompt"}
        ids, mask = encode_prompts(self.tokenizer, [r["prompt"] for r in records], self.device)
        ids, mask = ids.repeat_interleave(g, 0), mask.repeat_interleave(g, 0)
        sampler = self._dense.model if self._dense is not None else self.policy
        eos = self.tokenizer.eos_token_id
        eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        start = time.perf_counter()
        s = self.sampling
        t = s.temperature if temperature is None else temperature
        out = sample(sampler, ids, mask, eos_ids, self.tokenizer.pad_token_id, s.max_new_tokens, t, s.top_p, s.top_k)
        seconds = time.perf_counter() - start
        texts = self.tokenizer.batch_decode(
            out.ids.masked_fill(~out.mask, self.tokenizer.pad_token_id), skip_special_tokens=True
        )
        full_ids = torch.cat([ids, out.ids], 1)
        full_mask = torch.cat([mask, out.mask.long()], 1)
        return Rollouts(prompts, columns, full_ids, full_mask, out.mask, out.truncated, texts, seconds)

    @property
    def _rhythm(self) -> dict | None:
        """capture settings when the strategy reads the attention, else None."""
        c = self.credit_settings
        if c.strategy not in RHYTHM_STRATEGIES:
            return None
        return dict(layers=c.layers, window=c.window, horizon=tuple(c.horizon), block_size=c.block_size,
                    head_fraction=c.head_fraction, q=c.q, k=c.k)  # fmt: skip

    def score(self, rollouts: Rollouts) -> Scored:
        """Rewards and group advantages; with ``num_iterations > 1`` also the no-grad scoring pass.

        With one iteration (the default, as in the paper) no separate pass is made: the update's own forward
        is the measurement (see :meth:`update`), as TRL also skips the old-log-prob pass then.
        """
        rewards, per_function = score_completions(
            self.reward_funcs, self.reward_weights, rollouts.prompts, rollouts.texts, rollouts.columns
        )
        advantages = group_advantages(rewards.to(self.device), self.group_size, self.loss_settings.scale_rewards)
        scored = Scored(rewards, per_function, advantages)
        if self.loss_settings.num_iterations == 1:
            return scored
        old, ent, gammas = [], [], []
        with measuring(self.policy):  # no dropout in the measurement; the update runs in train mode
            for b0 in range(0, rollouts.ids.shape[0], self.score_batch_size):
                rows = slice(b0, min(b0 + self.score_batch_size, rollouts.ids.shape[0]))
                part = score(self.policy, rollouts.ids[rows], rollouts.mask[rows], rollouts.width,
                             self.sampling.temperature, self._rhythm, want_entropy=True)  # fmt: skip
                old.append(part.old_logp)
                ent.append(part.entropy)
                gammas.append(self.credit(rollouts, rows, part.trace, part.entropy))
                scored.traces.append(part.trace)
        scored.old_logp, scored.entropy, scored.gamma = torch.cat(old), torch.cat(ent), torch.cat(gammas)
        return scored

    def credit(self, rollouts: Rollouts, rows: slice, trace, entropy: torch.Tensor) -> torch.Tensor:
        """``[b, T]`` gamma of the completion tokens of ``rows`` (1 for ``uniform``), from the strategy."""
        c = self.credit_settings
        width = rollouts.width
        response = torch.zeros_like(rollouts.mask[rows], dtype=torch.bool)
        response[:, -width:] = rollouts.completion_mask[rows]
        full_entropy = None
        if c.strategy == "entropy":
            full_entropy = torch.full(response.shape, float("nan"), device=response.device)
            full_entropy[:, -width:] = entropy
        gamma = credit_gamma(
            trace, c.strategy, response_mask=response, q=c.q if trace is None else None, gamma_amp=c.gamma_amp,
            alpha=c.alpha, normalize=c.normalize, entropy=full_entropy, generator=self._random,
        )  # fmt: skip
        return gamma[:, -width:]

    def _measured_forward(self, rollouts: Rollouts, rows: slice):
        """The first update forward when it is also the measurement: ``(logp, trace, entropy)``.

        The rhythm is captured inside this forward (the wrapper reads detached queries and keys, no grad);
        the old log-probabilities are its detached values, so the first ratio is exactly 1.
        """
        ids, mask, width = rollouts.ids[rows], rollouts.mask[rows], rollouts.width
        response = torch.zeros_like(mask, dtype=torch.bool)
        response[:, -width:] = rollouts.completion_mask[rows]
        logp, entropy, trace = measured_logprobs(
            self.policy, ids, mask, response, width, self.sampling.temperature, self._rhythm
        )
        return logp, trace, entropy

    def update(self, rollouts: Rollouts, scored: Scored):
        """``num_iterations`` optimizer steps of the clipped surrogate, accumulating over mini-batches."""
        ls = self.loss_settings
        opt = self.optimizers()
        sched = self.lr_schedulers()
        mask = rollouts.completion_mask
        if ls.mask_truncated:  # completions that hit max_new_tokens stay out of the loss
            mask = mask & ~rollouts.truncated[:, None]
        batches = minibatches(mask, ls.mini_batch_size, ls.loss_type)
        single_pass = scored.old_logp is None
        start = time.perf_counter()
        stats_sum: dict[str, float] = {}
        loss_value = torch.zeros((), device=self.device)
        gammas, entropies = [], []
        for _ in range(ls.num_iterations):
            for sl, share in batches:
                if single_pass:
                    logp, trace, entropy = self._measured_forward(rollouts, sl)
                    old = logp.detach()
                    gamma = self.credit(rollouts, sl, trace, entropy)
                    gammas.append(gamma)
                    entropies.append(entropy)
                    scored.traces.append(trace)
                else:
                    logp = completion_logprobs(self.policy, rollouts.ids[sl], rollouts.mask[sl], rollouts.width,
                                               self.sampling.temperature)  # fmt: skip
                    old, gamma = scored.old_logp[sl], scored.gamma[sl]
                adv = token_advantages(scored.advantages[sl], gamma, self.credit_settings.sign_mode)
                ref = None
                if ls.beta > 0:
                    with torch.no_grad(), self.policy.disable_adapter():
                        ref = completion_logprobs(self.policy, rollouts.ids[sl], rollouts.mask[sl], rollouts.width,
                                                  self.sampling.temperature)  # fmt: skip
                loss, stats = policy_loss(
                    logp, old, adv, mask[sl], ls.epsilon_low, ls.epsilon_high, ls.loss_type,
                    ref, ls.beta, self.sampling.max_new_tokens,
                )  # fmt: skip
                self.manual_backward(loss * share)  # accumulated shares add up to the whole batch's loss
                loss_value = loss_value + loss.detach() * share / ls.num_iterations
                for key, value in stats.items():
                    stats_sum[key] = stats_sum.get(key, 0.0) + float(value) * float(share) / ls.num_iterations
            if ls.max_grad_norm is not None:
                self.clip_gradients(opt, gradient_clip_val=ls.max_grad_norm, gradient_clip_algorithm="norm")
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        if single_pass:
            scored.gamma, scored.entropy = torch.cat(gammas), torch.cat(entropies)
        if self._dense is not None:
            self._dense.sync()
        seconds = time.perf_counter() - start
        tokens = rollouts.mask.sum().item() * ls.num_iterations
        stats_sum["tokens_per_sec/update"] = tokens / max(seconds, 1e-9)
        return loss_value, stats_sum

    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        """Held-out reward: one greedy completion per prompt, logged as ``val/reward`` (and per function)."""
        rollouts = self.rollout(batch, group_size=1, temperature=0.0)
        rewards, per_function = score_completions(
            self.reward_funcs, self.reward_weights, rollouts.prompts, rollouts.texts, rollouts.columns
        )
        values = {
            "val/reward": rewards.mean(),
            "val/completions/mean_length": rollouts.completion_mask.sum(-1).float().mean(),
        }
        values |= {f"val/rewards/{name}/mean": r.mean() for name, r in per_function.items()}
        for name, value in values.items():
            self.log(
                name,
                value.float().cpu(),
                on_step=False,
                on_epoch=True,
                batch_size=len(batch),
                prog_bar=name == "val/reward",
            )

    # ------------------------------------------------------------------ logging
    def _log_step(self, rollouts: Rollouts, scored: Scored, stats: dict) -> None:
        gamma = scored.gamma
        g = self.group_size
        r = scored.rewards
        lengths = rollouts.completion_mask.sum(-1).float()
        m = rollouts.completion_mask
        values = {
            "reward": r.mean(),
            "reward_std": r.std() if r.numel() > 1 else torch.zeros(()),
            "frac_reward_zero_std": (r.view(-1, g).std(1) == 0).float().mean(),
            "completions/mean_length": lengths.mean(),
            "completions/min_length": lengths.min(),
            "completions/max_length": lengths.max(),
            "completions/clipped_ratio": rollouts.truncated.float().mean(),
            "entropy": scored.entropy[m].mean(),
            "credit/amplified_frac": (gamma[m] != 1).float().mean(),
            "credit/mean_gamma": gamma[m].mean(),
            "tokens_per_sec/rollout": torch.tensor(m.sum().item() / max(rollouts.seconds, 1e-9)),
            **{k: torch.tensor(v) for k, v in stats.items()},
        }
        if self.device.type == "cuda":
            values["memory/peak_gib"] = torch.tensor(torch.cuda.max_memory_allocated(self.device) / 2**30)
        for name, rewards in scored.per_function.items():
            values[f"rewards/{name}/mean"] = rewards.mean()
            values[f"rewards/{name}/std"] = rewards.std() if rewards.numel() > 1 else torch.zeros(())
        if scored.traces and scored.traces[0] is not None:
            width = rollouts.width
            values["credit/preplan_rate"] = torch.cat([t.preplan[:, -width:] for t in scored.traces])[m].float().mean()
            values["credit/anchor_rate"] = torch.cat([t.anchor[:, -width:] for t in scored.traces])[m].float().mean()
        batch = rollouts.ids.shape[0]
        for name, value in values.items():
            bar = name in ("reward", "tokens_per_sec/rollout")
            self.log(name, value.float().cpu(), prog_bar=bar, on_step=True, on_epoch=False, batch_size=batch)
        every = self.log_completions_every_n_steps
        if every and self.global_step % every == 0:
            self._write_completions(rollouts, scored)

    def _write_completions(self, rollouts: Rollouts, scored: Scored) -> None:
        log_dir = self.trainer.log_dir if self._trainer is not None else None
        if not log_dir or self.trainer.global_rank != 0:
            return
        path = Path(log_dir) / "completions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            for i in range(0, len(rollouts.texts), self.group_size):  # first completion of every prompt
                row = {
                    "step": self.global_step,
                    "prompt": rollouts.prompts[i],
                    "completion": rollouts.texts[i],
                    "reward": float(scored.rewards[i]),
                }
                fh.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        # plain data only, so that the checkpoint loads with torch.load(weights_only=True)
        checkpoint["hyper_parameters"] = plain(checkpoint.get("hyper_parameters", {}))
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "credit_random": self._random.get_state(),
        }
        checkpoint["reasonattn_settings"] = {
            "credit": asdict(self.credit_settings),
            "loss": asdict(self.loss_settings),
        }
        checkpoint["reasonattn_base"] = base_record(self)  # the base that `reasonattn export` tells users to load

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the RNG states; apply the resume rule (see ``grpo.checkpoint``) and log what came from where."""
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities import rank_zero_info

        if self._trainer is not None:  # (load_from_checkpoint builds the module from the checkpoint's own settings)
            training = self.trainer.state.fn == TrainerFn.FITTING
            rank_zero_info(check_resume(checkpoint, dict(self.hparams), self.trainer.ckpt_path, training))
            apply_optim_settings(checkpoint, self.optim.lr, self.optim.weight_decay, self._warmup)
            if not training:  # validation takes the adapter only: no checkpoint callback to restore (nor warn about)
                checkpoint.pop("callbacks", None)
        rng = checkpoint.get("rng_states")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            random.setstate(rng["python"])
            self._random.set_state(rng["credit_random"])
