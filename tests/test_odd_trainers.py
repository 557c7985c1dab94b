"""The callbacks in Trainers that step, evaluate or log in other ways than one optimizer step per batch.

Each test runs a user's module in such a Trainer and checks the rows the monitor writes (their steps, from the
CSV file) against a direct ``capture_rhythm`` of the batch it should have measured, under the weights it should
have measured it with (copied by a recorder callback that runs before the monitor). ``BAD_INPUTS`` lists the
Trainers tried (counted in docs/troubleshooting.md, Robustness).
"""

from __future__ import annotations

import copy
import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import BadInput
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_callbacks import UserModule, ValidatedModule, samples, trainer
from torch.utils.data import DataLoader

from lightning_reasonattn import AttentionRhythmMonitor, RhythmReport, capture_rhythm

WAAD = "rhythm/train/waad"


class Recorder(Callback):
    """Each training batch, in order: whether the optimizer stepped on it, the batch, the model after it."""

    def __init__(self):
        self.batches: list[tuple[bool, dict, torch.nn.Module]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stepped = trainer.global_step != self._before
        self.batches.append((stepped, {k: v.clone() for k, v in batch.items()}, copy.deepcopy(pl_module.model)))


def waad_of(model: torch.nn.Module, batches: list[dict], **settings) -> float:
    """Mean WAAD over the response tokens of ``batches`` (pooled), measured directly."""
    total = count = 0.0
    for batch in batches:
        response = batch["labels"] != -100
        trace = capture_rhythm(model.eval(), batch["input_ids"], batch["attention_mask"], response, **settings)
        total += trace.waad.nansum().item()
        count += trace.waad.isfinite().sum().item()
    return total / count


def logged(t: pl.Trainer, name: str = WAAD) -> list[tuple[int, float]]:
    """``(step, value)`` of every row of ``name`` in the run's metrics.csv."""
    path = Path(t.logger.log_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(fh) if r.get(name)]


def expect(t: pl.Trainer, rows: list[tuple[int, tuple[bool, dict, torch.nn.Module]]], name: str = WAAD) -> None:
    """The rows of ``name`` are at these steps, each the WAAD of that recorded batch under its recorded model."""
    got = logged(t, name)
    assert [step for step, _ in got] == [step for step, _ in rows]
    for (_, value), (_, (stepped, batch, model)) in zip(got, rows, strict=True):
        assert stepped
        assert value == pytest.approx(waad_of(model, [batch]), rel=1e-5)


def batches(data: list[dict], size: int) -> list[dict]:
    return [{k: torch.stack([s[k] for s in data[i : i + size]]) for k in data[0]} for i in range(0, len(data), size)]


# ------------------------------------------------------------------------------------------ training
class TwoOptimizers(UserModule):
    """Manual optimization, two optimizer steps per batch (a GAN's shape): trainer.global_step moves by 2."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers():
            loss = self.model(**batch).loss
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def configure_optimizers(self):
        params = list(self.model.parameters())
        return torch.optim.SGD(params[::2], lr=0.5), torch.optim.SGD(params[1::2], lr=0.5)


def test_manual_optimization_counts_a_batch_once(tmp_path):
    recorder = Recorder()
    t = trainer(tmp_path, [recorder, AttentionRhythmMonitor(every_n_steps=3)], max_steps=8)
    t.fit(TwoOptimizers(), DataLoader(samples(8), batch_size=2))
    assert t.global_step == 8 and len(recorder.batches) == 4
    expect(t, [(0, recorder.batches[0]), (3, recorder.batches[3])])  # training steps 1 and 4: every 3rd batch


def test_gradient_accumulation_measures_the_stepped_micro_batch(tmp_path):
    recorder = Recorder()
    t = trainer(tmp_path, [recorder, AttentionRhythmMonitor(every_n_steps=1)], max_steps=3, accumulate_grad_batches=2)
    t.fit(UserModule(), DataLoader(samples(12), batch_size=2))
    expect(t, [(step, recorder.batches[2 * step + 1]) for step in range(3)])  # one row per step, none before it


def test_accumulation_with_a_short_last_step(tmp_path):
    """3 batches an epoch, 2 accumulated: Lightning steps after batch 2 and after batch 3 (the epoch's end)."""
    recorder = Recorder()
    monitor = AttentionRhythmMonitor(every_n_steps=1)
    kw = dict(max_steps=-1, max_epochs=2, limit_train_batches=3, accumulate_grad_batches=2)
    t = trainer(tmp_path, [recorder, monitor], **kw)
    t.fit(UserModule(), DataLoader(samples(12), batch_size=2))
    stepped = [b for b in recorder.batches if b[0]]
    assert len(recorder.batches) == 6 and len(stepped) == 4
    expect(t, list(enumerate(stepped)))


def test_a_monitor_reused_in_a_second_trainer(tmp_path):
    monitor = AttentionRhythmMonitor(every_n_steps=1)
    trainer(tmp_path / "first", [monitor], max_steps=1).fit(UserModule(), DataLoader(samples(2), batch_size=2))
    recorder = Recorder()
    t = trainer(tmp_path / "second", [recorder, monitor], max_steps=3)
    t.fit(UserModule(), DataLoader(samples(6), batch_size=2))
    expect(t, list(enumerate(recorder.batches)))  # step 1 too, though the first Trainer ended at step 1


# Lightning says so of every resume into the folder of its checkpoints, as a resume does.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_resumed_run_measures_the_steps_of_the_uninterrupted_run(tmp_path):
    def run(name, max_steps, ckpt_path=None):
        pl.seed_everything(0)
        recorder = Recorder()
        folder = tmp_path / ("full" if name == "full" else "interrupted") / "ckpt"  # a resume saves where it was
        save = ModelCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=1)
        callbacks = [recorder, AttentionRhythmMonitor(every_n_steps=2), save]
        t = trainer(tmp_path / name, callbacks, max_steps=max_steps, enable_checkpointing=True)
        t.fit(UserModule(), DataLoader(samples(6), batch_size=2), ckpt_path=ckpt_path)  # 3 batches an epoch
        return t, recorder

    full, recorder = run("full", 6)
    expect(full, [(0, recorder.batches[0]), (2, recorder.batches[2]), (4, recorder.batches[4])])
    run("first", 3)  # stopped at the end of the first epoch
    resumed, recorder = run("resumed", 6, tmp_path / "interrupted" / "ckpt" / "last.ckpt")
    assert len(recorder.batches) == 3  # steps 4 to 6
    expect(resumed, [(4, recorder.batches[1])])
    assert logged(resumed)[0][1] == pytest.approx(logged(full)[-1][1], rel=1e-5)  # the same batch and weights


def test_log_every_n_steps_larger_than_every_n_steps(tmp_path):
    recorder = Recorder()
    monitor = AttentionRhythmMonitor(every_n_steps=2)
    t = trainer(tmp_path, [recorder, monitor], max_steps=6, log_every_n_steps=4)
    t.fit(UserModule(), DataLoader(samples(12), batch_size=2))
    expect(t, [(step, recorder.batches[step]) for step in (0, 2, 4)])
    assert [step for step, _ in logged(t, "train_loss")] == [3]  # Lightning's own rows: every 4th step


def test_tensorboard_gets_the_rows_of_the_csv_file(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorder = Recorder()
    loggers = [CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")]
    t = trainer(tmp_path, [recorder, AttentionRhythmMonitor(every_n_steps=2)], max_steps=3, logger=loggers)
    t.fit(UserModule(), DataLoader(samples(6), batch_size=2))
    expect(t, [(0, recorder.batches[0]), (2, recorder.batches[2])])
    loggers[1].experiment.flush()
    events = EventAccumulator(loggers[1].log_dir)
    events.Reload()
    board = [(e.step, e.value) for e in events.Scalars(WAAD)]
    assert board == [(step, pytest.approx(value, rel=1e-6)) for step, value in logged(t)]


# ------------------------------------------------------------------------------------------ evaluation
class EvaluatedModule(ValidatedModule):
    """Validation on any number of dataloaders, test and predict steps."""

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("val_loss", self.model(**batch).loss)

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self.model(**batch).loss)

    def predict_step(self, batch, batch_idx):
        return self.model(input_ids=batch["input_ids"]).logits.argmax(-1)


def test_two_monitors_on_one_module(tmp_path):
    module = EvaluatedModule()
    first = AttentionRhythmMonitor(every_n_steps=1, prefix="short/", horizon=(4, 24))
    second = AttentionRhythmMonitor(every_n_steps=1, prefix="long/", max_sequences=1)
    recorder = Recorder()
    val = samples(4, seed=3)
    t = trainer(tmp_path, [recorder, first, second], max_steps=1)
    t.fit(module, DataLoader(samples(2), batch_size=2), DataLoader(val, batch_size=2))
    _, batch, model = recorder.batches[0]
    one = {k: v[:1] for k, v in batch.items()}
    metrics = t.callback_metrics
    assert metrics["short/train/waad"].item() == pytest.approx(waad_of(model, [batch], horizon=(4, 24)), rel=1e-5)
    assert metrics["long/train/waad"].item() == pytest.approx(waad_of(model, [one]), rel=1e-5)
    firsts = [{k: v[:1] for k, v in b.items()} for b in batches(val, 2)]
    assert metrics["short/val/waad"].item() == pytest.approx(waad_of(model, batches(val, 2), horizon=(4, 24)), rel=1e-5)
    assert metrics["long/val/waad"].item() == pytest.approx(waad_of(model, firsts), rel=1e-5)


@pytest.mark.parametrize("run", ["validate", "test", "predict"])
def test_evaluation_runs(tmp_path, run):
    module = EvaluatedModule()
    data = samples(4, seed=4)
    t = trainer(tmp_path, [AttentionRhythmMonitor()])
    getattr(t, run)(module, DataLoader(data, batch_size=2), **({} if run == "predict" else {"verbose": False}))
    measured = {name for name in t.callback_metrics if name.startswith("rhythm/")}
    if run == "predict":  # not measured: a prediction batch has no response as a rule
        assert not measured
        return
    split = "val" if run == "validate" else "test"
    name = f"rhythm/{split}/waad"
    assert t.callback_metrics[name].item() == pytest.approx(waad_of(module.model, batches(data, 2)), rel=1e-5)
    assert [step for step, _ in logged(t, name)] == [0]


def test_several_validation_dataloaders(tmp_path):
    module = EvaluatedModule()
    sets = [samples(2, seed=5), samples(4, seed=6)]
    t = trainer(tmp_path, [AttentionRhythmMonitor()])
    t.validate(module, [DataLoader(s, batch_size=2) for s in sets], verbose=False)
    for index, data in enumerate(sets):
        value = t.callback_metrics[f"rhythm/val/waad/dataloader_idx_{index}"].item()
        assert value == pytest.approx(waad_of(module.model, batches(data, 2)), rel=1e-5)
    assert "rhythm/val/waad" not in t.callback_metrics


def test_an_epoch_without_a_response_logs_nothing(tmp_path):
    data = samples(2, seed=7)
    for s in data:
        s["labels"][:] = -100  # prompts only
    t = trainer(tmp_path, [AttentionRhythmMonitor()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.validate(EvaluatedModule(), DataLoader(data, batch_size=2), verbose=False)
    assert not [name for name in t.callback_metrics if name.startswith("rhythm/")]
    assert not [w for w in caught if "compute" in str(w.message)], [str(w.message) for w in caught]


# ------------------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    """A user's own batch class."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def collate(items: list[dict]) -> Batch:
    return Batch(torch.stack([s["input_ids"] for s in items]), torch.stack([s["labels"] for s in items]))


class ObjectModule(UserModule):
    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch.input_ids, labels=batch.labels).loss


def test_a_batch_of_the_users_own_class(tmp_path):
    loader = DataLoader(samples(2), batch_size=2, collate_fn=collate)
    with pytest.raises(KeyError, match=r"the batch is a Batch, not a mapping .*pass inputs=fn\(batch\)"):
        trainer(tmp_path, [AttentionRhythmMonitor(every_n_steps=1)], max_steps=1).fit(ObjectModule(), loader)

    def inputs(batch):
        return {"input_ids": batch.input_ids, "response_mask": batch.labels != -100}

    module = ObjectModule()
    t = trainer(tmp_path, [AttentionRhythmMonitor(every_n_steps=1, inputs=inputs)], max_steps=1)
    t.fit(module, loader)
    batch = batches(samples(2), 2)[0]
    assert t.callback_metrics[WAAD].item() == pytest.approx(waad_of(module.model, [batch]), rel=1e-5)


# ------------------------------------------------------------------------------------------ the report
def folders(t: pl.Trainer) -> list[str]:
    return sorted(p.parent.name for p in Path(t.log_dir).rglob("report.html"))


@pytest.mark.parametrize(
    ("make", "kw", "expected"),
    [
        (UserModule, dict(max_steps=2, accumulate_grad_batches=2), ["step_1", "step_2"]),
        (TwoOptimizers, dict(max_steps=8), ["step_2", "step_8"]),  # training steps 1 and 4; global_step counts both
    ],
    ids=["gradient accumulation", "two optimizers"],
)
def test_the_report_in_odd_trainers(tmp_path, make, kw, expected):
    report = RhythmReport(every_n_steps=3 if make is TwoOptimizers else 1, heatmap_size=8, dpi=30, horizon=(4, 20))
    t = trainer(tmp_path, [report], **kw)
    with pytest.warns(UserWarning, match="written only as files"):
        t.fit(make(), DataLoader(samples(8), batch_size=2))
    assert folders(t) == expected


def test_the_report_in_a_test_run_and_a_second_trainer(tmp_path):
    report = RhythmReport(every_n_steps=1, heatmap_size=8, dpi=30, horizon=(4, 20))
    with pytest.warns(UserWarning, match="written only as files"):
        trainer(tmp_path / "a", [report], max_steps=1).fit(UserModule(), DataLoader(samples(2), batch_size=2))
    t = trainer(tmp_path / "b", [report], max_steps=2)
    t.fit(UserModule(), DataLoader(samples(4), batch_size=2))
    assert folders(t) == ["step_1", "step_2"]
    t = trainer(tmp_path / "c", [report])
    t.test(EvaluatedModule(), DataLoader(samples(4), batch_size=2), verbose=False)
    assert folders(t) == ["test_step_0"]


B = BadInput
BAD_INPUTS = [
    B("manual optimization, two optimizer steps per batch", "test_manual_optimization_counts_a_batch_once"),
    B("gradient accumulation", "test_gradient_accumulation_measures_the_stepped_micro_batch"),
    B("accumulation with a short last step (limit_train_batches)", "test_accumulation_with_a_short_last_step"),
    B("a monitor reused in a second Trainer", "test_a_monitor_reused_in_a_second_trainer"),
    B("a resumed run", "test_a_resumed_run_measures_the_steps_of_the_uninterrupted_run"),
    B("log_every_n_steps larger than every_n_steps", "test_log_every_n_steps_larger_than_every_n_steps"),
    B("TensorBoardLogger beside CSVLogger", "test_tensorboard_gets_the_rows_of_the_csv_file"),
    B("two monitors on one module", "test_two_monitors_on_one_module"),
    B("trainer.validate alone", "test_evaluation_runs"),
    B("trainer.test", "test_evaluation_runs"),
    B("trainer.predict", "test_evaluation_runs"),
    B("two validation dataloaders", "test_several_validation_dataloaders"),
    B("a validation epoch without any response", "test_an_epoch_without_a_response_logs_nothing"),
    B("a batch of the user's own class, without inputs=", "test_a_batch_of_the_users_own_class"),
    B("a batch of the user's own class, with inputs=fn", "test_a_batch_of_the_users_own_class"),
    B("the report under gradient accumulation", "test_the_report_in_odd_trainers"),
    B("the report under two optimizer steps per batch", "test_the_report_in_odd_trainers"),
    B("the report reused in a second Trainer", "test_the_report_in_a_test_run_and_a_second_trainer"),
    B("the report in trainer.test", "test_the_report_in_a_test_run_and_a_second_trainer"),
]
