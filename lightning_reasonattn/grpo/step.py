"""One RhythmGRPO step, without Lightning: ``rollout -> score -> update``, each returning a frozen result.

::

    step = GRPOStep(policy=..., tokenizer=..., settings=..., rewards=..., processes=..., seed=...)
    rollouts = step.rollout(prompts, key=(stream_step, first))  # G sampled completions per prompt, no grad
    scored   = step.score(rollouts)                               # rewards, group advantages
    updated  = step.update(rollouts, scored, optimization)        # forward (+ RhythmTrace), credit, clipped loss
    values   = step.log_values(rollouts, scored, updated)         # the logged numbers, over all ranks

The rhythm is measured in a forward the step makes anyway: with one iteration (the default) the update's own
forward, whose detached log-probabilities are the old ones (ratio 1); with ``num_iterations > 1`` the no-grad
scoring pass that gives the old log-probabilities. Either way there is no extra pass for the attention.

On several processes each rank rolls out its contiguous, whole-group share of the step's prompts, sampled with keyed
randomness (the same draws whatever the number of processes); rewards and lengths are gathered (metrics,
``scale_rewards: batch``), the loss weights make DDP's averaged gradient the gradient of the whole step's loss, and
every logged value is over all ranks ([`Processes`][lightning_reasonattn.grpo.distributed.Processes] holds the gathers).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..capture import measuring
from ..functional.credit import RHYTHM_STRATEGIES
from ..functional.keyed import mix
from ..rewards.completions import conversational_completions
from ..rewards.protocol import RewardLog, TrainerState, score_completions
from ..rollout.context import check_context
from ..rollout.logprobs import completion_logprobs, measure
from ..rollout.prompts import encode_prompts, end_ids, pad_id
from ..rollout.sampling import SampledBatch, sample_batch
from ..settings import RhythmSettings
from .advantages import group_advantages, token_advantages
from .credit import SAMPLE_STREAM, rows_gamma
from .distributed import Processes
from .loss import minibatches, policy_loss
from .settings import CreditSettings, LossSettings, SamplingSettings
from .step_data import Completed, Credit, Rollouts, Scored, Updated
from .step_logging import completion_rows, step_values
from .step_metrics import LOSS_STATS


class Optimization(Protocol):
    """How ``update`` changes the weights (the LightningModule's manual optimization, or a plain optimizer)."""

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradient of ``loss`` (under DDP: averaged over the ranks)."""

    def step(self) -> None:
        """Clip, take the optimizer and scheduler step, zero the gradients."""


@dataclass(frozen=True)
class StepOptimization:
    """An [`Optimization`][Optimization] from a backward function, an optimizer, its scheduler and a clipping
    function (``None``: no clipping)."""

    backward_fn: Callable[[torch.Tensor], None]
    optimizer: Any
    scheduler: Any
    clip: Callable[[], None] | None = None

    def backward(self, loss: torch.Tensor) -> None:
        self.backward_fn(loss)

    def step(self) -> None:
        if self.clip is not None:
            self.clip()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()


@dataclass(frozen=True)
class Rewards:
    """The reward functions of a run (TRL's signature) and their weights (``None``: all 1)."""

    functions: list[Callable]
    weights: list[float] | None = None


@dataclass(frozen=True)
class StepSettings:
    """The settings one step reads (each checked when RhythmGRPO was built)."""

    group_size: int
    sampling: SamplingSettings
    credit: CreditSettings
    loss: LossSettings
    score_batch_size: int

    @property
    def rhythm(self) -> RhythmSettings | None:
        """The rhythm's settings when the strategy reads the attention, else None (no capture)."""
        return self.credit.rhythm() if self.credit.strategy in RHYTHM_STRATEGIES else None


def decode_completions(tokenizer, batch: SampledBatch, ends: list[int]) -> list[str]:
    """The completions' texts: a Hugging Face tokenizer's ``batch_decode`` without special tokens, or any
    tokenizer's ``decode`` of each completion's tokens without its end token (one of ``ends``)."""
    if hasattr(tokenizer, "batch_decode"):
        return tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    ends = set(ends)
    texts = []
    for ids, mask in zip(batch.completion_ids.tolist(), batch.completion_mask.tolist(), strict=True):
        texts.append(tokenizer.decode([t for t, keep in zip(ids, mask, strict=True) if keep and t not in ends]))
    return texts


@dataclass(frozen=True)
class GRPOStep:
    """The algorithm of one RhythmGRPO step over this rank's prompts.

    Attributes:
        policy: the trained model (gradients flow through it in ``update``).
        sampler: the model the rollout samples from (the policy, or a dense copy of it).
        reference: ``reference()`` is a context that gives the reference policy of the KL penalty (``None``: no KL).
        tokenizer: encodes the prompts and decodes the completions.
        settings: the step's settings.
        rewards: the reward functions and weights.
        processes: this rank and the gathers over all of them.
        seed: the run's seed, which keys the sampling and the ``random`` credit.
    """

    policy: torch.nn.Module
    sampler: torch.nn.Module
    reference: Callable[[], contextlib.AbstractContextManager[torch.nn.Module]] | None
    tokenizer: Any
    settings: StepSettings
    rewards: Rewards
    processes: Processes
    seed: int

    @property
    def device(self) -> torch.device:
        return self.processes.device

    # ------------------------------------------------------------------ rollout
    def rollout(
        self,
        records: list[dict],
        group_size: int | None = None,
        temperature: float | None = None,
        key: tuple[int, int] | None = None,
    ) -> Rollouts:
        """Sample ``G`` completions for each prompt of ``records`` (left-padded batch, no grad).

        ``group_size`` and ``temperature`` override the settings (validation: one greedy completion, ``0``).
        ``key = (stream_step, first)``: ``records`` are prompts ``first, first + 1, ...`` of the step's batch, and the
        sampling of completion ``j`` of prompt ``i`` is keyed by ``(run seed, stream_step, i, j)`` (``None``: sampled
        from the process RNG).
        """
        g = group_size or self.settings.group_size
        s = self.settings.sampling
        stream_step, first = key if key is not None else (None, 0)
        prompt_index = (torch.arange(len(records)) + first).repeat_interleave(g)
        sample_index = torch.arange(g).repeat(len(records))
        ids, mask = encode_prompts(self.tokenizer, [r["prompt"] for r in records], self.device)
        check_context(self.policy, ids.shape[1], s.max_new_tokens, setting="sampling.max_new_tokens")
        t = s.temperature if temperature is None else temperature
        keys = None
        if stream_step is not None and t > 0:
            keys = mix(self.seed, SAMPLE_STREAM, stream_step, prompt_index, sample_index).to(self.device)
        ends = end_ids(self.policy, self.tokenizer)  # the tokenizer's and the generation config's, as the survey
        start = time.perf_counter()
        batch = sample_batch(
            self.sampler,
            ids.repeat_interleave(g, 0),
            mask.repeat_interleave(g, 0),
            eos_ids=ends,
            pad_id=pad_id(self.policy, self.tokenizer),
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
            texts=decode_completions(self.tokenizer, batch, ends),
            seconds=seconds,
            stream_step=stream_step,
            prompt_index=prompt_index,
            sample_index=sample_index,
        )

    # ------------------------------------------------------------------ score
    def score(self, rollouts: Rollouts, state: TrainerState | None = None) -> Scored:
        """Rewards and group advantages; with ``num_iterations > 1`` also the no-grad scoring pass.

        With one iteration (the default, as in the paper) no separate pass is made: the update's own forward
        is the measurement (see [`update`][update]), as TRL also skips the old-log-prob pass then.
        """
        log = RewardLog()
        rewards, per_function = self.score_rewards(rollouts, log, state)
        all_ranks = self._gather_completed(rollouts, rewards, per_function)
        # On the whole step's rewards (the group ones need only this rank's; "batch" needs every rank's)
        every = group_advantages(all_ranks.rewards.float(), self.settings.group_size, self.settings.loss.scale_rewards)
        offset = self.processes.rank * len(rollouts.texts)
        advantages = every[offset : offset + len(rollouts.texts)]
        if self.settings.loss.num_iterations == 1:
            return Scored(rewards, per_function, advantages, all_ranks, log)
        old_logp, credits = [], []
        # no dropout in the measurement (the update runs in train mode), no grad
        with measuring(self.policy), torch.no_grad():
            for b0 in range(0, rollouts.ids.shape[0], self.settings.score_batch_size):
                rows = slice(b0, min(b0 + self.settings.score_batch_size, rollouts.ids.shape[0]))
                logp, credit = self._measure(rollouts, rows)
                old_logp.append(logp)
                credits.append(credit)
        return Scored(rewards, per_function, advantages, all_ranks, log, torch.cat(old_logp), Credit.join(credits))

    def score_rewards(
        self, rollouts: Rollouts, log: RewardLog | None = None, state: TrainerState | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, per_function)`` rewards of the rollouts, reward functions called as TRL calls them.

        Conversational prompts give ``[{"role": "assistant", "content": text}]`` completions; every function
        also gets ``completion_ids``, ``trainer_state``, ``log_extra``/``log_metric`` (into ``log``) and the
        dataset columns (see [`lightning_reasonattn.rewards.protocol`][lightning_reasonattn.rewards.protocol]).
        """
        prompts, completions = conversational_completions(rollouts.prompts, rollouts.texts)
        ids = rollouts.completion_ids.cpu()
        completion_ids = [row[keep].tolist() for row, keep in zip(ids, rollouts.completion_mask.cpu(), strict=True)]
        return score_completions(
            self.rewards.functions,
            self.rewards.weights,
            prompts,
            completions,
            rollouts.columns,
            completion_ids=completion_ids,
            trainer_state=state,
            log=log,
        )

    def loss_mask(self, rollouts: Rollouts) -> torch.Tensor:
        """``[B, T]`` completion tokens in the loss (without truncated completions if ``mask_truncated``)."""
        mask = rollouts.completion_mask
        if self.settings.loss.mask_truncated:  # completions that hit max_new_tokens stay out of the loss
            mask = mask & ~rollouts.truncated[:, None]
        return mask

    def _gather_completed(self, rollouts: Rollouts, rewards: torch.Tensor, per_function: dict) -> Completed:
        """Every rank's per-completion values, in one gather (float64 keeps rewards and counts exact)."""
        lengths, loss_tokens = rollouts.completion_mask.sum(-1), self.loss_mask(rollouts).sum(-1)
        columns = [rewards, *per_function.values(), lengths, rollouts.truncated, loss_tokens]
        table = self.processes.gather_columns(columns)  # [K, N]
        names = list(per_function)
        return Completed(
            rewards=table[0],
            per_function=dict(zip(names, table[1 : 1 + len(names)], strict=True)),
            lengths=table[-3],
            truncated=table[-2].bool(),
            loss_tokens=table[-1],
        )

    def _measure(self, rollouts: Rollouts, rows: slice) -> tuple[torch.Tensor, Credit]:
        """``(log-probabilities, credit)`` of ``rows`` in one forward (with grad if enabled; the credit has none)."""
        s = self.settings
        measured = measure(self.policy, rollouts.rows(rows), temperature=s.sampling.temperature, rhythm=s.rhythm)
        gamma = rows_gamma(s.credit, rollouts, rows, measured.trace, measured.entropy)
        return measured.logp, Credit(gamma, measured.entropy, (measured.trace,))

    # ------------------------------------------------------------------ update
    def update(self, rollouts: Rollouts, scored: Scored, optimization: Optimization) -> Updated:
        """``num_iterations`` optimizer steps of the clipped surrogate, accumulating over mini-batches.

        With one iteration the first forward of each mini-batch is also the measurement: the rhythm is captured
        inside it (the wrapper reads detached queries and keys, no grad), and its detached log-probabilities are
        the old ones, so the first ratio is exactly 1.

        Under DDP every ``backward`` all-reduces (averages) the trained gradients over the ranks; the mini-batch
        weights ([`minibatches`][lightning_reasonattn.grpo.loss.minibatches], with the token count of all ranks)
        make that average the gradient of the whole step's loss, so clipping and the optimizer step see the same
        gradient on every rank, the one a single process would compute.
        """
        ls, s = self.settings.loss, self.settings
        mask = self.loss_mask(rollouts)
        world = self.processes.world_size
        batches = minibatches(mask, ls.mini_batch_size, ls.loss_type, world, scored.all_ranks.loss_tokens.sum().long())
        single_pass = scored.old_logp is None
        start = time.perf_counter()
        sums = {key: torch.zeros((), device=self.device, dtype=torch.float64) for key in LOSS_STATS}
        loss_value = torch.zeros((), device=self.device)
        credits = []
        for _ in range(ls.num_iterations):
            for sl, share in batches:
                rows = rollouts.rows(sl)
                if single_pass:  # (one iteration: with more, score made the measuring pass)
                    logp, credit = self._measure(rollouts, sl)
                    old, gamma = logp.detach(), credit.gamma
                    credits.append(credit)
                else:
                    logp = completion_logprobs(self.policy, rows, s.sampling.temperature)
                    old, gamma = scored.old_logp[sl], scored.credit.gamma[sl]
                adv = token_advantages(scored.advantages[sl], gamma, s.credit.sign_mode)
                ref = None
                if ls.beta > 0:
                    with torch.no_grad(), self.reference() as reference:
                        ref = completion_logprobs(reference, rows, s.sampling.temperature)
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
                    max_len=s.sampling.max_new_tokens,
                )
                optimization.backward(loss * share)  # accumulated shares add up to the whole batch's loss
                loss_value = loss_value + loss.detach() * share / ls.num_iterations
                count = mask[sl].sum()  # the stats are means over these tokens: keep sums, to add over ranks
                for key in LOSS_STATS:
                    sums[key] = sums[key] + stats[key].double() * count / ls.num_iterations
            optimization.step()
        seconds = time.perf_counter() - start
        tokens = rollouts.attention_mask.sum().item() * ls.num_iterations
        sums |= {"loss": loss_value, "loss_tokens": mask.sum(), "tokens_per_sec/update": tokens / max(seconds, 1e-9)}
        return Updated(loss_value, sums, Credit.join(credits) if single_pass else scored.credit)

    # ------------------------------------------------------------------ logs
    def log_values(self, rollouts: Rollouts, scored: Scored, updated: Updated) -> dict[str, torch.Tensor]:
        """The step's logged values over all ranks' completions (each rank gets the same numbers)."""
        return step_values(rollouts, scored, updated, group_size=self.settings.group_size, processes=self.processes)

    def completion_rows(self, rollouts: Rollouts, scored: Scored, global_step: int) -> Iterator[dict]:
        """Every rank's first completion of each prompt, as ``completions.jsonl`` rows (a gather: every rank calls)."""
        rows = completion_rows(rollouts, scored, step=global_step, group_size=self.settings.group_size)
        for part in self.processes.gather_objects(rows):
            yield from part
