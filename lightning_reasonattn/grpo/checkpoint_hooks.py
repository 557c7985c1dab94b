"""RhythmGRPO's checkpoint hooks: plain-data checkpoints of the adapter, the resume rule, RNG states per rank.

A mixin of [`RhythmGRPO`][lightning_reasonattn.RhythmGRPO]; the rule itself (what may change on resume and
what is taken from where) is plain code in ``grpo.checkpoint``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict

from ..compat import attached_trainer
from .checkpoint import apply_optim_settings, base_record, check_resume
from .distributed import gather_objects, rng_states, set_rng_states
from .settings import plain


class CheckpointHooks:
    """``on_save_checkpoint`` / ``on_load_checkpoint`` of a LightningModule that trains a LoRA adapter."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        # plain data only, so that the checkpoint loads with torch.load(weights_only=True)
        checkpoint["hyper_parameters"] = plain(checkpoint.get("hyper_parameters", {}))
        # Lightning writes the checkpoint on rank 0 only, but calls this hook on every rank: gather each
        # rank's RNG states (they drive only LoRA dropout: sampling and random credit are keyed).
        checkpoint["rng_states"] = gather_objects(rng_states(), self._world_size)
        checkpoint["sampling_seed"] = self._seed
        checkpoint["reasonattn_settings"] = {
            "credit": asdict(self.credit_settings),
            "loss": asdict(self.loss_settings),
        }
        checkpoint["reasonattn_base"] = base_record(self)  # the base that `reasonattn export` tells users to load

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Apply the resume rule (see ``grpo.checkpoint``), log what came from where; restore the RNG states."""
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities import rank_zero_info

        if attached_trainer(self) is not None:  # (load_from_checkpoint builds the module from its own settings)
            training = self.trainer.state.fn == TrainerFn.FITTING
            rank_zero_info(check_resume(checkpoint, dict(self.hparams), self.trainer.ckpt_path, training))
            apply_optim_settings(checkpoint, self.optim.lr, self.optim.weight_decay, self._warmup)
            if not training:  # validation takes the adapter only: no checkpoint callback to restore (nor warn about)
                checkpoint.pop("callbacks", None)
        self._restore_rng_states(checkpoint)

    def _restore_rng_states(self, checkpoint: dict) -> None:
        """The run's sampling seed, and this rank's RNG states (a rank the checkpoint has none for keeps its own)."""
        if checkpoint.get("sampling_seed") is not None:
            self._seed = checkpoint["sampling_seed"]
        states = checkpoint.get("rng_states") or []
        states = states if isinstance(states, list) else [states]  # one dict: a checkpoint of an older version
        if self.global_rank < len(states):
            set_rng_states(states[self.global_rank])
        elif states:
            warnings.warn(
                f"the checkpoint holds the RNG states of {len(states)} process(es); process {self.global_rank} "
                "keeps its seeded state. Only LoRA dropout draws from it (sampling is keyed to the prompt).",
                stacklevel=2,
            )
