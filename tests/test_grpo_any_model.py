"""RhythmGRPO on PyTorch causal LMs that are not Hugging Face models: the package's NanoGPT, the tests' TinyGPT (no
KV cache) and LitGPT's GPT, from Python and from ``reasonattn fit`` (YAML); one step against a hand-written GRPO
gradient; checkpoints, exact resume, LoRA and 4-bit on a module, the KL reference of a full fine-tune."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from tiny_gpt import GPTConfig, TinyGPT

from lightning_reasonattn import NanoGPT, WordTokenizer, capture_rhythm, cli, credit_gamma
from lightning_reasonattn.functional import STRATEGIES
from lightning_reasonattn.grpo import RhythmGRPO
from lightning_reasonattn.tasks import generate_word_problems, worked_answer

TASK = {"name": "word_problems", "difficulty": 1, "style": "plain", "chat": False, "n_train": 40, "n_test": 4}


def word_tokenizer() -> WordTokenizer:
    """Every word of the task's problems and worked answers (the vocabulary is closed)."""
    records = generate_word_problems(400, seed=0, difficulty=1, style="plain")
    corpus = [r["prompt"] + " " + worked_answer(r["expression"]) for r in records]
    return WordTokenizer.from_corpus(corpus + ["0 1 2 3 4 5 6 7 8 9 = + - . The answer is"])


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    """A folder with a random NanoGPT (``NanoGPT.save``) and its ``tokenizer.json``."""
    folder = tmp_path_factory.mktemp("nanogpt")
    tok = word_tokenizer()
    tok.save(folder / "tokenizer.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        NanoGPT(len(tok), 96, 2, 2, 32).save(folder)
    return folder


def module_args(strategy: str = "coupled", **overrides) -> dict:
    return {
        "task": TASK,
        "rewards": {"functions": ["conftest:text_hash_reward"]},  # a reward that varies inside a group
        "prompts_per_step": 2,
        "group_size": 3,
        "sampling": {"max_new_tokens": 10},
        "credit": {"strategy": strategy, "horizon": [2, 8]},
        "optim": {"lr": 1e-3},
        "log_completions_every_n_steps": 1,
        "eval_batch_size": 2,
        **overrides,
    }


def write_config(out: Path, start: Path, steps: int = 2, strategy: str = "coupled", **overrides) -> Path:
    config = {
        "seed_everything": 3,
        "trainer": {
            "max_steps": steps,
            "accelerator": "cpu",
            "devices": 1,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out)}},
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(out / "ckpt"), "every_n_train_steps": 1, "save_top_k": -1},
                }
            ],
            "val_check_interval": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
        },
        "model": {
            "model": {
                "class_path": "lightning_reasonattn.models.NanoGPT",
                "init_args": yaml.safe_load((start / "config.json").read_text())
                | {"model_type": None},  # (dropped below: the config file's tag is not an argument)
            },
            "tokenizer": {
                "class_path": "lightning_reasonattn.models.WordTokenizer",
                "init_args": {"vocab_file": str(start / "tokenizer.json")},
            },
            "weights": str(start / "model.safetensors"),
            **module_args(strategy, **overrides),
        },
    }
    config["model"]["model"]["init_args"].pop("model_type")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def metrics(out: Path) -> list[dict]:
    files = sorted(out.glob("lightning_logs/version_*/metrics.csv"))
    with open(files[-1]) as fh:
        return list(csv.DictReader(fh))


def trained(out: Path) -> list[dict[str, torch.Tensor]]:
    return [torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in sorted(out.glob("ckpt/*"))]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fit_a_module_from_yaml_each_strategy(tmp_path, start, strategy):
    assert cli.main(["fit", "--config", str(write_config(tmp_path, start, strategy=strategy))]) == 0
    rows = [r for r in metrics(tmp_path) if r.get("loss")]
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert (float(rows[-1]["credit/amplified_frac"]) == 0) == (strategy == "uniform")
    val = [r for r in metrics(tmp_path) if r.get("val/reward")]
    assert len(val) == 1 and 0 <= float(val[0]["val/reward"]) <= 1  # held-out validation after step 2
    first, last = trained(tmp_path)
    # every weight is trained (finetune auto: all of a module's weights), and the checkpoint holds them all
    assert {k.removeprefix("policy.") for k in first} == {name for name, _ in NanoGPT.load(start).named_parameters()}
    assert any(not torch.equal(first[k], last[k]) for k in first)
    completions = (tmp_path / "lightning_logs" / "version_0" / "completions.jsonl").read_text().splitlines()
    assert len(completions) == 2 * 2  # two steps, the first completion of each of the 2 prompts


# Lightning's ModelCheckpoint warns that the resumed run writes to another folder: this test resumes into a new one
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_resume_a_module_reproduces_the_next_step(tmp_path, start):
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    assert cli.main(["fit", "--config", str(write_config(full, start, steps=3))]) == 0
    assert cli.main(["fit", "--config", str(write_config(part, start, steps=2))]) == 0
    ckpt = sorted((part / "ckpt").glob("*step=2*.ckpt"))[-1]
    assert cli.main(["fit", "--config", str(write_config(resumed, start, steps=3)), "--ckpt_path", str(ckpt)]) == 0
    third = [r for r in metrics(full) if r.get("loss")][2]
    again = [r for r in metrics(resumed) if r.get("loss")][-1]
    for key in ("loss", "reward", "completions/mean_length", "credit/mean_gamma", "entropy"):
        assert float(again[key]) == float(third[key]), key
    after_full, after_resumed = trained(full)[-1], trained(resumed)[-1]
    assert all(torch.equal(after_full[k], after_resumed[k]) for k in after_full)


def test_a_module_checkpoint_cannot_resume_another_module(tmp_path, start):
    from lightning_reasonattn.grpo.checkpoint import CheckpointError

    assert cli.main(["fit", "--config", str(write_config(tmp_path / "a", start, steps=1))]) == 0
    ckpt = sorted((tmp_path / "a" / "ckpt").glob("*.ckpt"))[-1]
    tok = WordTokenizer(vocab_file=start / "tokenizer.json")
    other = TinyGPT(GPTConfig(vocab_size=len(tok), n_layer=2, n_head=2, n_kv_head=2, n_embd=32, block_size=96))
    module = RhythmGRPO(model=other, tokenizer=tok, **module_args())
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"model=\{'class_path': 'tiny_gpt.TinyGPT'\} but the checkpoint has "
                       r"\{'class_path': 'lightning_reasonattn.models.gpt.NanoGPT'\}"):  # fmt: skip
        trainer.fit(module, ckpt_path=ckpt)


class _Capture:
    """An ``Optimization`` that keeps the accumulated gradient instead of stepping."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.grads = model, None

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("strategy", ["uniform", "coupled"])
def test_one_step_is_the_hand_written_grpo_gradient(strategy):
    """A step on TinyGPT (no KV cache, ids only) against GRPO written out per completion, unpadded: group-normalised
    advantages, ``-sum_t gamma_t A log p_t / tokens`` (token-mean, ratio 1), gamma from each row's own trace."""
    tok = word_tokenizer()
    torch.manual_seed(1)
    gpt = TinyGPT(GPTConfig(vocab_size=len(tok), n_layer=3, n_head=2, n_kv_head=2, n_embd=32, block_size=128))
    module = RhythmGRPO(model=gpt, tokenizer=tok, **module_args(strategy, group_size=4))
    module.configure_model()
    step = module.grpo_step()
    records = generate_word_problems(2, seed=5, difficulty=1, style="plain")
    rollouts = step.rollout(records, key=(0, 0))
    scored = step.score(rollouts)
    capture = _Capture(module.policy)
    step.update(rollouts, scored, capture)

    rewards = scored.rewards.view(2, 4)
    advantages = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).flatten()
    assert torch.allclose(scored.advantages, advantages, atol=1e-6)
    total_tokens = int(rollouts.completion_mask.sum())
    loss = 0.0
    for i in range(rollouts.ids.shape[0]):
        prompt = rollouts.ids[i, : -rollouts.width][rollouts.attention_mask[i, : -rollouts.width].bool()]
        completion = rollouts.completion_ids[i][rollouts.completion_mask[i]]
        ids = torch.cat([prompt, completion])[None]
        logp = F.log_softmax(gpt(ids)[0, len(prompt) - 1 : -1], -1).gather(-1, completion[:, None])[:, 0]
        gamma = torch.ones_like(logp)
        if strategy == "coupled":
            response = torch.zeros_like(ids, dtype=torch.bool)
            response[0, len(prompt) :] = True
            with torch.no_grad():
                trace = capture_rhythm(gpt, ids, None, response, horizon=(2, 8))
            gamma = credit_gamma(trace, "coupled")[0, len(prompt) :]
        loss = loss - (gamma * advantages[i] * logp).sum() / total_tokens
    grads = torch.autograd.grad(loss, list(gpt.parameters()))
    reference = dict(zip([n for n, _ in gpt.named_parameters()], grads, strict=True))
    for name, grad in capture.grads.items():
        assert torch.allclose(grad, reference[name], rtol=1e-4, atol=1e-7), name
    assert any(g.abs().sum() > 0 for g in capture.grads.values())


def test_full_fine_tune_keeps_the_starting_model_as_the_kl_reference(start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no logger: no completions.jsonl anywhere, the current folder included
    tok = WordTokenizer(vocab_file=start / "tokenizer.json")
    module = RhythmGRPO(
        model=NanoGPT.load(start), tokenizer=tok, **module_args("uniform", loss={"beta": 0.1}, optim={"lr": 0.05})
    )
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module)
    with module._reference() as reference:
        assert reference is not module.policy and not any(p.requires_grad for p in reference.parameters())
        frozen = reference.state_dict()
    start_weights = NanoGPT.load(start).state_dict()
    assert all(torch.equal(frozen[k], start_weights[k]) for k in start_weights)  # the starting weights, unchanged
    assert any(not torch.equal(module.policy.state_dict()[k], start_weights[k]) for k in start_weights)
    assert float(trainer.callback_metrics["kl"]) > 0  # the policy moved away from it, and the KL saw it
    assert not list(tmp_path.iterdir())


def test_lora_on_a_module_trains_the_adapter_only(start):
    tok = WordTokenizer(vocab_file=start / "tokenizer.json")
    module = RhythmGRPO(model=NanoGPT.load(start), tokenizer=tok, finetune="lora", lora={"r": 2, "alpha": 4},
                        **module_args("coupled", loss={"beta": 0.1}, optim={"lr": 0.05}))  # fmt: skip
    module.configure_model()
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module)
    changed = {k for k, v in module.policy.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:4]
    assert module.run.quantization == "none" and module.run.finetune == "lora"


def test_4bit_lora_on_a_module(start):
    pytest.importorskip("bitsandbytes")
    tok = WordTokenizer(vocab_file=start / "tokenizer.json")
    module = RhythmGRPO(model=NanoGPT.load(start), tokenizer=tok, finetune="lora", quantization="nf4",
                        lora={"r": 2, "alpha": 4}, **module_args("coupled"))  # fmt: skip
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module)
    kinds = {type(m).__name__ for m in module.policy.modules()}
    assert "Linear4bit" in kinds and math.isfinite(float(trainer.callback_metrics["loss"]))


def test_litgpt_gpt_trains_with_rhythm_credit():
    litgpt = pytest.importorskip("litgpt")
    tok = word_tokenizer()
    config = litgpt.Config(block_size=128, vocab_size=len(tok), padded_vocab_size=len(tok), n_layer=2, n_head=2,
                           n_embd=32, rotary_percentage=1.0, parallel_residual=False, bias=False,
                           norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64)  # fmt: skip
    torch.manual_seed(0)
    gpt = litgpt.GPT(config)
    module = RhythmGRPO(model=gpt, tokenizer=tok, **module_args("coupled"))
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module)
    assert float(trainer.callback_metrics["credit/anchor_rate"]) > 0  # the rhythm was measured through SDPA
    assert any(not torch.equal(v, before[k]) for k, v in module.policy.state_dict().items() if k in before)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tokenizer": None}, "give its tokenizer too"),
        ({"tokenizer": object()}, "has no encode, decode, eos_token_id"),
        ({"quantization": "nf4"}, "quantized weights are frozen"),
        ({"gradient_checkpointing": True}, "leave gradient_checkpointing false"),
        ({"weights": "missing.safetensors"}, "weights file 'missing.safetensors' does not exist"),
        ({"sampling": {"backend": "dense"}}, "a PyTorch module samples from itself"),
    ],
)
def test_a_module_s_bad_arguments_are_named(arguments, message):
    tok = word_tokenizer()
    kwargs = {"model": NanoGPT(len(tok), 96, 1, 1, 8), "tokenizer": tok, **module_args(), **arguments}
    with pytest.raises(ValueError, match=message):
        module = RhythmGRPO(**kwargs)
        module.configure_model()


def test_a_hugging_face_model_refuses_a_tokenizer():
    module = RhythmGRPO(model="some/model", tokenizer=word_tokenizer(), **module_args())
    with pytest.raises(ValueError, match="brings its own: leave tokenizer out"):
        module.configure_model()


def test_export_says_where_a_module_s_weights_are(tmp_path, start, capsys):
    assert cli.main(["fit", "--config", str(write_config(tmp_path, start, steps=1))]) == 0
    ckpt = sorted((tmp_path / "ckpt").glob("*.ckpt"))[-1]
    assert cli.main(["export", str(ckpt), str(tmp_path / "adapter")]) == 2
    err = capsys.readouterr().err
    assert "trained the module lightning_reasonattn.models.gpt.NanoGPT" in err and "['state_dict']" in err
    assert not (tmp_path / "adapter").exists()
