"""A nanoGPT-style causal LM written for the tests: its attention calls SDPA in the ways real models do.

``causal`` picks the call: ``"flag"`` (``is_causal=True``, nanoGPT), ``"bool"`` (an explicit bool mask, True =
attend), ``"float"`` (an additive mask, ``-inf`` where blocked), ``"none"`` (``is_causal=False``, no mask: a
bidirectional encoder), ``"window"`` (a causal sliding window of ``window`` tokens), ``"prefix"`` (a prefix LM: the
first ``window`` tokens see each other), ``"alibi"`` (an additive per-head ALiBi bias ``-m_h (t - s)``, ``-inf`` on
the future). ``gqa`` picks how grouped
key heads reach SDPA: ``"enable_gqa"`` (SDPA's flag) or ``"repeat"`` (``repeat_interleave``, as LitGPT does).
``MaskedGPT`` takes ``attention_mask`` and ``position_ids`` like a transformers model; ``TinyGPT`` only ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    vocab_size: int = 97
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 48
    block_size: int = 256
    causal: str = "flag"
    gqa: str = "enable_gqa"
    scale: float | None = None
    window: int = 8
    dropout: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def alibi(n: int, heads: int, device=None) -> torch.Tensor:
    """``[1, H, N, N]`` ALiBi bias ``-m_h * (t - s)`` (0 on the future), ``m_h = 2 ** (-8 (h + 1) / H)``."""
    pos = torch.arange(n, device=device)
    slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1, device=device) / heads)
    return -slopes[:, None, None] * (pos[:, None] - pos[None, :]).clamp_min(0)[None]


class SelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.n_embd, c.n_head * c.head_dim)
        self.kv_proj = nn.Linear(c.n_embd, 2 * c.n_kv_head * c.head_dim)
        self.proj = nn.Linear(c.n_head * c.head_dim, c.n_embd)

    def qkv(self, x: torch.Tensor):
        """``q [B, H, N, D]``, ``k, v [B, H_kv, N, D]``."""
        b, n, _ = x.shape
        c = self.c
        q = self.q_proj(x).view(b, n, c.n_head, c.head_dim).transpose(1, 2)
        k, v = self.kv_proj(x).view(b, n, 2, c.n_kv_head, c.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def mask(self, n: int, pad: torch.Tensor | None, device) -> torch.Tensor | None:
        c = self.c
        pos = torch.arange(n, device=device)
        allowed = pos[:, None] >= pos[None, :]
        if c.causal == "window":
            allowed = allowed & (pos[:, None] - pos[None, :] < c.window)
        elif c.causal == "prefix":
            allowed = allowed | ((pos[:, None] < c.window) & (pos[None, :] < c.window))
        elif c.causal in ("flag", "none") and pad is None:
            return None
        allowed = allowed[None, None]
        if c.causal == "alibi":
            return alibi(n, c.n_head, device).masked_fill(~allowed, float("-inf"))
        if pad is not None:
            allowed = allowed & pad.bool()[:, None, None, :]
            allowed = allowed | ~pad.bool()[:, None, :, None]  # padding rows: any finite row (they are ignored)
        if c.causal == "float":
            return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))
        return allowed

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        c = self.c
        q, k, v = self.qkv(x)
        gqa = c.n_kv_head != c.n_head
        if gqa and c.gqa == "repeat":
            k = k.repeat_interleave(c.n_head // c.n_kv_head, dim=1)
            v = v.repeat_interleave(c.n_head // c.n_kv_head, dim=1)
        extra = {"enable_gqa": True} if gqa and c.gqa == "enable_gqa" else {}
        extra["dropout_p"] = c.dropout if self.training else 0.0
        mask = self.mask(x.shape[1], pad, x.device)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=c.causal == "flag", scale=c.scale, **extra)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=c.scale, **extra)
        return self.proj(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd)
        self.attn = SelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd))

    def forward(self, x, pad=None):
        x = x + self.attn(self.ln_1(x), pad)
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """``model(input_ids) -> logits [B, N, V]``."""

    def __init__(self, c: GPTConfig | None = None, seed: int = 0, **overrides):
        super().__init__()
        c = GPTConfig(**overrides) if c is None else c
        torch.manual_seed(seed)
        self.config = c
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(c.vocab_size, c.n_embd),
                wpe=nn.Embedding(c.block_size, c.n_embd),
                h=nn.ModuleList(Block(c) for _ in range(c.n_layer)),
                ln_f=nn.LayerNorm(c.n_embd),
            )
        )
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.eval()

    def run(self, input_ids, pad=None, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.transformer.wte(input_ids) + self.transformer.wpe(position_ids)
        for block in self.transformer.h:
            x = block(x, pad)
        return self.lm_head(self.transformer.ln_f(x))

    def forward(self, input_ids):
        return self.run(input_ids)


class MaskedGPT(TinyGPT):
    """``model(input_ids, attention_mask=None, position_ids=None) -> logits``: it passes the padding to SDPA."""

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        pad = None if attention_mask is None or bool(attention_mask.all()) else attention_mask
        return self.run(input_ids, pad, position_ids)


def dense_maps(model: TinyGPT, input_ids, key_mask, layers, run=None) -> torch.Tensor:
    """``[B, L_sel, H, N, N]`` float64 ``softmax(q k^T * scale + mask)``, with ``mask`` = causal and no padding keys,
    from the q and k each selected attention module computes (its input caught by a hook, ``qkv`` recomputed) in a
    plain forward: ``run()``, by default ``model(input_ids)``."""
    inputs = {}
    handles = [
        block.attn.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
        for i, block in enumerate(model.transformer.h)
    ]
    try:
        with torch.no_grad():
            run() if run is not None else model(input_ids)
    finally:
        for h in handles:
            h.remove()
    c = model.config
    n = input_ids.shape[1]
    keep = key_mask.bool()[:, None, None, :] & torch.ones(n, n, dtype=torch.bool).tril()
    maps = []
    for layer in layers:
        q, k, _ = model.transformer.h[layer].attn.qkv(inputs[layer])
        k = k.repeat_interleave(c.n_head // c.n_kv_head, dim=1)
        scale = c.scale if c.scale is not None else c.head_dim**-0.5
        scores = (q.double() @ k.double().transpose(-1, -2)) * scale
        if c.causal == "alibi":
            scores = scores + alibi(n, c.n_head).double()
        probs = scores.masked_fill(~keep, float("-inf")).softmax(-1)
        maps.append(probs.nan_to_num(0.0))  # padding rows (all blocked) are never read
    return torch.stack(maps, 1)


class GPTModule(pl.LightningModule):
    """A user's LightningModule around a ``TinyGPT``: next-token loss on the tokens whose label is not -100."""

    def __init__(self, seed: int = 0, **config):
        super().__init__()
        self.model = TinyGPT(seed=seed, **config).train()

    def loss(self, batch):
        logits = self.model(batch["input_ids"])
        labels = batch["labels"][:, 1:]
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class ValidatedGPTModule(GPTModule):
    """The same, with a validation step (for the runs given validation data)."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.loss(batch))
