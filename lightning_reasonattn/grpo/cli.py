"""``reasonattn fit`` / ``validate`` (LightningCLI over RhythmGRPO) and ``reasonattn export`` (the adapter, for peft).

Errors a user can fix (a bad setting, a missing file, a file that is not a checkpoint, a checkpoint that does not
fit the settings) are reported as one line, ``reasonattn fit: error: ...``, with exit status 2. That covers
everything before the first step runs: parsing, building the module, loading the model and the checkpoint,
Lightning's own checks. An error once steps run (a failing reward function, say) stops the run with its
traceback, and the checkpoints written so far stay; a prompt too long for the model's context, a checkpoint that
cannot be written and a lost process of a multi-process run are reported in one line even then, and a signal
(SIGTERM, Ctrl-C) ends the command with status 128 + signum and one line that says what is kept (``grpo/stops.py``).
``--debug`` (or ``REASONATTN_DEBUG=1``) shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..compat import cli_config_value, cli_method_arguments
from ..files import read_text, too_long_number, where
from ..interrupts import Terminated, exit_status, sigterm_raises
from ..models import DEFAULT_MODEL, ModelLoadError, resolve_model_path
from ..outputs import OutputError, write_whole
from ..rewards.protocol import RewardError
from ..rollout.context import ContextLengthError
from .checkpoint import AtomicCheckpointIO, MovedRunFolder, check_resume, flat_settings, load_checkpoint
from .distributed import check_max_steps, check_split
from .export import export_adapter
from .module import RhythmGRPO
from .renamed import translate_config_args
from .settings import LOSS_TYPE_HINTS
from .stops import RunRecord, is_lost_process, lost_process_line, stop_signal, stopped_line

USER_ERRORS = (ValueError, OSError, argparse.ArgumentError, MisconfigurationException, ModelLoadError, RewardError)
"""Errors reported as one line when they happen before the first step (after it, only ``CommandError``)."""

SPECIAL_CKPT_PATHS = ("last", "best", "hpc")  # Lightning resolves these itself


class CommandError(Exception):
    """A problem with what the command was asked to do; always reported as one line."""


class SaveConfigSafely(SaveConfigCallback):
    """LightningCLI's config saving (``config.yaml`` in the log folder), never over a file it did not write.

    Lightning writes into ``trainer.log_dir``, which without a logger is ``default_root_dir``, the current folder
    by default: a user's own ``config.yaml`` there was overwritten. The saved file starts with ``MARK``; a file
    without it is left alone, with a warning.
    """

    MARK = "# reasonattn fit: the resolved config of this run"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir  # a broadcast: every rank reads it
        if trainer.is_global_zero:
            path = Path(log_dir) / self.config_filename
            if path.exists() and not _starts_with(path, self.MARK):
                rank_zero_warn(
                    f"Not saving the resolved config to {path}: that file was not written by reasonattn fit, so it "
                    "is left as it is. Set trainer.logger or trainer.default_root_dir to save it elsewhere, or "
                    "print it with --print_config."
                )
            else:
                dump = self.parser.dump(self.config, skip_none=False)
                write_whole(path, f"{self.MARK} (lightning.pytorch=={pl.__version__})\n{dump}")
        self.already_saved = True


def _starts_with(path: Path, mark: str) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().startswith(mark)
    except (OSError, UnicodeDecodeError):
        return False


class ReasonattnCLI(LightningCLI):
    """LightningCLI for RhythmGRPO: safe checkpoint reading, the resume rule, and a quiet ``validate``.

    * ``--ckpt_path`` is read with [`load_checkpoint`][lightning_reasonattn.grpo.checkpoint.load_checkpoint] before
      anything loads, and checked against this run's settings (the resume rule); LightningCLI's own step, which
      overwrote the command line's settings with the checkpoint's, is replaced. ``weights_only`` defaults to true.
    * ``validate`` writes nothing: no log version, no checkpoint, no config; it prints the held-out reward.
    * LightningCLI's ``--optimizer`` / ``--lr_scheduler`` are not offered: ``model.optim`` sets the optimizer.
    """

    def __init__(self, *args, started: RunRecord, **kwargs):
        self.started = started
        super().__init__(*args, **kwargs)

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if "weights_only" in cli_method_arguments(self, subcommand):
            parser.set_defaults(weights_only=True)  # checkpoints are tensors and plain data: never unpickle code
        return parser

    def _parse_ckpt_path(self) -> None:
        """Check the settings, then ``--ckpt_path`` against them (in place of LightningCLI's merge)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        current = self.config[subcommand]["model"].as_dict()
        flat_settings(current)  # builds every settings dataclass: a bad value fails before anything else runs
        if isinstance(current.get("model"), str) and current["model"] != DEFAULT_MODEL:
            resolve_model_path(current["model"])  # a local path that does not exist fails now, not after set-up
        if subcommand == "fit":  # before a trainer or a log folder is made (RhythmGRPO.setup checks it too)
            trainer = self.config[subcommand].get("trainer", {})
            check_max_steps(trainer.get("max_steps"))
            processes = _process_count(trainer.get("devices"), trainer.get("num_nodes", 1))
            if processes:  # before Lightning starts one process per device, each of which would refuse it too
                check_split(current.get("prompts_per_step", 1), processes)
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in SPECIAL_CKPT_PATHS or str(ckpt_path).startswith("registry"):
            return
        ckpt = load_checkpoint(ckpt_path)
        check_resume(ckpt, current, ckpt_path, training=subcommand == "fit")  # raises if it cannot be used
        # A resumed run writes on in its own checkpoint folder: Lightning's warning that the folder is not empty is
        # meant for a new run that would mix its checkpoints with an older run's (kept for those). run_fit's
        # catch_warnings scope ends the filter with the command.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        if self.subcommand == "validate":  # it measures: no log version folder, checkpoint or config to write
            callbacks = cli_config_value(self, self.config_init, "trainer", default={}).get("callbacks") or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            kept = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
            kwargs |= {"logger": False, "enable_checkpointing": False, "callbacks": kept}
            self.save_config_callback = None
        trainer = super().instantiate_trainer(**kwargs, plugins=_with_atomic_checkpoints(self))
        trainer.callbacks += [self.started, MovedRunFolder()]
        return trainer

    def validate(self, model: pl.LightningModule, **kwargs) -> None:
        results = self.trainer.validate(model, **kwargs)  # (RhythmGRPO.setup refuses a task with no held-out split)
        print(f"held-out problems: {len(model._task_splits()[1])}, one greedy completion each")
        for name, value in sorted(results[0].items()):
            print(f"{name} = {value!r}")


def run_command(command: str, argv: list[str], debug: bool = False) -> int:
    """Run ``fit``, ``validate`` or ``export``; report a user's error as one line with exit status 2.

    Args:
        command: ``"fit"``, ``"validate"`` or ``"export"``.
        argv: the arguments after the command.
        debug: re-raise every error (with its traceback) instead of the one-line report.
    """
    started = RunRecord()
    try:
        with sigterm_raises(unless=lambda: started.running):  # then Lightning's handler stops the loop after a step
            return run_export(argv) if command == "export" else run_fit(argv, command, started)
    except (CommandError, ContextLengthError, OutputError) as err:  # one line even mid-run
        if debug:
            raise
        return _report(command, err)
    except USER_ERRORS as err:
        if debug or started.started:
            raise
        return _report(command, err)
    except (KeyboardInterrupt, Terminated, SystemExit) as err:  # Ctrl-C, SIGTERM: Lightning ends with SystemExit
        return _report_stop(command, err, started, argv, debug)
    except Exception as err:
        if debug or not is_lost_process(err):
            raise
        return _report(command, Exception(lost_process_line(err, started)))


def _report_stop(command: str, err: BaseException, record: RunRecord, argv: list[str], debug: bool) -> int:
    """A run ended by a signal: one line (on global rank 0) saying what is kept, and exit status 128 + signum."""
    sig = stop_signal(err, record)
    if sig is None or debug:
        raise err
    if record.rank_zero:
        print(f"reasonattn {command}: {stopped_line(command, sig, record, argv)}", file=sys.stderr)
    return exit_status(sig)


def _with_atomic_checkpoints(cli: LightningCLI) -> list:
    """The Trainer's plugins from the config, with [`AtomicCheckpointIO`][lightning_reasonattn.grpo.checkpoint.
    AtomicCheckpointIO] added unless the config names a checkpoint IO of its own."""
    plugins = cli_config_value(cli, cli.config_init, "trainer", default={}).get("plugins") or []
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def _report(command: str, err: BaseException) -> int:
    message = one_line(err) if isinstance(err, argparse.ArgumentError) else " ".join(str(err).split())
    print(f"reasonattn {command}: error: {message or type(err).__name__}", file=sys.stderr)
    return 2


def one_line(err: argparse.ArgumentError) -> str:
    """jsonargparse's multi-line parse error as one line: ``--model.x: got 'v', expected one of 'a', 'b'``."""
    text = str(err)
    found = re.match(r'Parser key "([^"]+)":\s*(.*)', text, re.S)
    if not found:
        return _cut(" ".join(text.split())) + " (see --help)"
    key, rest = found.groups()
    kinds = re.findall(r"Expected a (<class '\w+'>|typing\.Literal\[[^\]]*\])", rest)
    value = re.search(r"(?:Got|Given) value: (.+)", rest)
    if not kinds or not value:
        return f"--{key}: {_cut(' '.join(rest.split()))}"
    hint = LOSS_TYPE_HINTS.get(value.group(1).strip(), "") if key.endswith("loss.loss_type") else ""
    expected = " or ".join(dict.fromkeys(_type_name(kind) for kind in kinds))
    given = value.group(1).rstrip("\r")  # as typed: a stray space must show in the message
    shown = repr(given) if len(given) <= 300 else f"{given[:300]!r}... ({len(given):,} characters)"
    return f"--{key}: got {shown}, expected {expected}{' (' + hint + ')' if hint else ''}"


def _process_count(devices, num_nodes) -> int | None:
    """The number of processes a Trainer's ``devices`` x ``num_nodes`` gives when it is written as a count (a
    list of device indices counts its entries); ``None`` for ``"auto"``, ``-1`` and the like."""
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        return None
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        return None
    return devices * num_nodes


def _cut(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters (a value echoed by the parser can be megabytes long)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _type_name(kind: str) -> str:
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", kind)
    if literal:
        return f"one of {literal.group(1)}"
    names = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "NoneType": "null",
        "list": "a list",
    }
    simple = re.fullmatch(r"<class '(\w+)'>", kind)
    return names.get(simple.group(1), simple.group(1)) if simple else kind


def run_fit(argv: list[str], subcommand: str = "fit", started: RunRecord | None = None) -> int:
    """``reasonattn fit|validate --config FILE.yaml [--print_config] [--trainer.max_steps N ...]``.

    ``validate`` evaluates the held-out split (``val/reward``), from a checkpoint with ``--ckpt_path FILE``.
    """
    if not argv:
        raise CommandError(
            f"it needs a config: start from examples/grpo_cpu_smollm2.yaml (see docs/train.md), or print every "
            f"setting with: reasonattn {subcommand} --print_config"
        )
    check_config_files(argv)
    argv = translate_config_args(argv, subcommand)  # keys renamed since 0.1 (credit.k), with a warning
    kwargs = {"prog": "reasonattn", "exit_on_error": False}
    with warnings.catch_warnings():  # args are given on purpose (the console's argv minus --debug)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        # Lightning 2.6 checks torch's LeafSpec, deprecated in torch 2.13: nothing a user of the command can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # A module's tokenizer (typed Any) given as class_path + init_args is built by jsonargparse, which deprecates
        # that for Any in 4.51 (5.0 will pass the spec on: RhythmGRPO builds a dict spec itself, grpo.policy).
        warnings.filterwarnings("ignore", message=r"\s*Instantiating a subclass spec given as value for a type that")
        ReasonattnCLI(
            RhythmGRPO,
            args=[subcommand, *argv],
            started=started or RunRecord(),
            save_config_callback=SaveConfigSafely,
            parser_kwargs={**kwargs, subcommand: kwargs},
            auto_configure_optimizers=False,
        )
    return 0


MAX_CONFIG_BYTES = 16 * 2**20
"""A config is kilobytes; a bigger ``--config`` file is the wrong file."""
MAX_CONFIG_VALUES = 100_000
"""The most values (mapping entries and list items, counted with every alias expanded) a --config may hold."""


def check_config_files(argv: list[str]) -> None:
    """Read every ``--config FILE`` of ``argv`` as LightningCLI will, so that its errors name the file (and line).

    jsonargparse reports a binary or non-UTF-8 file with the codec's message and a YAML error at "<unicode string>";
    here each is one line: ``FILE, line L, column C: ...``. A missing file is left to jsonargparse (it says so).

    Raises:
        ValueError: a file that is binary, not UTF-8, larger than ``MAX_CONFIG_BYTES``, not YAML, or not a mapping.
    """
    import yaml

    paths = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
    paths += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    for name in paths:
        path = Path(name)
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block the read forever
            raise ValueError(f"--config {path} is not a regular file (a pipe, device or socket): pass a YAML file.")
        if not path.is_file():
            continue
        text = read_text(path, "--config", MAX_CONFIG_BYTES)
        try:
            config = yaml.safe_load(text)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            at = where(path, mark.line + 1, mark.column + 1) if mark else str(path)
            raise ValueError(f"--config {at}: not valid YAML ({err.problem or err.context}).") from None
        except RecursionError:  # noqa: B904 (nothing to chain: the recursion is the whole story)
            raise ValueError(
                f"--config {path}: nested deeper than a YAML reader follows (a config: a few levels)."
            ) from None
        except ValueError as err:  # a number of more than 4300 digits
            raise ValueError(f"--config {path}: {too_long_number(err)}") from None
        except yaml.YAMLError as err:
            raise ValueError(f"--config {path}: not valid YAML ({' '.join(str(err).split())[:200]}).") from None
        if config is None:
            raise ValueError(
                f"--config {path} is empty: start from examples/grpo_cpu_smollm2.yaml (see docs/train.md)."
            )
        if not isinstance(config, dict):
            raise ValueError(
                f"--config {path} holds a YAML {type(config).__name__}, not a mapping of settings (trainer:, model:, "
                "...): start from examples/grpo_cpu_smollm2.yaml."
            )
        if not _fewer_values_than(config, MAX_CONFIG_VALUES):
            raise ValueError(
                f"--config {path} expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases that repeat "
                "aliases?): a config holds settings, a few hundred values; write data in a data file."
            )


def _fewer_values_than(tree, budget: int) -> bool:
    """Whether ``tree`` (parsed YAML, where an alias is the same object again) holds fewer than ``budget`` values,
    counting every repetition; stops as soon as the budget is spent, so an alias bomb costs ``budget`` steps."""
    stack = [tree]
    while stack:
        node = stack.pop()
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else ()
        budget -= len(children)
        if budget <= 0:
            return False
        stack.extend(child for child in children if isinstance(child, (dict, list)))
    return True


def run_export(argv: list[str]) -> int:
    """``reasonattn export CHECKPOINT OUT_DIR``: the LoRA adapter of a checkpoint as a peft folder."""
    parser = argparse.ArgumentParser(prog="reasonattn export", description=export_adapter.__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by reasonattn fit")
    parser.add_argument("out_dir", help="folder for the adapter (adapter_config.json, weights, README.md)")
    args = parser.parse_args(argv)
    print(f"adapter written to {export_adapter(args.checkpoint, args.out_dir)}")
    return 0
