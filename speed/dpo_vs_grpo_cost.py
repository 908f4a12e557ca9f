"""DPO vs GRPO cost per training sample, from a finished run's own ``benchmark:`` files.

    .venv/bin/python speed/dpo_vs_grpo_cost.py RUN_DIR [--json figures.json]

RUN_DIR is the folder a workflow ran in. Snakemake writes each job's wall time (``s``) and CPU time
(``cpu_time``) to logs/benchmarks/<rule>/iter<k>.tsv (rules/grpo.smk, rules/dpo.smk); the mean over the
rows is taken when a job was benchmarked repeatedly. Training samples, from the jobs' outputs:
  GRPO  a rollout trained on: the lines of iter<k>/grpo/rollouts.jsonl (each round's rollouts are split
        over its optimiser steps, every one of them in exactly one step's loss; veripo/train/grpo.py)
  DPO   a pair trained on: the sum of ``pairs`` over iter<k>/dpo/metrics.jsonl (one row per optimiser
        step: held-out pairs are not in it, a pair trained in two epochs counts twice)
Iterations where both stages trained are compared (iteration 0, the text/image activation, has no
DPO; an iteration whose DPO stage was skipped trains no pair). Also printed: GRPO per query group (the
G rollouts of one query, G from iter<k>/grpo/settings.json) and per stage, and DPO's stage with the
jobs that make its pairs (verifier_sample when it ran, verifier_judge, dpo_build_pairs). Job times
include each job's start-up (imports, loading the model), which is a large share of a tiny run's jobs.
"""
import csv
import json
import sys
from pathlib import Path

import click

PAIR_MAKERS = ("verifier_sample", "verifier_judge", "dpo_build_pairs")


def job_cost(run: Path, rule: str, iteration: int) -> dict | None:
    """{"s", "cpu_s"} of a job's benchmark file (the mean of its rows), or None when it did not run."""
    path = run / "logs" / "benchmarks" / rule / f"iter{iteration}.tsv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        sys.exit(f"{path}: no benchmark row")
    try:
        wall = [float(r["s"]) for r in rows]
        # Snakemake writes NA where it could not read a process's CPU time
        cpu = [None if r["cpu_time"] in ("NA", "", None) else float(r["cpu_time"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        sys.exit(f"{path}: expected Snakemake's benchmark columns s and cpu_time with numbers ({exc!r})")
    return {"s": sum(wall) / len(rows), "cpu_s": None if None in cpu else sum(cpu) / len(rows)}


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def dpo_pairs_trained(path: Path) -> int:
    total = 0
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    sys.exit(f"{path}, line {n}: not JSON ({exc})")
                if not isinstance(row, dict) or not isinstance(row.get("pairs"), int):
                    sys.exit(f"{path}, line {n}: expected an integer 'pairs' (pairs in the optimiser step)")
                total += row["pairs"]
    return total


def rollouts_per_query(run: Path, iteration: int) -> int | None:
    path = run / f"iter{iteration}" / "grpo" / "settings.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("config", {}).get("grpo", {}).get("rollouts_per_query")


def iteration_figures(run: Path, k: int) -> dict | None:
    """One iteration's costs and samples, or None unless both GRPO and DPO trained in it."""
    grpo, dpo = job_cost(run, "grpo_train", k), job_cost(run, "dpo_train", k)
    rollouts = run / f"iter{k}" / "grpo" / "rollouts.jsonl"
    metrics = run / f"iter{k}" / "dpo" / "metrics.jsonl"
    if not (grpo and dpo and rollouts.is_file() and metrics.is_file()):
        return None
    pairs = dpo_pairs_trained(metrics)
    if pairs == 0:
        return None
    makers = [c for c in (job_cost(run, rule, k) for rule in PAIR_MAKERS) if c]
    making_cpu = [c["cpu_s"] for c in makers]
    return {"iteration": k, "grpo": grpo, "dpo": dpo, "rollouts": count_lines(rollouts), "pairs": pairs,
            "G": rollouts_per_query(run, k),
            "pair_making": {"s": sum(c["s"] for c in makers),
                            "cpu_s": None if None in making_cpu else sum(making_cpu)}}


def run_iterations(run: Path) -> list[int]:
    found = {int(p.stem[4:]) for p in (run / "logs" / "benchmarks" / "grpo_train").glob("iter*.tsv")
             if p.stem[4:].isdigit()}
    return sorted(k for k in found if k >= 1)


def figures(run: Path) -> dict:
    """Per-iteration rows and the totals: seconds per sample (wall and CPU) for each stage and the ratios."""
    rows = [r for r in (iteration_figures(run, k) for k in run_iterations(run)) if r]
    if not rows:
        sys.exit(f"{run}: no iteration where both grpo_train and dpo_train trained (expected "
                 f"logs/benchmarks/{{grpo_train,dpo_train}}/iter<k>.tsv, iter<k>/grpo/rollouts.jsonl and "
                 f"iter<k>/dpo/metrics.jsonl with pairs)")

    def total(stage: str, key: str) -> float | None:
        values = [r[stage][key] for r in rows]
        return None if None in values else sum(values)

    rollouts, pairs = sum(r["rollouts"] for r in rows), sum(r["pairs"] for r in rows)
    out = {"run": str(run), "iterations": rows, "rollouts": rollouts, "pairs": pairs}
    for key in ("s", "cpu_s"):
        if total("grpo", key) is None or total("dpo", key) is None:
            out[key] = None  # only CPU time can be missing
            continue
        grpo_per, dpo_per = total("grpo", key) / rollouts, total("dpo", key) / pairs
        out[key] = {"grpo": total("grpo", key), "dpo": total("dpo", key), "pair_making": total("pair_making", key),
                    "grpo_per_rollout": grpo_per, "dpo_per_pair": dpo_per,
                    "grpo_over_dpo_per_sample": grpo_per / dpo_per}
    if all(r["G"] for r in rows):
        groups = sum(r["rollouts"] / r["G"] for r in rows)
        out["query_groups"] = groups
        out["s"]["grpo_per_group"] = out["s"]["grpo"] / groups
        out["s"]["grpo_over_dpo_per_group"] = out["s"]["grpo_per_group"] / out["s"]["dpo_per_pair"]
    return out


def times(x: float) -> str:
    """A ratio of GRPO's cost over DPO's in words."""
    return f"DPO {x:.1f}x cheaper" if x >= 1 else f"DPO {1 / x:.1f}x dearer"


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the figures to this JSON file")
def main(run_dir, json_out):
    f = figures(run_dir)
    ks = ", ".join(str(r["iteration"]) for r in f["iterations"])
    print(f"run {run_dir}: iterations {ks} (both stages trained; wall time of each job from its benchmark file)")
    print(f"  {'':8}{'grpo_train':>11}{'rollouts':>10}{'s/rollout':>11}{'dpo_train':>11}{'pairs':>7}{'s/pair':>9}")
    for r in f["iterations"]:
        grpo, dpo = r["grpo"]["s"], r["dpo"]["s"]
        print(f"  iter{r['iteration']:<4}{grpo:>9.1f} s{r['rollouts']:>10}{grpo / r['rollouts']:>11.4f}"
              f"{dpo:>9.1f} s{r['pairs']:>7}{dpo / r['pairs']:>9.4f}")
    w, c = f["s"], f["cpu_s"]
    print(f"  {'all':<8}{w['grpo']:>9.1f} s{f['rollouts']:>10}{w['grpo_per_rollout']:>11.4f}"
          f"{w['dpo']:>9.1f} s{f['pairs']:>7}{w['dpo_per_pair']:>9.4f}")
    print("per training sample (GRPO: a rollout trained on; DPO: a pair trained on):")
    print(f"  wall: GRPO {w['grpo_per_rollout']:.4f} s/rollout, DPO {w['dpo_per_pair']:.4f} s/pair: "
          f"GRPO/DPO = {w['grpo_over_dpo_per_sample']:.2f} ({times(w['grpo_over_dpo_per_sample'])})")
    if c:
        print(f"  CPU:  GRPO {c['grpo_per_rollout']:.4f} s/rollout, DPO {c['dpo_per_pair']:.4f} s/pair: "
              f"GRPO/DPO = {c['grpo_over_dpo_per_sample']:.2f} ({times(c['grpo_over_dpo_per_sample'])})")
    if "query_groups" in f:
        print(f"per query group (GRPO: one query's G rollouts, {f['query_groups']:g} groups) vs per pair: "
              f"GRPO {w['grpo_per_group']:.4f} s, DPO {w['dpo_per_pair']:.4f} s: "
              f"GRPO/DPO = {w['grpo_over_dpo_per_group']:.2f} ({times(w['grpo_over_dpo_per_group'])})")
    print(f"per stage: GRPO {w['grpo']:.1f} s, DPO {w['dpo']:.1f} s: GRPO/DPO = {w['grpo'] / w['dpo']:.2f}; "
          f"DPO with the jobs making its pairs {w['dpo'] + w['pair_making']:.1f} s: "
          f"GRPO/that = {w['grpo'] / (w['dpo'] + w['pair_making']):.2f}")
    print("(the paper: DPO about 7x faster than GRPO)")
    if json_out:
        json_out.write_text(json.dumps(f, indent=2) + "\n")


if __name__ == "__main__":
    main()
