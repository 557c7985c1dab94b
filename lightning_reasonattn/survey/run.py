"""``reasonattn survey``: the coupling statistics of the rhythm over many sampled responses (the paper's Table 2).

For a causal LM and a set of prompts it samples one response per prompt (batched ``generate`` on left-padded
prompts), measures each batch in one forward pass (the rhythm captured in the same pass whose logits give the
token entropies) and keeps the per-token WAAD, FAI and entropy of every response. The reduction
([`lightning_reasonattn.survey.table`][lightning_reasonattn.survey.table]) counts per response and pools: every
statistic is a ratio of sums over responses, with a percentile bootstrap interval over responses. Definitions:
docs/rhythm.md, "Coupling statistics".

Resumable: each finished batch is written to ``OUT/batches/NNNNN.json`` (plain JSON); a re-run with the same
output folder skips the batches whose prompts are unchanged, and refuses a folder made with other settings.

Python use::

    from lightning_reasonattn.survey import SurveySettings, run_survey

    result = run_survey(SurveySettings(prompts="countdown", n=256), "survey_out")
    print(result["table"][0])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import torch

from ..analysis import write_analysis_report
from ..capture import capture_rhythm
from ..functional import select_layers
from ..models import DEFAULT_MODEL, load_model
from ..outputs import write_whole
from ..rollout.context import check_context
from ..rollout.logprobs import measure
from ..rollout.prompts import encode_prompts, end_ids, pad_id
from ..rollout.sampling import sample_batch
from ..tasks import load_prompts
from ..tasks.table import TASKS
from .knockout import KnockoutSettings, knock_out, summarize_knockout
from .page import write_survey_files
from .progress import SurveyProgress
from .settings import SurveySettings
from .table import rank_coupled, summarize_survey

PROMPT_SETS: dict[str, Callable[[int, int, bool], list[dict[str, Any]]]] = {
    name: task.survey_prompts for name, task in TASKS.items()
}
"""Built-in prompt sets for ``--prompts NAME``: ``name -> fn(n, seed, chat)`` returning records with a
``"prompt"`` (chat messages when ``chat``); one per built-in task (``tasks.table.TASKS``). Register another set by
adding an entry."""

BATCHES = "batches"
KNOCKOUT = "knockout"
SETTINGS_FILE = "survey_settings.json"


# ------------------------------------------------------------------------------------------- prompts
def survey_prompts(settings: SurveySettings, tokenizer) -> list[Any]:
    """The prompts of a survey: strings (used as they are) or chat messages (formatted by the chat template).

    Raises:
        ValueError: an unknown set name that is not a file either, or ``chat="on"`` without a chat template.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if settings.chat == "on" and not has_template:
        raise ValueError("chat='on' but the tokenizer has no chat template: pass --chat off (plain-text prompts).")
    chat = settings.chat == "on" or (settings.chat == "auto" and has_template)
    if settings.prompts in PROMPT_SETS:
        records = PROMPT_SETS[settings.prompts](settings.n, settings.seed, chat)
    else:
        path = Path(settings.prompts)
        if not path.exists():
            raise ValueError(
                f"--prompts {settings.prompts!r} is neither a built-in set ({', '.join(PROMPT_SETS)}) nor an existing "
                "file: pass one of those names or a .jsonl, .json or .parquet file with a prompt column."
            )
        records = load_prompts(path, prompt_column=settings.prompt_column, limit=settings.n)
    prompts = [r["prompt"] for r in records]
    return [[{"role": "user", "content": p}] if chat and isinstance(p, str) else p for p in prompts]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def batch_seed(seed: int, index: int) -> int:
    """The sampling seed of batch ``index``: the same whichever batches a resumed run skips."""
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16)


# ------------------------------------------------------------------------------------------- one batch
@torch.no_grad()
def measure_batch(
    model, tokenizer, prompts: list[Any], settings: SurveySettings, seed: int, *, streamer=None
) -> list[dict[str, Any]]:
    """Sample one response per prompt, capture the batch's rhythm and entropies in one forward, count.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer (not changed: a missing pad token is the first end id here).
        prompts: strings or chat messages.
        settings: the survey's settings.
        seed: the sampling seed of this batch.
        streamer: passed to ``generate`` (the progress of each decoding step).

    Returns:
        one record per response: ``prompt_ids`` and ``response_ids`` (unpadded; the response ends with its EOS
        when it has one), ``truncated``, the per-token ``waad``, ``fai`` and ``entropy`` of the response
        tokens (``None`` where undefined) and its ``global_heads`` (flat indices, as in the trace). Statistics are
        computed from these later, so changing ``look_back``, ``q``, ``coupling_window``, ``peak_fraction`` or
        ``num_buckets`` needs no new measurement.
    """
    device = next(model.parameters()).device
    pad = pad_id(model, tokenizer)
    ids, mask = encode_prompts(tokenizer, prompts, device, pad=pad)
    check_context(model, ids.shape[1], settings.max_new_tokens, setting="--max-new-tokens")
    batch = sample_batch(
        model,
        ids,
        mask,
        eos_ids=end_ids(model, tokenizer),
        pad_id=pad,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k or None,
        seed=seed,  # the process RNG is left as it was
        streamer=streamer,
    )
    # The entropy of the model's own distribution (temperature 1), whatever the sampling temperature.
    measured = measure(model, batch, temperature=1.0, rhythm=settings.rhythm())
    width = batch.width
    signals = {
        "waad": measured.trace.waad[:, -width:],
        "fai": measured.trace.fai[:, -width:],
        "entropy": measured.entropy,
    }
    records = []
    for row in range(len(prompts)):
        keep = batch.completion_mask[row]
        records.append(
            {
                "prompt_ids": ids[row][mask[row].bool()].tolist(),
                "response_ids": batch.completion_ids[row][keep].tolist(),
                "truncated": bool(batch.truncated[row]),
                **{name: _floats(value[row][keep]) for name, value in signals.items()},
                "global_heads": measured.trace.global_heads[row].tolist(),
            }
        )
    return records


def _floats(values: torch.Tensor) -> list[float | None]:
    """A signal as JSON numbers (``None`` for NaN)."""
    return [None if v != v else v for v in values.float().cpu().tolist()]


# ------------------------------------------------------------------------------------------- the folder
def prepare_folder(out_dir: str | Path, settings: SurveySettings) -> Path:
    """Create ``out_dir`` (or check that it was made with the same settings) and write its settings file.

    Raises:
        ValueError: the folder holds a survey made with other settings (the message lists them).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file: pass a folder (it is created if needed).")
    saved_path = out / SETTINGS_FILE
    start_again = f"pass another --out folder, or remove {out} to start a new survey there"
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # (a JSONDecodeError, or text that is not UTF-8)
            raise ValueError(f"{saved_path} is unreadable ({exc}): {start_again}.") from None
        problem = _settings_problem(saved)
        if problem:
            raise ValueError(f"{saved_path} holds {problem}, not a survey's settings: {start_again}.")
        if saved.get("fingerprint") != settings.fingerprint():
            old, new = saved.get("settings", {}), settings.measured()
            changed = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(new) if old.get(k) != new[k]]
            raise ValueError(
                f"{out} holds a survey made with other settings ({'; '.join(changed) or 'unknown'}): "
                "rerun with those settings to resume it, or pass another --out folder."
            )
    elif out.is_dir() and any(out.iterdir()):  # not a survey's folder: its files (index.html, ...) are the user's
        raise ValueError(
            f"--out {str(out)!r} holds files but no {SETTINGS_FILE}, so no survey: a survey would overwrite its "
            f"index.html, table.md, survey.json: pass a new or empty --out folder (or one of an earlier survey)."
        )
    (out / BATCHES).mkdir(parents=True, exist_ok=True)
    record = {"fingerprint": settings.fingerprint(), "settings": settings.measured()}
    _write_json(saved_path, record)
    return out


def _settings_problem(saved: Any) -> str | None:
    """What is wrong with the contents of a survey's settings file, or ``None``."""
    if not isinstance(saved, dict):
        return f"a JSON {type(saved).__name__}"
    for key, kind in (("fingerprint", str), ("settings", dict)):
        if key in saved and not isinstance(saved[key], kind):
            return f"{key!r}: {_brief(saved[key])} ({type(saved[key]).__name__})"
    return None


def _brief(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_json(path: Path, value: Any) -> None:
    """Write atomically: an interrupted run leaves the old file or none, never half a file."""
    write_whole(path, json.dumps(value, allow_nan=False))


def _load_batch(path: Path, digest: str) -> list[dict[str, Any]] | None:
    """The finished batch at ``path`` if it is complete and holds the same prompts, else ``None``."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(saved, dict) or saved.get("prompts") != digest or not isinstance(saved.get("responses"), list):
        return None
    return saved["responses"]


# ------------------------------------------------------------------------------------------- the run
def collect(
    model, tokenizer, settings: SurveySettings, out: Path, stream: TextIO | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure (or reuse) every batch of the survey; return the responses in prompt order and run facts."""
    prompts = survey_prompts(settings, tokenizer)
    if not prompts:
        raise ValueError(f"--prompts {settings.prompts!r} holds no prompt.")
    size = settings.batch_size
    progress = SurveyProgress(len(prompts), math.ceil(len(prompts) / size), settings.max_new_tokens, stream)
    responses: list[dict[str, Any]] = []
    reused = measured = 0
    measuring = seconds = 0.0
    for index in range(math.ceil(len(prompts) / size)):
        chunk = prompts[index * size : (index + 1) * size]
        digest = _digest(chunk)
        path = out / BATCHES / f"{index:05d}.json"
        found = _load_batch(path, digest) if path.exists() else None
        fresh = found is None
        if fresh:
            start = time.perf_counter()
            steps = progress.streamer(index, len(chunk), end_ids(model, tokenizer))
            found = measure_batch(model, tokenizer, chunk, settings, batch_seed(settings.seed, index), streamer=steps)
            _write_json(path, {"prompts": digest, "responses": found})
            seconds = time.perf_counter() - start
            measuring += seconds
            measured += len(chunk)
        else:
            reused += 1
        for offset, record in enumerate(found):
            responses.append({**record, "prompt_index": index * size + offset})
        progress.update(len(chunk), fresh, seconds)
    facts = {
        "batches": math.ceil(len(prompts) / size),
        "reused_batches": reused,
        "measured_responses": measured,
        "measuring_s": round(measuring, 1),
        "responses_per_s": round(measured / measuring, 3) if measuring > 0 else None,
    }
    return responses, facts


def collect_knockout(
    model,
    tokenizer,
    responses: list[dict[str, Any]],
    settings: SurveySettings,
    knockout: KnockoutSettings,
    out: Path,
    stream: TextIO | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Knock out (or reuse) every batch of responses (``OUT/knockout/NNNNN.json``); return the records in prompt
    order and run facts. See [`lightning_reasonattn.survey.knockout`][lightning_reasonattn.survey.knockout]."""
    (out / KNOCKOUT).mkdir(exist_ok=True)
    options = dict(layers=measured_layers(model, settings.layers), answers=settings.prompts in PROMPT_SETS)
    fingerprint = knockout.fingerprint(settings)
    size = settings.batch_size
    batches = math.ceil(len(responses) / size)
    records: list[dict[str, Any]] = []
    seconds = 0.0
    measured = reused = 0
    for index in range(batches):
        chunk = responses[index * size : (index + 1) * size]
        digest = _digest([fingerprint, [[r["prompt_ids"], r["response_ids"]] for r in chunk]])
        path = out / KNOCKOUT / f"{index:05d}.json"
        found = _load_batch(path, digest) if path.exists() else None
        if found is None:
            start = time.perf_counter()
            found = [
                # (the batch's sampling seed function, keyed to the prompt: the same draws whatever is resumed)
                knock_out(model, tokenizer, r, settings, knockout, generator=_generator(settings, r), **options)
                for r in chunk
            ]
            _write_json(path, {"prompts": digest, "responses": found})
            seconds += time.perf_counter() - start
            measured += len(chunk)
            if stream is not None:
                print(f"knockout: batch {index + 1}/{batches} done, {seconds:.0f} s so far", file=stream)
        else:
            reused += 1
        records.extend(found)
    return records, {"knockout_s": round(seconds, 1), "knockout_responses": measured, "knockout_reused_batches": reused}


def _generator(settings: SurveySettings, record: dict[str, Any]) -> torch.Generator:
    return torch.Generator().manual_seed(batch_seed(settings.seed, record["prompt_index"]))


# ------------------------------------------------------------------------------------------- reports and result
def write_response_reports(
    model,
    tokenizer,
    responses: list[dict[str, Any]],
    per_response: list[dict[str, Any]],
    indices: list[int],
    out: Path,
    name: str,
    settings: SurveySettings,
) -> list[dict[str, Any]]:
    """The rhythm report of each chosen response (measured alone, without padding) in ``out/responses/NAME-i``.

    Returns:
        one entry per response: ``index``, ``prompt_index``, ``lift``, ``fai_peaks``, ``tokens``, ``preview`` and
        ``report`` (the page's path relative to ``out``).
    """
    device = next(model.parameters()).device
    items = []
    for rank, index in enumerate(indices, 1):
        record = responses[index]
        ids = torch.tensor([record["prompt_ids"] + record["response_ids"]], device=device)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, len(record["prompt_ids"]) :] = True
        trace = capture_rhythm(model, ids, response_mask=mask, **settings.capture_kwargs()).to("cpu")
        lift = per_response[index]["lift"]
        folder = Path("responses") / f"{name}-{rank}"
        title = f"response {index} ({name} coupled #{rank}, lift {lift:.2f})"
        paths = write_analysis_report(model, tokenizer, ids.cpu(), trace, out_dir=str(out / folder), title=title)
        items.append(
            {
                "index": index,
                "prompt_index": record["prompt_index"],
                "lift": lift,
                "fai_peaks": per_response[index]["fai_peaks"],
                "tokens": len(record["response_ids"]),
                "preview": tokenizer.decode(record["response_ids"][:60]),
                "report": paths["html"].relative_to(out).as_posix(),
            }
        )
    return items


def measured_layers(model, layers: str | list[int]) -> list[int]:
    """The layer indices a selection (``"middle"``, ``"all"`` or indices) stands for in ``model``: what was measured."""
    return select_layers(model.config.get_text_config().num_hidden_layers, layers)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def run_survey(
    settings: SurveySettings,
    out_dir: str | Path,
    model=None,
    tokenizer=None,
    progress: TextIO | bool = True,
    *,
    knockout: KnockoutSettings | bool | None = False,
) -> dict[str, Any]:
    """Run a survey (or finish one) and write ``survey.json``, ``table.md``, ``profiles.png``, ``index.html`` and
    the per-response reports into ``out_dir``.

    Args:
        settings: what to measure.
        out_dir: output folder; a folder of an unfinished survey with the same settings is resumed.
        model: an already loaded causal LM (default: loaded from ``settings.model``).
        tokenizer: its tokenizer (given with ``model``).
        progress: show the progress line on standard error (``True``), not at all (``False``), or on a stream.
        knockout: also knock each response's anchors and controls out of the attention and measure what the rest
            of the response loses (``True`` for the default
            [`KnockoutSettings`][lightning_reasonattn.survey.knockout.KnockoutSettings]); a folder surveyed without
            it is finished with it, its sampled batches reused.

    Returns:
        the ``survey.json`` record: ``settings``, ``fingerprint``, ``model``, ``layers`` (the layer indices measured,
        which ``settings["layers"]`` such as ``"middle"`` resolved to), ``run`` (date, machine, times),
        ``table``, ``profiles``, ``coupled`` (most / least coupled responses), ``per_response`` and, with
        ``knockout``, ``knockout`` (its settings and groups, see
        [`summarize_knockout`][lightning_reasonattn.survey.knockout.summarize_knockout]).

    Raises:
        ValueError: bad settings, prompts or output folder (the message says the fix).
    """
    if knockout is True:
        knockout = KnockoutSettings()
    elif knockout not in (False, None) and not isinstance(knockout, KnockoutSettings):
        raise ValueError(
            f"knockout={knockout!r}: pass True, False or KnockoutSettings(count=...) (tokens per group, default 4)."
        )
    out = prepare_folder(out_dir, settings)
    if model is None:
        model, tokenizer = load_model(settings.model, device=settings.device)
    elif tokenizer is None:
        raise ValueError("run_survey got a model without its tokenizer: pass both, or neither to load settings.model.")
    start = time.perf_counter()
    stream = sys.stderr if progress is True else (progress or None)
    responses, facts = collect(model, tokenizer, settings, out, stream)
    result = {
        "model": settings.model or DEFAULT_MODEL,
        "fingerprint": settings.fingerprint(),
        "settings": settings.as_dict(),
        "layers": measured_layers(model, settings.layers),
        **summarize_survey(responses, settings),
    }
    if knockout:
        records, knocked = collect_knockout(model, tokenizer, responses, settings, knockout, out, stream)
        stats = dict(n_boot=settings.n_boot, level=settings.level, seed=settings.seed)
        result["knockout"] = {"settings": asdict(knockout), **summarize_knockout(records, **stats)}
        facts.update(knocked)
    most, least = rank_coupled(result["per_response"], settings.reports)
    result["coupled"] = {
        name: write_response_reports(
            model,
            tokenizer,
            responses,
            per_response=result["per_response"],
            indices=chosen,
            out=out,
            name=name,
            settings=settings,
        )
        for name, chosen in (("most", most), ("least", least))
    }
    device = next(model.parameters()).device
    result["run"] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": _machine(device),
        "device": str(device),
        "wall_s": round(time.perf_counter() - start, 1),
        **facts,
    }
    write_survey_files(out, result)
    return result
