"""What the terminal shows when a run ends (the Snakefile's onsuccess and onerror handlers).

A success names the scores of the requested targets with their numbers, so the run's result is on
screen without opening a file. A failure repeats, after Snakemake's own error blocks (whose shell
command of a training job runs to kilobytes), the last lines of every failed job's logs: the rule's
log and, under SLURM, the job's SLURM output, where an out-of-memory kill or a time limit shows.

Standard library only: the Snakefile imports it while the workflow parses.
"""
from __future__ import annotations

import json
import os
import re

# {ckpt}/{evaldir}/{bench}.json, as rules/eval.smk writes the scores
SCORE_FILE = re.compile(r"^(base|iter\d+)/(eval|eval_grpo)/[^/]+\.json$")
# Snakemake's error block of a failed job: "Error in rule <name>:" then indented fields, one of them
# "    log: a, b (check log file(s) for error details)"
ERROR_BLOCK = re.compile(r"^Error in rule (\S+):$")
LOG_FIELD = re.compile(r"^\s+log: (.*?)(?: \(check log file\(s\) for error details\))?$")
MAX_LINE = 400


def score_line(path: str) -> str:
    """``path``'s benchmark, overall score (with its 95% interval and n), VSI-Bench's official overall
    and the inconsistency rate, from the score JSON (veripo/eval/scoring.py, veripo/eval/report.py)."""
    try:
        with open(path) as fh:
            score = json.load(fh)
        text = f"{score['benchmark']} overall {score['overall']:.2f}"
        ci = score.get("ci95")
        text += f" (95% CI {ci[0]:.2f}-{ci[1]:.2f}, n={score['n']})" if ci else f" (n={score['n']})"
        if "official_overall" in score:
            text += f", official_overall {score['official_overall']:.2f}"
        rate = (score.get("inconsistency") or {}).get("rate")
        if rate is not None:
            text += f", inconsistency {rate:.2f}%"
        return text
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"unreadable score file ({type(exc).__name__}: {exc})"


def run_summary(targets, run_dir: str) -> str:
    """Where a finished run's results are: the scores among ``targets`` (the files the run was asked
    for, relative to ``run_dir``) with their numbers, the figures if they were asked for, and the
    report command."""
    scores = sorted(t for t in set(targets) if SCORE_FILE.match(t) and os.path.isfile(os.path.join(run_dir, t)))
    lines = ["", f"Run directory: {run_dir}"]
    if scores:
        lines.append("  scores:")
        lines += [f"    {p}: {score_line(os.path.join(run_dir, p))}" for p in scores]
    if any(t.startswith("figures/") for t in targets) and os.path.isdir(os.path.join(run_dir, "figures")):
        lines.append(f"  figures: {os.path.join(run_dir, 'figures')}")
    lines.append(f"  report:  snakemake --report report.html  (then open {os.path.join(run_dir, 'report.html')})")
    return "\n".join(lines)


def failed_logs(snakemake_logs) -> list[tuple[str, str]]:
    """(rule, log file) of every failed job named in Snakemake's own log files (onerror's ``log``: a
    list in Snakemake 9, a path before), in order, each once."""
    found: list[tuple[str, str]] = []
    for snakemake_log in [snakemake_logs] if isinstance(snakemake_logs, str) else snakemake_logs:
        rule = None
        try:
            with open(snakemake_log, errors="replace") as fh:
                for line in fh:
                    line = line.rstrip("\n")
                    start = ERROR_BLOCK.match(line)
                    if start:
                        rule = start.group(1)
                    elif rule and not line.startswith(" "):
                        rule = None
                    elif rule and LOG_FIELD.match(line):
                        for path in LOG_FIELD.match(line).group(1).split(", "):
                            if (rule, path) not in found:
                                found.append((rule, path))
        except OSError:
            continue
    return found


def tail(path: str, n: int) -> list[str]:
    """The last ``n`` lines of ``path`` as a terminal would show them: a progress bar's carriage
    returns keep only its last state, and a line is cut at MAX_LINE characters."""
    # newline="": text mode would turn each carriage return into a line of its own
    with open(path, errors="replace", newline="") as fh:
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in fh.read().split("\n")]
    lines = [line for line in lines if line.strip()][-n:]
    return [line if len(line) <= MAX_LINE else line[:MAX_LINE] + " ..." for line in lines]


def failed_job_report(snakemake_logs, n: int = 20) -> str:
    """The last ``n`` lines of each failed job's logs (onerror), or "" when no job failed (the run
    stopped for another reason, which Snakemake has already printed)."""
    out = []
    for rule, path in failed_logs(snakemake_logs):
        try:
            lines = tail(path, n)
        except OSError:
            out.append(f"--- {rule}: {path} was not written (the job stopped before it started)")
            continue
        if not lines:
            out.append(f"--- {rule}: {path} is empty")
            continue
        out.append(f"--- {rule}: {path}, last {len(lines)} lines")
        out += [f"    {line}" for line in lines]
    if not out:
        return ""
    return "\n".join(["", "Why the failed jobs stopped (the end of their logs):", *out])
