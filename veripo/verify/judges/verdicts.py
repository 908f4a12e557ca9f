"""What every consistency judge shares: the verdict names, the prompt and the reply parser.

A judge sees one rollout as (question, reasoning, answer): the reasoning is the ``<think>`` content,
the answer the ``<answer>`` content (both read by ``veripo.answers``). The prompt is a config template
with ``{question}``, ``{reasoning}`` and ``{answer}`` (filled by plain replacement, so other braces in
it stay as they are).
An LLM's reply is read by ``parse_reply``; a reply it cannot read is UNPARSABLE, never CONSISTENT.
"""
from __future__ import annotations

import re

CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE = "CONSISTENT", "INCONSISTENT", "UNKNOWN", "UNPARSABLE"
VERDICTS = (CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE)


def render_prompt(template: str, question: str, reasoning: str, answer: str) -> str:
    return template.replace("{question}", question).replace("{reasoning}", reasoning).replace("{answer}", answer)


# Replies of judges that think first (R1-style) carry their reasoning in <think>; the verdict follows it.
_JUDGE_THINK = re.compile(r"^.*</think>", re.DOTALL)
# An echo of the instruction ("CONSISTENT or INCONSISTENT") names both verdicts and decides nothing.
_ECHO = re.compile(r"\b(?:in)?consistent\s*(?:or|/|\|)\s*(?:in)?consistent\b")
_NOT_INCONSISTENT = re.compile(r"\b(?:is\s+|was\s+)?not\s+inconsistent\b")
_NOT_CONSISTENT = re.compile(r"\b(?:is\s+not|isn't|was\s+not|wasn't|not)\s+consistent\b")
_LABELLED = re.compile(r"\b(?:verdict|judgement|judgment|label|final\s+answer|answer)\s*(?:is)?\s*[:=-]?\s*"
                       r"(inconsistent|consistent)\b")
_WORD = re.compile(r"\b(inconsistent|consistent)\b")
_FIRST_WORD = re.compile(r"[a-z]+")


def parse_reply(reply: str | None, yes_is: str | None = CONSISTENT) -> str:
    """The verdict a judge's reply states, or UNPARSABLE.

    Read, in this order: a labelled verdict ("Verdict: INCONSISTENT"); the verdict word(s) when they
    all agree ("the answer is consistent", "**Inconsistent**"); with mixed mentions the reply's first
    word when it is a verdict; a reply starting with yes/no when ``yes_is`` says which verdict "yes"
    means (the prompt must ask a yes/no question for that to make sense). Negations count
    ("not consistent" is INCONSISTENT).
    """
    if reply is None:
        return UNPARSABLE
    t = _JUDGE_THINK.sub(" ", reply).lower().replace("\u2019", "'")
    t = re.sub(r"[*_`#>\"']", " ", t.replace("isn't", "is not").replace("wasn't", "was not"))
    t = _ECHO.sub(" ", t)
    t = _NOT_INCONSISTENT.sub(" consistent ", t)
    t = _NOT_CONSISTENT.sub(" inconsistent ", t)
    labelled = _LABELLED.findall(t)
    if labelled:
        return labelled[-1].upper()
    words = _WORD.findall(t)
    first = _FIRST_WORD.search(t)
    first = first.group(0) if first else ""
    if words:
        if len(set(words)) == 1:
            return words[0].upper()
        return first.upper() if first in ("consistent", "inconsistent") else UNPARSABLE
    if yes_is in (CONSISTENT, INCONSISTENT) and first in ("yes", "no"):
        other = INCONSISTENT if yes_is == CONSISTENT else CONSISTENT
        return yes_is if first == "yes" else other
    return UNPARSABLE
