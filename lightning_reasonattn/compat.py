"""The private APIs of dependencies that lightning_reasonattn relies on, each in one place.

A dependency may change a private name in any release. Every use of one goes through a function or constant
here, whose docstring says what it is, the versions it was checked against and what to do when it changes;
``tests/test_compat.py`` checks each against the installed versions and fails with a message naming the
dependency, its version and the private name. At run time a name that is gone raises
[`PrivateAPIError`][PrivateAPIError] with the same message, instead of an ``AttributeError`` deep in a run.

Checked against: torch 2.13.0, lightning 2.6.6, transformers 5.24.0, bitsandbytes 0.50.2 (the versions the
project's CPU reference install resolves), and the lowest that ``pyproject.toml`` accepts but torch's: lightning
2.6.0, transformers 5.0.0, bitsandbytes 0.47.0 (with torch 2.13.0, peft 0.18.0, jsonargparse 4.27.7), where
``tests/test_compat.py`` passes too. When a check fails after an upgrade: find what the dependency now offers (a
public API is best), change the one function here, rerun ``tests/test_compat.py``, and update the versions above.

Dependencies are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any


class PrivateAPIError(RuntimeError):
    """A private API of a dependency is not what lightning_reasonattn expects: the message names the dependency,
    its installed version, the private name and what changed."""

    def __init__(self, dist: str, name: str, what: str):
        try:
            installed = version(dist)
        except PackageNotFoundError:
            installed = "(not installed)"
        super().__init__(
            f"{dist} {installed}: {name} {what}. lightning_reasonattn uses this private API of {dist}; install a "
            f"{dist} version it was checked against (see lightning_reasonattn/compat.py) or update compat.py."
        )
        self.dist, self.name, self.version = dist, name, installed


def _private(owner: Any, name: str, dist: str) -> Any:
    """``getattr(owner, name)``, or [`PrivateAPIError`][PrivateAPIError] naming the dependency and the name."""
    try:
        return getattr(owner, name)
    except AttributeError:
        where = owner.__name__ if isinstance(owner, (type, ModuleType)) else type(owner).__name__
        raise PrivateAPIError(dist, f"{where}.{name}", "is gone") from None


# ---------------------------------------------------------------------------------------------- lightning
LIGHTNING_CLI_HOOKS = ("_prepare_subcommand_parser", "_parse_ckpt_path")
"""Private ``LightningCLI`` methods that ``grpo.cli.ReasonattnCLI`` overrides.

``_prepare_subcommand_parser(klass, subcommand, **kwargs)`` builds a subcommand's parser (ours defaults
``--weights_only`` to true); ``_parse_ckpt_path()`` runs after parsing, before anything is built (ours checks
``--ckpt_path`` against the run's settings, in place of Lightning's merge of the checkpoint's hyperparameters).
Checked against lightning 2.6.6. If one is renamed, Lightning no longer calls the override, silently: the test
checks that LightningCLI still calls both; move the override to the new name (or to a public hook if one exists).
"""


def cli_method_arguments(cli, subcommand: str) -> list[str]:
    """The ``Trainer`` method arguments (e.g. ``ckpt_path``, ``weights_only``) that ``LightningCLI`` added to the
    parser of ``subcommand``: its private ``_subcommand_method_arguments[subcommand]``.

    Checked against lightning 2.6.6 (filled by ``_prepare_subcommand_parser``). If it is gone, read the added
    names from the subcommand's parser instead (``parser.add_method_arguments`` returns them).
    """
    return _private(cli, "_subcommand_method_arguments", "lightning").get(subcommand, [])


def cli_config_value(cli, config, key: str, default: Any = None) -> Any:
    """``config[key]`` of a ``LightningCLI`` config, looked up inside the subcommand when there is one: its private
    ``_get(config, key, default)``.

    Checked against lightning 2.6.6. If it is gone: ``config.get(str(cli.subcommand), config).get(key, default)``,
    which is all it does.
    """
    return _private(cli, "_get", "lightning")(config, key, default)


def attached_trainer(module):
    """The ``Trainer`` a ``LightningModule`` is attached to, or ``None``: its private ``_trainer``.

    The public ``module.trainer`` raises when no trainer is attached (a module used on its own, or built by
    ``load_from_checkpoint``), and there is no public "is attached". Checked against lightning 2.6.6. If it is
    gone, catch the ``RuntimeError`` of ``module.trainer`` instead.
    """
    return _private(module, "_trainer", "lightning")


def logging_step(trainer) -> int:
    """The step Lightning gives the values of ``self.log`` during training (what the loggers' x-axis shows):
    the optimizer steps taken, ``trainer.fit_loop.epoch_loop._batches_that_stepped``, kept by the loop.

    It differs from ``trainer.global_step`` under manual optimization with several optimizer steps per batch.
    Checked against lightning 2.6.6. If it is gone, ``trainer.global_step`` is used (the curves of the callbacks
    may then sit off Lightning's own by the difference); find Lightning's new name for it.
    """
    return getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)


def is_local_path(path) -> bool:
    """Whether Lightning's checkpoint IO writes ``path`` as a local file (no fsspec protocol other than
    ``file``): ``lightning.fabric.utilities.cloud_io._is_local_file_protocol``.

    Checked against lightning 2.6.6. If it is gone: ``fsspec.utils.get_protocol(str(path)) == "file"``, which is
    all it does.
    """
    try:
        from lightning.fabric.utilities import cloud_io
    except ImportError as err:
        raise PrivateAPIError("lightning", "lightning.fabric.utilities.cloud_io", "cannot be imported") from err
    return _private(cloud_io, "_is_local_file_protocol", "lightning")(path)


# ---------------------------------------------------------------------------------------------- torch
def ddp_ignore(module, names: list[str]) -> None:
    """Make ``DistributedDataParallel`` leave the parameters and buffers ``names`` of ``module`` alone (no
    broadcast, no gradient reduction): ``DistributedDataParallel._set_params_and_buffers_to_ignore_for_model``,
    which torch documents as a workaround until a public API exists (pytorch issue 43690).

    Call it before DDP wraps ``module``. Checked against torch 2.13.0. If it is gone, look for the public API
    that replaced it; meanwhile a 4-bit base would be broadcast at start-up and its buffers before every forward.
    """
    from torch.nn.parallel import DistributedDataParallel

    _private(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model", "torch")(module, names)


LR_SCHEDULER_LAST_LR = "_last_lr"
"""The key of the last learning rates in a torch ``LRScheduler.state_dict()`` (the private attribute
``_last_lr``, which ``get_last_lr()`` returns). A resumed run rewrites it with its own learning rate.

Checked against torch 2.13.0. If it changes, the resumed run's first logged learning rate is the checkpoint's:
use the new key.
"""


# ---------------------------------------------------------------------------------------------- transformers
def attn_implementation(config) -> str | None:
    """The attention implementation a transformers config dispatches to (``"sdpa"``, ``"eager"``, a registered
    name): its private ``_attn_implementation_internal``, which the ``_attn_implementation`` property reads.

    Checked against transformers 5.24.0. If it is gone, find what ``AttentionInterface`` dispatch now reads
    (``modeling_utils``: ``ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]`` in 5.x).
    """
    return _private(config, "_attn_implementation_internal", "transformers")


def set_attn_implementation(config, name: str | None) -> None:
    """Point one config (not its sub-configs) at the attention implementation ``name``, without the checks and
    the recursion of the public ``model.set_attn_implementation`` (the capture swaps names for one forward).

    Checked against transformers 5.24.0 (see [`attn_implementation`][attn_implementation]).
    """
    attn_implementation(config)  # the name must exist: setting a new attribute would change nothing
    config._attn_implementation_internal = name


def unregister_attention(name: str) -> None:
    """Remove ``name`` from transformers' ``AttentionInterface`` and ``AttentionMaskInterface``, where their public
    ``register`` put it (transformers offers no way to remove one): the capture's wrapper is registered for the
    duration of a capture only, and a transformers process is left as the capture found it.

    Both keep registered names in the class attribute ``_global_mapping`` (``GeneralInterface``, a dict). Checked
    against transformers 5.24.0 and 5.25.0. If it is gone, find where ``register`` now stores a name.
    """
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    for interface in (AttentionInterface, AttentionMaskInterface):
        _private(interface, "_global_mapping", "transformers").pop(name, None)


def eager_attention_function(module):
    """The eager attention function of an attention module: ``eager_attention_forward`` of the module's own
    modeling file (transformers keeps eager attention there, not in ``AttentionInterface``).

    Checked against transformers 5.24.0 (Llama, Qwen2, Qwen3, Mistral, Gemma). If a model's file no longer has
    it, load that model with ``attn_implementation="sdpa"``, or look for where transformers moved it.
    """
    import sys

    return _private(sys.modules[type(module).__module__], "eager_attention_forward", "transformers")


# ---------------------------------------------------------------------------------------------- bitsandbytes
def unpack_cpu_4bit(weight) -> None:
    """Undo, in place, the CPU repacking of a bitsandbytes 4-bit weight (``Params4bit``) for its bfloat16 kernel,
    so that ``bitsandbytes.functional.dequantize_4bit`` reads it: ``bitsandbytes.nn.modules.
    _convert_weight_packed_for_cpu_inverse`` when the quant state says ``packing_format_for_cpu``.

    Checked against bitsandbytes 0.50.2; the repacking came with 0.49.0 (0.47 and 0.48 never repack: nothing to
    undo, and this is not called). If it is gone, check whether bitsandbytes still repacks
    (``Linear4bit.forward``) and how it undoes it.
    """
    if not getattr(weight.quant_state, "packing_format_for_cpu", False):
        return
    try:
        from bitsandbytes.nn import modules
    except ImportError as err:
        raise PrivateAPIError("bitsandbytes", "bitsandbytes.nn.modules", "cannot be imported") from err
    inverse = _private(modules, "_convert_weight_packed_for_cpu_inverse", "bitsandbytes")
    weight.data, weight.quant_state = inverse(weight.data, weight.quant_state)


BNB_CPU_BF16_FLAG = "support_avx512bf16_for_cpu"
"""The ``Linear4bit`` attribute that lets bitsandbytes repack a 4-bit weight for its bfloat16 CPU kernel in eval
mode (``models.exact_cpu_4bit`` sets it to False on every layer that has it).

Checked against bitsandbytes 0.50.2 (set in ``Linear4bit.__init__`` since 0.49.0; 0.47 and 0.48 never repack and
have no such flag). If it is renamed, the repacking comes back unnoticed on AVX512-BF16 CPUs (scoring in eval mode
then computes in bfloat16): use the new name.
"""
