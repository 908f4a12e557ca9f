"""Score a benchmark's predictions (our JSONL or the VerIPO authors' JSON) into a score JSON.

    python scripts/score.py --benchmark vsi_bench --predictions preds.jsonl --output score.json

The file keeps full precision; the printed table is rounded to 2 decimals.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Runnable as `python scripts/score.py` from a checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402

from veripo.eval.benchmarks import BENCHMARKS, VSI_REL_DIRECTION_PARTS  # noqa: E402
from veripo.jsonio import write_json  # noqa: E402
from veripo.eval.scoring import read_predictions, score_predictions  # noqa: E402


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


@click.command()
@click.option("--benchmark", required=True, type=click.Choice(BENCHMARKS),
              help="Benchmark the predictions are for.")
@click.option("--predictions", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Our JSONL predictions, or the authors' JSON list of {question, ground_truth, model_output}.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Score JSON to write.")
@click.option("--questions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The benchmark's question file: require exactly one prediction per question.")
def main(benchmark: str, predictions: str, output: str, questions: str | None) -> None:
    try:
        items = read_predictions(predictions, benchmark, questions)
        result = score_predictions(benchmark, items)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    write_json(output, result)
    click.echo(format_table(result))


if __name__ == "__main__":
    main()
