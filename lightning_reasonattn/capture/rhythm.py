"""Capture the rhythm of a causal LM during one ordinary forward pass.

Two routes reach the attention (``lightning_reasonattn.capture.route``): a
transformers causal LM goes through transformers' attention interface (below); any other model whose attention
modules call ``torch.nn.functional.scaled_dot_product_attention`` (nanoGPT-style, LitGPT's ``GPT``) goes through
those calls ([`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]), with the attention modules
named by ``attention_modules=`` or found from the model's structure. Both hand queries and keys to the same
block-wise reductions.

The transformers route. transformers (>= 5) dispatches every attention call through ``AttentionInterface``,
keyed on ``config._attn_implementation``. For the duration of a capture we register a wrapper under the name
``reasonattn_<original>`` (with the original's mask function under the same name, or padded batches would
lose their mask) and point the config at it. The wrapper

1. calls the model's original attention (SDPA, flash, eager...) unchanged, so the logits are exactly those
   of a plain forward and the same pass can serve as an RL step's old-log-probability pass;
2. on the selected layers only (``module.layer_idx``), recomputes the attention probabilities from the
   queries and keys it was handed, one block of query rows at a time, and reduces each block at once to
   per-head statistics (row distance sums, clipped-window sums, horizon column sums).

No ``[H, N, N]`` map is ever held: the extra memory is ``O(B * H * block_size * N)`` for the block plus
``O(B * L_sel * H * N)`` for the statistics. Only rows from the first response token on are computed,
since every quantity of the rhythm reads response rows only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import torch

from ..deprecation import renamed_keywords
from ..functional._checks import check_mask_dtype, check_mask_values, check_positive_int, check_response_mask
from ..functional.attention import select_layers
from ..functional.trace import RhythmTrace, trace_from_head_stats
from ..settings import SPEC, RhythmSettings
from .blockwise import MapRecorder, StatsRecorder
from .eager import eager_layer_stats
from .modules import ForwardFn
from .route import SdpaRoute, TransformersRoute, route_for


def _check_masks(response_mask, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, N]`` bool masks from the ones given to [`rhythm_capture`][rhythm_capture]: shapes and dtypes only, no
    sync."""
    if isinstance(response_mask, torch.Tensor) and response_mask.ndim != 2:
        raise ValueError(
            f"response_mask has shape {tuple(response_mask.shape)}: pass a [B, N] tensor, one row per sequence "
            "(add a batch dim with [None]), True at response tokens."
        )
    shape = tuple(getattr(response_mask, "shape", ("B", "N")))
    response_mask = check_response_mask(response_mask, shape)
    if attention_mask is None:
        return response_mask, torch.ones(shape, dtype=torch.bool, device=response_mask.device)
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != shape:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(
            f"attention_mask has shape {got}, expected {shape} like response_mask (1 at real tokens, 0 at padding)."
        )
    check_mask_dtype(attention_mask, "attention_mask", "1 at real tokens, 0 at padding")
    return response_mask, attention_mask.bool()


def _settings(rhythm: RhythmSettings | None, **knobs) -> RhythmSettings:
    """The rhythm's settings of a capture: ``rhythm``, or built (and checked) from the knob keywords, which must then
    be left at their defaults."""
    if rhythm is None:
        return RhythmSettings(**knobs)
    if not isinstance(rhythm, RhythmSettings):
        raise TypeError(f"rhythm={rhythm!r}: pass a lightning_reasonattn.RhythmSettings, e.g. RhythmSettings(q=0.3).")
    given = [f"{name}={value!r}" for name, value in knobs.items() if value != getattr(SPEC, name)]
    if given:
        raise ValueError(
            f"{', '.join(given)} given beside rhythm=: pass the rhythm's settings one way, in "
            "rhythm=RhythmSettings(...) or as keywords."
        )
    return rhythm


@contextmanager
def rhythm_capture(
    model: torch.nn.Module,
    response_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    layers: str | list[int] = SPEC.layers,
    window: int = SPEC.window,
    horizon: tuple[int, int] = SPEC.horizon,
    block_size: int = SPEC.block_size,
    *,
    rhythm: RhythmSettings | None = None,
    attention_modules: str | Sequence[torch.nn.Module] | None = None,
):
    """Record the per-head statistics of the rhythm during the forward passes run inside the block.

    Use it when you make the forward pass yourself (for example an RL step that also needs the logits)::

        with rhythm_capture(model, response_mask, attention_mask) as rec:
            out = model(input_ids, attention_mask=attention_mask, use_cache=False)
        trace = rec.trace(head_fraction=0.3, q=0.4, look_back=3)

    or, for a model whose attention calls ``scaled_dot_product_attention`` (nanoGPT, LitGPT's ``GPT``)::

        with rhythm_capture(gpt, response_mask, attention_modules="transformer.h.*.attn") as rec:
            logits = gpt(input_ids)
        trace = rec.trace()

    Run exactly one full forward (no KV cache) over the ``[B, N]`` batch inside the block: a second forward,
    a forward of another length (a prefill of ``N - 1`` tokens) or ``generate`` inside the block raises a
    ``RuntimeError`` from the forward, since its sums would not line up with the masks or would add to the
    first forward's. The model's attention implementation (or hooks) are restored on exit, even after an error.

    Args:
        model: a transformers causal LM, possibly peft-wrapped or bitsandbytes-quantized; or any model whose
            attention modules call ``torch.nn.functional.scaled_dot_product_attention``.
        response_mask: ``[B, N]`` bool (or 0/1 integers), True at response tokens.
        attention_mask: ``[B, N]`` bool or 0/1 integers, 0 at padding (default: no padding).
        layers: ``"middle"``, ``"all"`` or layer indices (with ``attention_modules``: indices among them, in the
            order the forward runs them).
        window: WAAD window ``W``.
        horizon: FAI horizon ``(lo, hi)``.
        block_size: query rows reduced at a time; extra memory ~ ``4 B H block_size N`` bytes.
        rhythm: all the rhythm's settings as one object (checked when it was built), instead of ``layers``,
            ``window``, ``horizon`` and ``block_size``; its ``head_fraction``, ``q`` and ``look_back`` become the
            defaults of the recorder's ``trace()``.
        attention_modules: capture the SDPA calls of these modules (a list, or a name pattern such as
            ``"transformer.h.*.attn"``, see
            [`lightning_reasonattn.capture.modules`][lightning_reasonattn.capture.modules]); default: transformers'
            attention interface for a transformers model, the blocks of the model's one stack of blocks otherwise.

    Yields:
        a recorder whose ``trace(head_fraction, q, look_back)`` returns the [`RhythmTrace`][RhythmTrace] (each ``None``
        by default: the capture's settings).

    Raises:
        TypeError: ``model`` is not a causal LM (or its attention modules cannot be found), its attention at a
            selected layer is not causal, or a mask is a float tensor.
        ValueError: a bad parameter or mask shape, or (from the forward) an SDPA mask the definitions do not
            cover; the message names the value and the fix.
        RuntimeError: (from the forward) not one full ``[B, N]`` forward inside the block, or a named attention
            module that makes no SDPA call.
    """
    rhythm = _settings(rhythm, layers=layers, window=window, horizon=horizon, block_size=block_size)
    route = route_for(model, attention_modules)
    with _recording(route, response_mask, attention_mask, rhythm) as handle:
        yield handle


@contextmanager
def _recording(route, response_mask, attention_mask, rhythm: RhythmSettings):
    """Record during the block; ``rhythm`` was checked when built, so only the masks and layers are checked here."""
    response_mask, key_mask = _check_masks(response_mask, attention_mask)
    selected = select_layers(route.num_layers, rhythm.layers)
    route.check(selected)
    recorder = StatsRecorder(
        slots={layer: i for i, layer in enumerate(selected)},
        response_mask=response_mask,
        key_mask=key_mask,
        window=rhythm.window,
        horizon=rhythm.horizon,
        block_size=rhythm.block_size,
    )
    with route.intercept(recorder):
        yield _Handle(recorder, selected, route, rhythm)


class _Handle:
    """What [`rhythm_capture`][rhythm_capture] yields: turns the recorded statistics into a trace."""

    def __init__(
        self, recorder: StatsRecorder, layers: list[int], route: TransformersRoute | SdpaRoute, rhythm: RhythmSettings
    ):
        self._recorder = recorder
        self._route = route
        self._rhythm = rhythm
        self.layers = layers

    @property
    def complete(self) -> bool:
        """Whether every selected layer was seen by the wrapper."""
        return self._recorder.seen == set(self.layers)

    def check_complete(self, forward_ran: bool = False) -> None:
        """Raise ``RuntimeError`` naming the selected layers no attention was recorded for, and the fix
        (``forward_ran``: the capture ran the forward itself, so the block's use is not the cause)."""
        missing = sorted(set(self.layers) - self._recorder.seen)
        if missing:
            raise RuntimeError(self._route.missing(missing, forward_ran))

    @renamed_keywords(k="look_back")
    def trace(
        self, head_fraction: float | None = None, q: float | None = None, look_back: int | None = None
    ) -> RhythmTrace:
        """The [`RhythmTrace`][RhythmTrace] of the recorded forward; a knob left ``None`` is the capture's."""
        self.check_complete()
        rhythm = self._rhythm
        if (head_fraction, q, look_back) != (None, None, None):  # asked here: checked here (once per trace)
            knobs = dict(head_fraction=head_fraction, q=q, look_back=look_back)
            rhythm = RhythmSettings(**{**rhythm.capture_kwargs(), **{k: v for k, v in knobs.items() if v is not None}})
        return self._recorder.trace(self.layers, rhythm.head_fraction, rhythm.q, rhythm.look_back)


def _check_vocabulary(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    """Refuse token ids outside the model's input embedding (one sync; models without ``get_input_embeddings``
    are left to their own embedding's error)."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    size = getattr(embedding, "num_embeddings", None)
    if not isinstance(size, int) or input_ids.numel() == 0:
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= size:
        bad = low if low < 0 else high
        raise ValueError(
            f"input_ids hold the id {bad}, outside the vocabulary [0, {size}) of {type(model).__name__}: encode "
            "the text with this model's tokenizer."
        )


def check_ids(input_ids, attention_mask) -> torch.Tensor:
    """``[B, N]`` integer ids and their padding mask (shapes, dtypes, 0/1 values; one sync); the mask, all ones when
    ``None``."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a [B, N] tensor of token ids, got {got}; add a batch dim with [None].")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise TypeError(
            f"input_ids has dtype {input_ids.dtype}: token ids must be an integer tensor (torch.long, as a "
            "tokenizer returns them); convert whole-number ids with input_ids.long()."
        )
    shape = tuple(input_ids.shape)
    if attention_mask is None:
        attention_mask = torch.ones(shape, dtype=torch.long, device=input_ids.device)
    elif not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != shape:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(
            f"attention_mask has shape {got}, expected {shape} like input_ids (1 at real tokens, 0 at padding)."
        )
    check_mask_dtype(attention_mask, "attention_mask", "1 at real tokens, 0 at padding")
    check_mask_values(attention_mask, "attention_mask")
    return attention_mask


def _check_inputs(input_ids, attention_mask, response_mask):
    """The batch of [`capture_rhythm`][capture_rhythm]: shapes, dtypes and 0/1 values (a few syncs, once per call)."""
    attention_mask = check_ids(input_ids, attention_mask)
    shape = tuple(input_ids.shape)
    if response_mask is None:
        raise ValueError("response_mask is required: a [B, N] bool tensor, True at the response tokens.")
    checked = check_response_mask(response_mask, shape)  # a tensor of that shape, not float
    check_mask_values(response_mask, "response_mask")
    response_mask = checked.to(input_ids.device)
    if not response_mask.any():
        raise ValueError(
            "response_mask has no response token: set True at the positions of the generated response "
            "(the rhythm is measured over the response only)."
        )
    if (response_mask & ~attention_mask.bool()).any():
        raise ValueError(
            "response_mask marks padding positions (attention_mask == 0) as response: mark only real tokens."
        )
    return attention_mask, response_mask


@renamed_keywords(k="look_back")
def capture_rhythm(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    response_mask: torch.Tensor | None = None,
    layers: str | list[int] = SPEC.layers,
    window: int = SPEC.window,
    horizon: tuple[int, int] = SPEC.horizon,
    head_fraction: float = SPEC.head_fraction,
    q: float = SPEC.q,
    *,
    look_back: int = SPEC.look_back,
    block_size: int = SPEC.block_size,
    rhythm: RhythmSettings | None = None,
    return_outputs: bool = False,
    attention_modules: str | Sequence[torch.nn.Module] | None = None,
    forward: ForwardFn | None = None,
):
    """Measure the rhythm of a batch in one no-grad forward pass of ``model``.

    Position ids are derived from ``attention_mask`` (``cumsum - 1``), so a left- or right-padded sequence
    gives the same trace as the unpadded one (for a model that takes them).

    A transformers model is called as ``model(input_ids=, attention_mask=, position_ids=, use_cache=False)``;
    any other model as ``model(input_ids)``, with ``attention_mask=`` and ``position_ids=`` when its ``forward``
    names them; ``forward=fn(model, input_ids, attention_mask)`` replaces either call. The model runs in eval mode
    (no dropout: a measurement draws no random number), and every module's own mode is put back afterwards.

    Args:
        model: a transformers causal LM (peft-wrapped and bitsandbytes-quantized models work), or any model
            whose attention modules call ``torch.nn.functional.scaled_dot_product_attention`` (nanoGPT-style,
            LitGPT's ``GPT``; see [`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]).
        input_ids: ``[B, N]`` integer (``torch.long``) prompt + response token ids.
        attention_mask: ``[B, N]`` bool or 0/1 integers, 1 at real tokens, 0 at padding (default: all ones).
        response_mask: ``[B, N]`` bool or 0/1 integers, True at response tokens (required).
        layers: ``"middle"`` (5 evenly spaced layers from ``L // 3`` to ``2L // 3``), ``"all"`` or indices.
        window: WAAD window ``W`` (>= 1).
        horizon: FAI horizon ``(lo, hi)``, ``0 <= lo <= hi``.
        head_fraction: share of the head pool in each of the local and global groups, in (0, 1].
        q: top fraction for preplan and anchor tokens, in (0, 1].
        look_back: look-back of dominated anchors (``k`` before 0.2).
        block_size: query rows reduced at a time (memory vs speed).
        rhythm: every knob above as one [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings]
            (checked when it was built); the knob keywords are then left at their defaults.
        return_outputs: also return the model output (its logits are those of a plain forward in eval mode; for
            a model holding ``nn.MultiheadAttention``, whose fused eval path the capture switches off, that plain
            forward is run a second time, unhooked).
        attention_modules: capture the SDPA calls of these modules: a list, or a name pattern such as
            ``"transformer.h.*.attn"`` (``*`` = one part of a dotted name); ``layers`` then indexes them in the
            order the forward runs them. Default: transformers' attention interface for a transformers model,
            the blocks of the model's one stack of blocks (``nn.ModuleList``) for any other.
        forward: ``fn(model, input_ids, attention_mask) -> outputs``, how to call the model when the default
            call does not fit (a model that takes its padding mask under another name...).

    Returns:
        the [`RhythmTrace`][RhythmTrace], or ``(trace, outputs)`` with ``return_outputs=True``.

    Raises:
        TypeError: ``model`` is not a causal LM (or its attention modules cannot be found) or its attention is
            not causal; ``input_ids`` is not an integer tensor; a mask is a float tensor (bool or 0/1 integers are
            expected).
        ValueError: a bad parameter or mask; a left-padded batch for a model that takes no padding mask; an SDPA
            mask the definitions do not cover (a sliding window...); the message names the value and the fix.
        RuntimeError: a named attention module that makes no SDPA call, or more than one.

    Warns:
        UserWarning: once per process, when ``horizon`` is longer than every response (FAI all NaN, no anchors).
    """
    knobs = dict(layers=layers, window=window, horizon=horizon, head_fraction=head_fraction, q=q, look_back=look_back)
    rhythm = _settings(rhythm, **knobs, block_size=block_size)
    route = route_for(model, attention_modules, forward)
    attention_mask, response_mask = _check_inputs(input_ids, attention_mask, response_mask)
    _check_vocabulary(model, input_ids)
    route.check_batch(attention_mask)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad(), measuring(model):  # eval mode: dropout would draw another rhythm on every call
        with _recording(route, response_mask, attention_mask, rhythm) as rec:
            outputs = route.call(input_ids, attention_mask, position_ids)
        if return_outputs and _has_fused_path(route):  # the capture made it take the unfused path: ~1e-7 apart
            outputs = route.call(input_ids, attention_mask, position_ids)
        if isinstance(route, SdpaRoute):  # no fallback: every selected attention module must have called SDPA
            rec.check_complete(forward_ran=True)
        if not rec.complete:
            warnings.warn(
                f"{type(model).__name__} does not route the attention of layers {rec.layers} through "
                "transformers' AttentionInterface; measuring them from eager attention maps instead, one "
                "selected layer at a time (slower: a second forward pass and an N x N map per layer).",
                stacklevel=2,
            )
            inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            stats = eager_layer_stats(
                model, inputs, response_mask, layers=rec.layers, window=rhythm.window, horizon=rhythm.horizon
            )
            trace = trace_from_head_stats(
                *stats,
                response_mask,
                rec.layers,
                head_fraction=rhythm.head_fraction,
                q=rhythm.q,
                look_back=rhythm.look_back,
            )
        else:
            trace = rec.trace()
    return (trace, outputs) if return_outputs else trace


def _has_fused_path(route) -> bool:
    """Whether a plain forward of the route's model may take ``nn.MultiheadAttention``'s fused eval path (its own
    kernel, whose rounding differs from the unfused path's): a capture's hooks and mode switch that path off."""
    if not isinstance(route, SdpaRoute) or not torch.backends.mha.get_fastpath_enabled():
        return False
    return any(isinstance(module, torch.nn.MultiheadAttention) for _, site in route.sites for module in site.modules())


def capture_group_maps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    trace: RhythmTrace,
    attention_mask: torch.Tensor | None = None,
    span: tuple[int, int] | None = None,
    block_size: int = SPEC.block_size,
    *,
    attention_modules: str | Sequence[torch.nn.Module] | None = None,
    forward: ForwardFn | None = None,
) -> dict[str, torch.Tensor]:
    """The local- and global-head mean attention maps over a window of the sequence, for pictures.

    The heads are those of ``trace`` (its split and layers); only rows and columns ``[start, stop)`` are kept,
    so a long sequence costs ``w x w`` per group, not ``N x N``.

    Args:
        model: the model the trace came from.
        input_ids: ``[B, N]``, the same batch.
        trace: from [`capture_rhythm`][capture_rhythm] on that batch.
        attention_mask: ``[B, N]``, as given to [`capture_rhythm`][capture_rhythm].
        span: ``(start, stop)`` positions (default: the whole sequence).
        attention_modules: as given to [`capture_rhythm`][capture_rhythm] for that trace.
        forward: as given to [`capture_rhythm`][capture_rhythm].

    Returns:
        ``{"local": [B, w, w], "global": [B, w, w]}`` float32 maps, rows = queries, columns = keys.
    """
    route = route_for(model, attention_modules, forward)
    n = input_ids.shape[-1]
    start, stop = span if span is not None else (0, n)
    if not 0 <= start < stop <= n:
        raise ValueError(f"span={span!r} is invalid for {n} tokens: pass (start, stop) with 0 <= start < stop <= {n}.")
    attention_mask, _ = _check_inputs(input_ids, attention_mask, trace.response_mask.to(input_ids.device))
    route.check_batch(attention_mask)
    route.check(trace.layers)
    recorder = MapRecorder(
        slots={layer: i for i, layer in enumerate(trace.layers)},
        key_mask=attention_mask.bool(),
        groups={"local": trace.local_heads, "global": trace.global_heads},
        start=start,
        stop=stop,
        block_size=check_positive_int(block_size, "block_size"),
    )
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad(), route.intercept(recorder):
        route.call(input_ids, attention_mask, position_ids)
    if recorder.seen != set(trace.layers):
        if isinstance(route, SdpaRoute):
            raise RuntimeError(route.missing(sorted(set(trace.layers) - recorder.seen), forward_ran=True))
        raise RuntimeError(
            f"{type(route.base).__name__} did not route attention through transformers' AttentionInterface; "
            "group maps need it (load the model with attn_implementation='sdpa')."
        )
    return recorder.sums


@contextmanager
def measuring(model: torch.nn.Module):
    """Eval mode for a measurement (no dropout, so no random draw), then every module's own flag back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
