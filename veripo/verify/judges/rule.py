"""The rule judge: the answer the reasoning concludes with vs the ``<answer>`` content.

The conclusion is the last "answer is X" (also "should be", "would be") in the think whose X is an
answer of the question's type:

- multiple choice: an option letter right after the phrase, in a form that cannot be a word: an
  upper-case letter A-J not followed by a letter (``B``, ``B.``, ``B,``; ``I`` not followed by a
  lower-case word either, as in "I think"), ``$B$``, ``(B)``, or
  ``option B`` (here the letter may be lower case: ``option b``). Other lower-case letters never count:
  "the answer is a total of 3" names no option, and neither does "the answer is (c)", because lower-case
  letters in prose are mostly articles and list markers [ours].
- numeric and math: the first number in the rest of the sentence (``2``, ``$2$``, ``2.5``, ``-3``,
  ``1,200``), so "the answer is a total of 3" concludes 3. A number that is part of an expression or a
  word (``\\frac{1}{2}``, ``1/2``, ``2^3``, ``2x``) is not one.
- no type given (a caller that has none): either.

The ``<answer>`` side is read by the same type: an option letter (``$B$``, ``(B)``, ``B.``, ``b``,
``B. Clockwise``), the first number, or for math the content itself, compared with math-verify so that
``$\\frac{1}{2}$`` matches a concluded 0.5. No conclusion, or no answer of the type, is UNKNOWN, which is
never counted as consistent. Deterministic and model-free: what runs where no LLM can be loaded.
"""
from __future__ import annotations

import re

from veripo.answers import ANSWER_TYPES, extract_answer, extract_think, math_answer_score
from veripo.verify.judges.base import Judge, parallel
from veripo.verify.judges.verdicts import CONSISTENT, INCONSISTENT, UNKNOWN

_LEAD = re.compile(r"\banswer\s+(?:is|should\s+be|would\s+be)\b\s*:?\s*", re.IGNORECASE)
_LETTER = re.compile(
    r"(?i:option)\s*\(?([A-Ja-j])\)?(?![A-Za-z])"
    r"|\$\s*([A-J])\s*\$"
    r"|\(([A-J])\)"
    r"|([A-HJ])(?![A-Za-z])"
    r"|(I)(?![A-Za-z]|\s+[a-z])")  # not the pronoun: "the answer is I think B"
# Thousands separators are read so that "1,200" is not concluded as 1.
_NUMBER = re.compile(r"(?<![\w.{}/^\\])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w{}/^\\]|\.\d)")
# A full stop ends the sentence only before a space or the end: "2.5" goes on.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
# The whole content is one letter (any case: nothing else in it could be meant) ...
_ANSWER_LETTER = re.compile(r"\$?\s*(?:(?i:option)\s*)?\(?\s*([A-Ja-j])\s*\)?\s*\$?\s*\.?")
# ... or starts with an upper-case letter marked as an option: "B. Clockwise", "(B) Clockwise".
_ANSWER_LEADING_LETTER = re.compile(r"\$?\(?([A-J])[.):]\s")


def _letter(rest: str) -> str | None:
    m = _LETTER.match(rest)
    return next(g for g in m.groups() if g).upper() if m else None


def _number(text: str) -> str | None:
    m = _NUMBER.search(text)
    return m.group(0).replace(",", "") if m else None


def _check_type(answer_type: str | None) -> None:
    if answer_type is not None and answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)} or None")


def think_conclusion(think: str | None, answer_type: str | None = None) -> str | None:
    """The last answer the reasoning states ("... so the answer is B."), normalised: an upper-case
    option letter or a number string."""
    _check_type(answer_type)
    if not think:
        return None
    letters = answer_type in (None, "multiple_choice")
    numbers = answer_type != "multiple_choice"
    found = None
    for lead in _LEAD.finditer(think):
        rest = think[lead.end():]
        end = _SENTENCE_END.search(rest)
        sentence = rest[:end.start()] if end else rest
        stated = (_letter(rest) if letters else None) or (_number(sentence) if numbers else None)
        if stated is not None:
            found = stated
    return found


def normalise_answer(content: str | None, answer_type: str | None = None) -> str | None:
    """The ``<answer>`` content as the type reads it (see the module docstring); None when it holds none."""
    _check_type(answer_type)
    if content is None or not content.strip():
        return None
    if answer_type == "math":
        return content.strip()
    if answer_type in (None, "multiple_choice"):
        s = content.strip()
        m = _ANSWER_LETTER.fullmatch(s) or _ANSWER_LEADING_LETTER.match(s)
        if m:
            return m.group(1).upper()
        if answer_type == "multiple_choice":
            return None
    return _number(content)


def _same(conclusion: str, answer: str, answer_type: str | None) -> bool:
    if answer_type == "math":
        return math_answer_score(answer, conclusion) == 1.0
    try:
        return float(conclusion) == float(answer)
    except ValueError:
        return conclusion == answer


def rule_judge(text: str, answer_type: str | None = None) -> dict:
    concl = think_conclusion(extract_think(text), answer_type)
    ans = normalise_answer(extract_answer(text), answer_type)
    if concl is None or ans is None:
        verdict = UNKNOWN
    else:
        verdict = CONSISTENT if _same(concl, ans, answer_type) else INCONSISTENT
    return {"verdict": verdict, "judge": "rule", "think_conclusion": concl, "answer": ans}


class RuleJudge(Judge):
    name = "rule"

    def judge(self, texts: list[str], questions: list[str] | None = None,
              answer_types: list[str] | None = None) -> list[dict]:
        return [rule_judge(t, kind) for t, kind in zip(texts, parallel(texts, answer_types, "answer types"))]
