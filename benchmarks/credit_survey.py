"""Credit strategies compared from scratch: the rhythm's coupling statistics of a model, before and after RL.

The statistics of ``reasonattn survey`` (docs/rhythm.md, "Coupling statistics"), here through
[`RhythmCoupling`][lightning_reasonattn.metrics.RhythmCoupling] on completions sampled as the RL rollouts are (keyed,
temperature 1) from held-out prompts: the FAI-preceded and WAAD-followed lifts (1 = no coupling) and the entropy
at WAAD peaks over the mean entropy (the paper's 0.361 / 0.239 = 1.51).
"""

from __future__ import annotations

import torch

from lightning_reasonattn.functional.keyed import mix
from lightning_reasonattn.metrics import RhythmCoupling
from lightning_reasonattn.rollout.logprobs import measure
from lightning_reasonattn.rollout.prompts import encode_prompts
from lightning_reasonattn.rollout.sampling import sample_batch
from lightning_reasonattn.settings import RhythmSettings

SURVEY_STREAM = 7  # the keyed stream of the survey's samples (the RL runs sample on streams 1 and 2)


@torch.no_grad()
def coupling_statistics(
    model, tokenizer, records: list[dict], rhythm: RhythmSettings, max_new_tokens: int, seed: int = 0, batch: int = 64
) -> dict[str, float]:
    """The coupling statistics of ``model`` over one keyed sample (temperature 1) for each of ``records``."""
    model.eval()
    metric = RhythmCoupling()
    for b0 in range(0, len(records), batch):
        chunk = records[b0 : b0 + batch]
        ids, mask = encode_prompts(tokenizer, [r["prompt"] for r in chunk])
        keys = mix(seed, SURVEY_STREAM, torch.arange(b0, b0 + len(chunk)))
        rollouts = sample_batch(
            model,
            ids,
            mask,
            eos_ids=[tokenizer.eos_token_id],
            pad_id=tokenizer.pad_token_id,
            max_new_tokens=max_new_tokens,
            temperature=1.0,
            keys=keys,
        )
        measured = measure(model, rollouts, rhythm=rhythm)
        entropy = torch.full(rollouts.ids.shape, float("nan"))  # aligned to the tokens: the completion's columns
        entropy[:, -rollouts.width :] = measured.entropy.masked_fill(~rollouts.completion_mask, float("nan"))
        metric.update(measured.trace, entropy)
    values = {name: float(value) for name, value in metric.compute().items()}
    return values | {"responses": len(records)}


def survey_runs(out, start_model, tokenizer, records, rhythm, max_new_tokens, strategies, seeds) -> dict:
    """The coupling statistics of the start model and of each strategy's final models (the mean over its seeds; the
    same prompts and sampling keys for every model)."""
    from credit_runs import cell_folder

    from lightning_reasonattn import NanoGPT

    survey = {"start": coupling_statistics(start_model, tokenizer, records, rhythm, max_new_tokens)}
    for strategy in strategies:
        folders = [cell_folder(out, strategy, seed) / "final" for seed in seeds]
        runs = [
            coupling_statistics(NanoGPT.load(folder), tokenizer, records, rhythm, max_new_tokens)
            for folder in folders
            if (folder / "config.json").is_file()
        ]
        if runs:
            survey[strategy] = {name: sum(r[name] for r in runs) / len(runs) for name in runs[0]} | {"seeds": len(runs)}
    return survey
