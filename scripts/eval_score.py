"""Score JSON of one benchmark run: VerIPO's scores, the judge's inconsistency rate, provenance."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, setup_logging, summary


@click.command()
@click.option("--benchmark", required=True)
@click.option("--predictions", required=True)
@click.option("--run-info", required=True, help="the run info eval_generate wrote with the predictions")
@click.option("--questions", required=True, help="the benchmark's question file")
@click.option("--model", "model_path", required=True, help="the checkpoint that was evaluated")
@click.option("--config", "cfg", type=JSON, required=True, help="{verifier}")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--baseline-predictions", default=None,
              help="another checkpoint's predictions on the same questions: the score's paired difference")
@click.option("--out", required=True)
@main_guard
def main(benchmark, predictions, run_info, questions, model_path, cfg, run, out, baseline_predictions):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.eval.report import score_report
    from veripo.jsonio import read_json, write_json

    result = score_report(benchmark, predictions, questions, read_json(run_info), model_path,
                          cfg["verifier"]["judge"], baseline_predictions)
    write_json(out, result)
    summary(out, f"{benchmark} overall {result['overall']:.2f} (n={result['n']}, skipped {result['skipped']}), "
                 f"inconsistency {result['inconsistency']['rate']:.2f}%")


if __name__ == "__main__":
    main()
