"""Answer extraction and per-question scoring, reproducing the VerIPO authors' scorer behaviour.

The rules (see docs/BENCHMARKS.md) are strict on purpose: the published numbers were made with
them, so the quirks (`$ 2.2 $` scores 0, `B. Clockwise` scores 0) are kept. Used both as the RL
reward and by the evaluation scorer, so it imports no torch.
"""
from __future__ import annotations

import functools
import re
import threading
from typing import Any, Callable

import numpy as np

ANSWER_TYPES = ("multiple_choice", "numeric", "math")

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_CHOICE_LETTERS = "abcdefghij"
_MRA_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def extract_answer(text: str) -> str | None:
    """Content of the first ``<answer>...</answer>``, stripped; None when the tags are missing."""
    match = _ANSWER_RE.search(text)
    return match.group(1).strip() if match else None


def is_choice_answer(gold: str) -> bool:
    """True when the gold answer is a single upper-case option letter A-J."""
    return len(gold) == 1 and gold in _CHOICE_LETTERS.upper()


def mc_score(content: str | None, gold: str) -> float:
    """1.0 iff the gold letter occurs in ``content`` and no other letter a-j occurs anywhere in it.

    Case-insensitive. Any other a-j letter, even inside a word (`B. Clockwise`, `\\boxed{B}`),
    fails: that is the published scorer's rule and the published numbers depend on it.
    """
    if len(gold) != 1 or gold.lower() not in _CHOICE_LETTERS:
        raise ValueError(f"multiple-choice gold answer must be one letter A-J, got {gold!r}")
    if content is None:
        return 0.0
    content = content.lower()
    gold = gold.lower()
    if gold not in content:
        return 0.0
    others = (letter for letter in _CHOICE_LETTERS if letter != gold)
    return 0.0 if any(letter in content for letter in others) else 1.0


def parse_vsi_number(content: str | None) -> float | None:
    """The VSI-Bench scorer's number parsing, quirks included; None when it does not parse."""
    if content is None or not content.strip():
        return None
    text = content.strip().strip("$")
    # Only a space ends the number: "2.2\nmeters" stays unparsable, as in the published scorer.
    text = text.split(" ", 1)[0]
    text = text.rstrip(".").strip()
    try:
        return float(text)
    except ValueError:
        return None


def mra(pred: float, gold: float) -> float:
    """Mean relative accuracy over confidence thresholds 0.50, 0.55, ..., 0.95.

    A threshold t counts when |pred - gold| / |gold| <= 1 - t, computed in float64 exactly like
    the official scorer (so e.g. mra(12, 10) == 0.6 while mra(1.2, 1) == 0.7). The relative error
    is undefined for gold == 0; there only an exact prediction scores (1.0), anything else 0.0.
    No benchmark we score has a zero or negative gold; |gold| keeps negative golds meaningful.
    """
    if gold == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gold) / abs(gold)
    return float(np.mean(relative_error <= 1 - _MRA_THRESHOLDS))


def numeric_score(content: str | None, gold: str | float) -> float:
    """MRA of the parsed ``<answer>`` content against the gold number; 0.0 when it does not parse."""
    pred = parse_vsi_number(content)
    if pred is None:
        return 0.0
    return mra(pred, float(gold))


@functools.lru_cache(maxsize=1)
def _load_math_verify() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    # Imported lazily: math-verify pulls in sympy and antlr, which the MC/numeric paths never need.
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    return parse, verify


def math_score(text: str, gold: str) -> float:
    """1.0 when the whole output is symbolically equivalent to ``gold`` (math-verify), else 0.0.

    Without math-verify installed, falls back to comparing the last number in the ``<answer>``
    content with float(gold) for exact equality (no answer tag or a non-numeric gold -> 0.0).
    """
    math_verify = _load_math_verify()
    if math_verify is None:
        return _last_number_score(text, gold)
    parse, verify = math_verify
    # math-verify times out with SIGALRM, which only works in the main thread; elsewhere (reward
    # workers, thread pools) run without its timeout rather than crash.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    # A bare gold like "\frac{1}{2}" is only recognised as LaTeX inside math delimiters.
    gold_latex = gold if "$" in gold else f"${gold}$"
    gold_parsed = parse(gold_latex, parsing_timeout=timeout)
    pred_parsed = parse(text, parsing_timeout=timeout)
    return 1.0 if verify(gold_parsed, pred_parsed, timeout_seconds=timeout) else 0.0


def _last_number_score(text: str, gold: str) -> float:
    content = extract_answer(text)
    if content is None:
        return 0.0
    numbers = _NUMBER_RE.findall(content)
    try:
        gold_value = float(gold)
    except ValueError:
        return 0.0
    return 1.0 if numbers and float(numbers[-1]) == gold_value else 0.0


def score_response(text: str, gold: str, answer_type: str) -> float:
    """Score one model output against its gold answer, in [0, 1]."""
    if answer_type == "multiple_choice":
        return mc_score(extract_answer(text), gold)
    if answer_type == "numeric":
        return numeric_score(extract_answer(text), gold)
    if answer_type == "math":
        return math_score(text, gold)
    raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")
