"""Knock tokens out of the attention and read every token's negative log-likelihood: are anchors causal?

[`knockout_nll`][knockout_nll] runs one forward of a causal LM in which, for each sequence ``b`` and each position
``s`` of its knockout set ``K_b``, every later query ``t > s`` is kept from attending to key ``s``, in every head of
the chosen layers (or in chosen heads only). Written as the attention logits of layer ``l``, head ``h``::

    score[b, h, t, s] = -inf   if s in K_b and t > s (and l, h are knocked out for row b)
                        unchanged otherwise

Row ``s`` itself, every query before ``s`` and the positions (RoPE, learned positions) are unchanged: the token is
still read where it is predicted and still predicts the next one from its own row, but no later row reads it. Each
row of the batch has its own set, so several sets of one sequence run in one forward (one row each).

The knockout rides on the capture's routes (``lightning_reasonattn.capture.route``): a transformers model's attention
function runs on the knocked-out mask (its own ``sdpa`` or ``eager`` function, through
``lightning_reasonattn.capture.hf_attention``); any other model's ``scaled_dot_product_attention`` calls are rerun
with it ([`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]). The mask is the model's own
(padding, causality) with the knocked-out entries blocked: a boolean mask stays boolean, an additive one gets the
dtype's lowest value there, and a call without a mask (``is_causal=True``) gets the causal mask. A layer whose rows
knock nothing out runs unchanged, so an empty set gives exactly the plain forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..compat import attn_implementation
from ..functional import defaults
from ..functional.attention import select_layers
from .blockwise import admit, check_lengths
from .modules import ForwardFn, logits_of
from .rhythm import _check_vocabulary, check_ids
from .route import SdpaRoute, route_for

KNOCKOUT_ATTENTION = ("sdpa", "eager")
"""transformers attention implementations a knockout runs on (they take any 4-D mask; flash kernels do not)."""


class Knockout:
    """The knockout of one forward: the keys each row hides from its later queries, in which layers and heads.

    Built by [`knockout_nll`][knockout_nll]; the routes call [`rewrite`][rewrite] on every call of a selected layer
    and ``observe`` after it.

    Args:
        slots: layer index -> position among the knocked-out layers.
        knock: ``[B, N]`` bool, True at the knocked-out keys of each row.
        key_mask: ``[B, N]`` bool, False at padding.
        heads: ``[B, L_sel, H]`` bool, the heads knocked out in each layer of each row, or ``None`` for all.
        additive: build an additive (float) mask where the model gave none (transformers' eager attention).
    """

    def __init__(self, slots, knock, key_mask, heads=None, *, additive=False, block_size=defaults.BLOCK_SIZE):
        self.slots = slots
        self.key_mask = key_mask
        self.heads = heads
        self.additive = additive
        self.block_size = block_size  # (the SDPA route's mask check reads it)
        self.seen: set[int] = set()
        pos = torch.arange(knock.shape[1], device=knock.device)
        self.blocked = knock[:, None, None, :] & (pos[:, None] > pos[None, :])  # [B, 1, N, N]: t > s, s knocked out
        rows = knock.any(-1)  # [B]
        # Per selected layer: whether any row knocks anything out there (else the layer runs unchanged).
        self.active = {
            layer: bool((rows if heads is None else rows & heads[:, slot].any(-1)).any())
            for layer, slot in slots.items()
        }

    def blocked_in(self, layer: int, heads: int, device) -> torch.Tensor:
        """``[B, 1 or H, N, N]`` bool: the entries knocked out in ``layer``."""
        blocked = self.blocked.to(device)
        if self.heads is None:
            return blocked
        chosen = self.heads[:, self.slots[layer]].to(device)  # [B, H]
        if chosen.shape[1] != heads:
            raise ValueError(
                f"heads has {chosen.shape[1]} heads per layer but layer {layer} runs {heads} query heads: pass "
                f"heads as [B, L_sel, {heads}] bool (True = knocked out), one row per sequence."
            )
        return blocked if bool(chosen.all()) else blocked & chosen[:, :, None, None]

    def rewrite(self, layer: int, query: torch.Tensor, key: torch.Tensor, mask, kwargs: dict):
        """The mask layer ``layer`` runs on: the model's ``mask`` with the knocked-out entries blocked.

        Args:
            layer: the layer's index.
            query: the layer's ``[B, H, N, D]`` queries (their shape and dtype are read).
            key: its ``[B, H_kv, N, D]`` keys (their shape is read).
            mask: the model's mask: ``None`` (causal), bool (True = attend) or additive float, broadcastable to
                ``[B, H, N, N]``.
            kwargs: the call's options: ``is_causal`` (``None`` = causal), ``sliding_window`` (transformers).
        """
        check_lengths(layer, query, key, self.key_mask)
        if not self.active[layer]:
            return mask
        n = query.shape[2]
        blocked = self.blocked_in(layer, query.shape[1], query.device)
        if mask is None:
            if kwargs.get("is_causal") is False:
                raise TypeError(
                    f"layer {layer} runs bidirectional attention (is_causal=False and no mask): a knockout hides a "
                    "token from later tokens of a causal decoder; knock out tokens of a causal model."
                )
            pos = torch.arange(n, device=query.device)
            allowed = pos[:, None] >= pos[None, :]
            window = kwargs.get("sliding_window")
            if window is not None:
                allowed = allowed & (pos[:, None] - pos[None, :] < window)
            allowed = allowed & ~blocked
            if self.additive:
                zeros = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
                return zeros.masked_fill(~allowed, torch.finfo(query.dtype).min)
            return allowed
        if mask.ndim < 4:
            mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        if mask.dtype == torch.bool:
            return mask & ~blocked
        return torch.where(blocked, torch.finfo(mask.dtype).min, mask)

    def observe(self, layer: int, query: torch.Tensor, key: torch.Tensor, mask, scaling, kwargs) -> None:
        """After the layer ran: it belongs to the one ``[B, N]`` forward, once."""
        admit(layer, query, key, self.key_mask, self.seen)


def knockout_mask(positions, key_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool, True at the knocked-out positions of each row.

    Args:
        positions: ``[B, N]`` bool (or 0/1 integers), or ``B`` sequences of positions (ints or 1-D integer
            tensors; empty for no knockout), 0-based columns of ``input_ids``.
        key_mask: ``[B, N]`` bool, False at padding.

    Raises:
        ValueError: not one entry per row, a position outside ``[0, N)`` or at padding.
    """
    b, n = key_mask.shape
    if isinstance(positions, torch.Tensor) and positions.ndim == 2:
        if tuple(positions.shape) != (b, n) or positions.dtype.is_floating_point:
            raise ValueError(
                f"positions is a {tuple(positions.shape)} {positions.dtype} tensor: pass a [{b}, {n}] bool mask like "
                "input_ids (True = knocked out), or one list of positions per row."
            )
        knock = positions.bool().to(key_mask.device)
    else:
        rows = list(positions) if isinstance(positions, Sequence | torch.Tensor) else None
        if rows is None or len(rows) != b:
            got = len(rows) if rows is not None else type(positions).__name__
            raise ValueError(
                f"positions has {got} rows for a batch of {b}: pass one sequence of positions per row of input_ids "
                "(an empty one knocks nothing out), or a [B, N] bool mask."
            )
        knock = torch.zeros(b, n, dtype=torch.bool)
        for row, chosen in enumerate(rows):
            index = torch.as_tensor(chosen.cpu() if isinstance(chosen, torch.Tensor) else list(chosen))
            if index.numel() and (index.dtype.is_floating_point or index.dtype == torch.bool or index.ndim != 1):
                raise ValueError(
                    f"positions[{row}] is not a list of integer positions ({index.dtype}, shape {tuple(index.shape)}): "
                    "pass 0-based integer columns of input_ids, e.g. [3, 7]."
                )
            index = index.long()
            bad = index[(index < 0) | (index >= n)]
            if bad.numel():
                raise ValueError(
                    f"positions[{row}] holds {int(bad[0])}, outside the {n} columns of input_ids: pass 0-based "
                    f"positions in [0, {n - 1}]."
                )
            knock[row, index] = True
        knock = knock.to(key_mask.device)
    padded = knock & ~key_mask
    if padded.any():
        row, col = (int(i) for i in padded.nonzero()[0])
        raise ValueError(
            f"positions[{row}] holds {col}, a padding position (attention_mask == 0): knock out real tokens only."
        )
    return knock


def _heads_mask(heads, b: int, layers: int) -> torch.Tensor | None:
    if heads is None:
        return None
    if not isinstance(heads, torch.Tensor) or heads.ndim != 3 or tuple(heads.shape[:2]) != (b, layers):
        got = tuple(heads.shape) if isinstance(heads, torch.Tensor) else type(heads).__name__
        raise ValueError(
            f"heads has shape {got}: pass a [{b}, {layers}, H] bool tensor, one row per sequence and one entry per "
            "knocked-out layer (in sorted layer order) and query head, True = knocked out; or None for every head."
        )
    if heads.dtype.is_floating_point:
        raise TypeError(f"heads has dtype {heads.dtype}: pass a bool tensor (True = the head is knocked out).")
    return heads.bool()


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: ``-log softmax(logits[b, t - 1])[input_ids[b, t]]``; NaN at padding and at the first real token of
    each row (no context). In float32, or float64 for float64 logits; one row's log-softmax at a time."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    nll = torch.full(input_ids.shape, float("nan"), dtype=dtype, device=logits.device)
    targets = input_ids[:, 1:, None].to(logits.device)
    for row in range(logits.shape[0]):
        z = logits[row, :-1].to(dtype)
        nll[row, 1:] = torch.logsumexp(z, -1) - z.gather(-1, targets[row]).squeeze(-1)
    keys = key_mask.to(logits.device)
    defined = keys & torch.nn.functional.pad(keys[:, :-1], (1, 0), value=False)
    return nll.masked_fill(~defined, float("nan"))


def knockout_nll(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    positions,
    *,
    attention_mask: torch.Tensor | None = None,
    layers: str | list[int] | None = None,
    heads: torch.Tensor | None = None,
    attention_modules: str | Sequence[torch.nn.Module] | None = None,
    forward: ForwardFn | None = None,
) -> torch.Tensor:
    """Every token's negative log-likelihood in one no-grad forward where chosen tokens are hidden from later ones.

    For each row ``b`` and each position ``s`` in ``positions[b]``, every query ``t > s`` is kept from attending to
    key ``s`` in every head of ``layers`` (or the heads of ``heads``); row ``s``, the queries before ``s`` and the
    positions are unchanged. Several knockout sets of one sequence run in one forward: repeat the sequence, one row
    per set (an empty set gives the plain forward's values).

    Example:
        >>> import torch
        >>> from transformers import AutoModelForCausalLM, LlamaConfig
        >>> from lightning_reasonattn import knockout_nll
        >>> _ = torch.manual_seed(0)
        >>> config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...                      num_attention_heads=4, num_key_value_heads=2)
        >>> model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
        >>> ids = torch.randint(0, 50, (1, 12)).repeat(2, 1)  # one sequence, twice
        >>> nll = knockout_nll(model, ids, [[], [3, 7]])  # row 0: nothing knocked out; row 1: tokens 3 and 7
        >>> bool(nll[:, 0].isnan().all()), torch.allclose(nll[0, 1:5], nll[1, 1:5])  # rows up to 3 unchanged
        (True, True)
        >>> (nll[1, 5:] - nll[0, 5:]).abs().max().item() > 0  # the rows after 3 no longer read token 3
        True

    Args:
        model: a transformers causal LM loaded with ``attn_implementation="sdpa"`` or ``"eager"`` (peft-wrapped
            too), or any model whose attention modules call ``torch.nn.functional.scaled_dot_product_attention``.
        input_ids: ``[B, N]`` integer token ids.
        positions: ``B`` sequences of 0-based columns of ``input_ids`` (ints or 1-D tensors, may be empty), or a
            ``[B, N]`` bool mask (True = knocked out). Padding positions are refused.
        attention_mask: ``[B, N]`` bool or 0/1 integers, 0 at padding (default: none). Position ids are counted
            over real tokens, as in [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        layers: the layers knocked out: ``None`` or ``"all"`` (default), ``"middle"``, or indices (the others run
            unchanged).
        heads: ``[B, L_sel, H]`` bool, the query heads knocked out in each of the selected layers (sorted layer
            order), per row; ``None`` for every head. The global heads of a
            [`RhythmTrace`][lightning_reasonattn.RhythmTrace] (flat ``slot * H + h``) map to it with ``heads[b,
            slot, h] = True``.
        attention_modules: as in [`capture_rhythm`][lightning_reasonattn.capture_rhythm] (a model that is not a
            transformers one).
        forward: ``fn(model, input_ids, attention_mask) -> outputs``, as in
            [`capture_rhythm`][lightning_reasonattn.capture_rhythm].

    Returns:
        ``[B, N]`` float32 (float64 for a float64 model): entry ``t`` is ``-log p(input_ids[b, t] | input_ids[b, <t])``
        under the knockout; NaN at padding and at the first real token of each row.

    Raises:
        TypeError: a model that is not a causal LM, or not causal at a knocked-out layer; ``input_ids`` not integers.
        ValueError: bad positions, heads or masks (the message names the value and the fix); a transformers model
            whose attention implementation takes no custom mask (flash attention).
        RuntimeError: a knocked-out layer the forward never ran through the route (its attention bypasses it).
    """
    route = route_for(model, attention_modules, forward)
    attention_mask = check_ids(input_ids, attention_mask)
    _check_vocabulary(model, input_ids)
    route.check_batch(attention_mask)
    key_mask = attention_mask.bool()
    selected = select_layers(route.num_layers, "all" if layers is None else layers)
    route.check(selected)
    additive = False
    if not isinstance(route, SdpaRoute):
        impl = attn_implementation(route.base.config.get_text_config())
        if impl not in KNOCKOUT_ATTENTION:
            raise ValueError(
                f"{type(route.base).__name__} runs attn_implementation={impl!r}, which takes no custom mask: load it "
                "with attn_implementation='sdpa' (or model.set_attn_implementation('sdpa')) to knock tokens out."
            )
        additive = impl == "eager"
    plan = Knockout(
        slots={layer: i for i, layer in enumerate(selected)},
        knock=knockout_mask(positions, key_mask),
        key_mask=key_mask,
        heads=_heads_mask(heads, input_ids.shape[0], len(selected)),
        additive=additive,
    )
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        with route.intercept(plan):
            outputs = route.call(input_ids, attention_mask, position_ids)
        missing = sorted(set(selected) - plan.seen)
        if missing:
            raise RuntimeError(f"layers {missing} were not knocked out: {route.missing(missing)}")
        logits = logits_of(outputs)
        if logits is None or logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(input_ids.shape):
            raise RuntimeError(
                f"{type(model).__name__} returned no [B, N, V] logits for the [B, N] input_ids: pass "
                "forward=fn(model, input_ids, attention_mask) that returns them."
            )
        return token_nll(logits, input_ids, key_mask)
