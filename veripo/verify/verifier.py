"""The Rollout-Aware Verifier: length, repetition, format, accuracy and think/answer consistency.

Each rollout gets a verdict with the outcome of every check and the reasons, which the pair builder
turns into chosen/rejected pairs. Every threshold is a key of the config's ``verifier`` section.
Consistency comes from the judge named in ``verifier.judge`` (veripo/verify/judges/): the rule judge
compares the answer the reasoning concludes with (the last "answer is X" in the think) with the
``<answer>`` content; LLM judges read the question, the reasoning and the answer. UNKNOWN (nothing to
compare) and UNPARSABLE (an LLM reply that names no verdict) are never counted as consistent.
"""
from __future__ import annotations

import logging
import zlib
from collections import Counter
from dataclasses import dataclass, replace

from veripo import rewards
from veripo.verify.judges import CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE, Judge, make_judge  # noqa: F401
from veripo.verify.judges.rule import normalise_answer, rule_judge, think_conclusion  # noqa: F401
from veripo.answers import extract_think as think_text
from veripo.jsonio import read_jsonl, require_types, unique_index, write_json, write_jsonl
from veripo.prompts import strip_mc_suffix
from veripo.stage_config import VerifierConfig, VerifierSampleJob, write_settings
from veripo.verify.stats import verdict_statistics

log = logging.getLogger(__name__)


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
    think_tokens = tokenizer.encode(think, add_special_tokens=False) if think else []
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
    judge.progress = progress
    judged = judge([r["completion"] for r in rollouts], [judge_question(r["query"]) for r in rollouts],
                   [r["query"]["answer_type"] for r in rollouts])
    rows = zip(rollouts, judged)
    if progress is not None:
        rows = progress(rows, total=len(rollouts), desc="verify")
    return [verify(r, tokenizer, cfg, cons) for r, cons in rows]


def get_judge(spec: dict) -> Judge:
    """The consistency judge named in the config (``verifier.judge``)."""
    return make_judge(spec)


ROLLOUT_FIELDS = ("rollout_id", "query_id", "completion", "query", "iteration")


def load_rollouts(path: str) -> list[dict]:
    """The rollouts of ``path`` the verifier judges: unique ids, a text completion and its query each."""
    rows = read_jsonl(path, required=ROLLOUT_FIELDS)
    unique_index(rows, "rollout_id", path)
    require_types(rows, {"completion": str, "query": dict}, path)
    return rows


@dataclass(frozen=True)
class VerifierOutputs:
    """Where the verifier_judge job writes."""

    verdicts: str  # one verdict per rollout (JSONL)
    stats: str  # the iteration's verdict statistics (JSON)
    settings: str  # the job's effective settings (JSON)


def run_job(rollouts_path: str, model_path: str, cfg: VerifierConfig, out: VerifierOutputs, progress=None) -> dict:
    """The verifier_judge job: a verdict for every rollout at ``rollouts_path``, think tokens counted
    with ``model_path``'s tokenizer. Returns the statistics."""
    from veripo.model.text_tokenizer import load_text_tokenizer

    rows = load_rollouts(rollouts_path)
    tokenizer = load_text_tokenizer(model_path)
    judge = get_judge(cfg.judge)
    log.info("judge %s on %d rollouts", judge.name, len(rows))
    verdicts = verify_all(rows, tokenizer, cfg, judge, progress=progress)
    write_jsonl(out.verdicts, verdicts)
    stats = verdict_statistics(verdicts)
    write_json(out.stats, stats)
    write_settings(out.settings, cfg, {"rollouts": rollouts_path, "model": model_path}, world_size=1)
    return stats


def run_sample_job(model_path: str, data_path: str, job: VerifierSampleJob, iteration: int, out: str,
                   settings_out: str, progress=None) -> list[dict]:
    """The verifier_sample job: ``job.rollouts.rollouts_per_query`` fresh rollouts per query from the
    GRPO checkpoint, sampled as the GRPO stage samples except for group size and temperature."""
    import torch

    from veripo.data import queries
    from veripo.model import policy
    from veripo.stage_config import PromptSetup
    from veripo.model.rollouts import Sampling, sample_fresh

    r = job.rollouts
    torch.manual_seed(r.seed)
    prompts = PromptSetup.of(job)
    records = queries.load_queries(data_path, max_question_chars=job.max_question_chars)
    model, processor = policy.load_policy(model_path, job.dtype, job.attn_implementation)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    policy.configure_processor(processor, prompts.media)
    sampling = Sampling.of(replace(job.grpo, rollouts_per_query=r.rollouts_per_query, temperature=r.temperature))
    rows = sample_fresh(model, processor, records, sampling, prompts.templates, prompts.media, iteration, r.seed,
                        progress)
    write_jsonl(out, rows)
    write_settings(settings_out, job, {"model": model_path, "data": data_path}, iteration=iteration, world_size=1)
    return rows
