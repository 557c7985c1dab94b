"""Which way a capture reaches a model's attention, and how it calls the model.

* ``TransformersRoute``: a transformers causal LM, through its ``AttentionInterface``
  (``lightning_reasonattn.capture.hf_attention``); layers are the
  model's ``layer_idx``. Taken when ``attention_modules`` is not given and the model is a transformers model.
* ``SdpaRoute``: any model whose attention modules call ``scaled_dot_product_attention``
  ([`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]); layers are the attention modules in
  forward order. Taken for every other model, and for a transformers model when ``attention_modules`` is given.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import contextmanager
from itertools import chain

import torch

from .hf_attention import check_causal, intercept_attention, unwrap_causal_lm
from .modules import ForwardFn, attention_modules_of, model_call, takes_keywords
from .sdpa import intercept_sdpa, left_padded


def is_transformers_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a transformers model, possibly peft-wrapped (without importing transformers)."""
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return True
    base = getattr(model, "get_base_model", None)
    return callable(base) and isinstance(base(), PreTrainedModel)


class TransformersRoute:
    """A transformers causal LM (possibly peft-wrapped or quantized), through transformers' attention interface."""

    name = "transformers"

    def __init__(self, model: torch.nn.Module, forward: ForwardFn | None = None):
        self.model = model
        self.base = unwrap_causal_lm(model)
        self.num_layers = self.base.config.get_text_config().num_hidden_layers
        self.forward = model_call(model, forward) if forward is not None else None

    def check(self, layers: list[int]) -> None:
        check_causal(self.base, layers)

    def check_batch(self, attention_mask: torch.Tensor) -> None:
        """Nothing to refuse: the model takes the padding mask."""

    def intercept(self, recorder):
        return intercept_attention(self.base, recorder)

    def call(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
        if self.forward is not None:
            return self.forward(input_ids, attention_mask, position_ids)
        ids, mask, positions = input_ids, attention_mask, position_ids
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)

    def missing(self, layers: list[int], forward_ran: bool = False) -> str:
        return (
            f"no attention was recorded for layers {layers}: run one full forward of the model inside the "
            "rhythm_capture block (use_cache=False)."
        )


class SdpaRoute:
    """A model whose attention modules call ``scaled_dot_product_attention``, captured by watching those calls."""

    name = "sdpa"

    def __init__(
        self,
        model: torch.nn.Module,
        attention_modules: str | Sequence[torch.nn.Module] | None = None,
        forward: ForwardFn | None = None,
    ):
        self.model = model
        self.sites = attention_modules_of(model, attention_modules)
        self.num_layers = len(self.sites)
        self.forward = model_call(model, forward)
        self.takes_mask = forward is not None or "attention_mask" in takes_keywords(model)
        self.entered: dict[int, int] = {}  # of the last capture: id(module) -> forward-order index

    def check(self, layers: list[int]) -> None:
        """Causality is checked on the calls themselves (a flag or a mask), during the forward."""

    def check_batch(self, attention_mask: torch.Tensor) -> None:
        """Refuse a left-padded batch for a model whose forward takes no padding mask (before running it)."""
        if not self.takes_mask and left_padded(attention_mask.bool()):
            raise ValueError(
                f"the batch is padded before real tokens (left padding), but {type(self.model).__name__}.forward "
                "takes no attention_mask, so real tokens would attend to the padding: right-pad the batch, capture "
                "unpadded sequences, or pass forward=fn(model, input_ids, attention_mask) that hands the model the "
                "mask."
            )

    @contextmanager
    def intercept(self, recorder):
        with intercept_sdpa(self.sites, recorder) as state:
            self.entered = state.entered
            yield state

    def call(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
        return self.forward(input_ids, attention_mask, position_ids)

    def missing(self, layers: list[int], forward_ran: bool = False) -> str:
        """Why ``layers`` were not recorded; ``forward_ran``: the capture ran the forward itself (not a block)."""
        model = type(self.model).__name__
        idle = [name for name, module in self.sites if id(module) not in self.entered]
        shown = ", ".join(repr(name) for name in idle[:3]) + (", ..." if len(idle) > 3 else "")
        fix = (
            "name the modules that do run and call scaled_dot_product_attention: attention_modules=[...] or a "
            "pattern such as 'transformer.h.*.attn'"
        )
        if not self.entered and not forward_ran:
            return (
                f"no attention was recorded for layers {layers} ({self.num_layers} attention modules, e.g. "
                f"{self.sites[0][0]!r}): run one full forward of {model} inside the rhythm_capture block, through "
                "the modules named by attention_modules."
            )
        return (
            f"no attention was recorded for layers {layers}: the forward of {model} ran {len(self.entered)} of its "
            f"{self.num_layers} attention modules; never run: {shown}. Modules a forward never calls (containers, "
            f"unused copies) cannot be measured: {fix}."
        )


def route_for(
    model: torch.nn.Module,
    attention_modules: str | Sequence[torch.nn.Module] | None = None,
    forward: ForwardFn | None = None,
) -> TransformersRoute | SdpaRoute:
    """The route for ``model``: transformers' attention interface for a transformers model when no
    ``attention_modules`` are named, SDPA calls otherwise.

    Raises:
        TypeError: a transformers model that is not a causal LM, or a plain model whose attention modules cannot
            be found without ``attention_modules``.
        ValueError: bad ``attention_modules``, or a model on the meta device (no weights).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model={model!r} ({type(model).__name__}) is not a torch.nn.Module: load the model first, e.g. "
            "AutoModelForCausalLM.from_pretrained(path, attn_implementation='sdpa')."
        )
    meta = next((name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"{type(model).__name__} has tensors on the meta device ({meta!r} holds a shape but no values): a model "
            "built under torch.device('meta') (or init_empty_weights) has no weights to run. Materialise and load "
            "them first (model.to_empty(device='cpu') then load_state_dict(...), or from_pretrained), then capture."
        )
    if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        raise TypeError(
            f"capture needs a transformers causal language model or a model whose attention calls "
            f"scaled_dot_product_attention, got {type(model).__name__}: pass the model it wraps (model.module)."
        )
    if attention_modules is None and is_transformers_model(model):
        return TransformersRoute(model, forward)
    return SdpaRoute(model, attention_modules, forward)
