"""Capture from any model whose attention calls ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

nanoGPT-style models and LitGPT's ``GPT`` compute queries and keys inside their attention modules and hand them
to SDPA; nothing outside sees them. For the duration of a capture ([`intercept_sdpa`][intercept_sdpa]):

1. a ``torch.overrides.TorchFunctionMode`` sees every SDPA call, however the model imported the function
   (``F.scaled_dot_product_attention``, ``from torch.nn.functional import scaled_dot_product_attention``,
   ``torch._C._nn...``: one builtin); it runs the original call unchanged, so the model's outputs are bit for
   bit those of a plain forward, and then hands ``query``, ``key``, ``attn_mask``, ``scale``, ``is_causal`` and
   ``enable_gqa`` to the recorder (``lightning_reasonattn.capture.blockwise``);
2. forward pre/post hooks on the attention modules
   ([`lightning_reasonattn.capture.modules`][lightning_reasonattn.capture.modules]) attribute each call to its
   module: layer ``i`` is the ``i``-th attention module the forward enters; a module that makes no SDPA call, or
   more than one, is refused (one full forward, one call per module).

Why this and not a simpler route:

* replacing ``torch.nn.functional.scaled_dot_product_attention`` by a wrapper misses every model that bound
  the function at import (``from torch.nn.functional import scaled_dot_product_attention``), and swaps a global
  every thread of the process sees;
* patching a model's own method (LitGPT's ``CausalSelfAttention.scaled_dot_product_attention``) works for one
  model family only;
* forward hooks alone see a module's input and output, not the queries and keys after RoPE, QK-norm and the
  repetition of key heads;
* a ``TorchDispatchMode`` sees ATen kernels (``_scaled_dot_product_flash_attention``...), which differ per
  backend and lose the ``is_causal``/``scale`` of the call.

The mode's cost is a Python call per torch function while it is active (only during the capture's forward), a
few microseconds each: small next to the attention itself at the lengths the rhythm is measured at (see
``benchmarks/bench_capture.py``). A ``torch.compile``-d model must be captured through its original module.

What a call must be (checked on the selected layers, every real query row, a block of rows at a time):

* causal: ``is_causal=True``, or an ``attn_mask`` (bool, True = attend; or additive float, where an entry
  ``<= -1e4`` counts as blocked) that lets no real token attend to a later one;
* the rhythm's attention: on each real query row the mask lets through exactly the real earlier tokens, so
  padding is blocked and nothing else is (a sliding window, packed documents or a prefix-LM mask are refused: the
  definitions assume full causal attention over one sequence). Additive biases (ALiBi) are kept, as the model
  adds them;
* with ``attn_mask=None``, a batch padded before its real tokens (left padding) is refused: the model would
  attend to the padding. Right padding is exact without a mask (padding comes after every real token).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

from .blockwise import check_lengths
from .mha import MHA, mha_as_sdpa

SDPA = torch.nn.functional.scaled_dot_product_attention
_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
BLOCKED = -1e4  # an additive mask entry at or below this takes no part (exp(-1e4) is 0 in every float type)
FIX_MASK = (
    "the capture measures full causal attention over one sequence: pass a causal mask that blocks only the "
    "padding (or is_causal=True), or capture only the layers with full attention (layers=... or attention_modules=...)"
)


def sdpa_arguments(args: tuple, kwargs: dict) -> dict:
    """The arguments of one SDPA call by name, defaults filled in."""
    return {**_DEFAULTS, **dict(zip(_PARAMS, args, strict=False)), **kwargs}


def left_padded(key_mask: torch.Tensor) -> bool:
    """Whether some sequence of the ``[B, N]`` batch has padding before a real token."""
    return bool((~key_mask[:, :-1] & key_mask[:, 1:]).any())


def check_mask(name: str, mask: torch.Tensor, key_mask: torch.Tensor, block_size: int) -> None:
    """Refuse a 4-D ``attn_mask`` that is not exactly causal-over-real-tokens on the real query rows.

    Block-wise over the rows: ``O(B * H_mask * block_size * N)`` at a time, never a new ``N x N``.

    Raises:
        TypeError: a real token attends to a later one (not causal).
        ValueError: a real token attends to padding, or is kept from a real earlier token (a window...).
    """
    n = key_mask.shape[1]
    pos = torch.arange(n, device=mask.device)
    keys = key_mask.to(mask.device)[:, None, None, :]  # [B, 1, 1, N]
    for r0 in range(0, n, block_size):
        r1 = min(r0 + block_size, n)
        block = mask[..., r0:r1, :]
        allowed = block if block.dtype == torch.bool else block > BLOCKED
        rows = keys[..., r0:r1].transpose(-1, -2)  # [B, 1, nb, 1]: real query rows only
        past = pos[r0:r1, None] >= pos[None, :]  # [nb, N]
        real = past & rows
        future, padding, kept_from = torch.stack(
            [(allowed & ~past & rows).any(), (allowed & real & ~keys).any(), (~allowed & real & keys).any()]
        ).tolist()  # one device sync per block
        if future:
            raise TypeError(
                f"{name} calls scaled_dot_product_attention with a mask that lets tokens attend to later tokens: "
                "the rhythm is defined on causal attention; capture a causal decoder (is_causal=True or a causal "
                "attn_mask)."
            )
        if padding:
            raise ValueError(
                f"{name} calls scaled_dot_product_attention with a mask that lets real tokens attend to padding "
                "(attention_mask == 0): the model does not use the batch's padding mask; pass it to the model "
                "(forward=fn(model, input_ids, attention_mask)), or capture unpadded sequences."
            )
        if kept_from:
            raise ValueError(
                f"{name} calls scaled_dot_product_attention with a mask that keeps real tokens from earlier real "
                f"tokens (a sliding window, packed documents or another pattern): {FIX_MASK}."
            )


class _Sites:
    """The attention modules' hooks: which module is running, its forward-order index, its SDPA calls.

    The hooks are the modules' own, so they fire in every thread; only the capturing thread's forward is counted (the
    mode that sees the SDPA calls is per thread): another thread's plain forward meanwhile runs unmeasured.
    """

    def __init__(self, sites: list[tuple[str, torch.nn.Module]], recorder):
        self.thread = threading.get_ident()
        self.names = {id(module): name for name, module in sites}
        self.recorder = recorder
        self.entered: dict[int, int] = {}  # id(module) -> layer index (forward order)
        self.current: tuple[str, int] | None = None
        self.calls = 0
        self.checked: list[torch.Tensor] = []  # masks already checked (the same mask usually serves every layer)
        self.left_padded: bool | None = None  # of the batch, computed at the first maskless call (one sync)

    def enter(self, module, args) -> None:
        if threading.get_ident() != self.thread:
            return
        name = self.names[id(module)]
        if id(module) in self.entered:
            raise RuntimeError(
                f"attention module {name!r} ran twice inside one capture (a second forward, or one module used "
                "as several layers): run exactly one full forward per capture, and name modules that run once."
            )
        self.entered[id(module)] = len(self.entered)
        self.current = (name, self.entered[id(module)])
        self.calls = 0

    def leave(self, module, args, output) -> None:
        if threading.get_ident() != self.thread:
            return
        name, _ = self.current
        self.current = None
        if self.calls == 0:
            raise RuntimeError(
                f"attention module {name!r} ({type(module).__name__}) ran without calling "
                "torch.nn.functional.scaled_dot_product_attention: the capture sees only SDPA calls; name the "
                "modules that call it (attention_modules=...), e.g. the attention submodule of each block."
            )

    def on_call(self, func, args: tuple, kwargs: dict) -> None:
        """After an SDPA call (or an ``nn.MultiheadAttention`` one, ``func is MHA``) inside an attention module."""
        if self.current is None:  # SDPA outside the attention modules: not a layer of the rhythm
            return
        name, layer = self.current
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError(
                f"attention module {name!r} called scaled_dot_product_attention more than once in one forward: "
                "name the modules that call it exactly once (attention_modules=...), e.g. the self-attention."
            )
        where = f"attention module {name!r} (layer {layer})"
        call = mha_as_sdpa(args, kwargs, where) if func is MHA else sdpa_arguments(args, kwargs)
        query, key, mask = call["query"], call["key"], call["attn_mask"]
        if query.ndim != 4 or key.ndim != 4:
            raise RuntimeError(
                f"{where} calls scaled_dot_product_attention with a query of shape {tuple(query.shape)}: the capture "
                "needs [B, heads, N, head_dim] queries and keys."
            )
        if mask is None and not call["is_causal"]:
            raise TypeError(
                f"{where} calls scaled_dot_product_attention with is_causal=False and no attn_mask (bidirectional "
                "attention): the rhythm is defined on causal attention; capture a causal decoder (is_causal=True "
                "or a causal attn_mask)."
            )
        if layer not in self.recorder.slots:
            return
        key_mask = self.recorder.key_mask
        check_lengths(layer, query, key, key_mask)
        if mask is None:
            if self.left_padded is None:
                self.left_padded = left_padded(key_mask)
            if self.left_padded:
                raise ValueError(
                    f"the batch is padded before real tokens (left padding), but {where} calls "
                    "scaled_dot_product_attention without a mask, so real tokens attend to the padding: pass the "
                    "padding mask to the model (forward=fn(model, input_ids, attention_mask)), right-pad the "
                    "batch, or capture unpadded sequences."
                )
        else:
            if mask.ndim < 4:
                mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
            if not any(mask is seen for seen in self.checked):
                check_mask(where, mask, key_mask, self.recorder.block_size)
                self.checked.append(mask)
        with torch.no_grad():
            self.recorder.observe(layer, query.detach(), key.detach(), mask, call["scale"], {})

    def rewrite(self, func, args: tuple, kwargs: dict) -> dict | None:
        """The SDPA call of a selected layer with the mask the recorder gives it (a knockout), by name; ``None`` when
        the call runs as the model made it.

        Raises:
            TypeError: the layer calls ``nn.MultiheadAttention``, whose masks a knockout does not rewrite.
        """
        if self.current is None or self.current[1] not in self.recorder.slots:
            return None
        if func is MHA:
            raise TypeError(
                f"attention module {self.current[0]!r} runs nn.MultiheadAttention: a knockout rewrites the masks of "
                "scaled_dot_product_attention calls only; knock tokens out of a model whose attention calls it."
            )
        call = sdpa_arguments(args, kwargs)
        mask = self.recorder.rewrite(self.current[1], call["query"], call["key"], call["attn_mask"], call)
        return None if mask is call["attn_mask"] else {**call, "attn_mask": mask, "is_causal": False}


class _Watch(TorchFunctionMode):
    """Runs every torch function unchanged; after an SDPA call (or an ``nn.MultiheadAttention`` one, whose SDPA call
    inside runs with the mode off), hands the function and its arguments to ``on_call``. With ``rewrite`` (a recorder
    that changes the attention: a knockout), each SDPA call is checked first, then run as rewritten; an
    ``nn.MultiheadAttention`` call is refused (its masks are not rewritten)."""

    def __init__(self, on_call, rewrite=None):
        super().__init__()
        self.on_call = on_call
        self.rewrite = rewrite

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.rewrite is not None and (func is SDPA or func is MHA):
            self.on_call(func, args, kwargs)  # the model's own call is checked, then run on the recorder's mask
            call = self.rewrite(func, args, kwargs)
            if call is None:
                return func(*args, **kwargs)
            query, key, value = (call.pop(name) for name in _PARAMS[:3])
            return func(query, key, value, **call)
        out = func(*args, **kwargs)  # inside the mode's handler the mode is off: no recursion
        if func is SDPA or func is MHA:
            self.on_call(func, args, kwargs)
        return out


@contextmanager
def intercept_sdpa(sites: list[tuple[str, torch.nn.Module]], recorder) -> Iterator[_Sites]:
    """Hook the attention modules and watch SDPA, with ``recorder`` receiving the selected layers; undo on exit.

    Args:
        sites: ``(name, module)`` of the attention modules (from
            [`attention_modules_of`][lightning_reasonattn.capture.modules.attention_modules_of]).
        recorder: a ``StatsRecorder`` or ``MapRecorder`` whose ``slots`` are keyed by forward-order index; or a
            knockout (``lightning_reasonattn.capture.knockout``), whose ``rewrite`` gives each selected call its mask.

    Yields:
        the hooks' state (``entered``: the modules that ran, by forward-order index).
    """
    state = _Sites(sites, recorder)
    handles = []
    try:
        for _, module in sites:
            handles.append(module.register_forward_pre_hook(state.enter))
            handles.append(module.register_forward_hook(state.leave))
        with _Watch(state.on_call, state.rewrite if hasattr(recorder, "rewrite") else None):
            yield state
    finally:
        for handle in handles:
            handle.remove()
        state.checked.clear()
