"""RhythmGRPO: GRPO-family RL fine-tuning of a 4-bit LoRA policy with attention-rhythm credit.

One training step reads top to bottom::

    rollouts = self.rollout(prompts)   # G sampled completions per prompt, no grad
    scored   = self.score(rollouts)    # rewards, group advantages
    self.update(rollouts, scored)      # per mini-batch: forward (+ RhythmTrace), credit (gamma), clipped loss

The rhythm is measured in a forward the step makes anyway: with one iteration (the default) the update's own
forward, whose detached log-probabilities are the old ones (ratio 1); with ``num_iterations > 1`` the no-grad
scoring pass that gives the old log-probabilities. Either way there is no extra pass for the attention.

The reference policy for the KL penalty is the same model with its adapter disabled; no copy is made.

On several processes (Lightning's DDP) each rank rolls out its contiguous, whole-group share of the step's
prompts, sampled with keyed randomness (``rollout.KeyedSampling``), so the ranks together sample what one
process samples; rewards and lengths are gathered (metrics, ``scale_rewards: batch``), the loss weights make
DDP's averaged gradient the gradient of the whole step's loss, and every logged value is over all ranks.
"""

from __future__ import annotations

import time
import warnings

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..capture import measuring
from ..compat import attached_trainer, ddp_ignore
from ..functional._checks import check_choice, check_number
from ..functional.credit import RHYTHM_STRATEGIES
from ..functional.keyed import mix
from ..models import LoraSettings, Quantization, add_lora, lean_lora_casts, load_model, lost_update_fraction
from ..rewards.completions import conversational_completions
from ..rewards.protocol import RewardLog, TrainerState, score_completions
from ..rollout.context import check_context
from ..rollout.dense import DenseRollout, resolve_backend
from ..rollout.logprobs import completion_logprobs, measure
from ..rollout.prompts import encode_prompts
from ..rollout.sampling import sample_batch
from ..settings import RhythmSettings
from ..tasks.table import TASKS
from .advantages import group_advantages, token_advantages
from .checkpoint import (
    apply_optim_settings,
    base_record,
    check_checkpoint_folders,
    check_resume,
    restore_rng_states,
    slim_checkpoint,
    use_atomic_checkpoint_io,
)
from .credit import SAMPLE_STREAM, check_credit_layers, rows_gamma
from .data import HeldOut, PromptStream, reward_functions, task_records
from .distributed import (
    check_held_out,
    check_max_steps,
    check_split,
    check_strategy,
    frozen_names,
    gather_columns,
    gather_objects,
    rng_states,
    run_seed,
)
from .loss import minibatches, policy_loss
from .settings import (
    CreditSettings,
    LossSettings,
    OptimSettings,
    RewardSettings,
    SamplingSettings,
    TaskSettings,
    as_settings,
)
from .step_data import Completed, Rollouts, Scored
from .step_logging import append_completions, completion_rows, step_values
from .step_metrics import LOSS_STATS


class RhythmGRPO(pl.LightningModule):
    """GRPO with rhythm credit on a (4-bit, LoRA) causal LM, on one device or several (Lightning's DDP).

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
        prompts_per_step: prompts per training step, over all processes (each of W processes takes
            prompts_per_step / W of them, whole groups).
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
        self._seed: int | None = None  # of the keyed sampling: the run's seed (kept in checkpoints)
        self._val_means = torch.nn.ModuleDict()  # held-out means, made at the first validation batch
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
        check_number(
            "log_completions_every_n_steps", self.log_completions_every_n_steps, low=0, integer=True, fix=" (0: never)"
        )

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        check_strategy(self.trainer.strategy)
        if stage == "fit":  # validation splits the held-out problems, whatever their number
            check_split(self.prompts_per_step, self.trainer.world_size)
        if self._seed is None:
            self._seed = run_seed(self.trainer.strategy)
        use_atomic_checkpoint_io(self.trainer)  # a checkpoint is written next to its target, then renamed over it
        if stage == "fit":
            check_checkpoint_folders(self.trainer)
        if self.task.name not in TASKS:  # a file: read and check it now, before the model loads
            self._splits = task_records(self.task, False, self.reward_funcs)  # (chat shapes generated prompts only)
        if self.task.name not in TASKS or self.task.n_test == 0:
            if stage == "validate":
                raise MisconfigurationException(
                    f"task {self.task.name!r} has no held-out split (a task read from a file trains on all its "
                    f"records; a generated one holds out task.n_test={self.task.n_test} problems): validate needs a "
                    f"generated task ({', '.join(TASKS)}) with task.n_test > 0."
                )
            self.trainer.limit_val_batches = 0  # no validation loop (an empty one makes Lightning warn of it)

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        device = self.trainer.strategy.root_device if attached_trainer(self) is not None else torch.device("cpu")
        base, self.tokenizer = load_model(
            self.model_name, device=device, quantization=self.quantization, double_quant=self.double_quant
        )
        self.policy = add_lora(base, self.lora, self.gradient_checkpointing)
        self.policy.train()
        # Under DDP only the adapter is synchronised (and averaged): every rank loads the same frozen base.
        ddp_ignore(self, frozen_names(self))

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.optim.optimizer == "adamw_8bit":  # (OptimSettings allows only these two)
            import bitsandbytes as bnb  # only when asked for: its CUDA optimizers

            opt = bnb.optim.AdamW8bit(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self._warmup(step))  # a function: not pickled
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _warmup(self, step: int) -> float:
        """The learning-rate multiplier at ``step``: linear warm-up over ``optim.warmup_steps``, then 1."""
        return min(1.0, (step + 1) / max(1, self.optim.warmup_steps))

    def _task_splits(self) -> tuple[list[dict], list[dict]]:
        """``(train, test)`` records, made once (20k Countdown problems take a while)."""
        if self._splits is None:
            chat = self.task.chat if self.task.chat is not None else self.tokenizer.chat_template is not None
            self._splits = task_records(self.task, chat, self.reward_funcs)
        return self._splits

    @property
    def _world_size(self) -> int:
        return self.trainer.world_size if attached_trainer(self) is not None else 1

    @property
    def _strategy(self):
        return self.trainer.strategy if attached_trainer(self) is not None else None

    def train_dataloader(self):
        """This rank's share of every step's prompts (all of them on one process)."""
        train, _ = self._task_splits()
        return PromptStream(
            train,
            self.prompts_per_step,
            self.task.seed,
            start=self._stream_step,
            rank=self.global_rank,
            world_size=self._world_size,
        )

    def _stream_step(self) -> int:
        """The prompt stream's batch of the coming training step (a function of the step, so resumable)."""
        return self.global_step // self.loss_settings.num_iterations

    def val_dataloader(self):
        """This rank's share of the held-out split in fixed batches (none for a task read from a file)."""
        _, test = self._task_splits()
        check_held_out(len(test), self._world_size)
        return HeldOut(test, self.eval_batch_size, self.global_rank, self._world_size)

    def on_fit_start(self) -> None:
        # Lightning warns that a checkpoint taken every n steps under manual optimization holds the weights
        # after the optimizer step. That is what RhythmGRPO wants: global_step counts that step, and a resumed
        # run reproduces the next one (tested), so the warning is silenced for this module's runs.
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        check_max_steps(self.trainer.max_steps)  # (reasonattn fit checks it before anything is built)
        check_credit_layers(self.credit_settings, self.policy)  # the model is built: its layers are known

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
        key = (self._stream_step(), self.global_rank * len(batch))  # this rank's first prompt in the step's batch
        with lean_lora_casts(self.policy):  # under bf16-mixed: no float32 copy of each LoRA input kept
            rollouts = self.rollout(batch, key=key)
            scored = self.score(rollouts)
            loss, sums = self.update(rollouts, scored)  # credit is applied inside, once the trace exists
        self._log_step(rollouts, scored, sums)
        return loss

    def rollout(
        self,
        records: list[dict],
        group_size: int | None = None,
        temperature: float | None = None,
        key: tuple[int, int] | None = None,
    ) -> Rollouts:
        """Sample ``G`` completions for each prompt of ``records`` (left-padded batch, no grad).

        ``group_size`` and ``temperature`` override the settings (validation: one greedy completion, ``0``).
        ``key = (step, first)``: ``records`` are prompts ``first, first + 1, ...`` of the step's batch, and the
        sampling of completion ``j`` of prompt ``i`` is keyed by ``(run seed, step, i, j)`` (``None``: sampled from
        the process RNG).
        """
        g = group_size or self.group_size
        step, first = key if key is not None else (None, 0)
        prompt_index = (torch.arange(len(records)) + first).repeat_interleave(g)
        sample_index = torch.arange(g).repeat(len(records))
        ids, mask = encode_prompts(self.tokenizer, [r["prompt"] for r in records], self.device)
        check_context(self.policy, ids.shape[1], self.sampling.max_new_tokens, setting="sampling.max_new_tokens")
        s = self.sampling
        t = s.temperature if temperature is None else temperature
        keys = None
        if step is not None and t > 0:
            seed = self._seed if self._seed is not None else 0
            keys = mix(seed, SAMPLE_STREAM, step, prompt_index, sample_index).to(self.device)
        eos = self.tokenizer.eos_token_id
        start = time.perf_counter()
        batch = sample_batch(
            self._dense.model if self._dense is not None else self.policy,
            ids.repeat_interleave(g, 0),
            mask.repeat_interleave(g, 0),
            eos_ids=list(eos) if isinstance(eos, (list, tuple)) else [eos],
            pad_id=self.tokenizer.pad_token_id,
            max_new_tokens=s.max_new_tokens,
            temperature=t,
            top_p=s.top_p,
            top_k=s.top_k,
            keys=keys,
        )
        seconds = time.perf_counter() - start
        return Rollouts(
            **vars(batch),
            prompts=[r["prompt"] for r in records for _ in range(g)],
            columns={col: [r[col] for r in records for _ in range(g)] for col in records[0] if col != "prompt"},
            texts=self.tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True),
            seconds=seconds,
            step=step,
            prompt_index=prompt_index,
            sample_index=sample_index,
        )

    @property
    def _rhythm(self) -> RhythmSettings | None:
        """The rhythm's settings when the strategy reads the attention, else None (no capture)."""
        return self.credit_settings.rhythm() if self.credit_settings.strategy in RHYTHM_STRATEGIES else None

    def score(self, rollouts: Rollouts) -> Scored:
        """Rewards and group advantages; with ``num_iterations > 1`` also the no-grad scoring pass.

        With one iteration (the default, as in the paper) no separate pass is made: the update's own forward
        is the measurement (see [`update`][update]), as TRL also skips the old-log-prob pass then.
        """
        log = RewardLog()
        rewards, per_function = self.score_rewards(rollouts, log)
        completed = self._gather_completed(rollouts, rewards, per_function)
        # On the whole step's rewards (the group ones need only this rank's; "batch" needs every rank's)
        every = group_advantages(completed.rewards.float(), self.group_size, self.loss_settings.scale_rewards)
        offset = self.global_rank * len(rollouts.texts)
        advantages = every[offset : offset + len(rollouts.texts)]
        scored = Scored(rewards, per_function, advantages, completed, log=log)
        if self.loss_settings.num_iterations == 1:
            return scored
        old, entropies, gammas = [], [], []
        # no dropout in the measurement (the update runs in train mode), no grad
        with measuring(self.policy), torch.no_grad():
            for b0 in range(0, rollouts.ids.shape[0], self.score_batch_size):
                rows = slice(b0, min(b0 + self.score_batch_size, rollouts.ids.shape[0]))
                part = measure(
                    self.policy, rollouts.rows(rows), temperature=self.sampling.temperature, rhythm=self._rhythm
                )
                old.append(part.logp)
                entropies.append(part.entropy)
                gammas.append(rows_gamma(self.credit_settings, rollouts, rows, part.trace, part.entropy))
                scored.traces.append(part.trace)
        scored.old_logp, scored.entropy, scored.gamma = torch.cat(old), torch.cat(entropies), torch.cat(gammas)
        return scored

    def score_rewards(self, rollouts: Rollouts, log: RewardLog | None = None):
        """``(total, per_function)`` rewards of the rollouts, reward functions called as TRL calls them.

        Conversational prompts give ``[{"role": "assistant", "content": text}]`` completions; every function
        also gets ``completion_ids``, ``trainer_state``, ``log_extra``/``log_metric`` (into ``log``) and the
        dataset columns (see [`lightning_reasonattn.rewards.protocol`][lightning_reasonattn.rewards.protocol]).
        """
        prompts, completions = conversational_completions(rollouts.prompts, rollouts.texts)
        ids = rollouts.completion_ids.cpu()
        completion_ids = [row[keep].tolist() for row, keep in zip(ids, rollouts.completion_mask.cpu(), strict=True)]
        state = None
        if attached_trainer(self) is not None:
            t = self.trainer
            state = TrainerState(global_step=t.global_step, max_steps=t.max_steps, epoch=float(t.current_epoch))
        return score_completions(
            self.reward_funcs,
            self.reward_weights,
            prompts,
            completions,
            rollouts.columns,
            completion_ids=completion_ids,
            trainer_state=state,
            log=log,
        )

    def _loss_mask(self, rollouts: Rollouts) -> torch.Tensor:
        """``[B, T]`` completion tokens in the loss (without truncated completions if ``mask_truncated``)."""
        mask = rollouts.completion_mask
        if self.loss_settings.mask_truncated:  # completions that hit max_new_tokens stay out of the loss
            mask = mask & ~rollouts.truncated[:, None]
        return mask

    def _gather_completed(self, rollouts: Rollouts, rewards: torch.Tensor, per_function: dict) -> Completed:
        """Every rank's per-completion values, in one gather (float64 keeps rewards and counts exact)."""
        lengths, loss_tokens = rollouts.completion_mask.sum(-1), self._loss_mask(rollouts).sum(-1)
        columns = [rewards, *per_function.values(), lengths, rollouts.truncated, loss_tokens]
        table = gather_columns(self._strategy, columns, self.device)  # [K, N]
        names = list(per_function)
        return Completed(
            rewards=table[0],
            per_function=dict(zip(names, table[1 : 1 + len(names)], strict=True)),
            lengths=table[-3],
            truncated=table[-2].bool(),
            loss_tokens=table[-1],
        )

    def update(self, rollouts: Rollouts, scored: Scored) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``num_iterations`` optimizer steps of the clipped surrogate, accumulating over mini-batches.

        With one iteration the first forward of each mini-batch is also the measurement: the rhythm is captured
        inside it (the wrapper reads detached queries and keys, no grad), and its detached log-probabilities are
        the old ones, so the first ratio is exactly 1.

        Under DDP every ``manual_backward`` all-reduces (averages) the adapter's gradients over the ranks; the
        mini-batch weights ([`minibatches`][lightning_reasonattn.grpo.loss.minibatches], with the token count of all
        ranks) make that average the gradient of the whole step's loss, so clipping and the optimizer step see
        the same gradient on every rank, the one a single process would compute.

        Returns:
            ``(loss, sums)``: this rank's share of the loss (times the world size, as weighted) and its sums for
            the logs: ``loss``, ``loss_tokens``, the token sums of ``kl`` and the clip ratios,
            ``tokens_per_sec/update``.
        """
        ls = self.loss_settings
        opt = self.optimizers()
        sched = self.lr_schedulers()
        mask = self._loss_mask(rollouts)
        global_tokens = scored.step.loss_tokens.sum().long() if scored.step is not None else None
        batches = minibatches(mask, ls.mini_batch_size, ls.loss_type, self._world_size, global_tokens)
        single_pass = scored.old_logp is None
        temperature = self.sampling.temperature
        start = time.perf_counter()
        sums = {key: torch.zeros((), device=self.device, dtype=torch.float64) for key in LOSS_STATS}
        loss_value = torch.zeros((), device=self.device)
        gammas, entropies = [], []
        for _ in range(ls.num_iterations):
            for sl, share in batches:
                rows = rollouts.rows(sl)
                if single_pass:
                    measured = measure(self.policy, rows, temperature=temperature, rhythm=self._rhythm)
                    logp, old = measured.logp, measured.logp.detach()
                    gamma = rows_gamma(self.credit_settings, rollouts, sl, measured.trace, measured.entropy)
                    gammas.append(gamma)
                    entropies.append(measured.entropy)
                    scored.traces.append(measured.trace)
                else:
                    logp = completion_logprobs(self.policy, rows, temperature)
                    old, gamma = scored.old_logp[sl], scored.gamma[sl]
                adv = token_advantages(scored.advantages[sl], gamma, self.credit_settings.sign_mode)
                ref = None
                if ls.beta > 0:
                    with torch.no_grad(), self.policy.disable_adapter():
                        ref = completion_logprobs(self.policy, rows, temperature)
                loss, stats = policy_loss(
                    logp,
                    old,
                    adv,
                    mask[sl],
                    epsilon_low=ls.epsilon_low,
                    epsilon_high=ls.epsilon_high,
                    loss_type=ls.loss_type,
                    ref_logp=ref,
                    beta=ls.beta,
                    max_len=self.sampling.max_new_tokens,
                )
                self.manual_backward(loss * share)  # accumulated shares add up to the whole batch's loss
                loss_value = loss_value + loss.detach() * share / ls.num_iterations
                count = mask[sl].sum()  # the stats are means over these tokens: keep sums, to add over ranks
                for key in LOSS_STATS:
                    sums[key] = sums[key] + stats[key].double() * count / ls.num_iterations
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
        tokens = rollouts.attention_mask.sum().item() * ls.num_iterations
        sums |= {"loss": loss_value, "loss_tokens": mask.sum(), "tokens_per_sec/update": tokens / max(seconds, 1e-9)}
        return loss_value, sums

    # ------------------------------------------------------------------ logging
    def _log_step(self, rollouts: Rollouts, scored: Scored, update_sums: dict[str, torch.Tensor]) -> None:
        """Log the step's values over all ranks' completions (each rank logs the same numbers)."""
        values = step_values(
            rollouts,
            scored,
            update_sums,
            group_size=self.group_size,
            strategy=self._strategy,
            world_size=self._world_size,
            device=self.device,
        )
        batch = rollouts.ids.shape[0]
        for name, value in values.items():  # equal on every rank: nothing left for Lightning to reduce
            bar = name in ("reward", "tokens_per_sec/rollout")
            self.log(name, value.float().cpu(), prog_bar=bar, on_step=True, on_epoch=False, batch_size=batch)
        every = self.log_completions_every_n_steps
        if every and self.global_step % every == 0:
            log_dir = self.trainer.log_dir if attached_trainer(self) is not None else None  # a broadcast: every rank
            rows = completion_rows(rollouts, scored, step=self.global_step, group_size=self.group_size)
            every_rank = gather_objects(rows, self._world_size)
            if log_dir and self.global_rank == 0:
                append_completions(log_dir, [row for part in every_rank for row in part])

    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        """Held-out reward: one greedy completion per prompt, logged as ``val/reward`` (and per function).

        Each rank holds a share of the held-out problems; the values are torchmetrics ``MeanMetric`` s, whose
        sums and counts are added over the ranks when Lightning computes them at the epoch's end, so
        ``val/reward`` is the mean over all the problems (Lightning's own ``sync_dist`` mean of a tensor would
        weigh each rank alike, and rounds their summed batch sizes down under gloo).
        """
        rollouts = self.rollout(batch, group_size=1, temperature=0.0)
        log = RewardLog()
        rewards, per_function = self.score_rewards(rollouts, log)
        # NaN where no reward function applies: the means below leave those out (MeanMetric nan_strategy)
        values = {"val/reward": rewards, "val/completions/mean_length": rollouts.completion_mask.sum(-1)}
        values |= {f"val/rewards/{name}/mean": r for name, r in per_function.items()}
        values |= {f"val/{name}": torch.tensor(v) for name, v in log.metrics.items()}
        for name, value in values.items():
            key = name.replace(".", "_")  # a module name
            if key not in self._val_means:
                self._val_means[key] = torchmetrics.MeanMetric(nan_strategy="ignore").to(self.device)
            self._val_means[key].update(value.to(self.device, torch.float32))
            self.log(
                name,
                self._val_means[key],
                on_step=False,
                on_epoch=True,
                batch_size=len(batch),
                prog_bar=name == "val/reward",
                metric_attribute=f"_val_means.{key}",
            )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The adapter only, plain data, every rank's RNG states and the base record (see ``slim_checkpoint``)."""
        # Lightning writes the checkpoint on rank 0 only, but calls this hook on every rank: every rank gathers.
        every_rank = gather_objects(rng_states(), self._world_size)
        slim_checkpoint(
            checkpoint,
            trainable={name for name, p in self.named_parameters() if p.requires_grad},
            rng_states=every_rank,
            sampling_seed=self._seed,
            base=base_record(self.model_name, self.quantization, self.double_quant, self.policy, self.lora.dtype),
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Apply the resume rule (see ``grpo.checkpoint``), log what came from where; restore the RNG states."""
        if attached_trainer(self) is not None:  # (load_from_checkpoint builds the module from its own settings)
            training = self.trainer.state.fn == TrainerFn.FITTING
            rank_zero_info(check_resume(checkpoint, dict(self.hparams), self.trainer.ckpt_path, training))
            apply_optim_settings(checkpoint, self.optim.lr, self.optim.weight_decay, self._warmup)
            if not training:  # validation takes the adapter only: no checkpoint callback to restore (nor warn about)
                checkpoint.pop("callbacks", None)
        self._restore_rng_states(checkpoint)

    def _restore_rng_states(self, checkpoint: dict) -> None:
        """The run's sampling seed, and this rank's RNG states (a rank the checkpoint has none for keeps its own)."""
        seed = restore_rng_states(checkpoint, self.global_rank)
        if seed is not None:
            self._seed = seed
