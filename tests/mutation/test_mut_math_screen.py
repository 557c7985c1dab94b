"""rewards/math_screen.py: the cases the mutation run (`make mutate`) found untested, decided by hand (issue 26).

The screen stands between untrusted model answers and math-verify. Two kinds of error matter: an accepted dangerous
answer (math-verify then spends the whole time limit, or more, on it: ``99999999 !`` ran past an 8 s limit) and a
refused harmless one (it loses math-verify's verdict: a wrong reward). Each expected value below is worked out from
the module's docstring and the limits it names (``MAX_PAREN_DEPTH = 2``, ``MAX_BRACE_DEPTH = 5``,
``MAX_EXPONENT_DIGITS = 4``, ``MAX_GROUP_EXPONENT_DIGITS = 2``, ``MAX_POWER_DIGITS = 10_000``,
``MAX_FACTORIAL_DIGITS = 3``), not from the code's output. The reason is checked word for word: it is the text of the
error a user gets for such a reference answer (``numeric_reference``: "... holds {reason}, which math-verify cannot
evaluate in bounded time").
"""

import pytest

from lightning_reasonattn.rewards.math_screen import (
    _base,
    _depth,
    _group_end,
    _longest_number,
    _operand,
    _power_digits,
    exploding_shape,
    glued_number,
    unreadable_number,
)

TOWER = "a power inside an exponent (a power tower)"
CHAIN = "a chain of powers (a^b^c, a power tower)"
PARENS = "parentheses or brackets nested deeper than 2"
BRACES = "braces nested deeper than 5"
TRIG = "a trigonometric function of a huge number"
EXPRESSION_FACTORIAL = "a factorial of an expression"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # nesting: the depth of the deepest group, however many groups sit side by side
        ("(x)(y(z))", None),  # depth 2 after a closed group
        ("[()()()]", None),  # siblings are not deeper
        ("f(g(x), h(k(y)))", PARENS),  # depth 3 after a closed group
        ("(X(X(X(1))))", PARENS),  # a letter X inside opens and closes nothing
        ("X+X+X+X+X+X", None),
        ("{{{{{1}}}}}", None),  # depth 5: the limit itself is read
        ("{{{{{{1}}}}}}", BRACES),
        ("{X{X{X{X{X{X}}}}}}", BRACES),
        # the exponent is a command with its braced arguments
        ("2^\\frac{1}{2}", None),
        ("2^\\frac{99999}{2}", "an exponent of more than 4 digits"),  # a number in the command's arguments
        ("9^\\Gamma{9}", TOWER),  # an upper-case command
        # the exponent is a run of letters, then a chain
        ("2^ab^c", CHAIN),
        ("2^AB^C", CHAIN),
        ("2^X 99999", None),  # the exponent is X; 99999 is a factor, not part of it
        ("a^*b^2", None),  # a^* (one character) times b^2: no chain
        # the group of an exponent ends at its closing brace
        ("9^{9}**99", CHAIN),
        ("x^{2}!", EXPRESSION_FACTORIAL),
        # a group that never opens is the base, as written
        ("x)^{999}(", None),
        # a factorial in an exponent
        ("9^{99!}", TOWER),  # 9^(99!): a number of 10^156 digits
        # the power of two plain numbers: about len(base) * exponent digits, at most 10,000
        ("10^{5000}", None),  # 2 * 5000 = 10,000 digits: read
        ("10^{5001}", "a power of more than 10,000 digits"),
        # pow(a, b) is a power of its arguments, not of an expression
        ("pow(2, 999)", None),
        ("Pow(2, 999)", None),
        # trigonometric functions: of a number of at most 4 digits, of a power of at most 2 exponent digits
        ("\\sin(1234)", None),
        ("\\sin(12345)", TRIG),
        ("\\sin(2^{10})", None),
        ("\\sin(2^{99})", None),
        ("\\sin(2^{999})", TRIG),  # the docstring's "an exponent of three digits or more"
        ("\\sin 2.5^{999}", TRIG),  # a bare number with a power is the argument
        ("\\sin x^{999}", None),  # sin(x^999): symbolic, nothing to compute
        # factorials, with spaces before the '!'
        ("99999999 !", "a factorial of a number of more than 3 digits"),  # ran past an 8 s limit in math-verify
        ("9! !", "a repeated factorial (9!! reads as (9!)!)"),
        ("2+n!", EXPRESSION_FACTORIAL),  # the docstring's n!
        ("2n!", EXPRESSION_FACTORIAL),
        ("999!", None),
        ("\\binom{100}{50}", None),  # numbers of 3 digits next to a factorial-like function are read
        ("\\binom{1000}{500}", "a factorial or a big operator next to a power or a number of more than 3 digits"),
        ("\\Gamma(\\Gamma(9))", "a factorial-like function of a factorial (Gamma(Gamma(9)))"),
        ("9\\uparrow\\uparrow 9", "Knuth's up-arrow notation (a power tower)"),
    ],
)
def test_exploding_shapes_by_hand(text, reason):
    """Guards the decisions of the screen: each refusal and each harmless answer let through, and the reason named."""
    assert exploding_shape(text) == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("٤5", "a number run into a numeric character that is not an ASCII digit (5½)"),  # an Arabic-Indic 4 before
        ("5½", "a number run into a numeric character that is not an ASCII digit (5½)"),
        ("1_000", "digits joined by an underscore (1_000)"),
        ("−5", None),  # a Unicode minus sign is no digit
        ("2π", None),
        ("5×3", None),
        ("1.5", None),
        ("2x3", None),
    ],
)
def test_unreadable_numbers_by_hand(text, reason):
    """Guards which answers read as no number: a refused ordinary one (2π, −5, 1.5) would lose its reward."""
    assert unreadable_number(text) == reason


@pytest.mark.parametrize(
    ("text", "start", "end", "glued"),
    [
        ("1_000", 0, 1, True),  # an underscore and a digit after
        ("1_0x", 0, 1, True),  # one digit after the underscore is enough
        ("1_0", 0, 1, True),  # at the end of the text too
        ("1_000", 2, 5, True),  # a digit and an underscore before
        ("x_1", 2, 3, False),  # a subscript: a letter before the underscore
        ("1_x", 0, 1, False),
        ("1.5", 0, 1, False),  # a decimal point is not an underscore
        ("12a3", 0, 2, False),
        ("−5", 1, 2, False),  # not numeric, though not ASCII
        ("2π", 0, 1, False),
        ("5²", 0, 1, True),  # numeric and not ASCII
        ("5", 0, 1, False),
    ],
)
def test_glued_number_by_hand(text, start, end, glued):
    """Guards the rule parse_number uses for its last number: only a numeric non-ASCII neighbour or ``_digit``
    glue it to another (a wrong True makes an ordinary answer read as no number)."""
    assert glued_number(text, start, end) is glued


@pytest.mark.parametrize(
    ("text", "start", "operand", "end"),
    [
        ("2^xy+1", 2, "xy", 4),  # a run of letters
        ("2^XY+1", 2, "XY", 4),
        ("2^X", 2, "X", 3),  # X is a letter, not a sign to skip
        ("2^ -3", 2, "3", 5),  # spaces and signs are skipped
        ("a^*b", 2, "*", 3),  # anything else: one character
        ("x^", 2, "", 2),  # nothing after the operator
        ("x^ ", 2, "", 3),
        ("2^\\frac{1}{2}+1", 2, "\\frac{1}{2}", 13),  # a command and its braced arguments
        ("2^\\Gamma{9}", 2, "\\Gamma{9}", 11),
        ("2^\\pi+1", 2, "\\pi", 5),
        ("2^{3}^4", 2, "{3}", 5),
    ],
)
def test_the_operand_of_a_power_by_hand(text, start, operand, end):
    """Guards the exponent the screen reads after a power operator (the helper's contract)."""
    assert _operand(text, start) == (operand, end)


def test_the_base_and_groups_by_hand():
    """Guards the helpers' contracts: a group's end; a group that never opens is everything before the power."""
    assert _base(")^2", 1) == ")"
    assert _base("x)^2(", 2) == "x)"  # the look-back never wraps round to the text's end
    assert _group_end("{3}^4", 0) == 3
    assert _group_end("(a(b)c)d", 0) == 7
    assert _group_end("(a(b", 0) == 4  # never closed: the end of the text
    assert _longest_number("x + y") == 0  # no digits: no number
    assert _longest_number("12 + 3456") == 4


@pytest.mark.parametrize(
    ("text", "depth"),
    [("()()()", 1), ("(()())", 2), ("(()(()))", 3), ("(1)((2))", 2), (")))(", 1), ("", 0)],
)
def test_nesting_depth_by_hand(text, depth):
    """Guards the depth count: siblings do not add up, a closer takes one level off, never below zero."""
    assert _depth(text, "(", ")") == depth


def test_power_digits_of_non_numbers():
    """Guards the estimate: it is 0 unless both sides are plain numbers (X is a letter, never stripped)."""
    assert _power_digits("X9", "2") == 0
    assert _power_digits("9", "2X") == 0
    assert _power_digits("(99)", "{5000}") == 10_000
