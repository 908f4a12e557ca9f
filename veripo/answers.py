"""Answer extraction and per-question scoring, reproducing the VerIPO authors' scorer behaviour.

The rules (see docs/BENCHMARKS.md) are strict on purpose: the published numbers were made with
them, so the quirks (`$ 2.2 $` scores 0, `B. Clockwise` scores 0) are kept. The evaluation scorer
(``score_response``) reads math in the whole output, as the published one does; the RL reward
(``answer_score``) reads only the ``<answer>`` content, so a number in the think earns nothing.
Imports no torch.
"""
from __future__ import annotations

import functools
import re
import threading
from typing import Any, Callable

import numpy as np

ANSWER_TYPES = ("multiple_choice", "numeric", "math")

# The response layout the prompts ask for; every reader of a response (scorer, rewards, verifier,
# judges, pair builder) parses it with these patterns, so they cannot drift apart.
RESPONSE_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LAYOUT_RE = re.compile(rf"^\s*{_THINK_RE.pattern}\s*{_ANSWER_RE.pattern}\s*$", re.DOTALL)
_CHOICE_LETTERS = "abcdefghij"
_MRA_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def extract_answer(text: str) -> str | None:
    """Content of the first ``<answer>...</answer>``, stripped; None when the tags are missing."""
    match = _ANSWER_RE.search(text)
    return match.group(1).strip() if match else None


def extract_think(text: str) -> str | None:
    """Content of the first ``<think>...</think>``, stripped; None when the tags are missing."""
    match = _THINK_RE.search(text)
    return match.group(1).strip() if match else None


def think_then_answer(text: str) -> tuple[str, str] | None:
    """(think, answer) contents, unstripped, when ``text`` is one think followed by one answer with only
    whitespace around them; None otherwise (a tag inside the think or the answer included)."""
    if any(text.count(tag) != 1 for tag in RESPONSE_TAGS):
        return None
    match = _LAYOUT_RE.match(text)
    return (match.group(1), match.group(2)) if match else None


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


_MATH_VERIFY_MISSING = ("math answers need the math-verify package, which is not importable: "
                        "pip install math-verify==0.9.0 (pinned in requirements.txt)")
# Math delimiters that math-verify finds LaTeX inside; content with none of them gets wrapped in `$`.
_MATH_DELIMITERS = ("$", "\\(", "\\[")


@functools.lru_cache(maxsize=1)
def _load_math_verify() -> tuple[Callable[..., Any], Callable[..., Any]]:
    # Imported lazily: math-verify pulls in sympy and antlr, which the MC/numeric paths never need.
    try:
        from math_verify import parse, verify
    except ImportError as exc:
        raise ImportError(_MATH_VERIFY_MISSING) from exc
    return parse, verify


def _as_latex(expression: str) -> str:
    """``expression`` as math-verify reads LaTeX: a bare ``\\frac{1}{2}`` is only recognised inside delimiters."""
    return expression if any(d in expression for d in _MATH_DELIMITERS) else f"${expression}$"


def math_equivalent(gold: str, pred: str) -> bool:
    """math-verify's symbolic equivalence of ``pred`` (searched as it is) with ``gold``."""
    parse, verify = _load_math_verify()
    # math-verify times out with SIGALRM, which only works in the main thread; elsewhere (reward
    # workers, thread pools) run without its timeout rather than crash.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    # Not _as_latex: published scores were made with this exact wrapping of the gold.
    gold_latex = gold if "$" in gold else f"${gold}$"
    gold_parsed = parse(gold_latex, parsing_timeout=timeout)
    pred_parsed = parse(pred, parsing_timeout=timeout)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def math_score(text: str, gold: str) -> float:
    """1.0 when math-verify finds ``gold`` in the WHOLE output, else 0.0: the published scorer's rule,
    so a number in the think can match. The RL reward reads the answer instead (``math_answer_score``)."""
    return 1.0 if math_equivalent(gold, text) else 0.0


def math_answer_score(content: str | None, gold: str) -> float:
    """1.0 when the ``<answer>`` content is symbolically equivalent to ``gold``; no content scores 0.0."""
    if content is None or not content.strip():
        return 0.0
    return 1.0 if math_equivalent(gold, _as_latex(content)) else 0.0


def answer_score(content: str | None, gold: str, answer_type: str) -> float:
    """Score of the ``<answer>`` content alone, in [0, 1]: the RL accuracy reward for every answer type."""
    if answer_type == "multiple_choice":
        return mc_score(content, gold)
    if answer_type == "numeric":
        return numeric_score(content, gold)
    if answer_type == "math":
        return math_answer_score(content, gold)
    raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")


def score_response(text: str, gold: str, answer_type: str) -> float:
    """Score one model output against its gold answer, in [0, 1], by the published scorer's rules."""
    if answer_type == "math":
        return math_score(text, gold)
    return answer_score(extract_answer(text), gold, answer_type)
