"""A nanoGPT-style causal LM to train from scratch on CPU, with LitGPT's KV-cache interface.

``NanoGPT(vocab_size, block_size, n_layer, n_head, n_embd)(input_ids [B, N]) -> logits [B, N, V]``: learned
positions, pre-norm blocks, tied input and output embeddings (as nanoGPT), attention through
``F.scaled_dot_product_attention(is_causal=True)``, so the capture measures its rhythm from those calls (the SDPA
route, [`lightning_reasonattn.capture.sdpa`][lightning_reasonattn.capture.sdpa]) and the rollout samples from it
with its decode loop ([`lightning_reasonattn.rollout.decode`][lightning_reasonattn.rollout.decode]).

The KV cache is LitGPT's interface (what the decode loop looks for): ``set_kv_cache(batch_size,
max_seq_length=None, device=None, dtype=None)``, then ``forward(idx, input_pos=positions)`` over the new columns
only, and ``clear_kv_cache()``. ``max_seq_length`` is the context (``block_size``).

``save(folder)`` writes ``model.safetensors`` and ``config.json``; ``NanoGPT.load(folder)`` reads them back.

Example:
    >>> import torch
    >>> from lightning_reasonattn.models import NanoGPT
    >>> model = NanoGPT(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8).eval()
    >>> ids = torch.tensor([[3, 1, 4, 1, 5]])
    >>> full = model(ids)                          # [1, 5, 11]
    >>> model.set_kv_cache(batch_size=1)
    >>> first = model(ids[:, :3], input_pos=torch.arange(3))
    >>> rest = model(ids[:, 3:], input_pos=torch.arange(3, 5))
    >>> model.clear_kv_cache()
    >>> torch.allclose(torch.cat([first, rest], 1), full, atol=1e-6)
    True
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..files import read_json_object

CONFIG_KEYS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one SDPA call per forward, over the cache's keys when given positions."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # [B_max, H, S, D] each

    def forward(
        self, x: torch.Tensor, input_pos: torch.Tensor | None = None, input_pos_maxp1: int | None = None
    ) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if input_pos is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = self._cached(input_pos, k, v, input_pos_maxp1)
            # one new token sees every cached key up to it; several see those at or before their own position
            mask = None if t == 1 else input_pos[:, None] >= torch.arange(k.shape[2], device=x.device)[None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    def _cached(self, input_pos, k, v, maxp1):
        """Write the new keys and values at ``input_pos``; the keys and values of positions ``0 .. maxp1 - 1``."""
        if self.kv_cache is None:
            raise RuntimeError(
                "forward(..., input_pos=...) uses the KV cache: call model.set_kv_cache(batch_size) first."
            )
        cache_k, cache_v = self.kv_cache
        b = k.shape[0]
        if b > cache_k.shape[0]:
            raise ValueError(f"a batch of {b} rows, but the KV cache holds {cache_k.shape[0]}: set_kv_cache({b}).")
        cache_k[:b, :, input_pos] = k.to(cache_k.dtype)
        cache_v[:b, :, input_pos] = v.to(cache_v.dtype)
        stop = int(input_pos.max()) + 1 if maxp1 is None else maxp1
        return cache_k[:b, :, :stop], cache_v[:b, :, :stop]


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(n_embd), CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None, input_pos_maxp1: int | None = None):
        x = x + self.attn(self.ln_1(x), input_pos, input_pos_maxp1)
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """``NanoGPT(...)(input_ids [B, N]) -> logits [B, N, V]``; see the module's docstring.

    Args:
        vocab_size: tokens in the vocabulary.
        block_size: the context: the longest sequence (learned positions ``0 .. block_size - 1``).
        n_layer: transformer blocks.
        n_head: attention heads per block (``n_embd`` must split evenly into them).
        n_embd: width.

    Weights are drawn from the torch RNG: ``normal(0, 0.02)`` for linear and embedding weights, zero biases.
    """

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        for name, value in zip(CONFIG_KEYS, (vocab_size, block_size, n_layer, n_head, n_embd), strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: pass a whole number, at least 1.")
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} does not split into n_head={n_head} heads: make it a multiple of it.")
        self.config = dict(zip(CONFIG_KEYS, (vocab_size, block_size, n_layer, n_head, n_embd), strict=True))
        self.max_seq_length = block_size
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                h=nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer)),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def forward(
        self, idx: torch.Tensor, input_pos: torch.Tensor | None = None, input_pos_maxp1: int | None = None
    ) -> torch.Tensor:
        """``[B, T]`` ids -> ``[B, T, V]`` logits; with ``input_pos`` (``[T]`` positions), through the KV cache.

        Args:
            idx: ``[B, T]`` token ids.
            input_pos: positions of the ``T`` tokens (``None``: ``0 .. T - 1``, no cache).
            input_pos_maxp1: ``max(input_pos) + 1`` where the caller knows it (saves a device sync).
        """
        t = idx.shape[1]
        if input_pos is None and t > self.max_seq_length:
            raise ValueError(f"a sequence of {t} tokens is longer than the context of {self.max_seq_length}.")
        if input_pos is not None and (input_pos.ndim != 1 or input_pos.shape[0] != t):
            raise ValueError(f"input_pos has shape {tuple(input_pos.shape)}: pass the [T] = [{t}] positions of idx.")
        pos = torch.arange(t, device=idx.device) if input_pos is None else input_pos
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x, input_pos, input_pos_maxp1)
        return self.lm_head(self.transformer.ln_f(x))

    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: int | None = None,
        rope_cache_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Allocate a KV cache of ``batch_size`` rows and ``max_seq_length`` positions (default: the context);
        ``rope_cache_length`` is LitGPT's and unused (learned positions)."""
        length = self.max_seq_length if max_seq_length is None else max_seq_length
        if length > self.max_seq_length:
            raise ValueError(f"max_seq_length={length} is longer than the context of {self.max_seq_length}.")
        weight = self.lm_head.weight
        device, dtype = device or weight.device, dtype or weight.dtype
        for block in self.transformer.h:
            attn = block.attn
            shape = (batch_size, attn.n_head, length, self.config["n_embd"] // attn.n_head)
            attn.kv_cache = (
                torch.zeros(shape, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype),
            )

    def clear_kv_cache(self) -> None:
        """Free the KV cache."""
        for block in self.transformer.h:
            block.attn.kv_cache = None

    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` (tied weights stored once) and ``config.json`` into ``folder``."""
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / WEIGHTS))
        (folder / CONFIG).write_text(json.dumps({"model_type": "nanogpt", **self.config}, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> NanoGPT:
        """The model saved in ``folder`` by [`save`][lightning_reasonattn.models.gpt.NanoGPT.save], in eval mode.

        Raises:
            ValueError: no ``config.json`` or ``model.safetensors`` there, or a config without the model's sizes.
        """
        from safetensors.torch import load_model

        folder = Path(folder)
        if not (folder / CONFIG).is_file():
            raise ValueError(f"{folder} holds no {CONFIG}: pass a folder written by NanoGPT.save.")
        config = read_json_object(folder / CONFIG, "NanoGPT config")
        missing = [key for key in CONFIG_KEYS if key not in config]
        if missing or config.get("model_type") != "nanogpt":
            raise ValueError(
                f"{folder / CONFIG} is not a NanoGPT config (model_type 'nanogpt' and {', '.join(CONFIG_KEYS)}): "
                "pass a folder written by NanoGPT.save."
            )
        if not (folder / WEIGHTS).is_file():
            raise ValueError(f"{folder} holds no {WEIGHTS}: pass a folder written by NanoGPT.save.")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten: it must not shift the RNG
            model = cls(**{key: config[key] for key in CONFIG_KEYS})
        load_model(model, str(folder / WEIGHTS), device=str(device))
        return model.to(device).eval()
