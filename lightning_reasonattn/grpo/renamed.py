"""RhythmGRPO's settings keys renamed since 0.1, read under their new names from configs and checkpoints.

LightningCLI (jsonargparse) refuses a key that is not a field of its settings dataclass, so an old key of a config
(``model.credit.k``) is renamed before parsing ([`translate_config_args`][translate_config_args], with a deprecation
warning); a checkpoint written by 0.1 holds the old key in its hyper-parameters, which
[`upgrade_section`][upgrade_section] renames silently (the file is not the user's to change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..deprecation import warn_renamed_option
from ..settings.rhythm import RENAMED as RHYTHM_RENAMED

RENAMED_KEYS: dict[str, dict[str, str]] = {"credit": dict(RHYTHM_RENAMED)}
"""``{section of RhythmGRPO: {old key: new key}}``."""


def upgrade_section(section: str, value: Any) -> Any:
    """A settings section (a dict from a checkpoint or YAML) with its old keys under their new names; any other value
    as it is. A key given under both names keeps the new one."""
    renamed = RENAMED_KEYS.get(section)
    if not renamed or not isinstance(value, dict):
        return value
    out = {renamed.get(key, key): item for key, item in value.items() if key not in renamed}
    for old, new in renamed.items():
        if old in value:
            out.setdefault(new, value[old])
    return out


def _renamed_in(config: Any) -> list[tuple[str, str]]:
    """``(old, new)`` dotted keys of ``config`` (a parsed fit/validate YAML) that were renamed."""
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return []
    return [
        (f"model.{section}.{old}", f"model.{section}.{new}")
        for section, renamed in RENAMED_KEYS.items()
        if isinstance(model.get(section), dict)
        for old, new in renamed.items()
        if old in model[section]
    ]


def translate_config_args(argv: list[str], command: str) -> list[str]:
    """``argv`` of ``reasonattn fit|validate`` with every renamed key under its new name, each with a warning:
    ``--model.credit.k 2`` (or ``=2``) and a ``--config`` file holding ``model: credit: k:`` (passed on as the
    translated YAML text, which LightningCLI takes in place of a path). Run after the config files were checked."""
    flags = {f"--{old}": f"--{new}" for old, new in _all_renamed()}
    out = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in flags:
            warn_renamed_option(name, flags[name], f"reasonattn {command}")
            arg = flags[name] + eq + value
        elif name == "--config" and eq:
            arg = "--config=" + _translated_config(value, command)
        elif i > 0 and argv[i - 1] in ("--config", "-c"):
            arg = _translated_config(arg, command)
        out.append(arg)
    return out


def _translated_config(path: str, command: str) -> str:
    """``path``, or the YAML text of the config at ``path`` with its renamed keys under their new names."""
    import yaml

    if not Path(path).is_file():
        return path
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    found = _renamed_in(config)
    for old, new in found:
        warn_renamed_option(f"{old} (in {path})", new, f"reasonattn {command}")
    if not found:
        return path
    config["model"] = {key: upgrade_section(key, item) for key, item in config["model"].items()}
    return yaml.safe_dump(config, sort_keys=False)


def _all_renamed() -> list[tuple[str, str]]:
    return [
        (f"model.{section}.{old}", f"model.{section}.{new}")
        for section, renamed in RENAMED_KEYS.items()
        for old, new in renamed.items()
    ]
