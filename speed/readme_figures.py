"""The figures of the README's "Measured" section, from a finished run's own artifacts.

    .venv/bin/python speed/readme_figures.py RUN_DIR

RUN_DIR is the folder a workflow ran in (`snakemake --cores 2` in a fresh folder for the README). Prints,
as markdown to paste into the README, the table "The run's artifacts" (one column per iteration) and the
paragraph after it, each figure from the file named here:
  GRPO rollouts       iter<k>/grpo/rollouts.jsonl: mean reward_accuracy, rollouts / queries, epochs,
                      whether every rollout_id is distinct
  curriculum          iter<k>/data/train_video.jsonl: the queries of iter<k>'s rollouts that it no
                      longer holds (written after every iteration but the last)
  verifier            iter<k>/verifier/stats.json: inconsistency rate, UNKNOWN/UNPARSABLE verdicts
  pairs               iter<k>/dpo/pair_stats.json: pairs by kind, dropped, mean think tokens
  held-out pairs      iter<k>/dpo/heldout.json: the share preferring chosen before and after DPO (the
                      same quantity side by side), and DPO's margin (the gap's change) with its share > 0
  DPO loss            iter<k>/dpo/metrics.jsonl: first and last step
  scores              <checkpoint>/eval/<bench>.json along the chain (base, iter0, per iteration its GRPO
                      checkpoint when scored, eval_grpo/, and its DPO model): overall, categories, the
                      inconsistency rate and its verdict counts
  wall time           logs/benchmarks/<rule>/<job>.tsv: from the first job's start (its file's time less
                      its seconds) to the last job's end, and the jobs' seconds summed per rule
"""
import json
import os
import sys
from pathlib import Path

import click

from veripo.errors import InputError
from veripo.jsonio import read_json, read_jsonl
from veripo.report import collect, plan


def _iterations(run: Path) -> int:
    ks = sorted(int(p.name[4:]) for p in run.glob("iter*") if p.name[4:].isdigit() and (p / "grpo").is_dir())
    if not ks or ks != list(range(len(ks))):
        raise InputError(run, f"expected iter0/grpo ... iterN/grpo, found iterations {ks}")
    return ks[-1]


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def grpo_cells(run: Path, k: int) -> dict:
    rollouts = read_jsonl(run / f"iter{k}/grpo/rollouts.jsonl")
    ids = [r["rollout_id"] for r in rollouts]
    queries = {r["query_id"] for r in rollouts}
    epochs = len({r.get("epoch") for r in rollouts})
    out = {"accuracy": f"{sum(r['reward_accuracy'] for r in rollouts) / len(rollouts):.3f}",
           "rollouts": f"{len(rollouts)} / {len(queries)}, {epochs} epoch{'s' if epochs > 1 else ''}"
                       + ("" if len(set(ids)) == len(ids) else f", {len(ids) - len(set(ids))} REPEATED rollout_id")}
    after = run / f"iter{k}/data/train_video.jsonl"
    if k >= 1 and after.is_file():
        dropped = sorted(queries - {r["id"] for r in read_jsonl(after)})
        out["dropped"] = f"{len(dropped)} ({', '.join(dropped)})" if dropped else "0"
    return out


def dpo_cells(run: Path, k: int) -> dict:
    stats = read_json(run / f"iter{k}/verifier/stats.json")
    counts = stats["checks"]["consistency"]
    undecided = ", ".join(f"{counts[v]} {v}" for v in ("UNKNOWN", "UNPARSABLE") if counts.get(v))
    judges = "/".join(sorted(stats.get("judges", {}))) or "?"
    pairs = read_json(run / f"iter{k}/dpo/pair_stats.json")
    kinds = "/".join(str(pairs["by_kind"].get(kind, 0)) for kind in collect.PAIR_KINDS)
    think = pairs["mean_think_tokens"]
    out = {"inconsistency": f"{_pct(100 * stats['inconsistency_rate'])}" + (f" ({undecided})" if undecided else ""),
           "judge": judges,
           "pairs": f"{pairs['pairs']} ({kinds})",
           "pairs_dropped": str(pairs.get("dropped", {}).get("same_tokens", 0)),
           "think": f"{think['chosen']:.1f} vs {think['rejected']:.1f}"}
    curves = collect.dpo_curves(run / f"iter{k}/dpo/metrics.jsonl", run / f"iter{k}/dpo/heldout.json")
    heldout = read_json(run / f"iter{k}/dpo/heldout.json")
    if curves["heldout"]["pairs"]:
        h = curves["heldout"]
        out["heldout_preferred"] = (f"{heldout['pairs']} ({heldout['queries']}): {h['before']['chosen_preferred']:.0%}"
                                    f" -> {h['after']['chosen_preferred']:.0%}")
        out["heldout_margin"] = f"{h['change']['margin']:+.2f}, {h['change']['positive_margin_share']:.0%}"
    else:
        out["heldout_preferred"] = out["heldout_margin"] = "no held-out pairs"
    out["loss"] = (f"{curves['loss'][0]:.3f} -> {curves['loss'][-1]:.3f}" if curves["loss"]
                   else "skipped (too few pairs)")
    return out


ROWS = (  # (cell key, row label); {judge} is filled in from the verifier's stats
    ("accuracy", "mean accuracy reward of the GRPO rollouts"),
    ("rollouts", "GRPO rollouts / queries, epochs (every `rollout_id` distinct unless said)"),
    ("dropped", "simple queries dropped by the curriculum after the stage"),
    ("inconsistency", "inconsistency rate of the GRPO rollouts ({judge} judge; rollouts without a verdict)"),
    ("pairs", "DPO pairs (consistency / penalty / reflection)"),
    ("pairs_dropped", "pairs dropped (same tokens on both sides)"),
    ("think", "mean think tokens, chosen vs rejected"),
    ("heldout_preferred", "held-out pairs (queries): chosen more likely than rejected, before -> after DPO"),
    ("heldout_margin", "held-out DPO margin (summed gap after - before): mean, share > 0"),
    ("loss", "DPO train loss, first -> last step"),
)


def artifacts_table(run: Path, iterations: int) -> str:
    cells = {}
    for k in range(iterations + 1):
        cells[k] = grpo_cells(run, k)
        if k >= 1:
            cells[k].update(dpo_cells(run, k))
    judge = next((cells[k]["judge"] for k in range(1, iterations + 1)), "?")
    head = ["", "iter0 (activation)"] + [f"iter{k}" for k in range(1, iterations + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in ROWS:
        row = [label.format(judge=judge)] + [cells[k].get(key, "") for k in range(iterations + 1)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _benchmarks(run: Path, iterations: int) -> list[str]:
    folder = run / f"iter{iterations}/eval"
    return sorted(p.name[:-5] for p in folder.glob("*.json") if not p.name.endswith(".run.json"))


def scores_paragraph(run: Path, iterations: int) -> str:
    eval_grpo = (run / "iter1/eval_grpo").is_dir()
    parts = []
    for bench in _benchmarks(run, iterations):
        path = f"iter{iterations}/eval/{bench}.json"
        final = read_json(run / path)
        inc = final["inconsistency"]
        counts = inc["counts"]
        undecided = "; ".join(f"{counts[v]} {v}" for v in ("UNKNOWN", "UNPARSABLE") if counts.get(v))
        cats = ", ".join(f"{c} {v:.1f}" for c, v in final["categories"].items())
        parts.append(f"Final score `{path}` ({final['n']} questions): overall {final['overall']:.1f} ({cats}), "
                     f"inconsistency {inc['rate']:.1f}% of the evaluated responses ({counts['INCONSISTENT']} of "
                     f"{final['n']}, {inc['judge']} judge{'; ' + undecided if undecided else ''}).")
        chain = []
        for stage in plan.stages(iterations, eval_grpo):
            s = read_json(run / stage.evaldir / f"{bench}.json")
            chain.append(f"{stage.label} {s['overall']:.1f} ({s['inconsistency']['rate']:.1f}% inconsistent)")
        parts.append(f"{bench} along the chain: " + ", ".join(chain) + ".")
    return "\n".join(parts)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def wall_time_line(run: Path) -> str:
    times = collect.wall_times(run / "logs" / "benchmarks")
    starts, ends = [], []
    for rule, jobs in times.items():
        for job, seconds in jobs.items():
            end = os.path.getmtime(run / "logs" / "benchmarks" / rule / f"{job}.tsv")
            starts.append(end - seconds)
            ends.append(end)
    per_rule = sorted(((sum(j.values()), r) for r, j in times.items()), reverse=True)
    summed = sum(s for s, _ in per_rule)
    top = ", ".join(f"{r} {_duration(s)}" for s, r in per_rule[:4])
    return (f"Wall time: {_duration(max(ends) - min(starts))} from the first job's start to the last job's end "
            f"(logs/benchmarks); {_duration(summed)} of jobs summed ({top}, ...).")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def main(run_dir):
    """Print the README's "The run's artifacts" table and the paragraph after it for RUN_DIR."""
    run = Path(run_dir)
    try:
        iterations = _iterations(run)
        click.echo(artifacts_table(run, iterations))
        click.echo()
        click.echo(scores_paragraph(run, iterations))
        click.echo(wall_time_line(run))
    except InputError as e:
        sys.exit(f"error: {e}")
    except (KeyError, TypeError) as e:
        # the run's files predate a field this script reads: say which, not a traceback
        sys.exit(f"error: {run}: a file lacks the field {e} (a run older than this script?)")
    except json.JSONDecodeError as e:
        sys.exit(f"error: {run}: malformed JSON ({e})")


if __name__ == "__main__":
    main()
