"""Arms: named variants of the loop, built side by side under ``arms/<arm>/seed<S>/`` (config ``arms``).

An arm is the configured loop with some sections overridden (``overrides``), and with or without the
verifier -> DPO half (``dpo``). A seed replaces every sampling seed of the loop (GRPO, verifier
resampling, DPO, curriculum), so ``arms/<arm>/seed<S>/iterK/...`` is one arm's chain under one seed;
``arms/<arm>/iterK/...`` keeps the configured seeds.
Data, the base model and its warm-up do not depend on the arm or seed and are shared.

Read while the DAG is built: the standard library only.
"""
from __future__ import annotations

import re

from veripo.run_settings import merge_layers

# What an arm may change: the loop's sections. Data, the base model, its warm-up and evaluation stay
# shared, so the arms differ only in what the comparison is about.
ARM_SECTIONS = ("grpo", "verifier", "pairs", "dpo", "curriculum")
SEED_KEYS = (("grpo", "seed"), ("verifier", "rollouts", "seed"), ("dpo", "seed"), ("curriculum", "seed"))
RUN_PREFIX = re.compile(r"arms/(?P<arm>[A-Za-z0-9_]+)/(seed(?P<seed>\d+)/)?")
# The wildcard that prefixes the chain's paths: empty for the configured chain (iterK/...).
RUN_WILDCARD = r"(arms/[A-Za-z0-9_]+/(seed\d+/)?)?"


def run_prefix(arm: str, seed: int) -> str:
    return f"arms/{arm}/seed{seed}/"


def parse_run(run: str) -> tuple[str, int | None] | None:
    """(arm, seed) of a run prefix (seed None: the configured seeds); None for the configured chain's
    empty prefix."""
    if not run:
        return None
    m = RUN_PREFIX.fullmatch(run)
    if m is None:
        raise ValueError(f"not a run prefix: {run!r} (expected arms/<arm>/ or arms/<arm>/seed<S>/)")
    return m["arm"], None if m["seed"] is None else int(m["seed"])


def arm_config(config: dict, arm: str, seed: int | None) -> dict:
    """The config one arm's chain runs with under ``seed`` (None: the configured seeds)."""
    arms = config.get("arms", {})
    if arm not in arms:
        raise ValueError(f"unknown arm {arm!r}: config 'arms' has {', '.join(sorted(arms)) or 'none'}")
    out = merge_layers(config, arms[arm].get("overrides", {}))
    for path in SEED_KEYS if seed is not None else ():
        section = out
        for key in path[:-1]:
            section = section[key]
        section[path[-1]] = seed
    return out


def run_config(config: dict, run: str) -> dict:
    """The config of the chain under ``run`` (the configured one for the empty prefix)."""
    parsed = parse_run(run)
    return config if parsed is None else arm_config(config, *parsed)


def has_dpo(config: dict, run: str) -> bool:
    """Whether the chain under ``run`` has the verifier -> DPO half (the configured chain always)."""
    parsed = parse_run(run)
    return True if parsed is None else config["arms"][parsed[0]].get("dpo", True)


def arm_problems(config: dict) -> list[str]:
    """What is wrong with the arms and the comparison's settings, one line each (the schema checked
    their shapes; this checks what refers to what)."""
    problems = []
    arms = config.get("arms", {})
    for name, spec in arms.items():
        for section in spec.get("overrides", {}):
            if section not in ARM_SECTIONS:
                problems.append(f"config key 'arms.{name}.overrides.{section}': an arm may override only "
                                f"{', '.join(ARM_SECTIONS)} (data, base model and evaluation are shared)")
    report = config.get("report", {})
    for i, name in enumerate(report.get("arms", [])):
        if name not in arms:
            problems.append(f"config key 'report.arms[{i}]': {name!r} is not one of arms "
                            f"({', '.join(sorted(arms)) or 'none'})")
    baseline = report.get("baseline_arm")
    if baseline is not None and baseline not in report.get("arms", []):
        problems.append(f"config key 'report.baseline_arm': {baseline!r} is not one of report.arms")
    return problems


# The training rules whose wall time is an arm's cost (logs/benchmarks/<rule>/<run>iter<K>.tsv).
COST_RULES = ("grpo_train", "verifier_sample", "verifier_judge", "dpo_build_pairs", "dpo_train")


def compare_manifest(config: dict) -> dict:
    """What rule compare reads: per compared arm and seed, per iteration, the GRPO stage's
    rollouts, metrics and checkpoint, the verifier's and pairs' statistics (arms with DPO), and
    the evaluation's scores and predictions on every report benchmark; the base model's too."""
    report = config["report"]
    benches = list(report["benchmarks"])
    runs = []
    for arm in report["arms"]:
        for seed in report["seeds"]:
            run = run_prefix(arm, seed)
            dpo = config["arms"][arm].get("dpo", True)
            iters = []
            for k in range(config["iterations"] + 1):
                entry = {
                    "grpo_rollouts": f"{run}iter{k}/grpo/rollouts.jsonl",
                    "grpo_metrics": f"{run}iter{k}/grpo/metrics.jsonl",
                    "grpo_model": f"{run}iter{k}/grpo/model",
                    "scores": {b: f"{run}iter{k}/eval/{b}.json" for b in benches},
                    "predictions": {b: f"{run}iter{k}/eval/{b}.predictions.jsonl" for b in benches},
                    "cost": {rule: f"logs/benchmarks/{rule}/{run}iter{k}.tsv" for rule in COST_RULES},
                }
                if dpo and k >= 1:
                    entry["verifier_stats"] = f"{run}iter{k}/verifier/stats.json"
                    entry["pairs"] = f"{run}iter{k}/dpo/pairs.jsonl"
                iters.append(entry)
            runs.append({"arm": arm, "seed": seed, "run": run, "dpo": dpo, "iterations": iters})
    return {
        "benchmarks": benches,
        "baseline_arm": report.get("baseline_arm"),
        "base": {"scores": {b: f"base/eval/{b}.json" for b in benches},
                 "predictions": {b: f"base/eval/{b}.predictions.jsonl" for b in benches}},
        "runs": runs,
        "verifier": config["verifier"],
    }


def compare_inputs(manifest: dict) -> list[str]:
    """The files of the manifest that rule compare needs built (the cost files are logs, read if
    present)."""
    out = [*manifest["base"]["scores"].values(), *manifest["base"]["predictions"].values()]
    for run in manifest["runs"]:
        for entry in run["iterations"]:
            out += [entry["grpo_rollouts"], entry["grpo_metrics"], entry["grpo_model"],
                    *entry["scores"].values(), *entry["predictions"].values()]
            out += [entry[k] for k in ("verifier_stats", "pairs") if k in entry]
    return out
