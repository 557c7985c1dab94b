"""One end-of-sequence resolver: a completion ends at the tokenizer's end id and at every end id of the model's
generation config (chat models list several there), whichever path sampled it (``analyze``, the survey, a plain
``sample_batch`` as RL rollouts call it)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from lightning_reasonattn import analysis, testing
from lightning_reasonattn.rollout.prompts import encode_prompts, end_ids, pad_id
from lightning_reasonattn.rollout.sampling import sample_batch
from lightning_reasonattn.survey import SurveySettings
from lightning_reasonattn.survey.run import measure_batch

PROMPT = "Let us think"
MESSAGES = [{"role": "user", "content": PROMPT}]  # what analyze sends: the prompt in the chat template
LIMIT = 12


def tiny_chat_model():
    """A random Llama and its tokenizer (no pad token), and the first tokens of its greedy answer to ``PROMPT``
    (generated with no end id at all)."""
    tokenizer = testing.tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = analysis.prompt_ids(tokenizer, PROMPT)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=LIMIT, do_sample=False, eos_token_id=None, pad_token_id=0)
    return model, tokenizer, out[0, ids.shape[1] :].tolist()


def first_new(tokens: list[int]) -> tuple[int, int]:
    """``(position, id)`` of the first greedy token, past the first, that did not occur before it."""
    for i, token in enumerate(tokens[1:], 1):
        if token not in tokens[:i]:
            return i, token
    pytest.skip("the random model repeats one token")


def unused(tokenizer, tokens: list[int], count: int) -> list[int]:
    return [i for i in range(len(tokenizer)) if i not in tokens][:count]


def test_end_ids_are_the_tokenizers_and_every_one_of_the_generation_config():
    model, tokenizer, tokens = tiny_chat_model()
    model.generation_config.eos_token_id = [40, 7]  # a chat model's list of end-of-turn ids
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(12)
    assert end_ids(model, tokenizer) == [7, 12, 40]
    model.generation_config.eos_token_id = 12
    assert end_ids(model, tokenizer) == [12]
    assert pad_id(model, tokenizer) == 12 and tokenizer.pad_token is None  # the first end id, nothing set


@pytest.mark.parametrize("where", ["tokenizer", "generation config"])
def test_every_path_cuts_the_answer_at_the_same_end_id(where):
    model, tokenizer, tokens = tiny_chat_model()
    stop, token = first_new(tokens)
    config_ids = unused(tokenizer, tokens, 2)  # two ids the answer never holds
    if where == "tokenizer":  # the tokenizer ends at the answer's token, the generation config lists two others
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(token)
    else:  # the tokenizer's end id never comes; the generation config's second end id does
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(config_ids.pop())
        config_ids.append(token)
    model.generation_config.eos_token_id = config_ids
    expected = tokens[: stop + 1]  # up to and including the end id, written out from the unconstrained answer

    ids, response = analysis.generate(model, tokenizer, PROMPT, max_new_tokens=LIMIT)
    assert ids[0, response[0]].tolist() == expected

    settings = SurveySettings(max_new_tokens=LIMIT, temperature=0.0)
    record = measure_batch(model, tokenizer, [MESSAGES], settings, seed=0)[0]
    assert record["response_ids"] == expected and not record["truncated"]

    prompt, mask = encode_prompts(tokenizer, [MESSAGES], pad=pad_id(model, tokenizer))
    batch = sample_batch(
        model, prompt, mask, eos_ids=end_ids(model, tokenizer), pad_id=0, max_new_tokens=LIMIT, temperature=0
    )
    assert batch.completion_ids[0][batch.completion_mask[0]].tolist() == expected

    rollouts = rl_step(model, tokenizer).rollout([{"prompt": MESSAGES}], group_size=1, temperature=0.0)  # RhythmGRPO's
    assert rollouts.completion_ids[0][rollouts.completion_mask[0]].tolist() == expected


def rl_step(model, tokenizer):
    """The rollout of a RhythmGRPO step on ``model`` (greedy, ``LIMIT`` new tokens)."""
    from lightning_reasonattn.grpo.distributed import Processes
    from lightning_reasonattn.grpo.settings import CreditSettings, LossSettings, SamplingSettings
    from lightning_reasonattn.grpo.step import GRPOStep, Rewards, StepSettings

    settings = StepSettings(group_size=1, sampling=SamplingSettings(max_new_tokens=LIMIT), credit=CreditSettings(),
                            loss=LossSettings(), score_batch_size=1)  # fmt: skip
    return GRPOStep(policy=model, sampler=model, reference=None, tokenizer=tokenizer, settings=settings,
                    rewards=Rewards([]), processes=Processes(), seed=0)  # fmt: skip


@pytest.mark.parametrize("chat", [False, True])
def test_prompts_are_padded_as_the_tokenizer_pads_them(chat):
    """encode_prompts pads itself (so the caller's tokenizer needs no pad token): the same ids and mask as the
    tokenizer's own left padding."""
    tokenizer = testing.tiny_tokenizer()
    tokenizer.pad_token = "<|endoftext|>"
    texts = ["Let us think", "The answer is 5 pm. Let us think step by step.", "5"]
    prompts = [[{"role": "user", "content": t}] for t in texts] if chat else texts
    if chat:
        texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    reference = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=not chat, return_tensors="pt")
    ids, mask = encode_prompts(tokenizer, prompts)
    assert torch.equal(ids, reference.input_ids) and torch.equal(mask, reference.attention_mask)
    assert mask[0, 0] == 0 and mask[1].all()  # the short prompt is padded on the left
    other, _ = encode_prompts(tokenizer, prompts, pad=3)
    assert torch.equal(other[mask.bool()], ids[mask.bool()]) and (other[~mask.bool()] == 3).all()
