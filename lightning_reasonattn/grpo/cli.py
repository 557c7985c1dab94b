"""``reasonattn fit`` (LightningCLI over RhythmGRPO) and ``reasonattn export`` (the adapter, for peft)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def run_fit(argv: list[str], subcommand: str = "fit") -> int:
    """``reasonattn fit|validate --config FILE.yaml [--print_config] [--trainer.max_steps N ...]``.

    ``validate`` evaluates the held-out split (``val/reward``), from a checkpoint with ``--ckpt_path FILE``.
    """
    from lightning.pytorch.cli import LightningCLI

    from .module import RhythmGRPO

    if not argv:
        print(
            f"usage: reasonattn {subcommand} --config FILE.yaml [--print_config] [--trainer.max_steps N ...]\n"
            f"reasonattn {subcommand}: error: it needs a config; start from examples/grpo_cpu_smollm2.yaml "
            f"(see docs/train.md), or print every setting with: reasonattn {subcommand} --print_config",
            file=sys.stderr,
        )
        return 2
    args = [subcommand, *argv]
    LightningCLI(
        RhythmGRPO,
        args=None if args == sys.argv[1:] else args,  # from the console LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "reasonattn"},
    )
    return 0


def export_adapter(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the LoRA adapter of a RhythmGRPO checkpoint with peft's ``save_pretrained`` (plus the tokenizer).

    Load it later with ``peft.PeftModel.from_pretrained(base_model, out_dir)``.
    """
    from .module import RhythmGRPO

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist: pass a .ckpt file written by reasonattn fit."
        )
    # Lightning checkpoints hold the settings dataclasses, hence weights_only=False: open only your own files.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    module = RhythmGRPO.load_from_checkpoint(path, map_location="cpu")  # rebuilds from the saved settings
    module.configure_model()
    missing = [k for k in ckpt["state_dict"] if k not in dict(module.named_parameters())]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} does not match the model: unknown weights {missing[:3]}.")
    module.load_state_dict(ckpt["state_dict"], strict=False)
    out = Path(out_dir)
    module.policy.save_pretrained(out)
    module.tokenizer.save_pretrained(out)
    return out


def run_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reasonattn export", description=export_adapter.__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by reasonattn fit")
    parser.add_argument("out_dir", help="folder for the adapter (adapter_config.json + weights)")
    args = parser.parse_args(argv)
    print(f"adapter written to {export_adapter(args.checkpoint, args.out_dir)}")
    return 0
