"""The Rollout-Aware Verifier: length, repetition, format, accuracy and think/answer consistency.

Each rollout gets a verdict with the outcome of every check and the reasons, which the pair builder
turns into chosen/rejected pairs. Every threshold is a key of the config's ``verifier`` section.
Consistency comes from the judge named in ``verifier.judge`` (veripo/verify/judges/): the rule judge
compares the answer the reasoning concludes with (the last "answer is X" in the think) with the
``<answer>`` content; LLM judges read the question, the reasoning and the answer. UNKNOWN (nothing to
compare) and UNPARSABLE (an LLM reply that names no verdict) are never counted as consistent.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

from veripo import rewards
from veripo.verify.judges import CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE, Judge, make_judge  # noqa: F401
from veripo.verify.judges.rule import normalise_answer, rule_judge, think_conclusion  # noqa: F401
from veripo.verify.judges.verdicts import think_text
from veripo.prompts import strip_mc_suffix


@dataclass
class VerifierConfig:
    min_think_tokens: int          # length: fewer think tokens (policy tokenizer) fail
    ngram: int                     # repetition: an n-gram of this many think tokens ...
    max_ngram_repeats: int         # ... seen this many times fails
    max_compression_ratio: float   # repetition: a zlib ratio above this fails ...
    min_text_for_compression: int  # ... for thinks of at least this many characters
    numeric_right: float           # accuracy, numeric answers: MRA at or above is right ...
    numeric_wrong: float           # ... at or below is wrong, in between partial

    @classmethod
    def from_config(cls, section: dict) -> "VerifierConfig":
        return cls(**{k: section[k] for k in cls.__dataclass_fields__})


def max_ngram_count(tokens: list, n: int) -> int:
    if len(tokens) < n:
        return 0
    counts = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return max(counts.values())


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw, 9)))


def check_repetition(think_tokens: list, think: str, cfg: VerifierConfig) -> dict:
    count = max_ngram_count(think_tokens, cfg.ngram)
    ratio = compression_ratio(think) if len(think) >= cfg.min_text_for_compression else 0.0
    reasons = []
    if count >= cfg.max_ngram_repeats:
        reasons.append(f"a {cfg.ngram}-gram repeats {count} times")
    if ratio > cfg.max_compression_ratio:
        reasons.append(f"compression ratio {ratio:.2f} > {cfg.max_compression_ratio}")
    return {"ok": not reasons, "max_ngram_count": count, "compression_ratio": round(ratio, 3), "reasons": reasons}


def check_accuracy(text: str, record: dict, cfg: VerifierConfig) -> dict:
    """The GRPO accuracy reward, labelled: multiple choice and math (math-verify) are right or wrong;
    numbers (MRA) are right, partial or wrong by the configured bands."""
    score = rewards.accuracy_reward(text, record)
    if record["answer_type"] == "numeric":
        label = "right" if score >= cfg.numeric_right else "wrong" if score <= cfg.numeric_wrong else "partial"
    else:
        label = "right" if score >= 1.0 else "wrong"
    return {"label": label, "score": score}


def check_length(think_tokens: list, truncated: bool, cfg: VerifierConfig) -> dict:
    reasons = []
    if len(think_tokens) < cfg.min_think_tokens:
        reasons.append(f"think has {len(think_tokens)} tokens < {cfg.min_think_tokens}")
    if truncated:
        reasons.append("truncated at max_new_tokens")
    return {"ok": not reasons, "think_tokens": len(think_tokens), "reasons": reasons}


def verify(rollout: dict, tokenizer, cfg: VerifierConfig, consistency: dict | None = None) -> dict:
    """Verdict of one rollout row (as written by GRPO); ``consistency`` is the judge's verdict on it
    (default: the rule judge)."""
    text = rollout["completion"]
    think = think_text(text) or ""
    think_tokens = tokenizer(think, add_special_tokens=False)["input_ids"] if think else []
    length = check_length(think_tokens, bool(rollout.get("truncated")), cfg)
    fmt = {"ok": rewards.is_well_formed(text)}
    rep = check_repetition(think_tokens, think, cfg)
    acc = check_accuracy(text, rollout["query"], cfg)
    cons = consistency if consistency is not None else rule_judge(text, rollout["query"]["answer_type"])
    clean = length["ok"] and fmt["ok"] and rep["ok"]
    reasons = length["reasons"] + rep["reasons"] + ([] if fmt["ok"] else ["malformed tags"])
    if cons["verdict"] != CONSISTENT:
        reasons.append(f"judge: {cons['verdict']}")
    reasons.append(f"accuracy: {acc['label']}")
    return {
        "rollout_id": rollout["rollout_id"], "query_id": rollout["query_id"], "iteration": rollout["iteration"],
        "checks": {"length": length, "format": fmt, "repetition": rep, "accuracy": acc, "consistency": cons},
        "clean": clean, "reasons": reasons,
    }


def judge_question(record: dict) -> str:
    """The question as the judge sees it (options included, the letter-only instruction dropped)."""
    return strip_mc_suffix(str(record.get("question", "")))


def verify_all(rollouts: list[dict], tokenizer, cfg: VerifierConfig, judge: Judge, progress=None) -> list[dict]:
    """Verdicts of all rollouts; the judge sees them all at once so an LLM judge can batch."""
    judged = judge([r["completion"] for r in rollouts], [judge_question(r["query"]) for r in rollouts],
                   [r["query"]["answer_type"] for r in rollouts])
    rows = zip(rollouts, judged)
    if progress is not None:
        rows = progress(rows, total=len(rollouts), desc="verify")
    return [verify(r, tokenizer, cfg, cons) for r, cons in rows]


def get_judge(spec: dict) -> Judge:
    """The consistency judge named in the config (``verifier.judge``)."""
    return make_judge(spec)
