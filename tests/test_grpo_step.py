"""The update's log-probabilities and entropies (fused head) against log_softmax of the model's full logits."""

from __future__ import annotations

import peft
import pytest
import torch
from conftest import tiny_model
from transformers import AutoModelForCausalLM, Gemma2Config

from lightning_reasonattn.rollout.logprobs import completion_logprobs_entropy, fused_head, position_ids


def reference(model, ids, mask, width, temperature):
    """Dense: the full logits of a plain forward, log_softmax, gathered at the completion tokens."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
    logp_all = (logits[:, -width - 1 : -1].double() / temperature).log_softmax(-1)
    logp = logp_all.gather(-1, ids[:, -width:, None]).squeeze(-1)
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def lora_policy(model):
    policy = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return policy


def batch(vocab: int):
    torch.manual_seed(1)
    ids = torch.randint(3, vocab, (3, 14))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding of the prompt
    mask[2, :1] = 0
    return ids, mask


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_fused_logprobs_and_gradients_match_the_full_logits(family, temperature):
    policy = lora_policy(tiny_model(family))
    assert fused_head(policy) is not None
    ids, mask = batch(97)
    width = 6
    upstream = torch.randn(3, width, dtype=torch.float64)
    lora = [p for n, p in policy.named_parameters() if p.requires_grad]

    logp, entropy = completion_logprobs_entropy(policy, ids, mask, width, temperature)
    got = torch.autograd.grad((logp.double() * upstream).sum(), lora)
    ref_logp, ref_entropy = reference(policy, ids, mask, width, temperature)
    expected = torch.autograd.grad((ref_logp * upstream).sum(), lora)

    torch.testing.assert_close(logp.double(), ref_logp.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), atol=1e-5, rtol=1e-5)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.double(), e.double(), atol=1e-5, rtol=1e-4)


def test_softcapped_logits_take_the_plain_route():
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, final_logit_softcapping=5.0,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    assert fused_head(model) is None  # a fused head would skip the soft-capping
    ids, mask = batch(97)
    logp, entropy = completion_logprobs_entropy(model, ids, mask, 5)
    ref_logp, ref_entropy = reference(model, ids, mask, 5, 1.0)
    torch.testing.assert_close(logp.double(), ref_logp.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), atol=1e-5, rtol=1e-5)


def test_fused_route_through_gradient_checkpointing_on_4bit(tmp_path):
    """The decoder called directly (not the PeftModel) still checkpoints and still reaches the adapter."""
    pytest.importorskip("bitsandbytes")
    from lightning_reasonattn.models import LoraSettings, add_lora, load_model
    from lightning_reasonattn.testing import tiny_checkpoint

    path = str(tiny_checkpoint(tmp_path / "ckpt"))
    grads = []
    for checkpointing in (False, True):
        base, _ = load_model(path, device="cpu", quantization="nf4")
        torch.manual_seed(0)  # the same lora_A initialisation both times
        policy = add_lora(base, LoraSettings(r=4, alpha=8), gradient_checkpointing=checkpointing).train()
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.linspace(-0.1, 0.1, p.numel()).view_as(p))
        ids, mask = batch(90)
        logp, _ = completion_logprobs_entropy(policy, ids, mask, 6)
        logp.sum().backward()
        grads.append({n: p.grad for n, p in policy.named_parameters() if p.requires_grad})
        assert policy.base_model.model.model.gradient_checkpointing == checkpointing
    assert grads[0].keys() == grads[1].keys()
    assert all(grads[1][n] is not None and grads[1][n].abs().sum() > 0 for n in grads[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


def test_rhythm_captured_in_the_fused_forward_equals_capture_rhythm():
    """The update measures the rhythm in its own (decoder-only) forward: the trace must be capture_rhythm's."""
    from lightning_reasonattn import capture_rhythm, rhythm_capture

    policy = lora_policy(tiny_model("qwen3"))
    ids, mask = batch(97)
    width = 8
    response = torch.zeros_like(mask, dtype=torch.bool)
    response[:, -width:] = True
    settings = dict(layers="middle", window=3, horizon=(1, 4))
    with rhythm_capture(policy, response, mask, **settings) as rec:
        completion_logprobs_entropy(policy, ids, mask, width)
    got = rec.trace(0.3, 0.4, 3)
    expected = capture_rhythm(policy, ids, mask, response, **settings, head_fraction=0.3, q=0.4, look_back=3)
    torch.testing.assert_close(got.waad, expected.waad, equal_nan=True)
    torch.testing.assert_close(got.fai, expected.fai, equal_nan=True)
    assert torch.equal(got.preplan, expected.preplan) and torch.equal(got.anchor, expected.anchor)
    assert got.preplan.any() and got.anchor.any()


def test_sampled_batch_masks_and_one_measuring_forward():
    """sample_batch lays prompts and completions out as the step reads them; measure gives, in one forward, the
    log-probabilities of the dense reference and the trace capture_rhythm gives on the same tokens."""
    from lightning_reasonattn import RhythmSettings, capture_rhythm
    from lightning_reasonattn.rollout.logprobs import measure
    from lightning_reasonattn.rollout.sampling import sample_batch

    policy = lora_policy(tiny_model("llama")).eval()
    prompts = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    prompt_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    torch.manual_seed(0)
    batch = sample_batch(policy, prompts, prompt_mask, eos_ids=[9], pad_id=0, max_new_tokens=16, temperature=1.0)
    p, t = prompts.shape[1], batch.width
    assert batch.ids.shape == (2, p + t) and torch.equal(batch.ids[:, :p], prompts)
    # by hand: the response is the completion up to and including its first EOS (9), nothing of the prompt
    for row in range(2):
        completion = batch.ids[row, p:].tolist()
        end = completion.index(9) + 1 if 9 in completion else t
        expected = [False] * p + [i < end for i in range(t)]
        assert batch.response_mask[row].tolist() == expected
        assert batch.attention_mask[row].tolist() == prompt_mask[row].tolist() + [int(i < end) for i in range(t)]
    assert torch.equal(batch.completion_mask, batch.response_mask[:, p:])

    rhythm = RhythmSettings(window=3, horizon=(1, 4))
    measured = measure(policy, batch, temperature=0.7, rhythm=rhythm)
    logp, entropy = reference(policy, batch.ids, batch.attention_mask, t, 0.7)
    keep = batch.completion_mask
    torch.testing.assert_close(measured.logp[keep].double(), logp[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(measured.entropy[keep].double(), entropy[keep], atol=1e-5, rtol=1e-5)
    expected = capture_rhythm(policy, batch.ids, batch.attention_mask, batch.response_mask, **rhythm.capture_kwargs())
    torch.testing.assert_close(measured.trace.waad, expected.waad, equal_nan=True)
    torch.testing.assert_close(measured.trace.fai, expected.fai, equal_nan=True)
    assert torch.equal(measured.trace.anchor, expected.anchor) and measured.trace.anchor.any()
    assert measure(policy, batch.rows(slice(1, 2))).trace is None  # no rhythm asked for: no capture
