"""Word problems: answers re-derived from the story's text, determinism, disjoint splits, prompts, errors."""

import re

import pytest

from lightning_reasonattn.grpo.data import reward_functions, task_records
from lightning_reasonattn.grpo.settings import RewardSettings, TaskSettings
from lightning_reasonattn.rewards import numeric_answer_reward, parse_arithmetic
from lightning_reasonattn.tasks import SYSTEM_PROMPT, generate_word_problems, word_problem_prompt, word_problem_splits
from lightning_reasonattn.tasks import WORD_PROBLEM_DIFFICULTY as DIFFICULTY

_START = re.compile(r"^(\w+) has (\d+) (\w+)\.")
_GAIN = re.compile(r"^Then (?:he|she) (?:buys|finds|gets) (\d+) more(?: from \w+)?\.$")
_LOSS = re.compile(r"^Then (?:he|she) (?:gives|loses) (\d+)(?: to \w+| away)?\.$")
_ASK = re.compile(r"^How many (\w+) does (\w+) have now\?$")


def read_story(question: str) -> tuple[int, list[int]]:
    """Independent reading of a story: the final count and the count after every sentence, from the text."""
    sentences = re.split(r"(?<=[.?]) ", question)
    start = _START.match(sentences[0])
    assert start, sentences[0]
    name, count, item = start[1], int(start[2]), start[3]
    counts = [count]
    for sentence in sentences[1:-1]:
        gain, loss = _GAIN.match(sentence), _LOSS.match(sentence)
        assert bool(gain) != bool(loss), sentence
        count += int(gain[1]) if gain else -int(loss[1])
        counts.append(count)
    ask = _ASK.match(sentences[-1])
    assert ask and ask[1] == item and ask[2] == name, sentences[-1]
    return count, counts


@pytest.mark.parametrize("level", sorted(DIFFICULTY))
def test_answers_follow_from_the_story(level):
    steps, max_number, operations = DIFFICULTY[level]
    records = generate_word_problems(200, seed=4, difficulty=level)
    assert len({r["question"] for r in records}) == 200
    for record in records:
        answer, counts = read_story(record["question"])
        assert record["answer"] == answer
        assert len(counts) == steps + 1  # one sentence per step
        assert min(counts) >= 0 and counts[0] >= 2  # never below zero
        assert parse_arithmetic(record["expression"])[0] == answer  # the stored arithmetic says the same
        assert all(1 <= int(x) <= max_number for x in re.findall(r"\d+", record["question"]))
    completions = [f"Step by step ... The answer is {r['answer']}." for r in records]
    assert numeric_answer_reward(None, completions, [r["answer"] for r in records]) == [1.0] * 200
    takes_away = any("-" in r["expression"] for r in records)
    assert takes_away == (operations == "+-")  # with "+-" some story takes away (200 draws)


def test_overrides():
    records = generate_word_problems(50, seed=0, difficulty=0, steps=3, max_number=30, operations="+-")
    assert all(len(read_story(r["question"])[1]) == 4 for r in records)
    assert max(int(x) for r in records for x in re.findall(r"\d+", r["question"])) > 9


def test_deterministic_and_seeded():
    assert generate_word_problems(20, seed=3) == generate_word_problems(20, seed=3)
    assert generate_word_problems(20, seed=3) != generate_word_problems(20, seed=4)
    assert generate_word_problems(5, seed=3) == generate_word_problems(20, seed=3)[:5]


def test_splits_are_disjoint_and_the_test_split_is_stable():
    train, test = word_problem_splits(300, 50, seed=1, difficulty=2)
    assert len(train) == 300 and len(test) == 50
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    _, test_again = word_problem_splits(100, 50, seed=1, difficulty=2)
    assert test_again == test  # the held-out set does not depend on n_train
    excluded = {test[0]["question"]}
    assert excluded.isdisjoint(r["question"] for r in generate_word_problems(500, seed=0, exclude=excluded))


def test_prompt_styles():
    question = "Tom has 3 apples. Then he buys 4 more. How many apples does Tom have now?"
    assert word_problem_prompt(question, chat=True) == [{"role": "user", "content": question}]
    assert word_problem_prompt(question) == f"Question: {question}\nAnswer:"
    r1 = word_problem_prompt(question, chat=True, style="r1")
    assert r1[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert r1[1]["content"].startswith(question) and "<answer>" in r1[1]["content"]
    assert word_problem_prompt(question, style="r1").endswith("<think>")
    record = generate_word_problems(1, seed=0, chat=True)[0]
    assert record["prompt"] == [{"role": "user", "content": record["question"]}]


def test_bad_arguments_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match=r"difficulty=7: choose one of \[0, 1, 2, 3, 4, 5\]"):
        generate_word_problems(1, difficulty=7)
    with pytest.raises(ValueError, match="operations='-'"):
        generate_word_problems(1, operations="-")
    with pytest.raises(ValueError, match=r"steps=0: pass an integer from 1 to 10"):
        generate_word_problems(1, steps=0)
    with pytest.raises(ValueError, match="steps=True"):
        generate_word_problems(1, steps=True)
    with pytest.raises(ValueError, match=r"max_number=1: pass an integer from 2"):
        generate_word_problems(1, max_number=1)
    with pytest.raises(ValueError, match="style='short' is unknown: use 'plain' or 'r1'"):
        generate_word_problems(1, style="short")
    with pytest.raises(RuntimeError, match="Found only .* raise steps or max_number"):
        # one step of size 1 or 2: 12 names x 10 items x 2 sizes x 26 sentences = 6240 stories
        generate_word_problems(7000, steps=1, max_number=2, operations="+-")


def test_a_trainer_task_by_name():
    task = TaskSettings(name="word_problems", difficulty=3, style="plain", n_train=40, n_test=10, seed=2)
    train, test = task_records(task, chat=True)
    assert len(train) == 40 and len(test) == 10
    assert all(len(read_story(r["question"])[1]) == 4 for r in train + test)  # level 3: three steps
    assert train == word_problem_splits(40, 10, seed=2, difficulty=3, chat=True)[0]
    funcs, _ = reward_functions(RewardSettings(), task)
    assert funcs == [numeric_answer_reward]


def test_survey_has_the_word_problems_set():
    """`reasonattn survey --prompts word_problems`: two-step stories, the question alone as the user message."""
    from lightning_reasonattn.survey import PROMPT_SETS

    records = PROMPT_SETS["word_problems"](5, 0, True)
    assert len({r["question"] for r in records}) == 5
    for r in records:
        assert r["prompt"] == [{"role": "user", "content": r["question"]}]
        assert r["expression"].count("+") + r["expression"].count("-") == 2  # two changes after the start
