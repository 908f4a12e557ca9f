"""The run's artifacts read into the small tables the figures draw (plain dicts and lists).

Every reader checks what it takes: a missing or corrupt file, or a missing or non-numeric field, is an
InputError naming the file (and line, field), so the figure job stops with one line instead of drawing
a wrong panel.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from veripo.errors import InputError
from veripo.jsonio import read_json, read_jsonl
from veripo.report.rollouts import ROUND_METRICS, judged_rollouts, measures_per_round, metrics_per_round
from veripo.stage_config import VerifierConfig
from veripo.verify.judges.verdicts import VERDICTS

GRPO_SERIES = ("reward/accuracy", "reward/format", "response_length", "loss", "kl", "clip_frac")
# Logged by stages whose rollouts vLLM sampled (absent with the HF sampler): |vLLM's - the trainer's
# log-prob| of the round's sampled tokens.
GRPO_GAP_SERIES = ("vllm/logprob_gap_mean", "vllm/logprob_gap_max")
DPO_SERIES = ("loss", "margin", "positive_margin_share")
# What the verifier rejects a rollout for, as (label, check, count key) of stats.json's "checks".
VERDICT_REASONS = (
    ("too short", "length", "fail"),
    ("bad format", "format", "fail"),
    ("repetitive", "repetition", "fail"),
    ("wrong answer", "accuracy", "wrong"),
    ("partly right", "accuracy", "partial"),
    ("inconsistent", "consistency", "INCONSISTENT"),
    ("no verdict", "consistency", "UNKNOWN"),
)
PAIR_KINDS = ("consistency", "penalty", "reflection")


def _number(value: object, path: object, field: str, line: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(path, f"expected a finite number, got {value!r}", line=line, field=field)
    return float(value)


def _field(obj: object, keys: str, path: object) -> object:
    """``obj[a][b]...`` for ``keys`` "a.b...", else an InputError naming the dotted field."""
    for key in keys.split("."):
        if not isinstance(obj, dict) or key not in obj:
            raise InputError(path, "missing required field", field=keys)
        obj = obj[key]
    return obj


def _series(rows: list[dict], names: tuple[str, ...], path: object) -> dict[str, list[float]]:
    """{name: [value per row]} of JSONL rows; each row must hold every name as a finite number."""
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in rows:
        for name in names:
            if name not in r:
                raise InputError(path, "missing required field", line=r["_line"], field=name)
            out[name].append(_number(r[name], path, name, r["_line"]))
    return out


def grpo_curves(path: str | os.PathLike, settings_path: str | os.PathLike) -> dict:
    """One GRPO stage's metrics per optimiser step: rewards (those of the round's rollouts, the same for
    every step of a round), mean response length (tokens), loss, KL and the share of clipped tokens; and,
    when vLLM sampled the rollouts, the mean and largest log-prob gap of the round's sampled tokens
    (GRPO_GAP_SERIES: then on every row, else on none). ``format_weight``, from the job's settings.json,
    is the largest format reward: the figure gives it its own axis, as accuracy's largest is 1."""
    rows = read_jsonl(path)
    if not rows:
        raise InputError(path, "no steps logged")
    with_gap = any(name in r for r in rows for name in GRPO_GAP_SERIES)
    out = {"step": list(range(len(rows))),
           **_series(rows, GRPO_SERIES + (GRPO_GAP_SERIES if with_gap else ()), path)}
    out["rounds"] = len({r.get("round") for r in rows})
    out["stage"] = str(rows[0].get("stage", "?"))
    out["format_weight"] = _format_weight(settings_path)
    return out


def _format_weight(settings_path: str | os.PathLike) -> float:
    """The largest format reward of a GRPO stage: grpo.format_weight of the job's settings.json."""
    settings = read_json(settings_path)
    return _number(_field(settings, "config.grpo.format_weight", settings_path), settings_path,
                   "config.grpo.format_weight")


def grpo_along_iterations(stages: dict[str, dict], verifier: dict) -> list[dict]:
    """Every GRPO stage of the chain (``stages``: the manifest's "grpo") round by round on one axis, so
    that the loop reads as one run rather than a restart at 0 per stage. Per iteration, in order: its
    rounds and their positions ``x`` on the axis (iteration k's first right after iteration k-1's last);
    per round the mean accuracy and format reward and response length (tokens) of the metrics file
    (ROUND_METRICS), and the mean think tokens and the rule judge's inconsistency rate (% of the round's
    rollouts) of the rollouts file (veripo.report.rollouts, as the arms' comparison counts them);
    and the stage's largest format reward (grpo.format_weight)."""
    cfg = VerifierConfig.from_config(verifier)
    out, offset = [], 0
    for k, d in sorted(stages.items(), key=lambda kv: int(kv[0])):
        rows = read_jsonl(d["metrics"])
        if not rows:
            raise InputError(d["metrics"], "no steps logged")
        _series(rows, ("round", *ROUND_METRICS), d["metrics"])  # each a number on every row
        logged = metrics_per_round(rows)
        judged = judged_rollouts(d["rollouts"], d["model"], cfg)
        for row, _ in judged:
            if "round" not in row:
                raise InputError(d["rollouts"], "missing required field", line=row["_line"], field="round")
        sampled = measures_per_round(judged)
        if list(sampled) != list(logged):
            # a round's point would pair one round's rewards with another's inconsistency
            raise InputError(d["rollouts"], f"rollouts of rounds {list(sampled)}, but {d['metrics']} logs rounds "
                                            f"{list(logged)}")
        out.append({"iteration": int(k), "rounds": list(logged), "x": list(range(offset, offset + len(logged))),
                    **{key: [m[key] for m in logged.values()] for key in ROUND_METRICS},
                    "think_tokens": [m["think_tokens"] for m in sampled.values()],
                    "inconsistency": [100.0 * m["inconsistency_rule"] for m in sampled.values()],
                    "format_weight": _format_weight(d["settings"])})
        offset += len(logged)
    return out


# Measured on the held-out pairs both before DPO (the GRPO model) and after, so that the figure sets
# each beside itself: chosen-minus-rejected log-prob gap (summed, per token) and the share of pairs whose
# gap is positive.
HELDOUT_BOTH = ("chosen_preferred", "logp_gap", "logp_gap_per_token")
# Measured after only: DPO's margin is the gap's change in training (after minus before), 0 before by
# definition, so its share > 0 says how many pairs moved towards chosen, not how many prefer it.
HELDOUT_CHANGE = ("margin", "positive_margin_share")


def dpo_curves(metrics_path: str | os.PathLike, heldout_path: str | os.PathLike) -> dict:
    """One DPO stage's loss, mean margin and share of positive margins per step, and its held-out pairs
    before and after (HELDOUT_BOTH) with the change DPO made (HELDOUT_CHANGE); no steps when the stage
    was skipped (too few pairs)."""
    rows = read_jsonl(metrics_path)
    out = _series(rows, ("step", *DPO_SERIES), metrics_path)
    heldout = read_json(heldout_path)
    n = int(_number(_field(heldout, "pairs", heldout_path), heldout_path, "pairs"))
    out["heldout"] = {"pairs": n}
    if n:
        for when, keys in (("before", HELDOUT_BOTH), ("after", HELDOUT_BOTH), ("change", HELDOUT_CHANGE)):
            source = "after" if when == "change" else when
            out["heldout"][when] = {k: _number(_field(heldout, f"{source}.{k}", heldout_path), heldout_path,
                                               f"{source}.{k}") for k in keys}
    return out


def _verdict_shares(obj: dict, field: str, n: float, rate: float, path: object) -> dict[str, float]:
    """{verdict: % of the ``n`` judged} of the verdict counts at ``field`` (every one of VERDICTS),
    checked against the file's own total and inconsistency ``rate`` (%; to 0.01, the precision
    stats.json keeps), so that no plotted share is a default or disagrees with the rate beside it."""
    counts = {v: _number(_field(obj, f"{field}.{v}", path), path, f"{field}.{v}") for v in VERDICTS}
    if sum(counts.values()) != n:
        raise InputError(path, f"the verdicts sum to {sum(counts.values()):g}, not to the {n:g} judged", field=field)
    shares = {v: 100.0 * c / n if n else 0.0 for v, c in counts.items()}
    if abs(shares["INCONSISTENT"] - rate) > 0.01:
        raise InputError(path, f"the inconsistency rate {rate:g}% is not INCONSISTENT's share "
                               f"{shares['INCONSISTENT']:g}%", field=field)
    return shares


def verifier_table(paths: dict[str, str]) -> dict[int, dict]:
    """Per iteration: rollouts judged, the percentage of them failing each check (VERDICT_REASONS),
    the percentage clean, the judge's inconsistency rate (%) and every verdict's share (%: UNKNOWN,
    no conclusion found, and UNPARSABLE, a judge reply without a verdict, are neither consistent nor
    inconsistent), and the judges that decided."""
    out = {}
    for k, path in sorted(paths.items(), key=lambda kv: int(kv[0])):
        stats = read_json(path)
        n = _number(_field(stats, "rollouts", path), path, "rollouts")
        if n <= 0:
            raise InputError(path, "no rollouts judged", field="rollouts")
        reasons = {label: 100.0 * _number(_field(stats, f"checks.{check}.{key}", path), path,
                                          f"checks.{check}.{key}") / n
                   for label, check, key in VERDICT_REASONS}
        rate = 100.0 * _number(_field(stats, "inconsistency_rate", path), path, "inconsistency_rate")
        judges = stats.get("judges")
        out[int(k)] = {"rollouts": int(n), "reasons": reasons,
                       "clean": 100.0 * _number(_field(stats, "clean", path), path, "clean") / n,
                       "inconsistency": rate,
                       "verdicts": _verdict_shares(stats, "checks.consistency", n, rate, path),
                       "judges": sorted(judges) if isinstance(judges, dict) else []}
    return out


def pair_table(paths: dict[str, str]) -> dict[int, dict]:
    """Per iteration: DPO pairs by kind, and the queries that had rollouts, a chosen candidate, pairs."""
    out = {}
    for k, path in sorted(paths.items(), key=lambda kv: int(kv[0])):
        stats = read_json(path)
        by_kind = _field(stats, "by_kind", path)
        row = {"by_kind": {kind: int(_number(by_kind.get(kind, 0), path, f"by_kind.{kind}")) for kind in PAIR_KINDS}}
        for key in ("pairs", "queries", "queries_with_pairs"):
            row[key] = int(_number(_field(stats, key, path), path, key))
        chosen = stats.get("queries_with_chosen")
        row["queries_with_chosen"] = None if chosen is None else int(_number(chosen, path, "queries_with_chosen"))
        if sum(row["by_kind"].values()) != row["pairs"]:
            raise InputError(path, f"by_kind sums to {sum(row['by_kind'].values())}, not to pairs "
                                   f"{row['pairs']}", field="by_kind")
        out[int(k)] = row
    return out


def score_table(rows: list[dict]) -> list[dict]:
    """One benchmark's scores along the chain: per stage (``rows`` of the manifest: label, kind, path)
    the overall score, VSI-Bench's official overall when present, the categories, the inconsistency
    rate of the answers and the share of each of the judge's verdicts (all in %), and the judge."""
    out = []
    for row in rows:
        path = row["path"]
        score = read_json(path)
        categories = _field(score, "categories", path)
        if not isinstance(categories, dict):
            raise InputError(path, "expected an object", field="categories")
        official = score.get("official_overall")
        n = int(_number(_field(score, "n", path), path, "n"))
        rate = _number(_field(score, "inconsistency.rate", path), path, "inconsistency.rate")
        out.append({
            "label": row["label"], "kind": row["kind"], "n": n,
            "overall": _number(_field(score, "overall", path), path, "overall"),
            "official_overall": None if official is None else _number(official, path, "official_overall"),
            "categories": {c: _number(v, path, f"categories.{c}") for c, v in categories.items()},
            "inconsistency": rate,
            "verdicts": _verdict_shares(score, "inconsistency.counts", n, rate, path),
            "judge": str(_field(score, "inconsistency.judge", path)),
        })
    return out


def wall_times(benchmarks_dir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """{rule: {job: seconds}} from Snakemake's benchmark files (logs/benchmarks/<rule>/<job>.tsv);
    a file with several rows (benchmark repeats) counts their mean ``s``."""
    root = Path(benchmarks_dir)
    if not root.is_dir():
        raise InputError(root, "no such folder of benchmark files")
    out: dict[str, dict[str, float]] = {}
    for tsv in sorted(root.glob("*/*.tsv")):
        with open(tsv, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            raise InputError(tsv, "no benchmark rows")
        seconds = []
        for line, r in enumerate(rows, 2):
            if "s" not in r:
                raise InputError(tsv, "missing required column", line=1, field="s")
            try:
                seconds.append(_number(float(r["s"]), tsv, "s", line))
            except (TypeError, ValueError):
                raise InputError(tsv, f"expected a number of seconds, got {r['s']!r}", line=line, field="s") from None
        out.setdefault(tsv.parent.name, {})[tsv.stem] = sum(seconds) / len(seconds)
    if not out:
        raise InputError(root, "no benchmark files (<rule>/<job>.tsv)")
    return out


def collect(manifest: dict, benchmarks_dir: str | os.PathLike, verifier: dict) -> dict:
    """Every table of the report, from the manifest of veripo.report.plan; ``verifier``, the config's
    verifier section, is what the rollouts are verified with (grpo_along_iterations)."""
    return {
        "grpo": {int(k): grpo_curves(d["metrics"], d["settings"]) for k, d in manifest["grpo"].items()},
        "grpo_along": grpo_along_iterations(manifest["grpo"], verifier),
        "dpo": {int(k): dpo_curves(d["metrics"], d["heldout"]) for k, d in manifest["dpo"].items()},
        "verifier": verifier_table(manifest["verifier"]),
        "pairs": pair_table(manifest["pairs"]),
        "scores": {bench: score_table(rows) for bench, rows in manifest["scores"].items()},
        "wall_time": wall_times(benchmarks_dir),
    }
