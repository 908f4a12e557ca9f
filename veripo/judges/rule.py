"""The rule judge: the answer the reasoning concludes with vs the ``<answer>`` content.

The conclusion is the last "answer is X" (also "should be", "would be") in the think; no stated
conclusion, or no answer, is UNKNOWN, which is never counted as consistent. Deterministic and
model-free: what runs where no LLM can be loaded.
"""
from __future__ import annotations

import re

from veripo.judges.base import Judge
from veripo.judges.verdicts import CONSISTENT, INCONSISTENT, UNKNOWN, answer_text, think_text

_CONCLUSION = re.compile(
    r"answer\s+(?:is|should\s+be|would\s+be)\s*:?\s*\$?\s*\(?\s*([A-Ja-j](?![A-Za-z])|-?\d+(?:\.\d+)?)",
    re.IGNORECASE)


def think_conclusion(think: str | None) -> str | None:
    """The last answer the reasoning states ("... so the answer is B."), normalised."""
    if not think:
        return None
    found = _CONCLUSION.findall(think)
    return found[-1].strip().upper() if found else None


def normalise_answer(content: str | None) -> str | None:
    if content is None:
        return None
    s = content.strip().strip("$").strip().rstrip(".").strip()
    s = re.sub(r"^\(?([A-Ja-j])\)?$", r"\1", s)
    return s.upper() if s else None


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def rule_judge(text: str) -> dict:
    concl = think_conclusion(think_text(text))
    ans = normalise_answer(answer_text(text))
    if concl is None or ans is None:
        verdict = UNKNOWN
    else:
        verdict = CONSISTENT if _same(concl, ans) else INCONSISTENT
    return {"verdict": verdict, "judge": "rule", "think_conclusion": concl, "answer": ans}


class RuleJudge(Judge):
    name = "rule"

    def judge(self, texts: list[str], questions: list[str] | None = None) -> list[dict]:
        return [rule_judge(t) for t in texts]
