"""Offline tasks: Countdown and arithmetic generators, local dataset loading, chat formatting."""

import json
import sys
from fractions import Fraction
from itertools import permutations

import pytest

from lightning_reasonattn.rewards import countdown_reward, numeric_answer_reward, parse_arithmetic
from lightning_reasonattn.tasks import (
    DIFFICULTY,
    SYSTEM_PROMPT,
    apply_chat_template,
    arithmetic_splits,
    countdown_key,
    countdown_prompt,
    countdown_splits,
    generate_arithmetic,
    generate_countdown,
    load_prompts,
    reachable_targets,
    solve_countdown,
)
from lightning_reasonattn.tasks.arithmetic import evaluate_sum_of_products

# ---------------------------------------------------------------------------------------- countdown


def brute_force_reachable(numbers, target):
    """Independent check: fold the numbers left to right in every order, with every operator and every
    bracketing (a stack machine over all postfix orders), exactly, until the target shows up."""
    goal = Fraction(target)

    def values(items):  # all values of all binary trees over the ordered items
        if len(items) == 1:
            return {items[0]}
        out = set()
        for cut in range(1, len(items)):
            for a in values(items[:cut]):
                for b in values(items[cut:]):
                    out |= {a + b, a - b, a * b}
                    if b != 0:
                        out.add(a / b)
        return out

    return any(goal in values([Fraction(x) for x in order]) for order in set(permutations(numbers)))


def test_reachable_targets_hand_computed():
    # 2 and 3: 2+3=5, 3-2=1, 2*3=6 (2-3=-1, 2/3 and 3/2 fall outside or are not integers)
    assert reachable_targets([2, 3], 1, 10) == [1, 5, 6]
    # 1 and 1: 1-1=0, 1*1=1/1=1, 1+1=2
    assert reachable_targets([1, 1], 0, 5) == [0, 1, 2]
    # (1 + 2/3) * 3 = 5 needs a fraction on the way
    assert 5 in reachable_targets([1, 2, 3, 3], 5, 5)
    assert solve_countdown([1, 1], 7) is None
    assert solve_countdown([44, 19, 35], 98) == "(44 + 19) + 35"


def test_generate_countdown_protocol_and_reachability():
    records = generate_countdown(40, seed=7)
    assert len(records) == 40
    assert len({countdown_key(r) for r in records}) == 40  # distinct problems
    sizes = set()
    for record in records:
        numbers, target = record["numbers"], record["target"]
        sizes.add(len(numbers))
        assert len(numbers) in (3, 4) and all(isinstance(x, int) and 1 <= x <= 99 for x in numbers)
        assert isinstance(target, int) and 1 <= target <= 100
        assert brute_force_reachable(numbers, target)
        assert f"Using the numbers {numbers}, create an equation that equals {target}." in record["prompt"]
        assert record["prompt"].endswith("<think>")
        # the generator's own solution is scored 1.0 by the reward's safe parser
        solution = solve_countdown(numbers, target)
        assert countdown_reward(None, [f"<answer>{solution}</answer>"], [numbers], [target]) == [1.0]
    assert sizes == {3, 4}


def test_generate_countdown_is_deterministic():
    assert generate_countdown(10, seed=3) == generate_countdown(10, seed=3)
    assert generate_countdown(10, seed=3) != generate_countdown(10, seed=4)
    assert generate_countdown(5, seed=3) == generate_countdown(10, seed=3)[:5]


def test_countdown_splits_are_disjoint_and_stable():
    train, test = countdown_splits(150, 50, seed=0, target_range=(1, 20))  # small range: collisions likely
    assert len(train) == 150 and len(test) == 50
    assert not {countdown_key(r) for r in train} & {countdown_key(r) for r in test}
    _, same_test = countdown_splits(10, 50, seed=0, target_range=(1, 20))
    assert same_test == test  # the test split does not depend on n_train
    # a key with the numbers in another order is the same problem
    assert countdown_key({"numbers": [5, 1, 3], "target": 9}) == countdown_key({"numbers": [3, 5, 1], "target": 9})


def test_generate_countdown_options_and_errors():
    chat = generate_countdown(2, seed=0, chat=True, num_numbers=(3, 3), target_range=(10, 999))
    assert [m["role"] for m in chat[0]["prompt"]] == ["system", "user"]
    assert chat[0]["prompt"][0]["content"] == SYSTEM_PROMPT
    assert all(len(r["numbers"]) == 3 and 10 <= r["target"] <= 999 for r in chat)
    key = countdown_key(generate_countdown(1, seed=0)[0])
    assert key not in {countdown_key(r) for r in generate_countdown(20, seed=0, exclude={key})}
    with pytest.raises(ValueError, match="at most 5 numbers"):
        generate_countdown(1, num_numbers=(3, 6))
    with pytest.raises(ValueError, match=r"number_range=\(5, 1\)"):
        generate_countdown(1, number_range=(5, 1))
    with pytest.raises(RuntimeError, match="Found only"):
        generate_countdown(50, num_numbers=(2, 2), number_range=(1, 2), target_range=(1, 100))
    assert countdown_prompt([1, 2], 3, chat=True)[1]["content"].startswith("Using the numbers [1, 2]")


# --------------------------------------------------------------------------------------- arithmetic


def test_evaluate_sum_of_products_hand_computed():
    assert evaluate_sum_of_products([12, 34, 56], ["+", "*"]) == 12 + 1904
    assert evaluate_sum_of_products([10, 2, 3], ["-", "*"]) == 4
    assert evaluate_sum_of_products([2, 3, 4], ["*", "-"]) == 2
    assert evaluate_sum_of_products([5, 4, 3, 2], ["-", "-", "*"]) == -5
    assert evaluate_sum_of_products([7], []) == 7


@pytest.mark.parametrize("level", sorted(DIFFICULTY))
def test_generate_arithmetic_levels(level):
    k, low, high, ops = DIFFICULTY[level]
    records = generate_arithmetic(30, seed=1, difficulty=level)
    assert len({r["expression"] for r in records}) == 30
    for record in records:
        tokens = record["expression"].split()
        operands, operators = [int(t) for t in tokens[::2]], tokens[1::2]
        assert len(operands) == k and set(operators) <= set(ops)
        assert all(low <= len(str(x)) <= high for x in operands)
        assert parse_arithmetic(record["expression"])[0] == record["answer"]  # independent evaluator
        assert f"What is {record['expression']}?" in record["prompt"]
    completions = [f"<think>...</think><answer>{r['answer']}</answer>" for r in records]
    assert numeric_answer_reward(None, completions, [r["answer"] for r in records]) == [1.0] * 30


def test_generate_arithmetic_determinism_overrides_and_errors():
    assert generate_arithmetic(5, seed=2) == generate_arithmetic(5, seed=2)
    assert generate_arithmetic(5, seed=2) != generate_arithmetic(5, seed=3)
    records = generate_arithmetic(5, seed=0, difficulty=1, num_operands=4, digits=(3, 3), operators="*", chat=True)
    assert all(r["expression"].count("*") == 3 for r in records)
    assert records[0]["prompt"][1]["role"] == "user"
    train, test = arithmetic_splits(100, 30, seed=0, difficulty=1)
    assert not {r["expression"] for r in train} & {r["expression"] for r in test}
    with pytest.raises(ValueError, match="difficulty=9"):
        generate_arithmetic(1, difficulty=9)
    with pytest.raises(ValueError, match="operators='/'"):
        generate_arithmetic(1, operators="/")
    with pytest.raises(ValueError, match="num_operands=1"):
        generate_arithmetic(1, num_operands=1)
    with pytest.raises(RuntimeError, match="Found only"):
        generate_arithmetic(200, num_operands=2, digits=(1, 1), operators="+")  # only 100 distinct sums


# ------------------------------------------------------------------------------------------ loading


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


ROWS = [
    {"question": "What is 2 + 2?", "solution": "#### 4", "id": 0},
    {"question": [{"role": "user", "content": "3 + 3?"}], "solution": "6", "id": 1},
]


def test_load_prompts_jsonl_maps_columns(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    records = load_prompts(path, prompt_column="question", answer_column="solution")
    assert records == [
        {"id": 0, "prompt": "What is 2 + 2?", "answer": "#### 4"},
        {"id": 1, "prompt": [{"role": "user", "content": "3 + 3?"}], "answer": "6"},
    ]
    assert load_prompts(str(path), prompt_column="question", limit=1) == [
        {"solution": "#### 4", "id": 0, "prompt": "What is 2 + 2?"}
    ]
    tinyzero = write_jsonl(tmp_path / "cd.jsonl", [{"prompt": "p", "nums": [1, 2], "target": 3}])
    assert load_prompts(tinyzero, rename={"nums": "numbers"}) == [{"target": 3, "prompt": "p", "numbers": [1, 2]}]
    array = tmp_path / "data.json"
    array.write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_prompts(array, prompt_column="question") == load_prompts(path, prompt_column="question")


def test_load_prompts_errors(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"no column 'prompt'; its columns are \['id', 'question', 'solution'\]"):
        load_prompts(path)
    with pytest.raises(ValueError, match="no column 'answer'"):
        load_prompts(path, prompt_column="question", answer_column="answer")
    with pytest.raises(ValueError, match=r"line 1 \(record 0\) has prompt 0 \(int\)"):
        load_prompts(path, prompt_column="id")
    with pytest.raises(ValueError, match="single split"):
        load_prompts(path, prompt_column="question", split="test")
    with pytest.raises(FileNotFoundError, match="save_to_disk"):
        load_prompts(tmp_path / "missing.jsonl")
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Unknown file type '.csv'"):
        load_prompts(tmp_path / "data.csv")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_prompts(broken)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no records"):
        load_prompts(tmp_path / "empty.jsonl")
    ragged = write_jsonl(tmp_path / "ragged.jsonl", [{"prompt": "a"}, {"text": "b"}])
    with pytest.raises(ValueError, match=r"line 2 \(record 1\) has no column 'prompt'"):
        load_prompts(ragged)


def test_load_prompts_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(ImportError, match="pip install 'datasets>=2.14'"):
        load_prompts(tmp_path / "x.parquet")


def test_load_prompts_parquet_and_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "q0", "solution": "1"}, {"question": "q1", "solution": "2"}]
    expected = [{"prompt": "q0", "answer": "1"}, {"prompt": "q1", "answer": "2"}]
    data = datasets.Dataset.from_list(rows)
    cache = tmp_path / "cache"
    kw = dict(prompt_column="question", answer_column="solution", cache_dir=cache)

    data.to_parquet(str(tmp_path / "data.parquet"))
    assert load_prompts(tmp_path / "data.parquet", **kw) == expected

    data.save_to_disk(str(tmp_path / "single"))
    assert load_prompts(tmp_path / "single", **kw) == expected

    datasets.DatasetDict({"train": data, "test": data.select([1])}).save_to_disk(str(tmp_path / "splits"))
    assert load_prompts(tmp_path / "splits", split="test", **kw) == expected[1:]
    with pytest.raises(ValueError, match=r"has splits \['test', 'train'\]: pass split="):
        load_prompts(tmp_path / "splits", **kw)

    files = tmp_path / "files"
    files.mkdir()
    write_jsonl(files / "train.jsonl", rows)
    assert load_prompts(files, **kw) == expected


# --------------------------------------------------------------------------------------- templates


def tiny_chat_tokenizer(chat_template):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tokenizer.chat_template = chat_template
    return tokenizer


TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_apply_chat_template_with_and_without_a_template():
    records = [
        {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "answer": 1},
        {"prompt": "plain text stays as it is", "answer": 2},
    ]
    templated = apply_chat_template(records, tiny_chat_tokenizer(TEMPLATE))
    assert templated == [
        {"prompt": "<|system|>S\n<|user|>U\n<|assistant|>", "answer": 1},
        {"prompt": "plain text stays as it is", "answer": 2},
    ]
    assert records[0]["prompt"][0] == {"role": "system", "content": "S"}  # inputs untouched
    no_gen = apply_chat_template(records[:1], tiny_chat_tokenizer(TEMPLATE), add_generation_prompt=False)
    assert no_gen[0]["prompt"] == "<|system|>S\n<|user|>U\n"
    plain = apply_chat_template(records, tiny_chat_tokenizer(None))
    assert plain[0]["prompt"] == "system: S\nuser: U\nassistant:"
    with pytest.raises(ValueError, match="Record 0 has prompt 42"):
        apply_chat_template([{"prompt": 42}], None)


def test_generated_chat_records_go_through_a_chat_template():
    records = generate_countdown(2, seed=0, chat=True)
    text = apply_chat_template(records, tiny_chat_tokenizer(TEMPLATE))[0]["prompt"]
    assert text.startswith(f"<|system|>{SYSTEM_PROMPT}\n<|user|>Using the numbers ")
    assert text.endswith("<|assistant|>")
