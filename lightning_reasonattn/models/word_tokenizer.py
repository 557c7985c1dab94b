"""A tokenizer of words, punctuation and single digits, built from a corpus, for models trained from scratch.

Tokens are runs of letters, single digits, single other characters and newlines (spaces are dropped); the
vocabulary is ``<pad>`` (id 0), ``<eos>`` (id 1), then every token of the corpus in sorted order. Numbers are
spelt digit by digit (``12`` is ``1``, ``2``), so a small vocabulary covers every number.

It has what the rollout asks of a plain tokenizer (``encode``, ``decode``, ``eos_token_id``, ``pad_token_id``;
see [`lightning_reasonattn.rollout.prompts`][lightning_reasonattn.rollout.prompts]) and ``batch_decode(...,
skip_special_tokens=True)`` as transformers tokenizers have. ``decode`` joins the tokens as text is usually
spaced: a space between words and numbers, none before punctuation, around a newline or between the digits of a
number, so ``decode(encode(text)) == text`` for text spaced that way and a number decodes whole (what a numeric
reward reads).

``save(path)`` writes the vocabulary as JSON; ``WordTokenizer(vocab_file=path)`` reads it back.

Example:
    >>> from lightning_reasonattn.models import WordTokenizer
    >>> tokenizer = WordTokenizer.from_corpus(["Question: Tom has 12 apples. How many?\\nAnswer: 12 - 5 = 7."])
    >>> ids = tokenizer.encode("Tom has 12 apples.")
    >>> tokenizer.decode(ids)
    'Tom has 12 apples.'
    >>> tokenizer.decode(tokenizer.encode("Answer: 7.") + [tokenizer.eos_token_id], skip_special_tokens=True)
    'Answer: 7.'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..files import read_json_object

TOKEN = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]|\n")
"""One token: a run of letters, a digit, any other character but a space, or a newline."""
PAD, EOS = "<pad>", "<eos>"
FORMAT = "lightning_reasonattn.WordTokenizer"

_NO_SPACE_BEFORE = set(".,;:!?)]}'\n")
_NO_SPACE_AFTER = set("([{'\n")


class WordTokenizer:
    """Words, punctuation and single digits; see the module's docstring.

    Args:
        vocab: the tokens by id, ``<pad>`` and ``<eos>`` among them (usually from
            [`from_corpus`][lightning_reasonattn.models.word_tokenizer.WordTokenizer.from_corpus]).
        vocab_file: a JSON file written by [`save`][lightning_reasonattn.models.word_tokenizer.WordTokenizer.save]
            (instead of ``vocab``; what a YAML ``init_args`` names).

    Raises:
        ValueError: neither or both given, a vocabulary with a token twice, without ``<pad>`` or ``<eos>``, or a
            file that is not a saved vocabulary.
    """

    def __init__(self, vocab: Sequence[str] | None = None, *, vocab_file: str | Path | None = None):
        if (vocab is None) == (vocab_file is None):
            raise ValueError("WordTokenizer takes a vocab (a list of tokens) or a vocab_file (a saved one), not both.")
        where = "vocab"
        if vocab_file is not None:
            vocab, where = _read_vocab(Path(vocab_file)), f"vocab_file {vocab_file}"
        vocab = list(vocab)
        if not all(isinstance(token, str) and token for token in vocab) or len(set(vocab)) != len(vocab):
            raise ValueError(f"{where} must list distinct non-empty token strings, one per id.")
        if PAD not in vocab or EOS not in vocab:
            raise ValueError(f"{where} has no {PAD!r} or no {EOS!r}: build it with WordTokenizer.from_corpus(texts).")
        self.vocab = vocab
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.pad_token_id, self.eos_token_id = self.ids[PAD], self.ids[EOS]
        self.special_ids = {self.pad_token_id, self.eos_token_id}

    @classmethod
    def from_corpus(cls, texts: Iterable[str]) -> WordTokenizer:
        """``<pad>``, ``<eos>``, then every token of ``texts``, sorted."""
        words = sorted({token for text in texts for token in TOKEN.findall(text)})
        return cls([PAD, EOS, *words])

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        return TOKEN.findall(text)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s tokens (no end token added).

        Raises:
            ValueError: a token that is not in the vocabulary (named, with the fix).
        """
        try:
            return [self.ids[token] for token in TOKEN.findall(text)]
        except KeyError as err:
            raise ValueError(
                f"{err.args[0]!r} is not in the vocabulary of {len(self.vocab)} tokens: build the tokenizer from a "
                "corpus that holds it (WordTokenizer.from_corpus)."
            ) from None

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The tokens of ``ids`` joined as text is usually spaced (see the module's docstring).

        Raises:
            ValueError: an id outside the vocabulary.
        """
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.vocab):
                raise ValueError(f"id {i} is outside the vocabulary [0, {len(self.vocab)}): decode this model's ids.")
            if not (skip_special_tokens and i in self.special_ids):
                tokens.append(self.vocab[i])
        text = ""
        for before, token in zip([None, *tokens], tokens, strict=False):
            glued = before is None or token in _NO_SPACE_BEFORE or before in _NO_SPACE_AFTER
            text += token if glued or (before.isdigit() and token.isdigit()) else " " + token
        return text

    def batch_decode(self, rows: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        """[`decode`][lightning_reasonattn.models.word_tokenizer.WordTokenizer.decode] of each row (a ``[B, T]``
        tensor or lists)."""
        return [self.decode(row, skip_special_tokens) for row in rows]

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary to the JSON file ``path``."""
        path = Path(path)
        path.write_text(json.dumps({"format": FORMAT, "vocab": self.vocab}, indent=0) + "\n")
        return path


def _read_vocab(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"vocab_file {path} is not a file: pass the JSON file WordTokenizer.save wrote.")
    data = read_json_object(path, "vocab_file")
    if data.get("format") != FORMAT or not isinstance(data.get("vocab"), list):
        raise ValueError(
            f"vocab_file {path} is not a saved WordTokenizer: pass the JSON file WordTokenizer.save wrote."
        )
    return data["vocab"]
