"""The arms' comparison drawn (rule compare): one line per arm across iterations, the mean over seeds,
its band the seeds' range; and the GRPO rollouts of all iterations on one axis of rounds."""
from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from veripo.jsonio import atomic_path

DPI = 110
SERIES = {
    "rollout_accuracy": ("rollout_accuracy", "GRPO rollouts: mean accuracy reward", "accuracy reward (0-1)", 1.0),
    "response_length": ("response_tokens", "GRPO rollouts: response length", "tokens", 1.0),
    "think_length": ("think_tokens", "GRPO rollouts: think length", "tokens", 1.0),
}


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _arm_lines(ax, summary: dict, key: str, scale: float = 1.0, style: str = "-", suffix: str = "") -> bool:
    drawn = False
    for i, arm in enumerate(summary["arms"]):
        cells = [(c["iteration"], c[key]) for c in summary["per_arm"][arm]["iterations"] if key in c]
        if not cells:
            continue
        xs = [k for k, _ in cells]
        ax.plot(xs, [c["mean"] * scale for _, c in cells], style, color=_colour(i), marker="o",
                label=f"{arm}{suffix}")
        ax.fill_between(xs, [c["min"] * scale for _, c in cells], [c["max"] * scale for _, c in cells],
                        color=_colour(i), alpha=0.2, linewidth=0)
        drawn = True
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration (0: activation GRPO)")
    return drawn


def _title(summary: dict, what: str) -> str:
    return f"{what} (mean of seeds {', '.join(map(str, summary['seeds']))}; band: their range)"


def score_figure(summary: dict, bench: str) -> Figure:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    _arm_lines(ax, summary, f"score/{bench}")
    base = summary["base"][bench]
    ax.axhline(base["overall"], color="0.5", linestyle="--", label="base model")
    if base.get("ci95"):
        ax.axhspan(*base["ci95"], color="0.5", alpha=0.12, linewidth=0)
    for run_i, arm in enumerate(summary["arms"]):
        # the final checkpoints' own 95% intervals, as error bars beside the last point
        cis = [run["rows"][-1].get(f"ci95/{bench}") for run in summary["runs"] if run["arm"] == arm]
        for j, ci in enumerate(c for c in cis if c):
            x = len(summary["per_arm"][arm]["iterations"]) - 1 + 0.06 * (run_i * len(cis) + j + 1)
            ax.plot([x, x], ci, color=_colour(run_i), linewidth=1)
    ax.set_ylabel("overall score (0-100)")
    ax.set_title(_title(summary, f"{bench}"), fontsize=9)
    fig.text(0.01, 0.01, "grey band: the base model's 95% CI; bars at the right: each seed's final 95% CI",
             fontsize=7, color="0.3")
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def series_figure(summary: dict, key: str, title: str, ylabel: str, scale: float) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    _arm_lines(ax, summary, key, scale)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(summary, title), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def inconsistency_figure(summary: dict) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    _arm_lines(ax, summary, "inconsistency_rule", 100.0, "-", " (rule judge)")
    _arm_lines(ax, summary, "inconsistency_judge", 100.0, "--", " (LLM judge)")
    ax.set_ylabel("INCONSISTENT verdicts, % of rollouts")
    ax.set_title(_title(summary, "GRPO rollouts: think/answer inconsistency"), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def along_iterations_figure(summary: dict) -> Figure:
    """Accuracy reward and response length per GRPO round, the iterations end to end, and each
    iteration's rule-judge inconsistency over its rounds: the loop as one run, not a restart per stage."""
    fig = Figure(figsize=(8, 7))
    axes = fig.subplots(3, 1, sharex=True)
    for i, arm in enumerate(summary["arms"]):
        runs = [run["rows"] for run in summary["runs"] if run["arm"] == arm]
        offset, bounds = 0, []
        for k in range(len(runs[0])):
            n = min(len(rows[k]["grpo_rounds"]) for rows in runs)
            xs = list(range(offset, offset + n))
            for ax, key in zip(axes[:2], ("reward/accuracy", "response_length")):
                ax.plot(xs, [statistics.fmean(rows[k]["grpo_rounds"][r][key] for rows in runs) for r in range(n)],
                        color=_colour(i), linewidth=1.2, label=arm if k == 0 else None)
            rate = statistics.fmean(rows[k]["inconsistency_rule"] for rows in runs) * 100
            axes[2].plot([offset, offset + n - 1], [rate, rate], color=_colour(i), linewidth=2,
                         label=arm if k == 0 else None)
            offset += n
            bounds.append(offset - 0.5)
        if i == 0:
            for ax in axes:
                for b in bounds[:-1]:
                    ax.axvline(b, color="0.8", linewidth=0.8)
    axes[0].set_ylabel("accuracy reward")
    axes[1].set_ylabel("response tokens")
    axes[2].set_ylabel("inconsistent, % (rule)")
    axes[2].set_xlabel("GRPO round, iterations end to end (grey lines: iteration boundaries)")
    axes[0].set_title(f"GRPO along the loop (mean of seeds {', '.join(map(str, summary['seeds']))})", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def cost_figure(summary: dict) -> Figure:
    fig = Figure(figsize=(7, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    arms = summary["arms"]
    ax1.bar(arms, [summary["per_arm"][a]["wall_seconds"] for a in arms], color=[_colour(i) for i in range(len(arms))])
    ax1.set_ylabel("training wall time per seed (s)")
    ax2.bar(arms, [summary["per_arm"][a]["sampled_tokens"] for a in arms], color=[_colour(i) for i in range(len(arms))])
    ax2.set_ylabel("GRPO tokens sampled per seed")
    fig.suptitle("Training cost (GRPO, verifier, pairs, DPO jobs; mean over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def draw_all(summary: dict, outputs: dict[str, str]) -> None:
    """Write each figure whose name (file stem) is in ``outputs``."""
    makers = {f"score_{b}": (lambda b=b: score_figure(summary, b)) for b in summary["benchmarks"]}
    makers.update({name: (lambda a=args: series_figure(summary, *a)) for name, args in SERIES.items()})
    makers["inconsistency"] = lambda: inconsistency_figure(summary)
    makers["grpo_along_iterations"] = lambda: along_iterations_figure(summary)
    makers["cost"] = lambda: cost_figure(summary)
    unknown = sorted(set(outputs) - set(makers))
    if unknown:
        raise ValueError(f"no comparison figure named {', '.join(unknown)}")
    for name, path in outputs.items():
        _save(makers[name](), path)
