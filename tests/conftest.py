"""Tiny randomly initialised causal LMs built from configs (no hub, no download)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

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
