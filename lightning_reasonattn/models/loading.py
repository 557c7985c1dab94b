"""Loading a causal LM and its tokenizer: the default model, a local folder or a hub name, quantized or not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import torch

from ..compat import BNB_CPU_BF16_FLAG
from ..files import check_model_folder
from .default_model import DEFAULT_MODEL, ModelLoadError, default_checkpoint


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
