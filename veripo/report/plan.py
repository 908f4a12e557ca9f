"""What the report of a run shows: the artifacts its figures read (the manifest) and the figures, each
with its caption and place in Snakemake's HTML report.

Standard library only: rules/report.smk builds both while the workflow parses, and the figure job
reads the same manifest, so a path is named once.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """A checkpoint of the chain whose benchmark scores the report shows, in chain order."""

    label: str  # axis label
    kind: str  # base | grpo | dpo: what produced the checkpoint
    evaldir: str  # folder of its scores: base/eval, iterK/eval or iterK/eval_grpo


@dataclass(frozen=True)
class Figure:
    name: str  # figures/<name>.png
    caption: str  # report/<caption>.rst
    category: str
    subcategory: str


# Numbered so that the report lists them in the order of the chain.
GRPO, DPO, VERIFIER, EVALUATION, COMPUTE = ("1. GRPO training", "2. DPO training", "3. Verifier and pairs",
                                            "4. Evaluation", "5. Compute")


def stages(iterations: int, eval_grpo: bool) -> list[Stage]:
    """base, iter0 (activation GRPO), then per iteration K >= 1 its GRPO checkpoint (when ``eval_grpo``)
    and the DPO model that ends it."""
    out = [Stage("base", "base", "base/eval"), Stage("iter0", "grpo", "iter0/eval")]
    for k in range(1, iterations + 1):
        if eval_grpo:
            out.append(Stage(f"iter{k} GRPO", "grpo", f"iter{k}/eval_grpo"))
        out.append(Stage(f"iter{k} DPO" if eval_grpo else f"iter{k}", "dpo", f"iter{k}/eval"))
    return out


def manifest(iterations: int, benchmarks: list[str], eval_grpo: bool) -> dict:
    """Every artifact the figures read, by what it is; keys of iterations are strings (JSON)."""
    video = range(1, iterations + 1)
    return {
        # settings.json: the stage's grpo section, whose format_weight is the format reward's top; the
        # rollouts are judged again (rule judge) and their think tokens counted with the model's tokenizer
        "grpo": {str(k): {"metrics": f"iter{k}/grpo/metrics.jsonl", "settings": f"iter{k}/grpo/settings.json",
                          "rollouts": f"iter{k}/grpo/rollouts.jsonl", "model": f"iter{k}/grpo/model"}
                 for k in range(iterations + 1)},
        "dpo": {str(k): {"metrics": f"iter{k}/dpo/metrics.jsonl", "heldout": f"iter{k}/dpo/heldout.json"}
                for k in video},
        "verifier": {str(k): f"iter{k}/verifier/stats.json" for k in video},
        "pairs": {str(k): f"iter{k}/dpo/pair_stats.json" for k in video},
        "scores": {bench: [{"label": s.label, "kind": s.kind, "path": f"{s.evaldir}/{bench}.json"}
                           for s in stages(iterations, eval_grpo)] for bench in benchmarks},
    }


def manifest_paths(m: dict) -> dict[str, str]:
    """The manifest's files under unique names (a rule's named inputs)."""
    out = {}
    for stage in ("grpo", "dpo"):
        for k, d in m[stage].items():
            out.update({f"{stage}_{k}_{what}": p for what, p in d.items()})
    out.update({f"verifier_{k}": p for k, p in m["verifier"].items()})
    out.update({f"pairs_{k}": p for k, p in m["pairs"].items()})
    for bench, rows in m["scores"].items():
        out.update({f"score_{bench}_{i}": row["path"] for i, row in enumerate(rows)})
    return out


def figures(iterations: int, benchmarks: list[str]) -> list[Figure]:
    out = [Figure(f"grpo_iter{k}", "grpo", GRPO, f"iteration {k} ({'activation' if k == 0 else 'video'})")
           for k in range(iterations + 1)]
    out.append(Figure("grpo_along_iterations", "grpo_along_iterations", GRPO, "all iterations, end to end"))
    out += [Figure(f"dpo_iter{k}", "dpo", DPO, f"iteration {k}") for k in range(1, iterations + 1)]
    out += [Figure("verifier", "verifier", VERIFIER, "verdicts"), Figure("pairs", "pairs", VERIFIER, "pairs"),
            Figure("inconsistency", "inconsistency", EVALUATION, "inconsistency")]
    out += [Figure(f"scores_{bench}", "scores", EVALUATION, bench) for bench in benchmarks]
    out.append(Figure("wall_time", "wall_time", COMPUTE, "wall time"))
    return out
