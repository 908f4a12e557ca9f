"""A GRPO stage's rollouts and metrics measured for the figures: mean accuracy reward, response and think
tokens and the rule judge's inconsistency rate of its rollouts, and its metrics per round.

One implementation for the arms' comparison (per stage, veripo.report.compare) and the run's report (per
round, veripo.report.collect), so that both figures of the same rollouts give the same numbers.
Rollouts are judged by the rule judge whatever verifier.judge names: then every stage is measured alike,
iteration 0 (which no verifier judges) and an arm without a verifier included.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from veripo.stage_config import VerifierConfig
from veripo.verify.judges.verdicts import INCONSISTENT
from veripo.verify.verifier import load_rollouts, verify_all

# What metrics_per_round averages: every step of a round logs the same values, those of its rollouts.
ROUND_METRICS = ("reward/accuracy", "reward/format", "response_length")


def judged_rollouts(rollouts_path: str, model_path: str, verifier_cfg: VerifierConfig) -> list[tuple[dict, dict]]:
    """Every rollout of one GRPO stage with its verdict under the rule judge, think tokens counted with
    the stage checkpoint's tokenizer."""
    from veripo.model.text_tokenizer import load_text_tokenizer
    from veripo.verify.judges import make_judge

    rows = load_rollouts(rollouts_path)
    verdicts = verify_all(rows, load_text_tokenizer(model_path), verifier_cfg, make_judge({"backend": "rule"}))
    return list(zip(rows, verdicts))


def measures(judged: list[tuple[dict, dict]]) -> dict:
    """Mean accuracy reward, response and think tokens, and the rule judge's inconsistency rate (share
    of all the rollouts, UNKNOWN ones in the denominator) of ``judged`` (from judged_rollouts)."""
    n = len(judged)
    return {
        "rollouts": n,
        "rollout_accuracy": sum(float(r.get("reward_accuracy", 0.0)) for r, _ in judged) / n,
        "response_tokens": sum(int(r.get("num_tokens", len(r.get("completion_ids", [])))) for r, _ in judged) / n,
        "think_tokens": sum(v["checks"]["length"]["think_tokens"] for _, v in judged) / n,
        "inconsistency_rule": sum(v["checks"]["consistency"]["verdict"] == INCONSISTENT for _, v in judged) / n,
        "sampled_tokens": sum(int(r.get("num_tokens", 0)) for r, _ in judged),
    }


def measures_per_round(judged: list[tuple[dict, dict]]) -> dict[int, dict]:
    """{round: measures of that round's rollouts}, rounds in order (the rollouts' ``round`` field)."""
    rounds = defaultdict(list)
    for row, verdict in judged:
        rounds[row["round"]].append((row, verdict))
    return {r: measures(rounds[r]) for r in sorted(rounds)}


def metrics_per_round(metrics: list[dict]) -> dict[int, dict]:
    """{round: mean of each of ROUND_METRICS over the round's steps}, rounds in order."""
    rounds = defaultdict(list)
    for m in metrics:
        rounds[m["round"]].append(m)
    return {r: {key: statistics.fmean(m[key] for m in rounds[r]) for key in ROUND_METRICS} for r in sorted(rounds)}
