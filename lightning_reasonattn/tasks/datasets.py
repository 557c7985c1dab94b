"""Prompt records: the R1-style templates, loading local datasets, and chat formatting.

A record is a plain dict with a ``"prompt"`` (a string, or a list of ``{"role", "content"}`` messages) and the
columns its reward functions read (``"answer"``; ``"numbers"`` and ``"target"`` for Countdown). Records stay
raw: a trainer formats message prompts with [`apply_chat_template`][apply_chat_template] just before tokenizing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..files import MAX_JSON_DEPTH, brief_repr, file_kind, json_depth, not_utf8, parse_json, read_jsonl, read_text

SYSTEM_PROMPT = (
    "You are a helpful assistant. You first think about the reasoning process and then give the user the answer."
)
"""System message of the chat variant of the R1-style template."""

PLAIN_TEMPLATE = (
    "A conversation between User and Assistant. The User asks a question and the Assistant solves it. The "
    "Assistant first thinks about the reasoning process and then gives the User the answer.\n"
    "User: {question}\n"
    "Assistant: Let me solve this step by step.\n<think>"
)
"""Plain-text R1-style template (TinyZero's base-model format); it ends inside an open ``<think>`` tag."""

DATASETS_HINT = "pip install 'datasets>=2.14' (or pip install 'lightning-reasonattn[data]')"


def r1_prompt(question: str) -> str:
    """The plain-text R1-style prompt for ``question``, ending with ``<think>`` for the model to continue.

    Args:
        question: the task, e.g. ``"What is 2 + 3?"``.

    Returns:
        The prompt string.
    """
    return PLAIN_TEMPLATE.format(question=question)


def r1_messages(question: str) -> list[dict[str, str]]:
    """The chat variant: a system message and the question as the user message.

    Args:
        question: the task.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", "content": question}]``.
    """
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def _is_messages(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and all(isinstance(m, Mapping) and "content" in m for m in prompt)


def apply_chat_template(
    records: Iterable[Mapping[str, Any]], tokenizer: Any, *, add_generation_prompt: bool = True
) -> list[dict[str, Any]]:
    """Format message prompts as text, with the tokenizer's chat template when it has one.

    As in TRL, string prompts are already text and stay unchanged; only message-list prompts are formatted.
    Without a chat template, messages are joined as ``"role: content"`` lines followed by ``"assistant:"``.

    Args:
        records: records whose ``"prompt"`` is a string or a list of ``{"role", "content"}`` messages.
        tokenizer: a transformers tokenizer (or anything with ``chat_template`` and ``apply_chat_template``).
        add_generation_prompt: end with the header of the assistant's turn.

    Returns:
        New records (copies) whose ``"prompt"`` is a string.

    Raises:
        ValueError: a record has no ``"prompt"``, or a prompt that is neither a string nor messages.

    Example:
        >>> records = [{"prompt": [{"role": "user", "content": "2+2?"}], "answer": 4}]
        >>> apply_chat_template(records, tokenizer=None)
        [{'prompt': 'user: 2+2?\\nassistant:', 'answer': 4}]
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    out = []
    for i, record in enumerate(records):
        prompt = record.get("prompt")
        if not isinstance(prompt, str) and not _is_messages(prompt):
            raise ValueError(
                f"Record {i} has prompt {prompt!r:.80}: a prompt must be a string or a list of "
                "{'role', 'content'} messages (map the right column with load_prompts(prompt_column=...))."
            )
        if not isinstance(prompt, str):
            messages = [dict(m) for m in prompt]
            if has_template:
                prompt = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=add_generation_prompt
                )
            else:
                prompt = "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in messages)
                prompt += "\nassistant:" if add_generation_prompt else ""
        out.append({**record, "prompt": prompt})
    return out


def _read_json_records(path: Path) -> tuple[list[Any], list[str]]:
    """The records of a JSONL file or a JSON array, and where each is (``"line 3 (record 2)"``, ``"record 2"``).

    Read by ``lightning_reasonattn.files``: not UTF-8, a line past ``MAX_LINE_BYTES``, nesting past ``MAX_JSON_DEPTH``
    or a number of more than 4300 digits is refused with the file and line named.
    """
    if path.suffix == ".json" and _starts_with_bracket(path):
        rows = parse_json(read_text(path, "data file"), path)
        return rows, [f"record {i}" for i in range(len(rows))]
    lines = read_jsonl(path)
    return [row for _, row in lines], [f"line {number} (record {i})" for i, (number, _) in enumerate(lines)]


def _starts_with_bracket(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _import_datasets():
    try:
        import datasets
    except ImportError as err:
        message = f"Reading parquet files and dataset folders needs the datasets package: {DATASETS_HINT}."
        raise ImportError(message) from err
    return datasets


def _read_with_datasets(path: Path, split: str | None, cache_dir: str | Path | None) -> tuple[list[Any], list[str]]:
    datasets = _import_datasets()
    cache_dir = None if cache_dir is None else str(cache_dir)
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its log of a failure (a traceback) adds no news
    try:
        if path.is_file():  # parquet
            data = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=cache_dir)
        elif (path / "dataset_dict.json").exists() or (path / "state.json").exists():  # save_to_disk output
            data = datasets.load_from_disk(str(path))
        else:  # a folder of data files, e.g. train.jsonl and test.parquet
            data = datasets.load_dataset(str(path), cache_dir=cache_dir)
    except ImportError:
        raise
    except Exception as err:  # pyarrow's and datasets' own errors (a corrupt file, an undecodable one) name no file
        kind = "parquet file" if path.is_file() else "dataset folder"
        message = " ".join(str(err).split())[:300]
        raise ValueError(
            f"{path} cannot be read as a {kind} ({type(err).__name__}: {message}): pass a .parquet "
            "file, a folder written by Dataset.save_to_disk, or a folder of data files."
        ) from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    if isinstance(data, Mapping):  # several splits
        if split is None and len(data) == 1:
            split = next(iter(data))
        if split not in data:
            raise ValueError(f"{path} has splits {sorted(data)}: pass split= one of them (got {split!r}).")
        data = data[split]
    elif split not in (None, "train"):
        raise ValueError(f"{path} holds a single split; pass split=None instead of {split!r}.")
    rows = [dict(row) for row in data]
    return rows, [f"row {i}" for i in range(len(rows))]


def load_prompts(
    path: str | Path,
    prompt_column: str = "prompt",
    answer_column: str | None = None,
    split: str | None = None,
    rename: Mapping[str, str] | None = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    *,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Read prompt records from a local JSONL, JSON, parquet file or dataset folder.

    JSONL and JSON are read directly; parquet files and folders (written by ``Dataset.save_to_disk`` or
    holding data files) go through the ``datasets`` package. Nothing is downloaded: for a hub dataset, save it
    once with ``datasets.load_dataset(name).save_to_disk(folder)`` and pass the folder.

    Args:
        path: the file (``.jsonl``, ``.json``, ``.parquet``) or folder.
        prompt_column: the column holding the prompt, renamed to ``"prompt"``.
        answer_column: the column holding the reference answer, renamed to ``"answer"``; ``None`` keeps the
            columns as they are (Countdown records have ``"numbers"`` and ``"target"`` instead).
        split: the split of a folder with several (``None`` takes the only one); files have one split.
        rename: further renames ``{old: new}``, e.g. ``{"nums": "numbers"}`` for TinyZero's Countdown data.
        limit: keep only the first ``limit`` records.
        cache_dir: where ``datasets`` caches what it converts from parquet or data files (its default if
            ``None``).
        check: called on every record (renamed); a ``ValueError`` it raises is raised again with the file and the
            line or record in front (e.g. the reward functions' checks of their reference columns).

    Returns:
        Records: dicts with ``"prompt"`` (a string or messages), ``"answer"`` if mapped, and every other
        column. Chat templates are not applied here (see [`apply_chat_template`][apply_chat_template]).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: an unknown file type or not a regular file (a FIFO, a device), a missing column, records with
            different columns (a record without the answer column is refused here, not when training reaches it), a
            prompt a model cannot take (an empty string, an empty list of messages, a message without a string
            ``role`` or without ``content``, text that is not UTF-8 such as a lone surrogate ``"\\ud800"``), a bad
            split, an empty dataset, or a file that cannot be read (not UTF-8, a line past 16 MiB, nesting past 64
            levels, a number of more than 4300 digits, a corrupt parquet file): the message names the file and the
            line or record.
        ImportError: parquet or a folder without the ``datasets`` package.

    Example::

        records = load_prompts("gsm8k_train.jsonl", prompt_column="question", answer_column="answer")
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No file or folder at {str(path)!r}. load_prompts reads local .jsonl, .json, .parquet files and dataset"
            " folders; download a hub dataset first with datasets.load_dataset(name).save_to_disk(folder)."
        )
    if not path.is_file() and not path.is_dir():
        raise ValueError(
            f"{path} is not a regular file ({file_kind(path)}), nor a folder: pass a .jsonl, .json or .parquet file, "
            "or a dataset folder."
        )
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        if split not in (None, "train"):
            raise ValueError(f"{path} is a single file, hence a single split: pass split=None, not {split!r}.")
        rows, places = _read_json_records(path)
    elif path.is_dir() or path.suffix == ".parquet":
        rows, places = _read_with_datasets(path, split, cache_dir)
    else:
        raise ValueError(f"Unknown file type {path.suffix!r} of {path}: use .jsonl, .json, .parquet or a folder.")
    if not rows:
        raise ValueError(f"{path} holds no records.")
    for row, place in zip(rows, places, strict=True):
        if not isinstance(row, dict):
            raise ValueError(f"{path}, {place} is {type(row).__name__}, not an object with named columns.")
    renames = dict(rename or {})
    renames[prompt_column] = "prompt"
    if answer_column is not None:
        renames[answer_column] = "answer"
    missing = [column for column in renames if column not in rows[0]]
    if missing:
        raise ValueError(
            f"{path} has no column {missing[0]!r}; its columns are {sorted(rows[0])}. Map the right ones with"
            " prompt_column=, answer_column= or rename=."
        )
    rows, places = (rows[:limit], places[:limit]) if limit is not None else (rows, places)
    _check_same_columns(rows, places, path)
    records = []
    for row, place in zip(rows, places, strict=True):
        record = _renamed(row, renames, place, path)
        try:
            if json_depth(record) > MAX_JSON_DEPTH:  # parquet and dataset rows (JSON was checked when parsed)
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} lists or objects deep (MAX_JSON_DEPTH)")
            if check is not None:
                check(record)
        except ValueError as err:
            raise ValueError(f"{path}, {place}: {err}") from None
        records.append(record)
    return records


def _check_same_columns(rows: list[dict[str, Any]], places: list[str], path: Path) -> None:
    """Every record has the columns of the first: a reward function gets one value per completion of each."""
    first = set(rows[0])
    for row, place in zip(rows, places, strict=True):
        if set(row) != first:
            missing, extra = sorted(first - set(row)), sorted(set(row) - first)
            what = f"has no column {missing[0]!r}" if missing else f"has column {extra[0]!r}"
            raise ValueError(
                f"{path}, {place} {what} that record 0 {'has' if missing else 'lacks'}; every record needs the"
                f" same columns ({sorted(first)}): add the missing one (null is a value) or drop the extra one."
            )


def _renamed(row: Mapping[str, Any], renames: Mapping[str, str], place: str, path: Path) -> dict[str, Any]:
    out = {renames.get(key, key): value for key, value in row.items() if key not in renames}
    for old, new in renames.items():
        if old not in row:
            raise ValueError(f"{path}, {place} has no column {old!r}; every record needs it.")
        out[new] = row[old]
    prompt = out["prompt"]
    if not isinstance(prompt, str) and not isinstance(prompt, (list, tuple)):
        raise ValueError(
            f"{path}, {place} has prompt {_brief(prompt)} ({type(prompt).__name__}), neither a string nor a list of "
            "messages; choose the prompt column with prompt_column=."
        )
    problem = _prompt_problem(prompt)
    if problem:
        raise ValueError(
            f"{path}, {place}: prompt {problem}: fix the record (a prompt is a non-empty string, or a non-empty list "
            "of {'role': ..., 'content': ...} messages, in UTF-8 text)."
        )
    return out


def _prompt_problem(prompt: str | list | tuple) -> str | None:
    """Why a model cannot be given ``prompt`` (empty, a message without role or content, text that is not UTF-8),
    or ``None``; a tokenizer or chat template would otherwise fail on it mid-run, naming no record."""
    if isinstance(prompt, str) and not prompt:
        return "'' is empty"
    if not isinstance(prompt, str):
        if not prompt:
            return f"{_brief(prompt)} is an empty list of messages"
        for i, message in enumerate(prompt):
            if not isinstance(message, Mapping):
                return (
                    f"message {i} is {_brief(message)} ({type(message).__name__}), not a {{'role', 'content'}} object"
                )
            for key, kinds, what in (("role", (str,), "a string"), ("content", (str, list), "text or a list of parts")):
                if key not in message:
                    return f"message {i} has no {key!r}"
                if not isinstance(message[key], kinds):
                    value = message[key]
                    return f"message {i} has {key} {_brief(value)} ({type(value).__name__}), not {what}"
    stack = [prompt]
    while stack:  # every string in it (a message's role and content, a content part's text)
        item = stack.pop()
        if isinstance(item, str):
            bad = not_utf8(item)
            if bad:
                return f"holds {bad}, which is not text (a JSON escape of half a UTF-16 pair?)"
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _brief(value: Any) -> str:
    """[`brief_repr`][lightning_reasonattn.files.brief_repr] at the width of these messages (80 characters)."""
    return brief_repr(value, 80)
