"""Tiny offline models and tokenizers, for smoke tests and runnable examples (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(texts=("Let us think step by step.\nThe answer is 5 pm.",), vocab_size: int = 97):
    """A byte-level BPE tokenizer trained in memory on ``texts`` (no pad token) with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet())[: vocab_size - 3],  # sorted: deterministic
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_checkpoint(
    path: str | Path, seed: int = 0, texts: tuple[str, ...] | None = None, vocab_size: int = 97, **config_overrides
) -> Path:
    """Save a tiny random Llama (4 layers, 4 heads, 2 KV heads) with a ``tiny_tokenizer`` to ``path``.

    The folder loads like any checkpoint: ``AutoModelForCausalLM.from_pretrained(path)``,
    ``load_model(path, quantization="nf4")``, ``RhythmGRPO(model=str(path))``. ``texts`` and ``vocab_size``
    go to ``tiny_tokenizer``; other keywords override the ``LlamaConfig``.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = tiny_tokenizer(**({"texts": texts} if texts else {}), vocab_size=vocab_size)
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**{**settings, **config_overrides}))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
