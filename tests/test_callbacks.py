"""AttentionRhythmMonitor inside a user's own Trainer and LightningModule."""

import csv
import inspect
import math
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_model
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from tiny_gpt import GPTModule
from torch.utils.data import DataLoader

from lightning_reasonattn import capture_rhythm
from lightning_reasonattn.callbacks import AttentionRhythmMonitor, BatchKeys, RhythmReport
from lightning_reasonattn.functional.coupling import coupling_counts, token_entropy

N, PROMPT = 48, 12


def samples(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(0, 97, (N,), generator=g)
        labels = ids.clone()
        labels[:PROMPT] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones(N, dtype=torch.long), "labels": labels})
    return out


class UserModule(pl.LightningModule):
    """A plain supervised fine-tuning module, as a user would write it."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.model = tiny_model("llama", attention_dropout=dropout).train()

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class ValidatedModule(UserModule):
    """The same, with a validation step (for the runs given validation data)."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model(**batch).loss)


def trainer(tmp_path, callbacks, **kw):
    args = dict(
        max_steps=3,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(callbacks=callbacks, **{**args, **kw})


def test_logs_equal_a_direct_capture(tmp_path):
    train, val = samples(6, seed=1), samples(3, seed=2)
    module = ValidatedModule()
    monitor = AttentionRhythmMonitor(every_n_steps=1, num_buckets=4)
    t = trainer(tmp_path, [monitor])
    t.fit(module, DataLoader(train, batch_size=2), DataLoader(val, batch_size=2))
    metrics = t.callback_metrics

    # Train metrics are measured after the step: step 3's batch under the final weights.
    last = {key: torch.stack([s[key] for s in train[4:6]]) for key in train[0]}
    model = module.model.eval()
    trace, out = capture_rhythm(
        model, last["input_ids"], last["attention_mask"], last["labels"] != -100, return_outputs=True
    )
    assert metrics["rhythm/train/waad"].item() == pytest.approx(trace.waad.nanmean().item(), rel=1e-5)
    assert metrics["rhythm/train/fai"].item() == pytest.approx(trace.fai.nanmean().item(), rel=1e-5)
    counts = coupling_counts(trace.waad, trace.fai, trace.response_mask)
    rate = (counts["waad_followed"] / counts["waad_peaks"]).item()
    assert metrics["rhythm/train/waad_followed_rate"].item() == pytest.approx(rate, rel=1e-5)
    rate = (counts["fai_preceded"] / counts["fai_peaks"]).item()
    assert metrics["rhythm/train/fai_preceded_rate"].item() == pytest.approx(rate, rel=1e-5)
    ent = token_entropy(out.logits)[trace.response_mask]
    assert metrics["rhythm/train/entropy_mean"].item() == pytest.approx(ent.mean().item(), rel=1e-5)
    # Profile bucket 0 = the first quarter of every response (36 response tokens -> 9 each).
    assert metrics["rhythm/train/waad_profile/00"].item() == pytest.approx(
        trace.waad[:, PROMPT : PROMPT + 9].mean().item(), rel=1e-5
    )

    # The docstring lists exactly the names logged (profiles: one name per bucket).
    logged = {re.sub(r"/\d+$", "/00", name[len("rhythm/train/") :]) for name in metrics if "/train/" in name}
    listed = AttentionRhythmMonitor.__doc__.split("logs, under")[1].split("It leaves training alone")[0]
    documented = set(re.findall(r"``(\w+(?:/00)?)``", listed)) - set(
        inspect.signature(AttentionRhythmMonitor).parameters
    )
    assert logged == documented

    # Validation metrics pool every response token of every validation batch.
    allv = {key: torch.stack([s[key] for s in val]) for key in val[0]}
    vtrace = capture_rhythm(model, allv["input_ids"], allv["attention_mask"], allv["labels"] != -100)
    assert metrics["rhythm/val/waad"].item() == pytest.approx(vtrace.waad.nanmean().item(), rel=1e-5)

    with open(f"{t.logger.log_dir}/metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    logged = [float(r["rhythm/train/waad"]) for r in rows if r.get("rhythm/train/waad")]
    assert len(logged) == 3 and logged[-1] == pytest.approx(metrics["rhythm/train/waad"].item(), rel=1e-6)
    assert any(r.get("rhythm/val/fai") for r in rows)
    assert not any("rhythm" in name for name, _ in module.named_modules())  # the monitor's metrics are its own
    assert module.model.config._attn_implementation == "sdpa"


def test_every_n_steps_picks_steps_1_and_n_plus_1(tmp_path):
    t = trainer(tmp_path, [AttentionRhythmMonitor(every_n_steps=2, on_validation=False)], max_steps=4)
    t.fit(UserModule(), DataLoader(samples(8), batch_size=2))
    with open(f"{t.logger.log_dir}/metrics.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh) if r.get("rhythm/train/waad")]
    assert steps == [0, 2]  # Lightning's CSV step is global_step - 1 at on_train_batch_end: steps 1 and 3


@pytest.mark.parametrize("kind", ["hf", "gpt"], ids=["transformers Llama", "nanoGPT-style (SDPA route)"])
def test_training_is_untouched(tmp_path, kind):
    """Same losses, same weights (hence same gradients) and same RNG state with and without the callback."""

    def run(callbacks, path):
        pl.seed_everything(7)
        # dropout draws random numbers in training
        module = UserModule(dropout=0.3) if kind == "hf" else GPTModule(dropout=0.3)
        t = trainer(path, callbacks, max_steps=4)
        t.fit(module, DataLoader(samples(8), batch_size=2))
        with open(f"{t.logger.log_dir}/metrics.csv") as fh:
            losses = [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
        return losses, module.state_dict(), torch.random.get_rng_state()

    plain = run([], tmp_path / "a")
    watched = run([AttentionRhythmMonitor(every_n_steps=1)], tmp_path / "b")
    assert plain[0] == watched[0] and len(plain[0]) == 4
    assert all(torch.equal(plain[1][k], watched[1][k]) for k in plain[1])
    assert torch.equal(plain[2], watched[2])


def test_custom_batches_through_an_inputs_function(tmp_path):
    class TupleModule(UserModule):
        def training_step(self, batch, batch_idx):
            ids, labels = batch
            return self.model(input_ids=ids, labels=labels).loss

    data = [(s["input_ids"], s["labels"]) for s in samples(4)]
    monitor = AttentionRhythmMonitor(
        every_n_steps=1, inputs=lambda b: {"input_ids": b[0], "response_mask": b[1] != -100}
    )
    t = trainer(tmp_path, [monitor], max_steps=1)
    t.fit(TupleModule(), DataLoader(data, batch_size=2))
    assert math.isfinite(t.callback_metrics["rhythm/train/waad"].item())


def test_bad_configuration(tmp_path):
    with pytest.raises(MisconfigurationException, match="every_n_steps=0"):
        AttentionRhythmMonitor(every_n_steps=0)

    class NoLM(UserModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(2, 2)

    with pytest.raises(MisconfigurationException, match="holds no transformers causal LM"):
        trainer(tmp_path, [AttentionRhythmMonitor()]).fit(NoLM(), DataLoader(samples(2)))
    with pytest.raises(MisconfigurationException, match="model_attr='modle'"):
        trainer(tmp_path, [AttentionRhythmMonitor(model_attr="modle")]).fit(UserModule(), DataLoader(samples(2)))


def test_batch_without_the_keys(tmp_path):
    monitor = AttentionRhythmMonitor(every_n_steps=1, inputs=BatchKeys(labels="targets"))
    with pytest.raises(KeyError, match=r"not \['targets'\]"):
        trainer(tmp_path, [monitor], max_steps=1).fit(UserModule(), DataLoader(samples(2), batch_size=2))


def test_the_users_objects_are_unchanged(tmp_path):
    """The monitor and the report change nothing of the user's: the module's submodules (during the run and
    after), the batch its hooks get, the model's training flags, hooks and attention implementation."""

    class Watched(ValidatedModule):
        def __init__(self):
            super().__init__()
            self.submodules, self.batches = [], []

        def training_step(self, batch, batch_idx):
            self.submodules.append([name for name, _ in self.named_modules()])
            self.batches.append({key: value.clone() for key, value in batch.items()})
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.submodules.append([name for name, _ in self.named_modules()])
            return super().validation_step(batch, batch_idx)

        def on_train_batch_end(self, outputs, batch, batch_idx):  # called after the callbacks' hook
            assert batch.keys() == self.batches[-1].keys()
            assert all(torch.equal(batch[key], value) for key, value in self.batches[-1].items())

    module = Watched()
    before = [name for name, _ in module.named_modules()]
    flags = {name: m.training for name, m in module.named_modules()}
    callbacks = [AttentionRhythmMonitor(every_n_steps=1), RhythmReport(every_n_steps=1, heatmap_size=8, dpi=30)]
    t = trainer(tmp_path, callbacks, max_steps=2)
    with pytest.warns(UserWarning, match="written only as files"):
        t.fit(module, DataLoader(samples(4), batch_size=2), DataLoader(samples(2, seed=3), batch_size=2))
    assert len(module.submodules) == 3 and all(names == before for names in module.submodules)
    assert [name for name, _ in module.named_modules()] == before
    assert {name: m.training for name, m in module.named_modules()} == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    assert module.model.config._attn_implementation == "sdpa"


def pair_up(batch):
    return {"input_ids": batch["input_ids"], "response_mask": batch["labels"] != -100}


@pytest.mark.parametrize("callback", [AttentionRhythmMonitor, RhythmReport])
@pytest.mark.parametrize(
    ("old", "new", "spelled"),
    [
        ({"labels_key": "targets"}, BatchKeys(labels="targets"), "inputs=BatchKeys(labels='targets')"),
        (
            {"input_ids_key": "ids", "attention_mask_key": "mask", "response_mask_key": "response"},
            BatchKeys(input_ids="ids", attention_mask="mask", response_mask="response"),
            "inputs=BatchKeys(input_ids='ids', attention_mask='mask', response_mask='response')",
        ),
        ({"batch_to_inputs": pair_up}, pair_up, "inputs=<your batch_to_inputs function>"),
    ],
    ids=["labels_key", "three keys", "batch_to_inputs"],
)
def test_the_old_batch_keywords_warn_with_the_new_spelling(callback, old, new, spelled):
    with pytest.warns(DeprecationWarning, match=re.escape(spelled)) as record:
        made = callback(**old)
    assert made.inputs == new
    assert [Path(w.filename).name for w in record] == [Path(__file__).name]  # it points at the user's line
    with pytest.raises(MisconfigurationException, match=r"given beside inputs=: pass inputs= alone"):
        callback(inputs=new, **old)


def test_the_old_batch_keywords_still_work(tmp_path):
    data = [{"input_ids": s["input_ids"], "targets": s["labels"], "labels": s["labels"]} for s in samples(2)]
    with pytest.warns(DeprecationWarning, match=r"AttentionRhythmMonitor\(labels_key=\.\.\.\) is deprecated"):
        monitor = AttentionRhythmMonitor(every_n_steps=1, labels_key="targets")

    class Renamed(UserModule):
        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

    module = Renamed()
    t = trainer(tmp_path, [monitor], max_steps=1)
    t.fit(module, DataLoader(data, batch_size=2))
    ids = torch.stack([s["input_ids"] for s in data])
    trace = capture_rhythm(module.model.eval(), ids, None, torch.stack([s["targets"] for s in data]) != -100)
    assert t.callback_metrics["rhythm/train/waad"].item() == pytest.approx(trace.waad.nanmean().item(), rel=1e-5)


@pytest.mark.parametrize("inputs", ["labels", {"labels": "targets"}, 3])
def test_inputs_that_are_neither_keys_nor_a_function(inputs):
    with pytest.raises(MisconfigurationException, match=rf"inputs={re.escape(repr(inputs))}: pass BatchKeys\(\.\.\.\)"):
        AttentionRhythmMonitor(inputs=inputs)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        (lambda batch: batch["input_ids"], KeyError, r"inputs=<lambda> returned a Tensor; it must return a mapping"),
        (
            lambda batch: {"input_ids": batch["input_ids"].tolist(), "response_mask": batch["labels"] != -100},
            TypeError,
            r"inputs=<lambda> returned 'input_ids' as a list; return \[B, N\] tensors",
        ),
        (
            lambda batch: {"input_ids": batch["input_ids"], "response_mask": (batch["labels"] != -100).float()},
            TypeError,
            r"inputs\(batch\)\['response_mask'\] has dtype torch.float32",
        ),
    ],
    ids=["a tensor", "a list", "a float mask"],
)
def test_an_inputs_function_that_returns_something_else(tmp_path, inputs, error, match):
    monitor = AttentionRhythmMonitor(every_n_steps=1, inputs=inputs)
    with pytest.raises(error, match=match):
        trainer(tmp_path, [monitor], max_steps=1).fit(UserModule(), DataLoader(samples(2), batch_size=2))
