"""The score table ``veripo score`` (and scripts/score.py) prints: a score JSON, rounded to 2 decimals."""
from __future__ import annotations

from veripo.eval.benchmarks import VSI_REL_DIRECTION_PARTS


def format_table(result: dict) -> str:
    """A short human-readable summary of a score_predictions result, numbers rounded to 2 decimals."""
    rows = [("overall", result["overall"])]
    if "official_overall" in result:
        # VSI-Bench: show the 8 official categories, with the direction parts under their mean.
        rows.append(("official_overall", result["official_overall"]))
        for name, score in result["official_categories"].items():
            rows.append((f"  {name}", score))
            if name == "object_rel_direction":
                parts = [part for part in VSI_REL_DIRECTION_PARTS if part in result["categories"]]
                rows += [(f"    {part.removeprefix(name + '_')}", result["categories"][part]) for part in parts]
    else:
        rows += [(f"  {name}", score) for name, score in result["categories"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{result['benchmark']}  n={result['n']}"]
    lines += [f"{name:<{width}}  {score:6.2f}" for name, score in rows]
    return "\n".join(lines)
