"""Reading a user's text files (data, configs, model folders): every error names the file, and the line if any.

A file read here is untrusted in shape: it may not be UTF-8, may nest JSON as deep as it likes, may hold a line of a
gigabyte or a number of 5,000 digits. Each of those is refused with one ``ValueError`` that says which file, which
line (and column), what is wrong and the fix, instead of a codec message, a ``RecursionError`` or Python's
int-conversion message that names no file.

- [`decode_utf8`][decode_utf8]: bytes to text; a byte that is not UTF-8 is reported with its line and column, and a
  UTF-16 or UTF-32 file (by its byte-order mark) is named as such. A UTF-8 byte-order mark is dropped.
- [`parse_json`][parse_json]: one JSON document, nested at most [`MAX_JSON_DEPTH`][MAX_JSON_DEPTH] deep.
- [`read_jsonl`][read_jsonl]: a JSONL file line by line, each line at most [`MAX_LINE_BYTES`][MAX_LINE_BYTES] long
  (read with a bounded ``readline``, so a single huge line never sits in memory whole).
- [`read_text`][read_text] and [`read_json_object`][read_json_object]: a whole small file (a config, a model's
  ``config.json``), bounded in size.
"""

from __future__ import annotations

import codecs
import json
import math
import reprlib
import stat
from pathlib import Path
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of lists and objects accepted in a JSON record (a chat prompt with parts nests 5 deep)."""
MAX_LINE_BYTES = 16 * 2**20
"""Longest line of a JSONL file (16 MiB, millions of tokens: far past any model's context)."""
MAX_FILE_BYTES = 512 * 2**20
"""Largest whole file read at once (a JSON array; a config or ``config.json`` is kilobytes): bigger data: JSONL."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)  # fmt: skip (UTF-32 first: its LE mark starts like UTF-16's)


def where(path: str | Path, line: int | None = None, column: int | None = None) -> str:
    """``"FILE, line L, column C"`` (the parts that are known)."""
    text = str(path)
    text += f", line {line}" if line is not None else ""
    return text + (f", column {column}" if column is not None else "")


def decode_utf8(data: bytes, path: str | Path, first_line: int = 1) -> str:
    """``data`` as text, or a ``ValueError`` naming the file, line and column of the first byte that is not UTF-8.

    Args:
        data: the bytes (a whole file, or one line of it).
        path: the file, for the message.
        first_line: the line number of ``data``'s first line.

    Raises:
        ValueError: a UTF-16/32 byte-order mark, or bytes that are not UTF-8.

    Example:
        >>> try:
        ...     decode_utf8("café".encode("latin-1"), "a.jsonl")
        ... except ValueError as err:
        ...     print(str(err).split(":")[0])
        a.jsonl, line 1, column 4
    """
    if first_line == 1:
        for bom, name in _BOMS:
            if data.startswith(bom):
                raise ValueError(
                    f"{path} is {name} (it starts with a {name} byte-order mark), not UTF-8: save it as UTF-8, e.g. "
                    f"iconv -f {name.lower()} -t utf-8 {path}"
                )
        data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = first_line + before.count(b"\n")
        column = len(before) - (before.rfind(b"\n") + 1) + 1  # in bytes, 1-based
        byte = data[err.start]
        guess = " (a Latin-1 or Windows-1252 file?)" if byte >= 0x80 else ""
        raise ValueError(
            f"{where(path, line, column)}: byte 0x{byte:02x} is not UTF-8{guess}: save the file as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path}"
        ) from None


def not_utf8(text: str) -> str | None:
    """What keeps ``text`` from being written as UTF-8, or ``None``: a byte that was not UTF-8 where the text came from
    (Python keeps such bytes of a command line as surrogate escapes), or a lone surrogate (JSON's ``"\\ud800"``).
    A tokenizer refuses both, with a ``TypeError`` that names neither.

    Example:
        >>> not_utf8("2+2? " + b"\\xff".decode("utf-8", "surrogateescape")), not_utf8("\\ud800"), not_utf8("café")
        ('byte 0xff at character 6', "a lone surrogate '\\\\ud800' at character 1", None)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        if 0xDC80 <= ord(char) <= 0xDCFF:  # surrogateescape: the byte it stands for
            return f"byte 0x{ord(char) - 0xDC00:02x} at character {err.start + 1}"
        return f"a lone surrogate {char!r} at character {err.start + 1}"
    return None


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``value`` nests lists, tuples and dicts (a scalar is 0), counted without recursion up to ``limit + 1``.

    Example:
        >>> json_depth({"prompt": [{"role": "user", "content": "hi"}]}), json_depth(3)
        (3, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_long_number(err: ValueError) -> str:
    """What to say about Python's int-conversion error (a number of more than 4300 digits in a file)."""
    found = str(err).split(";")[0].split(":")[-1].strip()  # "value has 5000 digits"
    return (
        f"holds a number too long to read ({found}; Python reads at most 4300 digits), and no answer or setting is "
        "that long: fix the value."
    )


def parse_json(text: str, path: str | Path, line: int | None = None) -> Any:
    """One JSON document, nested at most [`MAX_JSON_DEPTH`][MAX_JSON_DEPTH] deep; every error names the file and line.

    Args:
        text: the document (a whole file, or one JSONL line).
        path: the file, for the message.
        line: the line number of a JSONL line (``None``: ``text`` is the whole file, and a syntax error gives its
            own line and column).

    Raises:
        ValueError: invalid JSON, a number of more than 4300 digits, or nesting deeper than the limit.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        at = where(path, line) if line is not None else where(path, err.lineno, err.colno)
        raise ValueError(f"{at}: not valid JSON ({err.msg}); fix or remove it.") from None
    except RecursionError:
        value = None
        depth = MAX_JSON_DEPTH + 1
    except ValueError as err:  # an integer of more than 4300 digits (Python's int-conversion limit)
        raise ValueError(f"{where(path, line)}: {too_long_number(err)}") from None
    else:
        depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{where(path, line)}: nested more than {MAX_JSON_DEPTH} lists or objects deep (MAX_JSON_DEPTH); a record "
            "nests a few levels (a chat prompt: 5): fix the record."
        )
    return value


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """``[(line number, value)]`` of every non-blank line of a JSONL file.

    Each line is read with a bounded ``readline`` ([`MAX_LINE_BYTES`][MAX_LINE_BYTES]), decoded by
    [`decode_utf8`][decode_utf8] and parsed by [`parse_json`][parse_json].

    Raises:
        ValueError: a line too long, not UTF-8, not JSON, or nested too deep (the message names file and line).
        OSError: the file cannot be read.
    """
    rows = []
    with open(path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return rows
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(
                    f"{where(path, number)}: longer than {MAX_LINE_BYTES // 2**20} MiB (MAX_LINE_BYTES), millions of "
                    "tokens, past any model's context: is this the right file? Split or shorten the record."
                )
            text = decode_utf8(raw, path, number)
            if text.strip():
                rows.append((number, parse_json(text, path, number)))


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """A whole text file, UTF-8, at most ``max_bytes``; errors name the file (and the line of a bad byte).

    Args:
        path: the file.
        what: what it is, for the messages (``"config"``, ``"data file"``).
        max_bytes: the size limit.

    Raises:
        ValueError: larger than ``max_bytes``, binary (a NUL byte), or not UTF-8.
        OSError: the file cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        limit = f"{max_bytes / 2**20:.0f} MiB"
        raise ValueError(
            f"{what} {path} is {size / 2**20:.0f} MiB, more than the {limit} read at once: the right file?"
        )
    data = path.read_bytes()
    if b"\x00" in data and not any(data.startswith(bom) for bom, _ in _BOMS):
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ValueError(f"{what} {where(path, line)} holds a NUL byte: a binary file, not text. Pass the right file.")
    return decode_utf8(data, path)


def read_json_object(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A small JSON file that must hold one object (a model's ``config.json``), read by [`read_text`][read_text] and
    [`parse_json`][parse_json].

    Raises:
        ValueError: any problem of those two, or a document that is not an object (the message names its type).
    """
    value = parse_json(read_text(path, what, max_bytes=64 * 2**20), path)
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise ValueError(f"{what} {path} holds a JSON {kind}, not an object ({{...}}): pass the right file.")
    return value


MODEL_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "adapter_config.json",
    "model.safetensors.index.json",
)
"""The JSON files of a model folder that must each hold one object."""
_CONFIG_INTEGERS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")


def check_model_folder(folder: str | Path) -> None:
    """Check a local model folder's files before transformers reads them: every error names the file.

    ``config.json`` must exist; it and the other JSON files of [`MODEL_JSON_FILES`][MODEL_JSON_FILES] that exist must
    be UTF-8 JSON objects (nested at most ``MAX_JSON_DEPTH``), ``config.json``'s ``model_type`` a string and its sizes
    (``hidden_size``, ``max_position_embeddings``, ...) integers; every ``*.safetensors`` file must have a readable
    header. Reads no tensor data.

    Raises:
        ValueError: the first problem, naming the file (and the line, or the key).
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{folder} has no config.json: pass a model folder written by save_pretrained.")
    for name in MODEL_JSON_FILES:
        if (folder / name).is_file():
            read_json_object(folder / name, f"the model's {name}")
    config = read_json_object(config_path, "the model's config.json")
    if "model_type" in config and not isinstance(config["model_type"], str):
        raise ValueError(f"{config_path}: model_type is {config['model_type']!r}, not a string such as 'llama'.")
    for key in _CONFIG_INTEGERS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{config_path}: {key} is {value!r} ({type(value).__name__}), not an integer.")
    from safetensors import safe_open

    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as fh:
                fh.keys()
        except Exception as err:  # safetensors raises its own error types for every kind of damage
            raise ValueError(f"{weights} is not a readable safetensors file ({type(err).__name__}: {err}).") from None


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 6, 200, 200
_CONTAINERS = (list, tuple, dict, set, frozenset)


def brief_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters; bounded whatever the value.

    Safe for ints past Python's 4300-digit string limit; lists, tuples, dicts and sets are shown to a depth of 6 and
    their first few items (``repr`` of a list nested 100,000 deep raises RecursionError, of a million items takes
    a second); a value whose ``repr`` raises shows as ``an unprintable <type>``.
    """
    try:
        if isinstance(value, int) and value.bit_length() > 4 * limit:
            return f"an int of about {int(value.bit_length() * math.log10(2)) + 1} digits"
        text = _SHORT_REPR.repr(value) if type(value) in _CONTAINERS else repr(value)
    except Exception:  # a user type's __repr__, or a subclass of a container nested past the recursion limit
        return f"an unprintable {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_kind(path: Path) -> str:
    """What a path that is not a regular file is (``"a FIFO"``, ``"a socket"``...), for the messages."""
    mode = path.stat().st_mode
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kinds += ((stat.S_ISSOCK, "a socket"),)
    return next((name for test, name in kinds if test(mode)), "not a file")
