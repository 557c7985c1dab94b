"""RhythmGRPO checkpoints: safe loading, the resume rule and atomic writes.

* **Safe loading.** [`load_checkpoint`][load_checkpoint] reads a file with ``torch.load(weights_only=True)``: tensors
  and plain data only, so a crafted file cannot run code (RhythmGRPO stores its settings as plain dicts, so nothing
  needs allow-listing). Anything that is not a RhythmGRPO checkpoint (an empty file, random bytes, text, another
  module's checkpoint, a pickle of Python objects), and a checkpoint whose entries have the wrong types or shapes
  ([`check_contents`][lightning_reasonattn.grpo.checkpoint_schema.check_contents]), raises
  [`CheckpointError`][CheckpointError] with one line naming the file and the bad entry, before any model is built.
* **The resume rule.** A resumed run takes its settings from its own config and command line, like a fresh run;
  the checkpoint gives the adapter, optimizer, scheduler, RNG states and step. Settings that cannot change
  mid-run must equal the checkpoint's ([`MODEL_SETTINGS`][MODEL_SETTINGS] always, [`RUN_SETTINGS`][RUN_SETTINGS] when
  training goes on), or the run is refused ([`resume_conflicts`][resume_conflicts]).
* **Atomic writes.** [`AtomicCheckpointIO`][AtomicCheckpointIO] writes each checkpoint to a temporary file in the
  target's own folder, then renames it over the target: a kill at any moment leaves the previous file whole.
  (Lightning's default writes the temporary file in the system temp folder; when that is another filesystem the final
  "rename" is a copy, and a kill during it left ``last.ckpt`` truncated.) A failed write (a full disk) raises
  [`OutputError`][lightning_reasonattn.outputs.OutputError], one line naming the file and the cause. ``reasonattn fit``
  passes it to the Trainer as a plugin; in Python, pass ``Trainer(plugins=[AtomicCheckpointIO()])``.
* **A moved run folder.** [`MovedRunFolder`][MovedRunFolder] lets a run resumed from its ``last.ckpt`` in a folder
  copied or moved elsewhere keep writing ``last.ckpt`` there (Lightning wrote ``last-v1.ckpt`` beside it).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import warnings
from dataclasses import fields
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..compat import LR_SCHEDULER_LAST_LR, is_local_path
from ..models import DEFAULT_MODEL, compute_dtype
from ..outputs import whole_file
from .checkpoint_schema import check_contents
from .distributed import set_rng_states
from .policy import model_record
from .renamed import upgrade_section
from .settings import FIXED_FOR_MODEL, FIXED_FOR_RUN, RunSettings, plain, settings_sections


def _fixed_settings(kind: str) -> dict[str, str]:
    """``{"lora.r": why, "model": why, ...}``: the settings whose field metadata gives them the resume rule ``kind``."""
    found = {f.name: f.metadata["why"] for f in fields(RunSettings) if f.metadata.get("fixed") == kind}
    for section, cls in settings_sections().items():
        found |= {f"{section}.{f.name}": f.metadata["why"] for f in fields(cls) if f.metadata.get("fixed") == kind}
    return found


MODEL_SETTINGS = _fixed_settings(FIXED_FOR_MODEL)
"""Settings that define the trained policy: a checkpoint is only used with the values it was trained with."""

RUN_SETTINGS = _fixed_settings(FIXED_FOR_RUN)
"""Settings that a resumed training run must keep (validation may change them, e.g. to evaluate another task)."""

_LIGHTNING_KEYS = ("state_dict", "global_step", "hyper_parameters")
_MARKERS = ("reasonattn_base", "reasonattn_settings")
"""A RhythmGRPO checkpoint holds one of these: ``reasonattn_base`` (written since the base record exists, read by
``reasonattn export``) or, in checkpoints of earlier versions, ``reasonattn_settings``."""


class CheckpointError(ValueError):
    """A file is not a usable RhythmGRPO checkpoint, or cannot be used with these settings; the message says why."""


def load_checkpoint(path: str | Path) -> dict:
    """Read a RhythmGRPO checkpoint safely (``weights_only=True``) onto the CPU.

    Raises:
        CheckpointError: the file is missing, empty, not a PyTorch file, holds Python objects (refused: unpickling
            them could run code), is not a Lightning checkpoint written by RhythmGRPO, or holds an entry of the wrong
            type or shape (see [`check_contents`][lightning_reasonattn.grpo.checkpoint_schema.check_contents]).
    """
    path = Path(path)
    shown = repr(str(path))
    if not path.exists():
        raise CheckpointError(f"checkpoint {shown} does not exist: pass a .ckpt file written by reasonattn fit.")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {shown} is a folder: pass the .ckpt file (e.g. checkpoints/last.ckpt).")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {shown} is empty (0 bytes; an interrupted copy?): pass another checkpoint.")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"checkpoint {shown} holds the Python object {found.group(1)}, which a RhythmGRPO checkpoint never "
                "does: refused without loading it, since unpickling could run code. Pass a checkpoint written by "
                "reasonattn fit."
            ) from None
        raise CheckpointError(
            f"checkpoint {shown} is not a PyTorch checkpoint that loads with weights_only=True (random bytes, a "
            "plain pickle, or Python objects that could run code): not loaded. Pass a .ckpt written by reasonattn fit."
        ) from None
    except Exception:  # text and other non-torch files fail deep inside torch (EOFError, KeyError: 101, ...)
        raise CheckpointError(
            f"checkpoint {shown} is not a PyTorch checkpoint (torch.load cannot parse it): pass a .ckpt file written "
            "by reasonattn fit."
        ) from None
    missing = [key for key in _LIGHTNING_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if isinstance(ckpt, dict) and not any(key in ckpt for key in _MARKERS):
        missing.append(_MARKERS[0])
    if missing:
        what = "a torch file but not a Lightning checkpoint"
        if isinstance(ckpt, dict) and "state_dict" in ckpt:
            what = "a Lightning checkpoint of another module"
        raise CheckpointError(
            f"checkpoint {shown} is {what} (it lacks {', '.join(missing)}): pass a .ckpt written by reasonattn fit."
        )
    try:
        check_contents(ckpt)
    except ValueError as err:
        raise CheckpointError(
            f"checkpoint {shown}: {err}. The file was changed, or not written by reasonattn fit: pass a .ckpt it wrote."
        ) from None
    return ckpt


def flat_settings(hparams: dict) -> dict[str, object]:
    """RhythmGRPO's settings as ``{"model": ..., "optim.lr": ..., "lora.r": ...}``, in canonical form.

    ``hparams`` holds dicts (YAML, checkpoints) or the dataclasses; each section is rebuilt through its dataclass,
    so defaults are filled in and aliases resolved (``loss_type: grpo`` equals ``seq-mean-token-mean``).
    """
    sections = settings_sections()
    flat: dict[str, object] = {}
    arguments = {f.name for f in fields(RunSettings)}
    given = {name: plain(value) for name, value in hparams.items() if name in arguments}
    run = RunSettings(**given | {"model": model_record(given.get("model"))})
    for name, value in hparams.items():
        if name.startswith("_"):  # LightningCLI's "_instantiator"
            continue
        if name in sections:
            section = upgrade_section(name, plain(value))  # a 0.1 checkpoint's credit.k is credit.look_back
            known = {f: v for f, v in section.items() if f in sections[name].__dataclass_fields__}
            for key, item in plain(sections[name](**known)).items():
                flat[f"{name}.{key}"] = item
        elif name in arguments:  # resolved: "auto" and null compare equal to what they stand for
            flat[name] = plain(getattr(run, name))
        else:
            flat[name] = model_record(value) if name == "tokenizer" else plain(value)
    if "model" in flat and not run.is_module:  # None and the default's name are the same model; a path resolved
        model = flat["model"] or DEFAULT_MODEL
        flat["model"] = str(Path(model).resolve()) if Path(model).exists() else model
    return flat


def resume_conflicts(saved: dict, current: dict, training: bool) -> tuple[list[str], dict[str, tuple]]:
    """Compare a checkpoint's settings with this run's.

    Args:
        saved: the checkpoint's ``hyper_parameters``.
        current: this run's settings (the same keys).
        training: resuming a training run (then [`RUN_SETTINGS`][RUN_SETTINGS] must match too).

    Returns:
        ``(refused, changed)``: one message per setting that must not change but does, and
        ``{setting: (saved value, this run's value)}`` for the changed ones this run may change.
    """
    before, now = flat_settings(saved), flat_settings(current)
    fixed = {**MODEL_SETTINGS, **(RUN_SETTINGS if training else {})}
    differ = {key: (before[key], now.get(key)) for key in before if key in now and before[key] != now[key]}
    refused = [
        f"{key}={new!r} but the checkpoint has {old!r} ({fixed[key]})"
        for key, (old, new) in differ.items()
        if key in fixed
    ]
    return refused, {key: pair for key, pair in differ.items() if key not in fixed}


def check_resume(ckpt: dict, current: dict, path: str | Path, training: bool) -> str:
    """Refuse a checkpoint whose fixed settings differ from this run's; else a one-line account of what came from where.

    Raises:
        CheckpointError: a setting that cannot change mid-run differs (the message names each, with both values).
    """
    refused, changed = resume_conflicts(ckpt["hyper_parameters"], current, training)
    verb = "resume" if training else "validate"
    if refused:
        raise CheckpointError(
            f"cannot {verb} from {str(path)!r} with these settings: {'; '.join(refused)}. Use the checkpoint's values "
            "(its run's config), or start a new run without --ckpt_path."
        )
    restored = "adapter, optimizer, scheduler, RNG states and step" if training else "adapter"
    settings = ", ".join(f"{key} {new!r} (checkpoint: {old!r})" for key, (old, new) in changed.items())
    return (
        f"{'Resuming' if training else 'Validating'} {str(path)!r} at step {ckpt['global_step']}: {restored} from the "
        f"checkpoint; settings from this run's config and command line, "
        + (f"changed from the checkpoint: {settings}." if settings else "the same as the checkpoint's.")
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each local checkpoint to a temporary file next to its target (same
    filesystem), then ``os.replace``-ing it over the target: the previous checkpoint stays whole until then.

    A write that fails (a full disk, a read-only folder) removes the temporary file and raises
    [`OutputError`][lightning_reasonattn.outputs.OutputError] naming the file and the cause; a Ctrl-C during the
    write stays a ``KeyboardInterrupt`` (torch's writer turns both into ``RuntimeError: ... unexpected pos``).

    Attributes:
        last_saved: ``(path, global_step)`` of the last checkpoint written whole, or ``None``.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], logger=False)
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_saved: tuple[str, int | None] | None = None

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or not is_local_path(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        kept = "the checkpoints written before it are whole; free space (or set another dirpath) and resume from one"
        with whole_file(path, kept=kept) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())
        self.last_saved = (str(path), checkpoint.get("global_step"))


def check_checkpoint_folders(trainer) -> None:
    """Refuse a checkpoint folder (``ModelCheckpoint(dirpath=...)``) that cannot be written, before the first step
    (Lightning would fail at the first save, after a step's work): a file, a folder under a file, a folder on a
    read-only filesystem or without write permission. Nothing is created (a full disk shows only when writing).

    Raises:
        ValueError: naming the path, the cause and the fix.
    """
    for callback in getattr(trainer, "checkpoint_callbacks", ()):  # (a stand-in trainer may have none)
        folder = getattr(callback, "dirpath", None)
        if not folder or not is_local_path(str(folder)):
            continue
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(
                f"the checkpoint folder (ModelCheckpoint dirpath) {str(folder)!r} is a file, not a folder: set "
                "dirpath to a folder (it is created if missing)."
            )
        cause = _unwritable(Path(folder))
        if cause:
            raise ValueError(
                f"the checkpoint folder (ModelCheckpoint dirpath) {str(folder)!r} cannot be written ({cause}): set "
                "dirpath to a folder this process may write in."
            )


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (or in the folders that would be made for it), or ``None``."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{os.strerror(errno.ENOTDIR)}: {existing} is a file"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & getattr(os, "ST_RDONLY", 1)
    return os.strerror(errno.EROFS if read_only else errno.EACCES)


class MovedRunFolder(Callback):
    """A run resumed in a copied or moved folder as in its own: ``--ckpt_path DIR/last.ckpt`` writes ``last.ckpt``.

    Lightning's ``ModelCheckpoint`` restores its record of the checkpoints it wrote (``last_model_path``, the best
    ``k``) only when its folder has not changed; in a run folder moved elsewhere it forgot that ``last.ckpt`` was
    its own and wrote ``last-v1.ckpt`` beside it, so ``last.ckpt``, which the resume command names, stayed at the
    old step. When the checkpoint being resumed lies in a ``ModelCheckpoint``'s folder, this callback rewrites the
    record's paths from the old folder to that one (keeping the files that exist there) before Lightning reads it.
    A run resumed into another folder is left to Lightning (it warns that the folder changed).
    """

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        resumed = getattr(trainer, "ckpt_path", None)
        if not resumed or not is_local_path(str(resumed)):
            return
        here = Path(resumed).resolve().parent
        states = checkpoint.get("callbacks", {})
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key) if isinstance(callback, ModelCheckpoint) else None
            old = state.get("dirpath") if isinstance(state, dict) else None
            if not old or not callback.dirpath or old == callback.dirpath:
                continue
            if Path(callback.dirpath).resolve() == here:
                _move_record(state, old, callback.dirpath)


def _move_record(state: dict, old: str, new: str) -> None:
    """``ModelCheckpoint.state_dict()`` with its paths under ``old`` moved to ``new`` (missing files dropped)."""

    def moved(path):
        if not path or not str(path).startswith(str(old).rstrip(os.sep) + os.sep):
            return path
        there = os.path.join(new, os.path.relpath(path, old))
        return there if os.path.exists(there) else ""

    state["dirpath"] = new
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = moved(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items() if moved(k)}


def base_record(run: RunSettings, policy, lora_dtype: str) -> dict:
    """What an adapter was trained on: base model, quantization, compute and adapter dtypes (``reasonattn export``
    writes it beside the adapter, since the adapter reproduces the policy only on that base). A module is recorded
    by its class (``{"class_path": ...}``)."""
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    return {
        "model": run.model if run.is_module else run.model or DEFAULT_MODEL,
        "quantization": run.quantization,
        "double_quant": run.double_quant,
        "compute_dtype": str(compute_dtype(base)).removeprefix("torch."),
        "lora_dtype": lora_dtype,
    }


def slim_checkpoint(
    checkpoint: dict, *, trainable: set[str], rng_states: list[dict], sampling_seed: int | None, base: dict
) -> None:
    """Make Lightning's checkpoint dict a RhythmGRPO checkpoint, in place.

    Only the adapter's weights (``trainable``: the frozen base is loaded from its source again); the
    hyper-parameters as plain data (so the file loads with ``torch.load(weights_only=True)``); every rank's RNG
    states (they drive only LoRA dropout: sampling and random credit are keyed) and the run's sampling seed; and
    the record of the base (``reasonattn_base``, see [`base_record`][base_record]).
    """
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
    checkpoint["hyper_parameters"] = plain(checkpoint.get("hyper_parameters", {}))
    checkpoint["rng_states"] = rng_states
    checkpoint["sampling_seed"] = sampling_seed
    checkpoint["reasonattn_base"] = base


def restore_rng_states(checkpoint: dict, rank: int) -> int | None:
    """Restore this rank's RNG states from ``checkpoint``; return the run's sampling seed it holds (or ``None``).

    A rank the checkpoint has no states for (resumed on more processes) keeps its own seeded state, with a warning.
    """
    states = checkpoint.get("rng_states") or []
    states = states if isinstance(states, list) else [states]  # one dict: a checkpoint of an older version
    if rank < len(states):
        set_rng_states(states[rank])
    elif states:
        warnings.warn(
            f"the checkpoint holds the RNG states of {len(states)} process(es); process {rank} keeps its seeded "
            "state. Only LoRA dropout draws from it (sampling is keyed to the prompt).",
            stacklevel=3,
        )
    return checkpoint.get("sampling_seed")


def apply_optim_settings(checkpoint: dict, lr: float, weight_decay: float, factor) -> None:
    """Make the optimizer and scheduler states of ``checkpoint`` use this run's ``lr`` and ``weight_decay``.

    The states hold the learning rate of the run that wrote them; a resumed run sets its own (the resume rule).
    ``factor(step)`` is the scheduler's multiplier at a step (the warm-up), so the next step's rate is
    ``lr * factor(step)`` exactly as an uninterrupted run with this ``lr`` would compute it.
    """
    steps = [sched.get("last_epoch", 0) for sched in checkpoint.get("lr_schedulers", [])]
    step = steps[0] if steps else 0
    for sched in checkpoint.get("lr_schedulers", []):
        sched["base_lrs"] = [lr for _ in sched.get("base_lrs", [])]
        sched[LR_SCHEDULER_LAST_LR] = [lr * factor(step) for _ in sched.get(LR_SCHEDULER_LAST_LR, [])]
    for state in checkpoint.get("optimizer_states", []):
        for group in state.get("param_groups", []):
            group.update(lr=lr * factor(step), initial_lr=lr, weight_decay=weight_decay)
