"""RhythmGRPO: GRPO-family RL fine-tuning of a 4-bit LoRA policy with attention-rhythm credit.

The LightningModule holds the hooks: it builds the model, serves the prompts, runs one
[`GRPOStep`][lightning_reasonattn.grpo.step.GRPOStep] per training step, logs, validates and checkpoints. The
algorithm itself (``rollout -> score -> update``) is the step's, and reads without Lightning::

    step = self.grpo_step()
    rollouts = step.rollout(prompts, key=key)  # G sampled completions per prompt, no grad
    scored = step.score(rollouts)              # rewards, group advantages
    updated = step.update(rollouts, scored, optimization)  # forward (+ RhythmTrace), credit, clipped loss

The reference policy for the KL penalty is the same model with its adapter disabled; no copy is made.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from ..compat import attached_trainer, ddp_ignore
from ..models import LoraSettings, Quantization, lean_lora_casts
from ..rewards.protocol import RewardLog, TrainerState
from ..rollout.dense import DenseRollout
from ..tasks.table import TASKS
from .checkpoint import (
    apply_optim_settings,
    base_record,
    check_checkpoint_folders,
    check_resume,
    restore_rng_states,
    slim_checkpoint,
)
from .credit import check_credit_layers
from .data import HeldOut, PromptStream, has_held_out_split, reward_functions, task_records
from .distributed import (
    Processes,
    check_held_out,
    check_max_steps,
    check_split,
    check_strategy,
    frozen_names,
    rng_states,
    run_seed,
)
from .policy import Given, Reference, build_policy, dense_copy, model_record, warn_if_updates_are_lost
from .settings import (
    CreditSettings,
    Finetune,
    LossSettings,
    OptimSettings,
    RewardSettings,
    RunSettings,
    SamplingSettings,
    TaskSettings,
    as_settings,
)
from .step import GRPOStep, Rewards, StepOptimization, StepSettings
from .step_data import Rollouts, Scored, Updated
from .step_logging import append_completions, held_out_values

MANUAL_CHECKPOINT_WARNING = "Using ModelCheckpoint with manual optimization"
"""Lightning's warning that a checkpoint taken every n steps under manual optimization holds the weights after the
optimizer step: what RhythmGRPO wants (``global_step`` counts that step, and a resumed run reproduces the next one,
tested). Silenced during this module's fits only."""


class RhythmGRPO(pl.LightningModule):
    """GRPO with rhythm credit on a (4-bit, LoRA) causal LM, on one device or several (Lightning's DDP).

    Every argument is checked when the module is built, before any model loads (a settings dataclass checks
    its own fields; a dict is accepted for one and built into it).

    Args:
        model: hub name or local checkpoint folder (None: the embedded default, SmolLM2-135M-Instruct), or any
            PyTorch causal LM, a torch.nn.Module from token ids to logits whose attention calls SDPA (in YAML a
            class_path with init_args).
        quantization: base weights 'nf4', 'fp4' (4-bit), 'int8' or 'none' (full precision); None: 'nf4' for a
            Hugging Face model with an adapter, 'none' otherwise.
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
        log_completions_every_n_steps: write sample completions to completions.jsonl in the logger's folder (0:
            never; nothing without a logger).
        eval_batch_size: held-out prompts per validation batch (one greedy completion each); validation runs
            every trainer.val_check_interval steps (an int: the prompt stream has no epochs) and in
            reasonattn validate.
        tokenizer: a module's tokenizer, with encode (text to ids), decode (ids to text) and eos_token_id; a Hugging
            Face model brings its own.
        weights: a state-dict file (.safetensors, or torch's) loaded into a module before training.
        finetune: 'lora' (an adapter; the model's weights frozen), 'full' (every weight) or 'auto' (default: 'lora'
            for a Hugging Face model, 'full' for a module). With 'full' and loss.beta > 0 the KL's reference is a
            frozen copy of the starting weights.
    """

    def __init__(
        self,
        model: str | torch.nn.Module | None = None,
        quantization: Quantization | None = None,
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
        tokenizer: Any = None,
        weights: str | None = None,
        finetune: Finetune = "auto",
    ):
        super().__init__()
        self.run = RunSettings(
            model=model_record(model),
            quantization=quantization,
            double_quant=double_quant,
            finetune=finetune,
            gradient_checkpointing=gradient_checkpointing,
            prompts_per_step=prompts_per_step,
            group_size=group_size,
            score_batch_size=score_batch_size,
            log_completions_every_n_steps=log_completions_every_n_steps,
            eval_batch_size=eval_batch_size,
        )
        self.lora = as_settings(LoraSettings, lora)
        self.task = as_settings(TaskSettings, task)
        self.reward_settings = as_settings(RewardSettings, rewards)
        self.sampling = as_settings(SamplingSettings, sampling)
        self.credit_settings = as_settings(CreditSettings, credit)
        self.loss_settings = as_settings(LossSettings, loss)
        self.optim = as_settings(OptimSettings, optim)
        if self.run.is_module and self.sampling.backend == "dense":
            raise ValueError(
                "sampling.backend='dense' copies a transformers model; a PyTorch module samples from itself: use "
                "'auto' or 'policy'."
            )
        self.save_hyperparameters(ignore=["model", "tokenizer"])
        # objects recorded by class, in the checkpoint and in the logger's hparams alike
        self.save_hyperparameters({"model": self.run.model, "tokenizer": model_record(tokenizer)})
        self._given = Given(model, tokenizer, weights)  # (not an nn.Module attribute: the policy is built from it)
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold the trained weights only (an adapter: not the frozen base)
        self.policy = None
        self.tokenizer = None
        self._reference: Reference | None = None
        self._dense: DenseRollout | None = None
        self._splits: tuple[list[dict], list[dict]] | None = None
        self._seed: int | None = None  # of the keyed sampling: the run's seed (kept in checkpoints)
        self._val_means = torch.nn.ModuleDict()  # held-out means, made at the first validation batch
        self._quiet_checkpoint_warning: contextlib.ExitStack | None = None
        self.reward_funcs, self.reward_weights = reward_functions(self.reward_settings, self.task)

    @property
    def model_name(self) -> str | None:
        return self.run.model

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        check_strategy(self.trainer.strategy)
        if stage == "fit":  # validation splits the held-out problems, whatever their number
            check_split(self.run.prompts_per_step, self.trainer.world_size)
        if self._seed is None:
            self._seed = run_seed(self.trainer.strategy)
        if stage == "fit":
            check_checkpoint_folders(self.trainer)
        if self.task.name not in TASKS:  # a file: read and check it now, before the model loads
            self._splits = task_records(self.task, False, self.reward_funcs)  # (chat shapes generated prompts only)
        if not has_held_out_split(self.task, stage):
            # No held-out split, no validation loop: Lightning runs none for a module without val_dataloader
            # (an empty loader would make it warn on every run), and the Trainer is left as the user made it.
            self.val_dataloader = None

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        device = self.trainer.strategy.root_device if attached_trainer(self) is not None else torch.device("cpu")
        kl = self.loss_settings.beta > 0
        built = build_policy(self._given, self.run, self.lora, keep_reference=kl, device=device)
        self.policy, self.tokenizer, self._reference = built.model, built.tokenizer, built.reference
        self.policy.train()
        # Under DDP only the trained weights are synchronised (and averaged): every rank loads the same frozen base.
        ddp_ignore(self, frozen_names(self))

    def configure_optimizers(self):
        return self.optim.configure([p for p in self.policy.parameters() if p.requires_grad])

    def _task_splits(self) -> tuple[list[dict], list[dict]]:
        """``(train, test)`` records, made once (20k Countdown problems take a while)."""
        if self._splits is None:
            chat = self.task.chat
            if chat is None:  # chat messages where the tokenizer has a chat template (a module's has none)
                chat = getattr(self.tokenizer, "chat_template", None) is not None
            self._splits = task_records(self.task, chat, self.reward_funcs)
        return self._splits

    @property
    def _processes(self) -> Processes:
        strategy = self.trainer.strategy if attached_trainer(self) is not None else None
        return Processes(strategy, self.device)

    def train_dataloader(self):
        """This rank's share of every step's prompts (all of them on one process)."""
        train, _ = self._task_splits()
        return PromptStream(
            train,
            self.run.prompts_per_step,
            self.task.seed if self.task.shuffle_seed is None else self.task.shuffle_seed,
            start=self._stream_step,
            rank=self.global_rank,
            world_size=self._processes.world_size,
        )

    def _stream_step(self) -> int:
        """The prompt stream's batch of the coming training step (a function of the step, so resumable)."""
        return self.global_step // self.loss_settings.num_iterations

    def val_dataloader(self):
        """This rank's share of the held-out split in fixed batches (none for a task read from a file)."""
        _, test = self._task_splits()
        world_size = self._processes.world_size
        check_held_out(len(test), world_size)
        return HeldOut(test, self.run.eval_batch_size, self.global_rank, world_size)

    def on_fit_start(self) -> None:
        check_max_steps(self.trainer.max_steps)  # (reasonattn fit checks it before anything is built)
        check_credit_layers(self.credit_settings, self.policy)  # the model is built: its layers are known
        self._quiet_checkpoint_warning = contextlib.ExitStack()  # until the fit ends (see MANUAL_CHECKPOINT_WARNING)
        self._quiet_checkpoint_warning.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=MANUAL_CHECKPOINT_WARNING)

    def teardown(self, stage: str) -> None:
        if self._quiet_checkpoint_warning is not None:  # the warning filters as they were before the fit
            self._quiet_checkpoint_warning.close()
            self._quiet_checkpoint_warning = None

    def on_train_start(self) -> None:
        self.on_validation_start()
        warn_if_updates_are_lost(self.policy, self.optim.lr)

    def on_validation_start(self) -> None:  # (the sanity check runs before on_train_start)
        if self._dense is None:
            self._dense = dense_copy(self.policy, self.sampling.backend, self.run.is_module)

    # ------------------------------------------------------------------ the step
    def grpo_step(self) -> GRPOStep:
        """The algorithm of a step over this rank's prompts, with the module's model, settings and processes."""
        settings = StepSettings(
            group_size=self.run.group_size,
            sampling=self.sampling,
            credit=self.credit_settings,
            loss=self.loss_settings,
            score_batch_size=self.run.score_batch_size,
        )
        return GRPOStep(
            policy=self.policy,
            sampler=self._dense.model if self._dense is not None else self.policy,
            reference=self._reference,
            tokenizer=self.tokenizer,
            settings=settings,
            rewards=Rewards(self.reward_funcs, self.reward_weights),
            processes=self._processes,
            seed=self._seed if self._seed is not None else 0,
        )

    def _trainer_state(self) -> TrainerState | None:
        """What reward functions get as ``trainer_state`` (None outside a trainer)."""
        if attached_trainer(self) is None:
            return None
        t = self.trainer
        return TrainerState(global_step=t.global_step, max_steps=t.max_steps, epoch=float(t.current_epoch))

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        if self.device.type == "cuda":  # logged as memory/peak_gib: the step's own high-water mark
            torch.cuda.reset_peak_memory_stats(self.device)
        step = self.grpo_step()
        key = (self._stream_step(), self.global_rank * len(batch))  # this rank's first prompt in the step's batch
        with lean_lora_casts(self.policy):  # under bf16-mixed: no float32 copy of each LoRA input kept
            rollouts = step.rollout(batch, key=key)
            scored = step.score(rollouts, self._trainer_state())
            updated = step.update(rollouts, scored, self._optimization())  # credit applied inside
        if self._dense is not None:  # the rollouts sample from the policy as it is now
            self._dense.sync()
        self._log_step(step, rollouts, scored, updated)
        return updated.loss

    def _optimization(self) -> StepOptimization:
        """The step's optimization through Lightning's manual optimization: its backward (precision, DDP's
        all-reduce), gradient clipping, the optimizer and the scheduler."""
        opt, norm = self.optimizers(), self.loss_settings.max_grad_norm
        clip = None if norm is None else lambda: self.clip_gradients(opt, norm, gradient_clip_algorithm="norm")
        return StepOptimization(self.manual_backward, opt, self.lr_schedulers(), clip)

    # ------------------------------------------------------------------ logging
    def _log_step(self, step: GRPOStep, rollouts: Rollouts, scored: Scored, updated: Updated) -> None:
        """Log the step's values over all ranks' completions (each rank logs the same numbers)."""
        batch = rollouts.ids.shape[0]
        for name, value in step.log_values(rollouts, scored, updated).items():  # equal on every rank
            bar = name in ("reward", "tokens_per_sec/rollout")
            self.log(name, value.float().cpu(), prog_bar=bar, on_step=True, on_epoch=False, batch_size=batch)
        every = self.run.log_completions_every_n_steps
        if every and self.global_step % every == 0:
            # a broadcast: every rank reads it; without a logger there is no log folder (never the current folder)
            attached = attached_trainer(self) is not None
            log_dir = self.trainer.log_dir if attached and self.trainer.logger is not None else None
            rows = list(step.completion_rows(rollouts, scored, self.global_step))  # a gather: every rank
            if log_dir and self.global_rank == 0:
                append_completions(log_dir, rows)

    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        """Held-out reward: one greedy completion per prompt, logged as ``val/reward`` (and per function).

        Each rank holds a share of the held-out problems; the values are torchmetrics ``MeanMetric`` s, whose
        sums and counts are added over the ranks when Lightning computes them at the epoch's end, so
        ``val/reward`` is the mean over all the problems (Lightning's own ``sync_dist`` mean of a tensor would
        weigh each rank alike, and rounds their summed batch sizes down under gloo).
        """
        step = self.grpo_step()
        rollouts = step.rollout(batch, group_size=1, temperature=0.0)
        log = RewardLog()
        rewards, per_function = step.score_rewards(rollouts, log, self._trainer_state())
        for name, value in held_out_values(rollouts, rewards, per_function, log).items():
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
        every_rank = self._processes.gather_objects(rng_states())
        slim_checkpoint(
            checkpoint,
            trainable={name for name, p in self.named_parameters() if p.requires_grad},
            rng_states=every_rank,
            sampling_seed=self._seed,
            base=base_record(self.run, self.policy, self.lora.dtype),
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Apply the resume rule (see ``grpo.checkpoint``), log what came from where; restore the RNG states."""
        if attached_trainer(self) is not None:  # (load_from_checkpoint builds the module from its own settings)
            training = self.trainer.state.fn == TrainerFn.FITTING
            rank_zero_info(check_resume(checkpoint, dict(self.hparams), self.trainer.ckpt_path, training))
            apply_optim_settings(checkpoint, self.optim.lr, self.optim.weight_decay, self.optim.warmup)
            if not training:  # validation takes the adapter only: no checkpoint callback to restore (nor warn about)
                checkpoint.pop("callbacks", None)
        self._restore_rng_states(checkpoint)

    def _restore_rng_states(self, checkpoint: dict) -> None:
        """The run's sampling seed, and this rank's RNG states (a rank the checkpoint has none for keeps its own)."""
        seed = restore_rng_states(checkpoint, self.global_rank)
        if seed is not None:
            self._seed = seed
