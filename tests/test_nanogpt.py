"""NanoGPT and WordTokenizer (the from-scratch model and its tokenizer), and prompts through a plain tokenizer."""

import pytest
import torch

from lightning_reasonattn import NanoGPT, WordTokenizer, capture_rhythm
from lightning_reasonattn.rollout.prompts import encode_prompts

TEXTS = ["Question: Tom has 12 apples. Then he gives 3 to Anna. How many apples does Tom have now?\nAnswer:",
         " 12 - 3 = 9. The answer is 9."]  # fmt: skip


def test_word_tokenizer_by_hand():
    tok = WordTokenizer.from_corpus(TEXTS)
    assert tok.vocab[:2] == ["<pad>", "<eos>"] and tok.pad_token_id == 0 and tok.eos_token_id == 1
    assert tok.vocab[2:] == sorted(tok.vocab[2:]) and len(tok) == tok.vocab_size == len(set(tok.vocab))
    ids = tok.encode("Tom has 12 apples.")
    assert [tok.vocab[i] for i in ids] == ["Tom", "has", "1", "2", "apples", "."]
    assert tok.decode(ids) == "Tom has 12 apples."
    assert tok.decode(tok.encode(TEXTS[0])) == TEXTS[0]  # words spaced, none before punctuation, around "\n"
    assert tok.decode(tok.encode(TEXTS[1])) == TEXTS[1].strip()
    with_end = tok.encode("The answer is 9.") + [tok.eos_token_id, tok.pad_token_id]
    assert tok.decode(with_end) == "The answer is 9. <eos> <pad>"
    assert tok.batch_decode(torch.tensor([with_end]), skip_special_tokens=True) == ["The answer is 9."]
    with pytest.raises(ValueError, match="'Zoe' is not in the vocabulary"):
        tok.encode("Zoe has 3")
    with pytest.raises(ValueError, match="id 999 is outside the vocabulary"):
        tok.decode([999])


def test_word_tokenizer_file_round_trip(tmp_path):
    tok = WordTokenizer.from_corpus(TEXTS)
    path = tok.save(tmp_path / "tokenizer.json")
    again = WordTokenizer(vocab_file=path)
    assert again.vocab == tok.vocab and again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    (tmp_path / "other.json").write_text('{"vocab": ["a"]}')
    with pytest.raises(ValueError, match="is not a saved WordTokenizer"):
        WordTokenizer(vocab_file=tmp_path / "other.json")
    with pytest.raises(ValueError, match="not both"):
        WordTokenizer(tok.vocab, vocab_file=path)
    with pytest.raises(ValueError, match="has no '<pad>'"):
        WordTokenizer(["a", "b"])


def test_nanogpt_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = NanoGPT(vocab_size=40, block_size=24, n_layer=2, n_head=2, n_embd=16).eval()
    model.save(tmp_path)
    state = torch.random.get_rng_state()
    loaded = NanoGPT.load(tmp_path)
    assert torch.equal(torch.random.get_rng_state(), state)  # loading draws nothing from the RNG
    ids = torch.randint(0, 40, (2, 24))
    assert torch.equal(loaded(ids), model(ids)) and loaded.max_seq_length == 24
    assert loaded.transformer.wte.weight is loaded.lm_head.weight  # still tied
    with pytest.raises(ValueError, match="holds no config.json"):
        NanoGPT.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="does not split into n_head=3"):
        NanoGPT(40, 24, 2, 3, 16)


def test_capture_finds_nanogpt_blocks():
    """The SDPA route measures NanoGPT without being told where its attention is."""
    torch.manual_seed(0)
    model = NanoGPT(40, 32, 3, 2, 16).eval()
    ids = torch.randint(0, 40, (2, 30))
    response = torch.zeros(2, 30, dtype=torch.bool)
    response[:, 10:] = True
    trace = capture_rhythm(model, ids, None, response, layers="all", horizon=(2, 10))
    assert trace.head_distance.shape == (2, 3, 2) and trace.waad[:, 10:].isfinite().all()


def test_encode_prompts_with_a_plain_tokenizer():
    tok = WordTokenizer.from_corpus(TEXTS)
    ids, mask = encode_prompts(tok, ["Tom has 12 apples.", "Anna has 3"])
    first, second = tok.encode("Tom has 12 apples."), tok.encode("Anna has 3")
    assert ids.tolist() == [first, [0] * (len(first) - len(second)) + second]
    assert mask.tolist() == [[1] * len(first), [0] * (len(first) - len(second)) + [1] * len(second)]
    with pytest.raises(ValueError, match="prompt 1 is list, not text, but WordTokenizer is a plain tokenizer"):
        encode_prompts(tok, ["Tom", [{"role": "user", "content": "Tom"}]])
    with pytest.raises(ValueError, match="prompt 0 .* encodes to no token"):
        encode_prompts(tok, ["  "])

    class EndOnly:  # no pad_token_id: padded with the end id
        eos_token_id = 7

        def encode(self, text):
            return [ord(c) - 60 for c in text]  # a = 37

    ids, mask = encode_prompts(EndOnly(), ["ab", "abcd"])
    assert ids.tolist() == [[7, 7, 37, 38], [37, 38, 39, 40]] and mask.sum().item() == 6
