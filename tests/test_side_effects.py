"""No side effects on what the user owns: a survey leaves the caller's tokenizer and torch's global RNG as they
were, ``analyze``'s sampling too, and a capture leaves transformers' attention registry as it found it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from lightning_reasonattn import analysis, capture_rhythm, rhythm_capture, run_survey, testing
from lightning_reasonattn.rollout.prompts import encode_prompts, end_ids
from lightning_reasonattn.rollout.sampling import sample_batch
from lightning_reasonattn.survey import SurveySettings
from lightning_reasonattn.survey.run import batch_seed, measure_batch


def users_model():
    """A user's own model and tokenizer: the tokenizer has no pad token (as many base models' have not)."""
    tokenizer = testing.tiny_tokenizer(texts=("1+2=3*4-5",), vocab_size=24)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval(), tokenizer


def test_a_survey_leaves_the_users_tokenizer_and_rng_alone(tmp_path):
    model, tokenizer = users_model()
    assert tokenizer.pad_token is None
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    settings = SurveySettings(prompts="arithmetic", n=3, batch_size=2, max_new_tokens=6, n_boot=20, reports=1)
    run_survey(settings, tmp_path / "out", model=model, tokenizer=tokenizer, progress=False)
    assert tokenizer.pad_token is None and tokenizer.pad_token_id is None
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_survey_batch_draws_what_the_seeded_global_rng_drew():
    """The survey's sampling no longer seeds the global RNG, and samples the same tokens as when it did."""
    model, tokenizer = users_model()
    prompts = ["1+2", "3*4-5", "12"]
    settings = SurveySettings(max_new_tokens=8, temperature=1.0)
    seed = batch_seed(0, 1)
    got = measure_batch(model, tokenizer, prompts, settings, seed)
    ids, mask = encode_prompts(tokenizer, prompts, pad=tokenizer.eos_token_id)
    torch.manual_seed(seed)  # what the survey did before: seed the process RNG, then sample from it
    batch = sample_batch(
        model, ids, mask, eos_ids=end_ids(model, tokenizer), pad_id=tokenizer.eos_token_id, max_new_tokens=8
    )
    expected = [row[keep].tolist() for row, keep in zip(batch.completion_ids, batch.completion_mask, strict=True)]
    assert [r["response_ids"] for r in got] == expected


def test_sampling_in_analyze_leaves_the_global_rng_alone():
    model, tokenizer = users_model()
    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    ids, _ = analysis.generate(model, tokenizer, "1+2", max_new_tokens=6, sample=True, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    again, _ = analysis.generate(model, tokenizer, "1+2", max_new_tokens=6, sample=True, seed=5)
    assert torch.equal(ids, again)


def registry() -> tuple[set[str], set[str]]:
    return set(ALL_ATTENTION_FUNCTIONS), set(ALL_MASK_ATTENTION_FUNCTIONS)


def test_a_capture_leaves_transformers_attention_registry_as_it_found_it():
    model, _ = users_model()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    response = torch.zeros_like(ids, dtype=torch.bool)
    response[:, 4:] = True
    before = registry()
    capture_rhythm(model, ids, response_mask=response, horizon=(1, 4))
    assert registry() == before and model.config._attn_implementation == "sdpa"
    assert not any(name.startswith("reasonattn_") for name in ALL_ATTENTION_FUNCTIONS)  # (whatever ran before)

    with rhythm_capture(model, response, horizon=(1, 4)) as outer:  # nested: the inner one must not remove it
        with rhythm_capture(model, response, horizon=(1, 4)):
            pass
        assert "reasonattn_sdpa" in ALL_ATTENTION_FUNCTIONS
        model(ids, use_cache=False)
    assert outer.trace().waad.shape == ids.shape
    assert registry() == before

    with pytest.raises(RuntimeError, match="boom"), rhythm_capture(model, response):
        raise RuntimeError("boom")
    assert registry() == before and model.config._attn_implementation == "sdpa"
