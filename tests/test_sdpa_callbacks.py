"""AttentionRhythmMonitor and RhythmReport in a Trainer on a nanoGPT-style model (the SDPA route), one process.

Training untouched by the monitor: tests/test_callbacks.py; two processes under DDP: tests/test_ddp.py (both
parametrized over a transformers Llama and this model).
"""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from test_callbacks import samples, trainer
from tiny_gpt import GPTModule, TinyGPT, ValidatedGPTModule
from torch.utils.data import DataLoader

from lightning_reasonattn import AttentionRhythmMonitor, RhythmReport, capture_rhythm
from lightning_reasonattn.functional.coupling import token_entropy

HORIZON = (4, 24)


def stacked(rows):
    return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}


def test_monitor_logs_equal_a_direct_capture(tmp_path):
    train, val = samples(4, seed=1), samples(3, seed=2)
    module = ValidatedGPTModule(n_kv_head=2)
    monitor = AttentionRhythmMonitor(every_n_steps=1, horizon=HORIZON)
    t = trainer(tmp_path, [monitor], max_steps=2)
    t.fit(module, DataLoader(train, batch_size=2), DataLoader(val, batch_size=3))
    metrics = t.callback_metrics

    last = stacked(train[2:4])  # measured after step 2, on its batch, under the final weights
    model = module.model.eval()
    trace, logits = capture_rhythm(
        model, last["input_ids"], last["attention_mask"], last["labels"] != -100, horizon=HORIZON, return_outputs=True
    )
    assert metrics["rhythm/train/waad"].item() == pytest.approx(trace.waad.nanmean().item(), rel=1e-5)
    assert metrics["rhythm/train/fai"].item() == pytest.approx(trace.fai.nanmean().item(), rel=1e-5)
    entropy = token_entropy(logits)[trace.response_mask]  # the model returns logits for every token
    assert metrics["rhythm/train/entropy_mean"].item() == pytest.approx(entropy.mean().item(), rel=1e-5)
    allv = stacked(val)
    vtrace = capture_rhythm(model, allv["input_ids"], allv["attention_mask"], allv["labels"] != -100, horizon=HORIZON)
    assert metrics["rhythm/val/waad"].item() == pytest.approx(vtrace.waad.nanmean().item(), rel=1e-5)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_report_draws_a_plain_gpt(tmp_path):
    report = RhythmReport(every_n_steps=2, heatmap_size=16, dpi=40, horizon=HORIZON)
    t = trainer(tmp_path, [report], max_steps=3)
    with pytest.warns(UserWarning, match="written only as files"):
        t.fit(GPTModule(), DataLoader(samples(6), batch_size=2))
    assert sorted(p.parent.name for p in (tmp_path / "lightning_logs").rglob("report.html")) == ["step_1", "step_3"]
    assert set(report.last_report) == {"html", "curves", "heatmaps"}


class SelfGPT(pl.LightningModule):
    """A LightningModule that is the GPT itself: its own blocks, its forward takes the ids."""

    def __init__(self):
        super().__init__()
        gpt = TinyGPT().train()
        self.transformer, self.lm_head = gpt.transformer, gpt.lm_head

    def forward(self, input_ids):
        return TinyGPT.run(self, input_ids)

    def training_step(self, batch, batch_idx):
        return self(batch["input_ids"]).logsumexp(-1).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("make", "options"),
    [
        (SelfGPT, {}),
        (GPTModule, {"model_attr": "model", "attention_modules": "transformer.h.*.attn", "layers": [1, 2]}),
        (GPTModule, {"forward": lambda model, ids, mask: model.run(ids, mask)}),
    ],
    ids=["the module is the GPT", "model_attr and a pattern", "own forward"],
)
def test_the_model_is_found(tmp_path, make, options):
    monitor = AttentionRhythmMonitor(every_n_steps=1, on_validation=False, horizon=HORIZON, **options)
    module = make()
    t = trainer(tmp_path, [monitor], max_steps=1)
    t.fit(module, DataLoader(samples(2), batch_size=2))
    batch = stacked(samples(2))
    model = module if make is SelfGPT else module.model
    kwargs = {k: v for k, v in options.items() if k != "model_attr"}
    # measured after the one step, on its batch: the final weights
    trace = capture_rhythm(model.eval(), batch["input_ids"], None, batch["labels"] != -100, horizon=HORIZON, **kwargs)
    assert trace.layers == options.get("layers", [1, 2])
    assert t.callback_metrics["rhythm/train/waad"].item() == pytest.approx(trace.waad.nanmean().item(), rel=1e-5)


def test_plain_models_that_cannot_be_measured(tmp_path):
    class TwoStacks(GPTModule):
        def __init__(self):
            super().__init__()
            self.heads = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(MisconfigurationException, match="holds no transformers causal LM.*one stack of blocks"):
        trainer(tmp_path, [AttentionRhythmMonitor()]).fit(TwoStacks(), DataLoader(samples(2)))
    with pytest.raises(MisconfigurationException, match="model_attr='model': attention_modules='h.*' matches no"):
        monitor = AttentionRhythmMonitor(model_attr="model", attention_modules="h.*")
        trainer(tmp_path, [monitor]).fit(GPTModule(), DataLoader(samples(2)))
