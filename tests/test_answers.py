from __future__ import annotations

import sys
import threading

import pytest

from veripo import answers
from veripo.answers import (
    ANSWER_TYPES,
    answer_score,
    extract_answer,
    is_choice_answer,
    math_answer_score,
    math_score,
    mc_score,
    mra,
    numeric_score,
    parse_vsi_number,
    score_response,
)


def test_answer_types():
    assert ANSWER_TYPES == ("multiple_choice", "numeric", "math")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>so B</think><answer> $B$ </answer>", "$B$"),
        ("<answer>first</answer> <answer>second</answer>", "first"),
        ("<answer>\n2.2\nmeters\n</answer>", "2.2\nmeters"),
        ("<answer></answer>", ""),
        ("the answer is B", None),
        ("<answer>B", None),
        ("B</answer>", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "gold, expected",
    [("A", True), ("D", True), ("J", True), ("K", False), ("a", False), ("AB", False), ("", False), ("2", False)],
)
def test_is_choice_answer(gold, expected):
    assert is_choice_answer(gold) is expected


@pytest.mark.parametrize(
    "content, gold, expected",
    [
        ("$B$", "B", 1.0),
        ("B", "B", 1.0),
        ("(B)", "B", 1.0),
        ("B.", "B", 1.0),
        ("b", "B", 1.0),
        ("$J$", "J", 1.0),
        ("B!!", "B", 1.0),
        # Any other letter a-j anywhere fails, even inside words: the published scorer's rule.
        ("B. Clockwise", "B", 0.0),
        ("\\boxed{B}", "B", 0.0),
        ("The answer is B", "B", 0.0),
        ("A or B", "B", 0.0),
        ("$C$", "B", 0.0),
        ("", "B", 0.0),
        (None, "B", 0.0),
        # Letters past j do not count as options.
        ("B (only)", "B", 1.0),
    ],
)
def test_mc_score(content, gold, expected):
    assert mc_score(content, gold) == expected


def test_mc_score_rejects_non_letter_gold():
    with pytest.raises(ValueError, match="'2.5'"):
        mc_score("$B$", "2.5")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("2.2", 2.2),
        ("$2.2$", 2.2),
        ("$$3$$", 3.0),
        ("  $2.2$  ", 2.2),
        ("2.2.", 2.2),
        ("2.2 meters", 2.2),
        ("-1.5", -1.5),
        ("3 .", 3.0),
        # Only a space ends the number, but the tab before it is stripped afterwards.
        ("2.2\t meters", 2.2),
        # Quirks the published numbers include: a space after `$`, or a newline, breaks parsing.
        ("$ 2.2 $", None),
        ("2.2\nmeters", None),
        ("$2$.", None),
        ("two", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_vsi_number(content, expected):
    assert parse_vsi_number(content) == expected


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        (2.0, 2.0, 1.0),
        (2.2, 2.0, 0.9),  # 0.10000000000000009 <= 1 - 0.8999999999999999
        (3.0, 2.0, 0.1),  # relative error 0.5 passes only theta = 0.5
        (1.0, 2.0, 0.1),
        (4.0, 2.0, 0.0),
        (0.0, 2.0, 0.0),
        (2.1, 2.0, 1.0),  # 0.050000000000000044 <= 1 - 0.95 == 0.050000000000000044
        (23.0, 20.0, 0.8),
        (1.2, 1.0, 0.7),  # 0.19999999999999996 <= 0.19999999999999996
        (12.0, 10.0, 0.6),  # 0.2 > 0.19999999999999996: float rounding drops theta = 0.8
        (13.0, 10.0, 0.5),
        (1.25, 1.0, 0.6),
        (1.45, 1.0, 0.2),
        (-2.2, -2.0, 0.9),
    ],
)
def test_mra(pred, gold, expected):
    assert mra(pred, gold) == expected


def test_mra_zero_gold_needs_exact_prediction():
    assert mra(0.0, 0.0) == 1.0
    assert mra(0.001, 0.0) == 0.0


@pytest.mark.parametrize(
    "content, gold, expected",
    [
        ("$2.2$", "2", 0.9),
        ("2.2.", 2.0, 0.9),
        ("$2$", "2", 1.0),
        ("$ 2.2 $", "2", 0.0),
        ("2.2\nmeters", "2", 0.0),
        ("about two", "2", 0.0),
        ("", "2", 0.0),
        (None, "2", 0.0),
    ],
)
def test_numeric_score(content, gold, expected):
    assert numeric_score(content, gold) == expected


def test_score_response_multiple_choice():
    assert score_response("<think>B</think><answer> $B$ </answer>", "B", "multiple_choice") == 1.0
    assert score_response("<think>B</think><answer>B. Clockwise</answer>", "B", "multiple_choice") == 0.0
    assert score_response("<think>so the answer is B</think>", "B", "multiple_choice") == 0.0


def test_score_response_numeric():
    assert score_response("<think>..</think><answer> $2.2$ </answer>", "2", "numeric") == 0.9
    assert score_response("$2.2$", "2", "numeric") == 0.0


def test_score_response_unknown_type():
    with pytest.raises(ValueError) as err:
        score_response("<answer>1</answer>", "1", "open_ended")
    message = str(err.value)
    assert "'open_ended'" in message
    assert all(name in message for name in ANSWER_TYPES)


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>half</think><answer> $\\frac{1}{2}$ </answer>", "0.5", 1.0),
        ("<answer>$0.5$</answer>", "1/2", 1.0),
        ("<answer>$\\frac{\\sqrt{3}}{2}$</answer>", "\\frac{\\sqrt{3}}{2}", 1.0),
        ("<answer>$42$</answer>", "42", 1.0),
        ("<answer>$41$</answer>", "42", 0.0),
        ("no answer at all", "42", 0.0),
    ],
)
def test_math_score_with_math_verify(text, gold, expected):
    assert math_score(text, gold) == expected
    assert score_response(text, gold, "math") == expected


def test_math_score_outside_main_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(math_score("<answer>$2$</answer>", "2")))
    worker.start()
    worker.join()
    assert results == [1.0]


def test_missing_math_verify_raises_one_clear_line(monkeypatch):
    answers._load_math_verify.cache_clear()
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` raise ImportError
    try:
        with pytest.raises(ImportError) as err:
            math_score("<answer>$2$</answer>", "2")
    finally:
        answers._load_math_verify.cache_clear()
    message = str(err.value)
    assert "\n" not in message and "math-verify" in message and "math-verify==0.9.0" in message
    # MC and numeric scoring never need it
    assert score_response("<answer>$B$</answer>", "B", "multiple_choice") == 1.0


@pytest.mark.parametrize(
    "content, gold, expected",
    [
        ("$\\frac{1}{2}$", "0.5", 1.0),
        ("\\frac{1}{2}", "0.5", 1.0),  # bare LaTeX is read inside `$` we add
        ("\\dfrac12", "0.5", 1.0),
        ("\\[\\frac{1}{2}\\]", "0.5", 1.0),  # its own delimiters are left alone
        ("0.5", "1/2", 1.0),
        ("x = 1/2", "0.5", 1.0),
        ("$42$", "42", 1.0),
        ("$41$", "42", 0.0),
        ("seven", "7", 0.0),
        ("", "7", 0.0),
        (None, "7", 0.0),
    ],
)
def test_math_answer_score_reads_the_content(content, gold, expected):
    assert math_answer_score(content, gold) == expected
    assert answer_score(content, gold, "math") == expected


def test_answer_score_unknown_type():
    with pytest.raises(ValueError, match="'open_ended'"):
        answer_score("1", "1", "open_ended")


# score_response reproduces the published scorer: these values were recorded from it before the RL
# reward moved to the answer content, and must not move. Math is read in the WHOLE output there, so a
# number in the think (or a bare `$42$` without answer tags) still scores.
PUBLISHED_SCORES = [
    ("<think>the total is 3</think><answer>$4$</answer>", "3", "math", 0.0),
    ("<think>the total is 4</think><answer>$3$</answer>", "3", "math", 1.0),
    ("<think>half</think><answer> $\\frac{1}{2}$ </answer>", "0.5", "math", 1.0),
    ("the answer is $42$", "42", "math", 1.0),
    ("no answer at all", "42", "math", 0.0),
    ("<answer>0.5</answer>", "1/2", "math", 0.0),
    ("<answer>\\frac{1}{2}</answer>", "0.5", "math", 1.0),
    ("<think>x = 7</think><answer>seven</answer>", "7", "math", 1.0),
    ("<think>B</think><answer> $B$ </answer>", "B", "multiple_choice", 1.0),
    ("<think>B</think><answer>B. Clockwise</answer>", "B", "multiple_choice", 0.0),
    ("<think>so the answer is B</think>", "B", "multiple_choice", 0.0),
    ("<think>..</think><answer> $2.2$ </answer>", "2", "numeric", 0.9),
    ("<think>2</think><answer>$ 2 $</answer>", "2", "numeric", 0.0),
    ("$2.2$", "2", "numeric", 0.0),
]


@pytest.mark.parametrize("text, gold, answer_type, expected", PUBLISHED_SCORES)
def test_score_response_keeps_the_published_rules(text, gold, answer_type, expected):
    assert score_response(text, gold, answer_type) == expected
