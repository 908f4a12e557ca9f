"""GRPO's rule rewards: format (``format_weight`` when the response is well formed) + accuracy in [0, 1]."""
from __future__ import annotations

from veripo.answers import answer_score, extract_answer, think_then_answer


def is_well_formed(text: str) -> bool:
    """Exactly one of each tag, think non-empty, answer after think, nothing outside the tags."""
    parts = think_then_answer(text)
    return bool(parts and parts[0].strip())


def format_reward(text: str, weight: float) -> float:
    return weight if is_well_formed(text) else 0.0


def accuracy_reward(text: str, record: dict) -> float:
    """The ``<answer>`` content scored against the gold (no answer tag scores 0.0); unlike the benchmark
    scorer, math never looks at the think, so GRPO cannot be paid for a number the reasoning passed by."""
    return float(answer_score(extract_answer(text), str(record["answer"]), record["answer_type"]))
