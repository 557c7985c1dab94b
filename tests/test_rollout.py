"""Rollout: completion masks, sampling, and the dense copy of a 4-bit LoRA policy."""

import pytest
import torch
from conftest import tiny_checkpoint, tiny_model

from lightning_reasonattn.rollout.dense import DenseRollout, choose_backend, dense_bytes, resolve_backend
from lightning_reasonattn.rollout.sampling import completion_mask, sample


def test_completion_mask_by_hand():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0]])
    mask, truncated = completion_mask(ids, eos_ids=[2])
    assert mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]
    mask, _ = completion_mask(ids, eos_ids=[7, 2])  # several end tokens
    assert mask.int().tolist()[1] == [1, 1, 1, 0, 0]


def test_sample_pads_after_eos():
    model = tiny_model("llama")
    prompts = torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    torch.manual_seed(0)
    out = sample(model, prompts, mask, eos_ids=[1, 2, 3], pad_id=0, max_new_tokens=12)
    assert out.ids.shape[0] == 2 and out.ids.shape[1] <= 12
    assert (out.ids[~out.mask] == 0).all()
    for row, trunc in zip(out.mask, out.truncated, strict=True):
        assert bool(trunc) == bool(row.all()) or row.sum() < row.numel()


@pytest.fixture
def lora_4bit(tmp_path):
    pytest.importorskip("bitsandbytes")
    from lightning_reasonattn.models import LoraSettings, add_lora, load_model

    tiny_checkpoint(tmp_path, hidden_size=64, intermediate_size=128)
    base, _ = load_model(str(tmp_path), quantization="nf4", device="cpu")
    policy = add_lora(base, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():  # peft starts B at zero (no change); make the adapter matter
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return policy.eval()


def test_dense_copy_matches_the_quantized_policy(lora_4bit):
    ids = torch.randint(0, 97, (2, 20))
    dense = DenseRollout(lora_4bit)
    assert resolve_backend("auto", lora_4bit) == "dense"
    with torch.no_grad():
        expected = lora_4bit(ids).logits
        torch.testing.assert_close(dense.model(ids).logits, expected, atol=1e-4, rtol=1e-4)
        # An optimizer step moves the adapter: the copy follows after sync(), not before.
        for name, p in lora_4bit.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
        moved = lora_4bit(ids).logits
        assert not torch.allclose(dense.model(ids).logits, moved, atol=1e-3)
        dense.sync()
        torch.testing.assert_close(dense.model(ids).logits, moved, atol=1e-4, rtol=1e-4)
        # With the adapter disabled the policy is the base model: the copy can serve as reference too.
        with lora_4bit.disable_adapter():
            base_logits = lora_4bit(ids).logits
        assert not torch.allclose(base_logits, moved, atol=1e-3)


def test_dense_bytes_is_the_size_of_the_dense_copy(lora_4bit):
    copy = DenseRollout(lora_4bit, dtype=torch.float32).model
    expected = sum(p.numel() for p in copy.parameters()) * 4  # parameters() counts tied weights once
    assert dense_bytes(lora_4bit, torch.float32) == expected
    assert dense_bytes(lora_4bit, torch.bfloat16) == expected // 2


def test_auto_backend_rule():
    gib = 2**30
    assert choose_backend(False, "cuda", 1 * gib, 80 * gib) == "policy"  # an unquantized policy is dense already
    assert choose_backend(False, "cpu", 1 * gib, None) == "policy"
    assert choose_backend(True, "cpu", 8 * gib, None) == "dense"  # CPU 4-bit decoding is ~40x slower
    assert choose_backend(True, "cuda", int(1.2 * gib), 20 * gib) == "dense"  # 0.6B bf16 copy on a 24 GB card
    assert choose_backend(True, "cuda", 8 * gib, 20 * gib) == "policy"  # 4B copy: over a quarter of free memory
    assert choose_backend(True, "cuda", 5 * gib, 20 * gib) == "dense"  # exactly a quarter still fits


def test_check_context_by_hand():
    from lightning_reasonattn.rollout.context import ContextLengthError, check_context, context_length

    model = tiny_model("llama")  # max_position_embeddings=512
    assert context_length(model) == 512
    check_context(model, 500, 12)  # 512 exactly: fits
    with pytest.raises(ContextLengthError) as info:
        check_context(model, 500, 13, setting="sampling.max_new_tokens")
    message = str(info.value)
    assert "500 tokens plus sampling.max_new_tokens 13 makes 513 tokens" in message and "context of 512" in message
    assert "lower sampling.max_new_tokens to 12, or shorten the prompts to at most 499 tokens" in message
    with pytest.raises(ContextLengthError, match="at most 500 tokens \\(the prompt alone is too long\\)"):
        check_context(model, 600, 12)
    no_limit = type("Model", (), {"config": type("Config", (), {})()})()
    assert context_length(no_limit) is None
    check_context(no_limit, 10**6, 10**6)  # nothing known: nothing checked


def test_sample_hands_every_step_to_a_streamer():
    model = tiny_model("llama")
    prompts = torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]])

    class Record:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.clone())

        def end(self):
            self.ended = True

    record = Record()
    out = sample(
        model, prompts, torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]), [1, 2, 3], 0, 9, keys=None, streamer=record
    )
    assert torch.equal(record.puts[0], prompts)  # the prompt first
    steps = torch.stack([p.reshape(-1) for p in record.puts[1:]], 1)  # then one [B] tensor per decoding step
    assert steps.shape == out.ids.shape and torch.equal(steps.masked_fill(~out.mask, 0), out.ids) and record.ended
