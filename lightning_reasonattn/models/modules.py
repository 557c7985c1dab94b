"""Any PyTorch causal LM as a policy: its weights from a file, a LoRA adapter through peft, 4-bit linear layers.

A module qualifies when it maps token ids ``[B, N]`` to logits ``[B, N, V]`` (or an output with ``.logits``) and its
attention calls ``torch.nn.functional.scaled_dot_product_attention`` (the capture's SDPA route then measures its
rhythm): a nanoGPT-style GPT, LitGPT's ``GPT``, ``lightning_reasonattn.models.gpt.GPT``.

* [`load_weights`][load_weights]: a state dict from a ``.safetensors`` file or a torch file (``weights_only``);
* [`add_module_lora`][add_module_lora]: peft's LoRA on the module's linear layers (by name, or all of them);
* [`quantize_linears`][quantize_linears]: bitsandbytes 4-bit (or 8-bit) linear layers, frozen, under the adapter.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .loading import exact_cpu_4bit
from .lora import LoraSettings, cast_adapter

HEAD_NAMES = ("lm_head", "output", "head")
"""Names of an output head, left in full precision by [`quantize_linears`][quantize_linears] (as transformers does)."""


def module_name(model: torch.nn.Module) -> str:
    """``"package.module.Class"``: how a checkpoint records a module that is not a Hugging Face model."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a state dict into ``model`` (all its keys, no others).

    Args:
        model: the module, built with the shapes the file was saved from.
        path: a ``.safetensors`` file, or a file written by ``torch.save(model.state_dict())`` (read with
            ``weights_only=True``: tensors only, so it cannot run code).

    Raises:
        ValueError: the file is missing or unreadable, or its keys or shapes do not fit ``model`` (named).
    """
    path = Path(path)
    shown = repr(str(path))
    if not path.is_file():
        raise ValueError(f"weights file {shown} does not exist: pass a .safetensors or torch state-dict file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file fails deep inside the reader
        raise ValueError(f"weights file {shown} cannot be read ({type(err).__name__}: {err}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {shown} does not hold a state dict (names to tensors).")
    try:
        if path.suffix == ".safetensors":  # tied weights are stored once there: safetensors' loader ties them back
            from safetensors.torch import load_model

            load_model(model, str(path), strict=True)
        else:
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        why = " ".join(str(err).split())[:400]
        raise ValueError(
            f"weights file {shown} does not fit {module_name(model)} ({why}): build the module with the settings "
            "the weights were saved from."
        ) from None


def _linear_names(model: torch.nn.Module, skip_heads: bool) -> list[str]:
    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not (skip_heads and name.split(".")[-1] in HEAD_NAMES):
            names.append(name)
    return names


def add_module_lora(model: torch.nn.Module, settings: LoraSettings):
    """A trainable LoRA adapter on ``model`` (its own weights frozen), through peft's support of custom modules.

    ``settings.target_modules``: module names or a pattern, as peft takes them; ``None``: every linear layer but the
    output head. The adapter-disabled model is the reference policy, as for transformers models.

    Returns:
        the ``peft.PeftModel``: called as the module is, ``(ids) -> logits``.
    """
    import peft

    targets = settings.target_modules or _linear_names(model, skip_heads=True)
    if not targets:
        raise ValueError(f"{module_name(model)} has no linear layer for LoRA: set lora.target_modules.")
    model.requires_grad_(False)
    config = peft.LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets
    )
    return cast_adapter(peft.get_peft_model(model, config), settings.dtype)


def quantize_linears(
    model: torch.nn.Module, quantization: str, double_quant: bool = True, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """Replace ``model``'s linear layers (the output head excepted) by frozen bitsandbytes ones, in place.

    Args:
        quantization: ``"nf4"`` or ``"fp4"`` (4-bit, computing in the layer's float dtype) or ``"int8"``.
        double_quant: also quantize the 4-bit quantization constants.
        device: where the quantized weights live (bitsandbytes quantizes when they are moved there).

    Returns:
        ``model``, on ``device``.
    """
    import bitsandbytes as bnb

    for name in _linear_names(model, skip_heads=True):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old: torch.nn.Linear = getattr(parent, child)
        bias = old.bias is not None
        if quantization == "int8":
            new = bnb.nn.Linear8bitLt(old.in_features, old.out_features, bias=bias, has_fp16_weights=False)
            new.weight = bnb.nn.Int8Params(old.weight.data, requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(
                old.in_features,
                old.out_features,
                bias=bias,
                compute_dtype=old.weight.dtype,
                compress_statistics=double_quant,
                quant_type=quantization,
            )
            new.weight = bnb.nn.Params4bit(
                old.weight.data, requires_grad=False, quant_type=quantization, compress_statistics=double_quant
            )
        if bias:
            new.bias = torch.nn.Parameter(old.bias.data, requires_grad=False)
        setattr(parent, child, new)
    model = model.to(device)
    exact_cpu_4bit(model)  # the same layers in eval (sampling) and train (update) mode on a CPU: see exact_cpu_4bit
    return model
