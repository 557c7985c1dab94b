"""The rhythm report: figures and HTML page checked against independent computations, and RhythmReport in a Trainer."""

import csv
import math
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_model
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from test_callbacks import PROMPT, UserModule, ValidatedModule, samples, trainer
from test_capture import batch, eager_maps
from torch.utils.data import DataLoader

from lightning_reasonattn import capture_group_maps, capture_rhythm
from lightning_reasonattn.callbacks import BatchKeys, RhythmReport
from lightning_reasonattn.report import (
    default_span,
    rhythm_figures,
    rhythm_html,
    rhythm_markdown,
    write_report,
)
from lightning_reasonattn.report.figures import figure_png

pytest.importorskip("matplotlib")

NASTY = ['<script>alert("x")</script>', "&amp;", "\"'", "</span><b>", " $5 and $", "{{x}}", "$\\frac{$"]


@pytest.fixture(scope="module")
def captured():
    """A tiny model, a batch of two sequences (response from 17 on) and its trace."""
    model = tiny_model("llama")
    ids, am, resp = batch(b=2, n=100)
    trace = capture_rhythm(model, ids, am, resp, horizon=(4, 40))
    tokens = [[f" t{i}" for i in row] for row in ids.tolist()]
    for j, text in enumerate(NASTY):
        tokens[1][30 + j] = text
    return model, ids, am, trace, tokens


class TokenSpans(HTMLParser):
    """Every ``<span class="tok ...">``: its attributes (unescaped by the parser) and its text."""

    def __init__(self):
        super().__init__()
        self.spans, self.depth, self.circles = [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "circle":
            self.circles.append(attrs)
        if tag != "span":
            return
        if self.depth:
            self.depth += 1
        elif "tok" in attrs.get("class", "").split():
            self.spans.append({**attrs, "text": ""})
            self.depth = 1

    def handle_endtag(self, tag):
        if tag == "span" and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.spans[-1]["text"] += data


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_heatmaps_are_the_eager_head_group_means(captured):
    model, ids, am, trace, tokens = captured
    span = default_span(trace, index=1, size=40)
    assert span == (12, 52)  # 40 // 8 = 5 prompt positions before the response
    maps = capture_group_maps(model, ids, trace, am, span=span)
    figure = rhythm_figures(trace, tokens[1], maps, span, index=1)["heatmaps"]
    assert figure_png(figure, dpi=40)[:4] == b"\x89PNG"  # draws, token labels ("$5 and $") taken literally

    dense, _ = eager_maps(model, ids, am)  # [B, L_sel, H, N, N] float64
    flat = dense[1].flatten(0, 1)  # sequence 1's heads
    images = {im.get_gid(): im for ax in figure.axes for im in ax.images}
    assert set(images) == {"local", "global"}
    lower = torch.ones(40, 40).tril().bool()
    for name, heads in (("local", trace.local_heads[1]), ("global", trace.global_heads[1])):
        expected = flat[heads].mean(0)[12:52, 12:52]
        shown = images[name].get_array()
        values = torch.tensor(shown.filled(float("nan")), dtype=torch.float64)
        torch.testing.assert_close(values[lower], expected[lower], atol=1e-5, rtol=0)
        assert shown.mask[~lower].all()  # nothing drawn above the diagonal
        assert tuple(images[name].get_extent()) == (11.5, 51.5, 51.5, 11.5)
    # The edge ticks: anchor columns and preplan rows inside the window.
    ax = images["global"].axes
    marks = {line.get_label(): line for line in ax.lines}
    inside = torch.zeros(100, dtype=torch.bool)
    inside[12:52] = True
    assert list(marks["anchor (column)"].get_xdata()) == (trace.anchor[1] & inside).nonzero().flatten().tolist()
    assert list(marks["preplan (row)"].get_ydata()) == (trace.preplan[1] & inside).nonzero().flatten().tolist()


def test_curves_plot_the_trace(captured):
    _, _, _, trace, tokens = captured
    figure = rhythm_figures(trace, tokens[1], index=1)["curves"]
    lines = {line.get_label(): line for ax in figure.axes for line in ax.lines}
    response = list(range(17, 100))
    for label, signal in (("WAAD (local heads)", trace.waad[1]), ("FAI (global heads)", trace.fai[1])):
        assert list(lines[label].get_xdata()) == response
        ys = lines[label].get_ydata()
        assert all(same(float(y), float(signal[p])) for y, p in zip(ys, response, strict=True))
    assert list(lines["preplan (WAAD jump after)"].get_xdata()) == trace.preplan[1].nonzero().flatten().tolist()
    assert list(lines["anchor"].get_xdata()) == trace.anchor[1].nonzero().flatten().tolist()
    # Sequence 0 differs: the index is honoured.
    other = rhythm_figures(trace, tokens[0], index=0)["curves"]
    waad0 = next(line for ax in other.axes for line in ax.lines if line.get_label() == "WAAD (local heads)")
    assert list(waad0.get_ydata()) != list(lines["WAAD (local heads)"].get_ydata())


def test_default_span():
    def trace_of(resp):
        return capture_rhythm(
            tiny_model("llama", num_hidden_layers=2), torch.arange(resp.shape[-1])[None] % 97, None, resp
        )

    resp = torch.zeros(1, 100, dtype=torch.bool)
    resp[0, 17:] = True
    trace = trace_of(resp)
    assert default_span(trace) == (1, 100)  # all of it fits: from 16 positions before the response
    assert default_span(trace, size=40) == (12, 52)
    assert default_span(trace, size=40, lead=0) == (17, 57)
    right = torch.zeros(1, 50, dtype=torch.bool)
    right[0, 10:30] = True  # e.g. right padding after position 29
    assert default_span(trace_of(right), size=64) == (2, 30)
    with pytest.raises(ValueError, match="size=1"):
        default_span(trace, size=1)


def test_html_holds_every_response_token_escaped_with_its_numbers(captured):
    _, _, _, trace, tokens = captured
    page = rhythm_html(trace, tokens[1], index=1, title="<i>t</i>")
    parser = TokenSpans()
    parser.feed(page)
    response = list(range(17, 100))
    assert [int(s["data-pos"]) for s in parser.spans] == response
    for s in parser.spans:
        p = int(s["data-pos"])
        assert s["text"] == tokens[1][p]
        assert same(float(s["data-waad"]), trace.waad[1, p].item())
        assert same(float(s["data-fai"]), trace.fai[1, p].item())
        assert same(float(s["data-jump"]), trace.waad_jumps[1, p].item())
        classes = set(s["class"].split())
        for mark in ("preplan", "anchor", "dominated", "intro"):
            assert (mark in classes) == bool(getattr(trace, mark)[1, p]), (p, mark)
        assert f"WAAD {trace.waad[1, p].item():.4g}" in s["title"]
    # The curve dots are the preplan (WAAD) and anchor (FAI) tokens with a finite value.
    dots = {mark: [int(c["data-pos"]) for c in parser.circles if c["class"] == mark] for mark in ("preplan", "anchor")}
    assert dots["preplan"] == trace.preplan[1].nonzero().flatten().tolist()
    assert dots["anchor"] == trace.anchor[1].nonzero().flatten().tolist()
    # Untrusted text never becomes markup, and nothing is fetched from the network.
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "http" not in page and "src=" not in page
    assert page.count('type="radio"') == 2  # the WAAD / FAI toggle


def test_html_shows_control_characters_and_rejects_bad_tokens(captured):
    _, _, _, trace, tokens = captured
    odd = list(tokens[0])
    odd[20], odd[21], odd[22] = "\n", "\x1b[31m", ""
    page = rhythm_html(trace, odd, index=0)
    assert "\x1b" not in page and "\\x1b[31m" in page and "↵" in page and "∅" in page
    with pytest.raises(ValueError, match="tokens has 99 entries but the trace has 100 positions"):
        rhythm_html(trace, odd[:-1])
    with pytest.raises(IndexError, match="index=2"):
        rhythm_html(trace, odd, index=2)


def test_markdown_summary_is_escaped(captured):
    _, _, _, trace, tokens = captured
    odd = list(tokens[1])
    top = max(trace.anchor[1].nonzero().flatten().tolist(), key=lambda p: trace.fai[1, p].item())
    odd[top] = "*x* <b>`"
    text = rhythm_markdown(trace, odd, index=1, title="step_3")
    assert "**step\\_3**" in text and f'"\\*x\\* &lt;b&gt;\\`" (#{top}, ' in text


def test_write_report_files(captured, tmp_path):
    model, ids, am, trace, tokens = captured
    span = default_span(trace, 0, size=32)
    maps = capture_group_maps(model, ids, trace, am, span=span)
    paths = write_report(tmp_path / "r", trace, tokens[0], maps, span, dpi=60)
    assert set(paths) == {"curves", "heatmaps", "html"}
    for name in ("curves", "heatmaps"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["html"].read_text(encoding="utf-8").count('src="data:image/png;base64,') == 2
    with pytest.raises(ValueError, match="pass span=\\(start, stop\\)"):
        rhythm_figures(trace, tokens[0], maps, index=0)


def test_write_report_without_matplotlib(captured, tmp_path, monkeypatch):
    _, _, _, trace, tokens = captured
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.warns(UserWarning, match=r"pip install 'lightning-reasonattn\[report\]'"):
        paths = write_report(tmp_path, trace, tokens[0])
    assert set(paths) == {"html"} and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    page = paths["html"].read_text(encoding="utf-8")
    assert "data:image" not in page and "<svg" in page  # the curves still come, as inline SVG


# ------------------------------------------------------------------------------------------ the callback
class WordTokenizer:
    """decode() as a transformers tokenizer has it; id 5 decodes to markup, to check the escaping."""

    def decode(self, ids):
        return "".join("<b>&" if i == 5 else f" w{i}" for i in ids)


def rhythm_warnings(record):
    return [w for w in record if "RhythmReport" in str(w.message)]


def parse(path: Path) -> list[dict]:
    parser = TokenSpans()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.spans


def test_csv_logger_gets_files_and_one_warning(tmp_path):
    train, val = samples(6, seed=1), samples(2, seed=2)
    val[0]["attention_mask"][:5] = 0  # left padding: the report shows the unpadded sequence
    val[0]["labels"][:5] = -100
    module = ValidatedModule()
    report = RhythmReport(every_n_steps=2, tokenizer=WordTokenizer(), sequence_index=1, horizon=(4, 20))
    t = trainer(tmp_path, [report])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t.fit(module, DataLoader(train, batch_size=2), DataLoader(val, batch_size=2))
    found = rhythm_warnings(record)
    assert len(found) == 1 and "CSVLogger cannot show images" in str(found[0].message)

    root = Path(t.log_dir) / "rhythm_report"
    assert sorted(p.name for p in root.iterdir()) == ["step_1", "step_3", "val_step_3"]
    for folder in root.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["curves.png", "heatmaps.png", "report.html"]
    assert report.last_report["html"] == root / "val_step_3" / "report.html"

    # Step 3's report is sequence 1 of step 3's batch under the final weights: recompute it directly.
    ids = train[5]["input_ids"]
    trace = capture_rhythm(module.model.eval(), ids[None], None, (train[5]["labels"] != -100)[None], horizon=(4, 20))
    spans = parse(root / "step_3" / "report.html")
    assert [int(s["data-pos"]) for s in spans] == list(range(PROMPT, len(ids)))
    for s in spans:
        p = int(s["data-pos"])
        assert s["text"] == WordTokenizer().decode([int(ids[p])])
        assert float(s["data-waad"]) == pytest.approx(trace.waad[0, p].item(), abs=1e-5)
        assert ("preplan" in s["class"].split()) == bool(trace.preplan[0, p])
        assert ("anchor" in s["class"].split()) == bool(trace.anchor[0, p])
    val_spans = parse(root / "val_step_3" / "report.html")
    assert len(val_spans) == len(ids) - PROMPT  # val sequence 1 has no padding
    assert module.model.config._attn_implementation == "sdpa"


def test_validate_reports_unpadded_sequence(tmp_path):
    val = samples(2, seed=2)
    val[0]["attention_mask"][:5] = 0
    val[0]["labels"][:5] = -100
    report = RhythmReport(tokenizer=None, horizon=(4, 20))
    t = trainer(tmp_path, [report], logger=False, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="the trainer has no logger"):
        t.validate(ValidatedModule(), DataLoader(val, batch_size=2), verbose=False)
    spans = parse(tmp_path / "rhythm_report" / "val_step_0" / "report.html")
    ids = val[0]["input_ids"]
    assert [s["text"] for s in spans] == [f"{int(i)} " for i in ids[PROMPT:]]  # ids, spaced, without a tokenizer
    assert [int(s["data-pos"]) for s in spans] == list(range(PROMPT - 5, len(ids) - 5))  # padding dropped


def test_training_is_untouched(tmp_path):
    """Same losses, same weights and same RNG state with and without the report."""

    def run(callbacks, path):
        pl.seed_everything(7)
        module = UserModule(dropout=0.3)
        t = trainer(path, callbacks, max_steps=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t.fit(module, DataLoader(samples(6), batch_size=2))
        with open(Path(t.log_dir) / "metrics.csv") as fh:
            losses = [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
        return losses, module.state_dict(), torch.random.get_rng_state(), module.model.training

    plain = run([], tmp_path / "a")
    reported = run([RhythmReport(every_n_steps=2, horizon=(4, 20))], tmp_path / "b")  # after steps 1 and 3
    assert len(list((tmp_path / "b").rglob("step_*/report.html"))) == 2
    assert plain[0] == reported[0] and len(plain[0]) == 3
    assert all(torch.equal(plain[1][k], reported[1][k]) for k in plain[1])
    assert torch.equal(plain[2], reported[2])
    assert reported[3] is True  # the training flag is restored


def test_tensorboard_logger_gets_images_and_text(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    report = RhythmReport(every_n_steps=1, tokenizer=WordTokenizer(), on_validation=False, horizon=(4, 20))
    loggers = [TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")]
    t = trainer(tmp_path, [report], max_steps=2, logger=loggers)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        t.fit(UserModule(), DataLoader(samples(4), batch_size=2))
    assert not rhythm_warnings(record)  # TensorBoard shows the pictures: no warning about the CSV logger
    t.logger.experiment.flush()
    events = EventAccumulator(t.log_dir, size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for picture in ("heatmaps", "curves"):
        shown = events.Images(f"rhythm_report/train/{picture}")
        assert [e.step for e in shown] == [0, 1] and shown[0].width > 500 and shown[0].encoded_image_string
    texts = events.Tensors("rhythm_report/train/summary/text_summary")
    assert len(texts) == 2, tags
    text = texts[-1].tensor_proto.string_val[0].decode()
    assert "Anchor tokens" in text and "rhythm_report/step_2/report.html" in text and "<b>" not in text
    assert (Path(t.log_dir) / "rhythm_report" / "step_2" / "report.html").is_file()


def test_bad_configuration(tmp_path):
    with pytest.raises(MisconfigurationException, match="every_n_steps=0"):
        RhythmReport(every_n_steps=0)
    with pytest.raises(MisconfigurationException, match="tokenizer=object has no decode"):
        RhythmReport(tokenizer=object())
    with pytest.raises(MisconfigurationException, match="sequence_index=-1"):
        RhythmReport(sequence_index=-1)
    with pytest.raises(MisconfigurationException, match="heatmap_size=1"):
        RhythmReport(heatmap_size=1)

    class NoLM(UserModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(2, 2)

    with pytest.raises(MisconfigurationException, match="holds no transformers causal LM"):
        trainer(tmp_path, [RhythmReport()]).fit(NoLM(), DataLoader(samples(2)))
    with pytest.raises(KeyError, match=r"not \['targets'\]"):
        t = trainer(tmp_path, [RhythmReport(every_n_steps=1, inputs=BatchKeys(labels="targets"))], max_steps=1)
        t.fit(UserModule(), DataLoader(samples(2), batch_size=2))
