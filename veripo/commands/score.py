"""``veripo score``: a benchmark's predictions (our JSONL or the VerIPO authors' JSON) into a score JSON.

The file keeps full precision; the printed table is rounded to 2 decimals. scripts/score.py runs this
same command.
"""
from __future__ import annotations

import click

from veripo.eval.benchmarks import BENCHMARKS


@click.command("score", short_help="Score a benchmark's predictions into a score JSON.")
@click.option("--benchmark", required=True, type=click.Choice(BENCHMARKS),
              help="Benchmark the predictions are for.")
@click.option("--predictions", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Our JSONL predictions, or the authors' JSON list of {question, ground_truth, model_output}.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Score JSON to write.")
@click.option("--questions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The benchmark's question file: require exactly one prediction per question.")
def score(benchmark: str, predictions: str, output: str, questions: str | None) -> None:
    """Score a benchmark's predictions with VerIPO's rules, write the score JSON and print its table.

    Predictions of another benchmark (their evaluation record <bench>.run.json beside them names another,
    or their categories are not the benchmark's) are refused.

    \b
    veripo score --benchmark vsi_bench --predictions iter3/eval/vsi_bench.predictions.jsonl \\
        --questions data/bench/vsi_bench.json --output vsi_bench_score.json
    """
    from veripo.cli import terminal_safe
    from veripo.eval.score_table import format_table
    from veripo.eval.scoring import check_predictions_benchmark, read_predictions, score_predictions
    from veripo.jsonio import write_json

    try:
        items = read_predictions(predictions, benchmark, questions)
        check_predictions_benchmark(predictions, benchmark, items)
        result = score_predictions(benchmark, items)
    except ValueError as exc:
        raise click.ClickException(terminal_safe(str(exc))) from None
    write_json(output, result)
    click.echo(terminal_safe(format_table(result)))
