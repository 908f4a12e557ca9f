"""The arms' comparison (rule compare): what each arm's loop did to the policy, per seed and iteration,
and the final scores' paired differences to the baseline arm.

Every arm is measured the same way from its own artifacts: the GRPO rollouts give accuracy, response
length, think length and the rule judge's inconsistency rate (computed for every arm by
veripo.report.rollouts, as the run's report computes them, so an arm without a verifier is measured like
one with); an LLM judge's rate comes from the verifier's statistics
where the arm ran one; scores come from the score files, their intervals included.
"""
from __future__ import annotations

import csv
import os
import statistics
from collections import defaultdict

import numpy as np

from veripo.answers import score_response
from veripo.errors import InputError
from veripo.eval import bootstrap
from veripo.jsonio import read_json, read_jsonl
from veripo.report.rollouts import judged_rollouts, measures, metrics_per_round
from veripo.stage_config import VerifierConfig

SERIES = ("rollout_accuracy", "response_tokens", "think_tokens", "inconsistency_rule", "inconsistency_judge")


def _wall_seconds(path: str) -> float:
    """Wall seconds of one job from its Snakemake benchmark file; 0 when the job did not run (a rule
    the arm does not have) or the file is gone."""
    if not os.path.isfile(path):
        return 0.0
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    try:
        return float(rows[-1]["s"])
    except (IndexError, KeyError, ValueError):
        raise InputError(path, "not a Snakemake benchmark file (no 's' column)") from None


def _per_question(predictions: str, benchmark: str) -> tuple[dict[str, float], dict[str, str | None]]:
    from veripo.eval.scoring import read_predictions

    items = read_predictions(predictions, benchmark)
    return ({i["key"]: score_response(i["response"], i["answer"], i["answer_type"]) for i in items},
            {i["key"]: i["category"] for i in items})


def run_table(run: dict, benchmarks: list[str], verifier_cfg: VerifierConfig) -> list[dict]:
    """One row per iteration of one arm x seed."""
    rows = []
    for k, entry in enumerate(run["iterations"]):
        row = {"iteration": k, **measures(judged_rollouts(entry["grpo_rollouts"], entry["grpo_model"], verifier_cfg))}
        stats = read_json(entry["verifier_stats"]) if "verifier_stats" in entry else None
        judges = set((stats or {}).get("judges", {}))
        row["inconsistency_judge"] = stats["inconsistency_rate"] if stats and judges - {"rule"} else None
        row["pairs"] = len(read_jsonl(entry["pairs"])) if "pairs" in entry else None
        row["grpo_rounds"] = list(metrics_per_round(read_jsonl(entry["grpo_metrics"])).values())
        for b in benchmarks:
            score = read_json(entry["scores"][b])
            row[f"score/{b}"] = score["overall"]
            row[f"ci95/{b}"] = score.get("ci95")
        row["wall_seconds"] = {rule: _wall_seconds(path) for rule, path in entry["cost"].items()}
        rows.append(row)
    return rows


def paired_to_baseline(manifest: dict, benchmark: str, arm: str, baseline: str, k: int) -> dict:
    """Mean over seeds of overall(arm, seed) - overall(baseline, seed) at iteration k, with a 95%
    interval from resampling the questions (stratified by category) once for every seed and arm."""
    by_arm = defaultdict(dict)
    for run in manifest["runs"]:
        if run["arm"] in (arm, baseline):
            by_arm[run["arm"]][run["seed"]] = _per_question(run["iterations"][k]["predictions"][benchmark], benchmark)
    seeds = sorted(set(by_arm[arm]) & set(by_arm[baseline]))
    keys = sorted(set.intersection(*(set(by_arm[a][s][0]) for a in (arm, baseline) for s in seeds)))
    categories = [by_arm[baseline][seeds[0]][1][key] for key in keys]
    idx = bootstrap.resample_indices(categories)
    whole = np.arange(len(keys))[None, :]
    diffs, point = [], []
    for s in seeds:
        a = np.array([by_arm[arm][s][0][key] for key in keys])
        b = np.array([by_arm[baseline][s][0][key] for key in keys])
        diffs.append(bootstrap.mean_aggregate(a, idx) - bootstrap.mean_aggregate(b, idx))
        point.append(float(bootstrap.mean_aggregate(a, whole)[0] - bootstrap.mean_aggregate(b, whole)[0]))
    mean = np.mean(diffs, axis=0)
    lo, hi = np.percentile(mean, [2.5, 97.5])
    return {"arm": arm, "baseline": baseline, "benchmark": benchmark, "iteration": k, "seeds": seeds,
            "questions": len(keys), "difference": float(np.mean(point)), "per_seed": point,
            "ci95": [float(lo), float(hi)]}


def summarise(manifest: dict) -> dict:
    """The comparison: per-run tables, per-arm means and spreads per iteration, the base model's
    scores, the arms' costs and the final paired differences."""
    verifier_cfg = VerifierConfig.from_config(manifest["verifier"])
    benches = manifest["benchmarks"]
    runs = [{**{k: run[k] for k in ("arm", "seed", "dpo")}, "rows": run_table(run, benches, verifier_cfg)}
            for run in manifest["runs"]]
    arms = list(dict.fromkeys(run["arm"] for run in runs))
    keys = [*SERIES, *(f"score/{b}" for b in benches)]
    per_arm = {}
    for arm in arms:
        mine = [run["rows"] for run in runs if run["arm"] == arm]
        iters = []
        for k in range(len(mine[0])):
            cell = {"iteration": k}
            for key in keys:
                values = [rows[k][key] for rows in mine if rows[k][key] is not None]
                if values:
                    cell[key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
            iters.append(cell)
        cost = [sum(sum(r["wall_seconds"].values()) for r in rows) for rows in mine]
        tokens = [sum(r["sampled_tokens"] for r in rows) for rows in mine]
        per_arm[arm] = {"iterations": iters, "wall_seconds": statistics.fmean(cost),
                        "sampled_tokens": statistics.fmean(tokens)}
    base = {b: read_json(manifest["base"]["scores"][b]) for b in benches}
    final = len(manifest["runs"][0]["iterations"]) - 1
    baseline = manifest.get("baseline_arm")
    paired = [paired_to_baseline(manifest, b, arm, baseline, final)
              for b in benches for arm in arms if baseline and arm != baseline]
    return {"benchmarks": benches, "arms": arms, "seeds": sorted({run["seed"] for run in runs}),
            "baseline_arm": baseline, "runs": runs, "per_arm": per_arm, "paired": paired,
            "base": {b: {"overall": s["overall"], "ci95": s.get("ci95")} for b, s in base.items()}}


def _fmt(cell: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not cell:
        return ""
    mean, lo, hi = (cell[k] * scale for k in ("mean", "min", "max"))
    return f"{mean:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})" if hi > lo else f"{mean:.{digits}f}"


def markdown(summary: dict) -> str:
    """The comparison as the README shows it: per arm the final score, its paired difference to the
    baseline arm, length and inconsistency per iteration, and the cost."""
    lines = []
    for b in summary["benchmarks"]:
        base = summary["base"][b]
        lines += [f"**{b}** (base model {base['overall']:.1f}"
                  + (f", 95% CI {base['ci95'][0]:.1f}-{base['ci95'][1]:.1f})" if base.get("ci95") else ")"), "",
                  "| arm | final score, mean over seeds (range) | per seed (95% CI) | paired difference to "
                  f"{summary['baseline_arm']} (95% CI) |", "|---|---|---|---|"]
        for arm in summary["arms"]:
            final = summary["per_arm"][arm]["iterations"][-1]
            seeds = [f"{run['rows'][-1][f'score/{b}']:.1f} ({run['rows'][-1][f'ci95/{b}'][0]:.1f}-"
                     f"{run['rows'][-1][f'ci95/{b}'][1]:.1f})"
                     for run in summary["runs"] if run["arm"] == arm and run["rows"][-1].get(f"ci95/{b}")]
            pd = next((p for p in summary["paired"] if p["arm"] == arm and p["benchmark"] == b), None)
            diff = f"{pd['difference']:+.1f} ({pd['ci95'][0]:+.1f} to {pd['ci95'][1]:+.1f})" if pd else "baseline"
            lines.append(f"| {arm} | {_fmt(final.get(f'score/{b}'))} | {'; '.join(seeds)} | {diff} |")
        lines.append("")
    n_iter = len(next(iter(summary["per_arm"].values()))["iterations"])
    head = " | ".join(f"iter{k}" for k in range(n_iter))
    for key, label, scale in (("rollout_accuracy", "GRPO rollout accuracy", 1.0),
                              ("response_tokens", "response tokens", 1.0),
                              ("think_tokens", "think tokens", 1.0),
                              ("inconsistency_rule", "inconsistency, rule judge (%)", 100.0),
                              ("inconsistency_judge", "inconsistency, LLM judge (%)", 100.0)):
        if not any(key in cell for arm in summary["arms"] for cell in summary["per_arm"][arm]["iterations"]):
            continue
        lines += [f"{label}, mean over seeds (range):", "", f"| arm | {head} |", "|---|" + "---|" * n_iter]
        for arm in summary["arms"]:
            cells = [_fmt(c.get(key), scale, 3 if key == "rollout_accuracy" else 1)
                     for c in summary["per_arm"][arm]["iterations"]]
            lines.append(f"| {arm} | {' | '.join(cells)} |")
        lines.append("")
    lines += ["| arm | training wall time per seed (s) | GRPO tokens sampled per seed |", "|---|---|---|"]
    for arm in summary["arms"]:
        a = summary["per_arm"][arm]
        lines.append(f"| {arm} | {a['wall_seconds']:.0f} | {a['sampled_tokens']:.0f} |")
    return "\n".join(lines) + "\n"
