"""The score table ``veripo score`` (and scripts/score.py) prints: a score JSON, rounded to 2 decimals."""
from __future__ import annotations

from veripo.eval.benchmarks import VSI_REL_DIRECTION_PARTS


def format_table(result: dict) -> str:
    """A short human-readable summary of a score_predictions result, numbers rounded to 2 decimals."""
    rows = [("overall", result["overall"], result.get("ci95"))]
    if "official_overall" in result:
        # VSI-Bench: show the 8 official categories, with the direction parts under their mean.
        rows.append(("official_overall", result["official_overall"], result.get("official_ci95")))
        for name, score in result["official_categories"].items():
            rows.append((f"  {name}", score, None))
            if name == "object_rel_direction":
                parts = [part for part in VSI_REL_DIRECTION_PARTS if part in result["categories"]]
                rows += [(f"    {part.removeprefix(name + '_')}", result["categories"][part], None) for part in parts]
    else:
        rows += [(f"  {name}", score, None) for name, score in result["categories"].items()]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{result['benchmark']}  n={result['n']}"]
    lines += [f"{name:<{width}}  {score:6.2f}" + (f"  (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")
              for name, score, ci in rows]
    return "\n".join(lines)
