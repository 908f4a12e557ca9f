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
ACCURACY_COLOUR, FORMAT_COLOUR = "tab:green", "tab:blue"
HELDOUT_COLOURS = ("0.6", "tab:orange")  # before (the GRPO model), after (the DPO model)


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
    _reward_panel(axes[0, 0], steps, curves)
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


def _reward_panel(ax, steps: list, curves: dict) -> None:
    weight = curves["format_weight"]
    right = ax.twinx()
    _curve(ax, steps, curves["reward/accuracy"], ACCURACY_COLOUR, "accuracy (left axis, max 1)")
    _curve(right, steps, curves["reward/format"], FORMAT_COLOUR, f"format (right axis, max {weight:g})")
    _reward_axes(ax, right, weight)


def _reward_axes(ax, right, weight: float) -> None:
    """Accuracy reward (0 to 1) on the left axis ``ax``, format reward on its own right axis ``right``
    from 0 to its maximum (grpo.format_weight, 0.5 by default): on one 0-1 axis a format reward at its
    maximum would read as half the rollouts malformed. Both tops are level, so each curve at the top is at
    its best. Called once the curves are drawn: the legend takes their labels."""
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("accuracy reward", color=ACCURACY_COLOUR)
    ax.tick_params(axis="y", colors=ACCURACY_COLOUR)
    top = weight if weight > 0 else 1.0  # a weight of 0 pays nothing: the curve lies at 0
    right.set_ylim(-0.05 * top, 1.05 * top)
    right.set_ylabel(f"format reward (max {weight:g})", color=FORMAT_COLOUR)
    right.tick_params(axis="y", colors=FORMAT_COLOUR)
    ax.set_title("mean reward of the round's rollouts")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    # the lines' own labels, so the legend names each axis' top as drawn
    ax.legend(handles=handles, loc="lower right", fontsize=8)


def along_iterations_figure(along: list[dict]) -> Figure:
    """Every GRPO stage's rounds end to end (collect.grpo_along_iterations), one band per iteration:
    where each stage's own figure restarts at step 0, this one shows whether an iteration's GRPO takes up
    where the previous one left the policy. Each iteration's curve is drawn apart: its first round samples
    other queries (iteration 0: text and images) and, after a DPO stage, from another model."""
    fig = Figure(figsize=(11, 9), layout="constrained")
    reward, length, inconsistent = axes = fig.subplots(3, 1, sharex=True)
    right = reward.twinx()
    weight = max(it["format_weight"] for it in along)  # one axis for every stage: the largest top
    for i, it in enumerate(along):
        xs, first = it["x"], i == 0  # a legend entry per quantity, not per iteration
        _curve(reward, xs, it["reward/accuracy"], ACCURACY_COLOUR, "accuracy (left axis, max 1)" if first else None)
        _curve(right, xs, it["reward/format"], FORMAT_COLOUR,
               f"format (right axis, max {weight:g})" if first else None)
        _curve(length, xs, it["response_length"], "tab:purple", "response" if first else None)
        _curve(length, xs, it["think_tokens"], "tab:olive", "think" if first else None)
        _curve(inconsistent, xs, it["inconsistency"], "tab:red")
    _reward_axes(reward, right, weight)
    reward.set_title(reward.get_title(), pad=18)  # room for the iterations' names above the panel
    length.set_title("mean length of the round's rollouts")
    length.set_ylabel("tokens")
    length.set_ylim(bottom=0)
    length.legend(loc="lower right", fontsize=8)
    inconsistent.set_title("think/answer inconsistency of the round's rollouts (rule judge)")
    inconsistent.set_ylabel("INCONSISTENT, % of rollouts")
    # from 0 to at least 5%: autoscaled, a rate that barely moves would fill the panel as if it swung
    inconsistent.set_ylim(-2, max([5.0, *(v for it in along for v in it["inconsistency"])]) * 1.15)
    inconsistent.set_xlabel("GRPO round, the iterations end to end")
    for i, it in enumerate(along):
        start, end = it["x"][0] - 0.5, it["x"][-1] + 0.5
        for ax in axes:
            if i % 2:
                ax.axvspan(start, end, color="0.93", zorder=0, linewidth=0)
            if i:
                ax.axvline(start, color="0.5", linewidth=0.8, linestyle="--")
        reward.text((start + end) / 2, 1.01, f"iter{it['iteration']}", transform=reward.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=9, fontweight="bold")
    rounds = sum(len(it["x"]) for it in along)
    fig.suptitle(f"GRPO along the loop: the {rounds} rounds of iterations 0-{along[-1]['iteration']} on one axis "
                 "(bands and dashed lines: iteration boundaries)")
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
    """Top: training, per step. Bottom: the held-out pairs, each quantity before DPO beside the same
    quantity after, so that no bar measured after only stands next to a before/after pair."""
    fig = Figure(figsize=(14, 7), layout="constrained")
    axes = fig.subplots(2, 3)
    steps = curves["step"]
    panels = [(axes[0, 0], "loss", "DPO loss", "tab:red"), (axes[0, 1], "margin", "mean margin (chosen over rejected)",
                                                             "tab:blue"),
              (axes[0, 2], "positive_margin_share", "share of pairs with a positive margin", "tab:green")]
    for ax, key, title, colour in panels:
        ax.set_title(f"training pairs: {title}", fontsize=10)
        if not steps:
            _note(ax, "no DPO step: the stage was skipped (too few pairs)")
            continue
        _curve(ax, steps, curves[key], colour)
        ax.set_xlabel("optimiser step")
    if steps:
        axes[0, 0].axhline(math.log(2), color="0.6", linewidth=0.8, linestyle="--", label="ln 2 (margin 0)")
        axes[0, 0].legend(loc="best", fontsize=8)
        axes[0, 1].axhline(0, color="0.6", linewidth=0.8)
        axes[0, 2].set_ylim(-0.05, 1.05)
    _heldout_panels(axes[1], curves["heldout"])
    fig.suptitle(f"DPO, iteration {k}: {len(steps)} steps")
    return fig


# The held-out panels: (key in heldout.json's before/after, title, y label, share: drawn on 0-1).
HELDOUT_PANELS = (
    ("chosen_preferred", "chosen more likely", "share of pairs: log p(chosen) > log p(rejected)", True),
    ("logp_gap_per_token", "gap per token", "log p(chosen) - log p(rejected), nats/token", False),
    ("logp_gap", "gap, summed", "log p(chosen) - log p(rejected), nats", False),
)


def _heldout_panels(axes, heldout: dict) -> None:
    """One panel per quantity of HELDOUT_PANELS: before (the GRPO model) and after (the DPO model) side
    by side. DPO's margin is the summed gap's change (after minus before), so its share > 0 is written
    on the summed panel as what it is: how many pairs moved towards chosen."""
    n = heldout["pairs"]
    for ax, (key, title, ylabel, share) in zip(axes, HELDOUT_PANELS):
        ax.set_title(f"held-out pairs ({n}), before vs after: {title}", fontsize=10)
        if not n:
            _note(ax, "no held-out pairs")
            continue
        values = [heldout["before"][key], heldout["after"][key]]
        bars = ax.bar(["before DPO\n(GRPO model)", "after DPO\n(DPO model)"], values, width=0.6,
                      color=HELDOUT_COLOURS)
        ax.bar_label(bars, fmt="%.2f" if share else "%+.2f", fontsize=8, padding=2)
        ax.set_ylabel(ylabel)
        if share:
            ax.set_ylim(0, 1.1)
        else:
            ax.axhline(0, color="0.6", linewidth=0.8)
            low, high = min(values + [0.0]), max(values + [0.0])
            pad = 0.15 * (high - low or 1.0)  # room for the value labels outside the bars
            ax.set_ylim(low - pad, high + pad)
    if n:
        change = heldout["change"]
        # under the axis, where no bar (negative gaps reach down) can hide it
        axes[2].set_xlabel(f"DPO margin = after - before, per pair: mean {change['margin']:+.2f};\n"
                           f"> 0 (the gap grew) on {change['positive_margin_share']:.0%} of the pairs", fontsize=8)


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


# Every verdict of a consistency judge, bottom to top of a stacked bar: the rate the caption names
# first, then the verdicts that are neither consistent nor inconsistent (the rate counts them in its
# denominator, so a low rate with many of them says little), then consistent.
VERDICT_BARS = (("INCONSISTENT", "inconsistent", "tab:red"),
                ("UNKNOWN", "UNKNOWN: no conclusion or no answer found", "0.65"),
                ("UNPARSABLE", "UNPARSABLE: judge named no verdict", "0.4"),
                ("CONSISTENT", "consistent", "#c7e9c0"))


def _verdict_bars(ax, xs: list[float], rows: list[dict], width: float, hatch: str | None = None,
                  labelled: bool = True) -> None:
    """Stacked bars of each row's verdict shares (%), the inconsistent share written on its bar."""
    bottom = [0.0] * len(rows)
    for verdict, label, colour in VERDICT_BARS:
        values = [r["verdicts"][verdict] for r in rows]
        bars = ax.bar(xs, values, width=width, bottom=bottom, color=colour, hatch=hatch, edgecolor="white",
                      linewidth=0.5, label=label if labelled else None)
        if verdict == "INCONSISTENT":
            ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="edge", padding=1)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of the responses judged")


def _judged_by(judges: set[str]) -> str:
    """What the judge compares, named on the figure: the rule judge reads only the reasoning's last
    "answer is X", so a conclusion that contradicts the reasoning before it ("I count 3 squares. So
    the answer is 2") and an answer that repeats that conclusion are consistent to it."""
    if judges == {"rule"}:
        return "rule judge: the reasoning's last \"answer is X\" vs <answer>"
    return f"judge: {', '.join(sorted(judges)) or '?'}"


def inconsistency_figure(verifier: dict[int, dict], scores: dict[str, list[dict]]) -> Figure:
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2.2])
    iters = sorted(verifier)
    _verdict_bars(left, list(range(len(iters))), [verifier[k] for k in iters], width=0.6)
    left.set_xticks(range(len(iters)), [f"iter{k}\n({verifier[k]['rollouts']})" for k in iters])
    left.set_title("GRPO rollouts (training, sampled)", fontsize=10)
    benches = list(scores)
    width = 0.8 / max(1, len(benches))
    hatches = [None, "//", "..", "xx", "\\\\", "++"]
    rows0 = scores[benches[0]] if benches else []
    for i, bench in enumerate(benches):
        rows = scores[bench]
        xs = [j + (i - (len(benches) - 1) / 2) * width for j in range(len(rows))]
        _verdict_bars(right, xs, rows, width=width * 0.95, hatch=hatches[i % len(hatches)], labelled=False)
    right.set_xticks(range(len(rows0)), [r["label"] for r in rows0], rotation=30, ha="right")
    names = ", ".join(f"{b} ({scores[b][0]['n']} questions)" for b in benches)
    right.set_title(f"benchmark answers (evaluation, greedy): {names}", fontsize=10)
    if len(benches) > 1:  # side by side per checkpoint, told apart by hatching
        right.legend(handles=[Patch(facecolor="white", edgecolor="0.3", hatch=hatches[i % len(hatches)], label=b)
                              for i, b in enumerate(benches)], loc="upper right", fontsize=8)
    handles = left.get_legend_handles_labels()
    fig.legend(*handles, loc="outside lower center", ncols=len(VERDICT_BARS), fontsize=8)
    judges = {j for k in iters for j in verifier[k]["judges"]} | {r["judge"] for rows in scores.values() for r in rows}
    fig.suptitle(f"Consistency of reasoning and answer ({_judged_by(judges)}); "
                 "red, with its %: inconsistent")
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
    drawers["grpo_along_iterations"] = lambda: along_iterations_figure(tables["grpo_along"])
    for k, curves in tables["dpo"].items():
        drawers[f"dpo_iter{k}"] = lambda k=k, c=curves: dpo_figure(k, c)
    for bench, rows in tables["scores"].items():
        drawers[f"scores_{bench}"] = lambda b=bench, r=rows: scores_figure(b, r)
    unknown = sorted(set(outputs) - set(drawers))
    if unknown:
        raise ValueError(f"no figure named {', '.join(unknown)} (known: {', '.join(sorted(drawers))})")
    for name, path in outputs.items():
        _save(drawers[name](), path)
