"""Routing a transformers causal LM's attention through the capture (transformers' ``AttentionInterface``).

transformers (>= 5) dispatches every attention call through ``AttentionInterface``, keyed on
``config._attn_implementation``. For the duration of a capture ([`intercept_attention`][intercept_attention]) we
register a wrapper under the name ``reasonattn_<original>`` (with the original's mask function under the same name,
or padded batches would lose their mask) and point the config at it; when the last capture that uses the name ends,
the name is removed again, so transformers is left as the capture found it. The wrapper calls the model's original
attention unchanged, then hands the layer's queries and keys to the active recorder
([`lightning_reasonattn.capture.blockwise`][lightning_reasonattn.capture.blockwise]). A recorder with a ``rewrite``
method (a knockout, [`lightning_reasonattn.capture.knockout`][lightning_reasonattn.capture.knockout]) first replaces
the layer's mask, and the original attention runs on that.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..compat import attn_implementation, eager_attention_function, set_attn_implementation, unregister_attention

_PREFIX = "reasonattn_"


# The recorder of the capture in progress (StatsRecorder or MapRecorder), read by the attention wrapper.
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("reasonattn_capture", default=None)


def _wrapped_attention(base_name: str):
    """An attention function that runs ``base_name`` and, inside a capture, reduces the selected layers."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        if base_name == "eager":  # eager lives in each model's own file, not in the interface
            base = eager_attention_function(module)
        else:
            base = ALL_ATTENTION_FUNCTIONS[base_name]
        recorder = _ACTIVE.get()
        layer = getattr(module, "layer_idx", None)
        active = recorder is not None and layer in recorder.slots
        if active and hasattr(recorder, "rewrite"):  # a knockout (capture.knockout): the layer runs on its mask
            attention_mask = recorder.rewrite(layer, query, key, attention_mask, kwargs)
        out = base(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        if active:
            # sdpa's rule: the call's is_causal, else the module's (a flag can change after the block opened)
            causal = kwargs.get("is_causal")
            if not (getattr(module, "is_causal", True) if causal is None else causal):
                where = f"{type(module).__name__}.is_causal=False" if causal is None else "is_causal=False passed"
                raise _not_causal("the model", layer, where)
            with torch.no_grad():
                recorder.observe(layer, query.detach(), key.detach(), attention_mask, scaling, kwargs)
        return out

    return attention


_IN_USE: dict[str, int] = {}  # registered name -> captures open that use it
_REGISTRY_LOCK = threading.Lock()  # captures in several threads share transformers' registry


def _register(base_name: str) -> str:
    """Register the wrapper and its mask function under ``reasonattn_<base_name>`` (or count one more user of
    them); return that name. Each call is undone by one [`_release`][_release]."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    name = _PREFIX + base_name
    with _REGISTRY_LOCK:
        if not _IN_USE.get(name):
            mask_fn = ALL_MASK_ATTENTION_FUNCTIONS.get(base_name)
            if mask_fn is None:
                raise NotImplementedError(
                    f"attention implementation {base_name!r} has no mask function in transformers' "
                    "AttentionMaskInterface; load the model with attn_implementation='sdpa' to capture its rhythm."
                )
            # the interfaces are mappings: register() adds to every instance
            AttentionInterface.register(name, _wrapped_attention(base_name))
            AttentionMaskInterface.register(name, mask_fn)
        _IN_USE[name] = _IN_USE.get(name, 0) + 1
    return name


def _release(name: str) -> None:
    """One user of ``name`` less; the last one removes it from transformers' registry."""
    with _REGISTRY_LOCK:
        _IN_USE[name] -= 1
        if not _IN_USE[name]:
            del _IN_USE[name]
            unregister_attention(name)


def _config_tree(config) -> Iterator:
    yield config
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None:
            yield from _config_tree(sub)


def unwrap_causal_lm(model: torch.nn.Module):
    """The transformers causal LM inside ``model`` (a peft wrapper is looked through).

    Raises:
        TypeError: ``model`` is not a transformers causal language model.
    """
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    inner = model
    if hasattr(inner, "get_base_model") and not isinstance(inner, PreTrainedModel):
        inner = inner.get_base_model()  # peft.PeftModel
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    name = type(inner).__name__
    config = getattr(inner, "config", None)
    if (
        not isinstance(inner, PreTrainedModel)
        or getattr(config, "is_encoder_decoder", False)
        or not (name in causal_names or name.endswith("ForCausalLM"))
    ):
        raise TypeError(
            f"capture needs a transformers causal language model (e.g. from AutoModelForCausalLM), got "
            f"{type(model).__name__}; load the model with AutoModelForCausalLM.from_pretrained(...)."
        )
    return inner


def _not_causal(model_name: str, layer: int, where: str) -> TypeError:
    return TypeError(
        f"{model_name} runs bidirectional attention at layer {layer} ({where}): the rhythm is defined on causal "
        "attention, so it would be measured as if causal, and be wrong. Capture a causal decoder (a decoder-only "
        "model from AutoModelForCausalLM); a BERT-like model trained as a decoder loads with is_decoder=True."
    )


_CAUSAL_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> layers found causal


def check_causal(base: torch.nn.Module, layers: list[int]) -> None:
    """Refuse a model whose attention at a selected layer is not causal (``module.is_causal`` False).

    transformers' attention functions read ``module.is_causal`` (e.g. ``BertLMHeadModel`` with
    ``is_decoder=False``, Gemma2 with ``use_bidirectional_attention=True``); the capture always applies a
    causal mask, so such a model would be measured as if it were causal. Cross-attention modules are skipped.

    The walk over the modules is done once per model and layer selection (a few milliseconds for a 28-layer
    model); a flag changed later is still caught by the attention wrapper, at the forward.

    Raises:
        TypeError: naming the layer and module, and the fix.
    """
    checked = _CAUSAL_CHECKED.setdefault(base, set())
    if checked.issuperset(layers):
        return
    for module in base.modules():
        attrs = vars(module)  # plain attributes: no nn.Module.__getattr__ miss (an exception) per module
        layer = attrs.get("layer_idx")
        if layer in layers and not attrs.get("is_causal", True) and "Cross" not in type(module).__name__:
            raise _not_causal(type(base).__name__, layer, f"{type(module).__name__}.is_causal=False")
    checked.update(layers)


@contextmanager
def intercept_attention(base, recorder):
    """Route the model's attention through the wrapper, with ``recorder`` active; restore on exit."""
    configs = list(_config_tree(base.config))
    saved = [attn_implementation(c) for c in configs]
    registered = []
    try:
        for c, impl in zip(configs, saved, strict=True):
            if impl is not None and not impl.startswith(_PREFIX):
                registered.append(_register(impl))
                set_attn_implementation(c, registered[-1])
        token = _ACTIVE.set(recorder)
        try:
            yield recorder
        finally:
            _ACTIVE.reset(token)
    finally:
        for c, impl in zip(configs, saved, strict=True):
            set_attn_implementation(c, impl)
        for name in registered:
            _release(name)
