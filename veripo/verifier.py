"""The Rollout-Aware Verifier: length, repetition, format, accuracy and think/answer consistency.

Each rollout gets a verdict with the outcome of every check and the reasons, which the pair builder
turns into chosen/rejected pairs. The rule judge compares the answer the reasoning concludes with
(the last "answer is X" in the think) with the ``<answer>`` content; it says UNKNOWN when the
reasoning concludes nothing, which is never counted as consistent.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

from veripo import answers, rewards

CONSISTENT, INCONSISTENT, UNKNOWN = "CONSISTENT", "INCONSISTENT", "UNKNOWN"
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_CONCLUSION = re.compile(
    r"answer\s+(?:is|should\s+be|would\s+be)\s*:?\s*\$?\s*\(?\s*([A-Ja-j](?![A-Za-z])|-?\d+(?:\.\d+)?)",
    re.IGNORECASE)


@dataclass
class VerifierConfig:
    min_think_tokens: int
    ngram: int
    max_ngram_repeats: int
    max_compression_ratio: float
    min_text_for_compression: int
    numeric_right: float
    numeric_wrong: float


def think_text(text: str) -> str | None:
    m = _THINK.search(text)
    return m.group(1).strip() if m else None


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
    ans = normalise_answer(answers.extract_answer(text))
    if concl is None or ans is None:
        return {"verdict": UNKNOWN, "think_conclusion": concl, "answer": ans, "judge": "rule"}
    return {"verdict": CONSISTENT if _same(concl, ans) else INCONSISTENT, "think_conclusion": concl,
            "answer": ans, "judge": "rule"}


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
    score = rewards.accuracy_reward(text, record)
    if record["answer_type"] == "numeric":
        label = "right" if score >= cfg.numeric_right else "wrong" if score <= cfg.numeric_wrong else "partial"
    else:
        label = "right" if score >= 1.0 else "wrong"
    return {"label": label, "score": score}


def verify(rollout: dict, tokenizer, cfg: VerifierConfig, judge=rule_judge) -> dict:
    """Verdict of one rollout row (as written by GRPO)."""
    text = rollout["completion"]
    think = think_text(text) or ""
    think_tokens = tokenizer(think, add_special_tokens=False)["input_ids"] if think else []
    length_reasons = []
    if len(think_tokens) < cfg.min_think_tokens:
        length_reasons.append(f"think has {len(think_tokens)} tokens < {cfg.min_think_tokens}")
    if rollout.get("truncated"):
        length_reasons.append("truncated at max_new_tokens")
    length = {"ok": not length_reasons, "think_tokens": len(think_tokens), "reasons": length_reasons}
    fmt = {"ok": rewards.is_well_formed(text)}
    rep = check_repetition(think_tokens, think, cfg)
    acc = check_accuracy(text, rollout["query"], cfg)
    cons = judge(text)
    clean = length["ok"] and fmt["ok"] and rep["ok"]
    reasons = length_reasons + rep["reasons"] + ([] if fmt["ok"] else ["malformed tags"])
    if cons["verdict"] != CONSISTENT:
        reasons.append(f"judge: {cons['verdict']}")
    reasons.append(f"accuracy: {acc['label']}")
    return {
        "rollout_id": rollout["rollout_id"], "query_id": rollout["query_id"], "iteration": rollout["iteration"],
        "checks": {"length": length, "format": fmt, "repetition": rep, "accuracy": acc, "consistency": cons},
        "clean": clean, "reasons": reasons,
    }


def get_judge(spec: dict):
    """The consistency judge named in the config (``verifier.judge.backend``)."""
    if spec["backend"] == "rule":
        return rule_judge
    raise ValueError(f"unknown judge backend {spec['backend']!r}")
