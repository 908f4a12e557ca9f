"""The report's figures, drawn with matplotlib from the tables of veripo.report.collect.

Figures are built as matplotlib.figure.Figure objects (Agg canvas, no pyplot): nothing global, nothing
needs a display. Each is written to a temporary name and renamed (veripo.jsonio.atomic_path).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from veripo.jsonio import atomic_path
from veripo.report.collect import PAIR_KINDS, VERDICT_REASONS

DPI = 110
KIND_COLOURS = {"base": "0.55", "grpo": "tab:blue", "dpo": "tab:orange"}
PAIR_COLOURS = {"consistency": "tab:purple", "penalty": "tab:red", "reflection": "tab:green"}


def _iteration_colour(k: int) -> str:
    return f"C{k % 10}"


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _smoothed(values: list[float]) -> list[float]:
    """Trailing mean over a tenth of the steps (at least 1): the trend of a noisy per-step curve."""
    window = max(1, len(values) // 10)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _curve(ax, steps: list, values: list[float], colour: str, label: str | None = None) -> None:
    """The raw per-step values, thin, under their trailing mean; a lone point as a marker."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole
    if len(values) > 1 and len(values) // 10 > 1:
        ax.plot(steps, values, color=colour, alpha=0.3, linewidth=1)
        ax.plot(steps, _smoothed(values), color=colour, linewidth=2, label=label)
    else:
        ax.plot(steps, values, color=colour, linewidth=1.5, marker="o", markersize=3, label=label)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.3",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def grpo_figure(k: int, curves: dict) -> Figure:
    gap = "vllm/logprob_gap_max" in curves  # vLLM sampled the rollouts: a third column, full height
    fig = Figure(figsize=(14 if gap else 10, 6.5), layout="constrained")
    # not sharex: a panel's note (set_xticks([])) would clear the shared ticks of the others
    axes = fig.subplots(2, 3 if gap else 2)
    steps = curves["step"]
    if gap:
        right = fig.add_subplot(axes[0, 2].get_gridspec()[:, 2])
        axes[0, 2].remove()
        axes[1, 2].remove()
        axes = axes[:, :2]
        _gap_panel(right, steps, curves)
    ax = axes[0, 0]
    _curve(ax, steps, curves["reward/accuracy"], "tab:green", "accuracy")
    _curve(ax, steps, curves["reward/format"], "tab:blue", "format")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("mean reward of the round's rollouts")
    ax.set_ylabel("reward")
    ax.legend(loc="best", fontsize=8)
    ax = axes[0, 1]
    _curve(ax, steps, curves["response_length"], "tab:purple")
    ax.set_title("mean response length")
    ax.set_ylabel("tokens")
    ax = axes[1, 0]
    _curve(ax, steps, curves["loss"], "tab:red")
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_title("policy loss")
    ax.set_ylabel("loss")
    ax = axes[1, 1]
    if any(curves["kl"]):
        _curve(ax, steps, curves["kl"], "tab:brown")
        ax.set_ylabel("KL")
        ax.set_title("KL to the reference")
    else:
        # Without a reference (grpo.kl_coef 0) the KL is 0 throughout: the clipping says more.
        _curve(ax, steps, curves["clip_frac"], "tab:brown")
        top = max(max(curves["clip_frac"]) * 1.15, 0.01)
        ax.set_ylim(-0.03 * top, top)  # a line at 0 stays visible above the axis
        ax.set_ylabel("share of tokens")
        ax.set_title("tokens clipped (KL: 0 at every step)")
    for ax in axes.flat:
        ax.set_xlabel("optimiser step")
    fig.suptitle(f"GRPO, iteration {k} ({curves['stage']}): {len(steps)} steps in {curves['rounds']} rounds")
    return fig


def _gap_panel(ax, steps: list, curves: dict) -> None:
    """The round's mean and largest |vLLM's - the trainer's log-prob| of the sampled tokens, on a log
    scale when every value is above 0 (fp32 gaps: 1e-5 mean, 1e-4 largest; a stale engine's: nats)."""
    mean, top = curves["vllm/logprob_gap_mean"], curves["vllm/logprob_gap_max"]
    _curve(ax, steps, top, "tab:red", "largest")
    _curve(ax, steps, mean, "tab:blue", "mean")
    if min(mean + top) > 0:
        ax.set_yscale("log")
    ax.set_title("sampled tokens: vLLM vs trainer")
    ax.set_ylabel("|log p_vLLM - log p_trainer| (nats)")
    ax.set_xlabel("optimiser step")
    ax.legend(loc="best", fontsize=8)


def dpo_figure(k: int, curves: dict) -> Figure:
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 2)
    steps = curves["step"]
    panels = [(axes[0, 0], "loss", "DPO loss", "tab:red"), (axes[0, 1], "margin", "mean margin (chosen over rejected)",
                                                             "tab:blue"),
              (axes[1, 0], "positive_margin_share", "share of pairs with a positive margin", "tab:green")]
    for ax, key, title, colour in panels:
        ax.set_title(title)
        if not steps:
            _note(ax, "no DPO step: the stage was skipped (too few pairs)")
            continue
        _curve(ax, steps, curves[key], colour)
        ax.set_xlabel("optimiser step")
    if steps:
        axes[0, 0].axhline(math.log(2), color="0.6", linewidth=0.8, linestyle="--", label="ln 2 (margin 0)")
        axes[0, 0].legend(loc="best", fontsize=8)
        axes[0, 1].axhline(0, color="0.6", linewidth=0.8)
        axes[1, 0].set_ylim(-0.05, 1.05)
    _heldout_panel(axes[1, 1], curves["heldout"])
    fig.suptitle(f"DPO, iteration {k}: {len(steps)} steps")
    return fig


def _heldout_panel(ax, heldout: dict) -> None:
    ax.set_title(f"held-out pairs ({heldout['pairs']}): before vs after DPO")
    if not heldout["pairs"]:
        _note(ax, "no held-out pairs")
        return
    before, after = heldout["before"], heldout["after"]
    labels = ["chosen more likely\nthan rejected", "DPO margin > 0"]
    xs = [0, 1]
    ax.bar([-0.2], [before["chosen_preferred"]], width=0.4, color="0.6", label="before (GRPO model)")
    ax.bar([0.2, 1], [after["chosen_preferred"], after["positive_margin_share"]], width=0.4,
           color="tab:orange", label="after (DPO model)")
    for x, v in ((-0.2, before["chosen_preferred"]), (0.2, after["chosen_preferred"]),
                 (1, after["positive_margin_share"])):
        ax.text(x, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks(xs, labels, fontsize=8)
    # headroom above the bars (at most 1) for the legend and the numbers
    ax.set_ylim(0, 1.45)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("share of held-out pairs")
    ax.legend(loc="upper right", fontsize=8)
    ax.text(0.02, 0.97, f"mean margin {after['margin']:+.2f}\nper-token log-prob gap\n"
                        f"{before['logp_gap_per_token']:+.3f} -> {after['logp_gap_per_token']:+.3f}",
            transform=ax.transAxes, va="top", fontsize=8)


def verifier_figure(table: dict[int, dict]) -> Figure:
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _, _ in VERDICT_REASONS] + ["clean"]
    iters = sorted(table)
    width = 0.8 / max(1, len(iters))
    for i, k in enumerate(iters):
        row = table[k]
        values = [row["reasons"][label] for label, _, _ in VERDICT_REASONS] + [row["clean"]]
        xs = [j + (i - (len(iters) - 1) / 2) * width for j in range(len(labels))]
        bars = ax.bar(xs, values, width=width, color=_iteration_colour(k),
                      label=f"iteration {k} ({row['rollouts']} rollouts)")
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("% of the GRPO stage's rollouts")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Rollout-Aware Verifier: what it finds in each iteration's rollouts")
    return fig


def pairs_figure(table: dict[int, dict]) -> Figure:
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    iters = sorted(table)
    names = [f"iter{k}" for k in iters]
    bottom = [0] * len(iters)
    for kind in PAIR_KINDS:
        counts = [table[k]["by_kind"][kind] for k in iters]
        left.bar(names, counts, bottom=bottom, color=PAIR_COLOURS[kind], label=kind)
        bottom = [b + c for b, c in zip(bottom, counts)]
    for x, total in enumerate(bottom):
        left.text(x, total, f"{total}", ha="center", va="bottom", fontsize=9)
    left.set_ylim(0, max(bottom + [1]) * 1.3)
    left.set_title("DPO pairs by kind")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("pairs")
    left.legend(loc="upper center", ncols=3, fontsize=8)
    keys = [("queries", "queries"), ("queries_with_chosen", "with a chosen candidate"),
            ("queries_with_pairs", "with pairs")]
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        values = [table[k][key] or 0 for k in iters]
        xs = [j + (i - 1) * width for j in range(len(iters))]
        bars = right.bar(xs, values, width=width, color=f"{0.25 + 0.25 * i:.2f}", label=label)
        right.bar_label(bars, fontsize=7, padding=1)
    right.set_xticks(range(len(iters)), names)
    right.set_ylim(0, max(table[k]["queries"] for k in iters) * 1.3 + 1)
    right.set_title("queries")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("queries")
    right.legend(loc="upper center", ncols=3, fontsize=8)
    fig.suptitle("Pair-Fast-Align: the preference pairs of each iteration")
    return fig


def inconsistency_figure(verifier: dict[int, dict], scores: dict[str, list[dict]]) -> Figure:
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    iters = sorted(verifier)
    bars = left.bar([f"iter{k}" for k in iters], [verifier[k]["inconsistency"] for k in iters],
                    color=[_iteration_colour(k) for k in iters])
    left.bar_label(bars, fmt="%.1f", fontsize=8)
    left.set_ylim(0, max([verifier[k]["inconsistency"] for k in iters] + [1]) * 1.2)
    left.set_title("GRPO rollouts (training, sampled)")
    left.set_ylabel("% inconsistent")
    top = 1.0
    for i, (bench, rows) in enumerate(scores.items()):
        xs = list(range(len(rows)))
        values = [r["inconsistency"] for r in rows]
        top = max(top, *values)
        right.plot(xs, values, marker="o", color=f"C{i}", label=bench)
        for x, v in zip(xs, values):
            right.annotate(f"{v:.1f}", (x, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
        right.set_xticks(xs, [r["label"] for r in rows], rotation=30, ha="right")
    right.set_ylim(0, top * 1.2)
    right.set_title("benchmark answers (evaluation, greedy)")
    right.set_ylabel("% inconsistent")
    right.legend(loc="best", fontsize=8)
    fig.suptitle("Inconsistency: the final answer is not the one the reasoning reaches")
    return fig


def scores_figure(bench: str, rows: list[dict]) -> Figure:
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = [r["label"] for r in rows]
    xs = list(range(len(rows)))
    bars = left.bar(xs, [r["overall"] for r in rows], color=[KIND_COLOURS[r["kind"]] for r in rows])
    left.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center", color="white")
    if any(r["official_overall"] is not None for r in rows):
        left.plot(xs, [r["official_overall"] for r in rows], "k_", markersize=18, markeredgewidth=2,
                  label="official overall (mean of categories)")
    left.set_xticks(xs, labels, rotation=30, ha="right")
    left.set_ylim(0, 105)
    left.set_ylabel("score (%)")
    left.set_title(f"overall ({rows[0]['n']} questions)")
    handles = [Patch(color=KIND_COLOURS[kind], label=f"{kind} checkpoint")
               for kind in KIND_COLOURS if any(r["kind"] == kind for r in rows)]
    left.legend(handles=left.get_legend_handles_labels()[0] + handles, loc="upper left", fontsize=8)
    categories = sorted({c for r in rows for c in r["categories"]})
    if categories:
        for i, cat in enumerate(categories):
            right.plot(xs, [r["categories"].get(cat, math.nan) for r in rows], marker="o", color=f"C{i % 10}",
                       label=cat)
        right.set_xticks(xs, labels, rotation=30, ha="right")
        right.set_ylim(-5, 105)
        right.set_ylabel("score (%)")
        right.legend(loc="best", fontsize=7)
    else:
        _note(right, "no categories")
    right.set_title("per category")
    fig.suptitle(f"{bench}: score of each checkpoint of the chain")
    return fig


def wall_time_figure(times: dict[str, dict[str, float]]) -> Figure:
    rules = sorted(times, key=lambda r: sum(times[r].values()))
    fig = Figure(figsize=(10, 1.2 + 0.45 * len(rules)), layout="constrained")
    ax = fig.subplots()
    totals = [sum(times[r].values()) / 60 for r in rules]
    bars = ax.barh(rules, totals, color="tab:blue")
    labels = [f"{_duration(t * 60)}, {len(times[r])} job{'s' if len(times[r]) > 1 else ''}"
              for r, t in zip(rules, totals)]
    ax.bar_label(bars, labels, fontsize=8, padding=3)
    ax.set_xlim(0, max(totals) * 1.3)
    ax.set_xlabel("wall time, summed over the rule's jobs (minutes)")
    total = sum(totals)
    fig.suptitle(f"Wall time per rule (Snakemake benchmark files): {total:.1f} min of jobs in all")
    return fig


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def draw_all(tables: dict, outputs: dict[str, str]) -> None:
    """Draw the figure named by each key of ``outputs`` (veripo.report.plan's names) to its path."""
    drawers: dict[str, Callable[[], Figure]] = {
        "verifier": lambda: verifier_figure(tables["verifier"]),
        "pairs": lambda: pairs_figure(tables["pairs"]),
        "inconsistency": lambda: inconsistency_figure(tables["verifier"], tables["scores"]),
        "wall_time": lambda: wall_time_figure(tables["wall_time"]),
    }
    for k, curves in tables["grpo"].items():
        drawers[f"grpo_iter{k}"] = lambda k=k, c=curves: grpo_figure(k, c)
    for k, curves in tables["dpo"].items():
        drawers[f"dpo_iter{k}"] = lambda k=k, c=curves: dpo_figure(k, c)
    for bench, rows in tables["scores"].items():
        drawers[f"scores_{bench}"] = lambda b=bench, r=rows: scores_figure(b, r)
    unknown = sorted(set(outputs) - set(drawers))
    if unknown:
        raise ValueError(f"no figure named {', '.join(unknown)} (known: {', '.join(sorted(drawers))})")
    for name, path in outputs.items():
        _save(drawers[name](), path)
