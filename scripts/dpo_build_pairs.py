"""Chosen/rejected pairs from the verified rollouts of one iteration, and their statistics."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging, summary


@click.command()
@click.option("--rollouts", required=True)
@click.option("--verdicts", required=True)
@click.option("--model", "model_path", required=True, help="policy checkpoint (its tokenizer counts think tokens)")
@click.option("--config", "cfg", type=JSON, required=True, help="pairs section")
@click.option("--out", required=True)
@click.option("--stats", "stats_out", required=True)
@click.option("--out-settings", default=None,
              help="effective settings (JSON); default: pairs_settings.json beside --out")
@main_guard
def main(rollouts, verdicts, model_path, cfg, out, stats_out, out_settings):
    setup_logging()
    from veripo.stage_config import PairsConfig, settings_path
    from veripo.verify import pairs_job

    outputs = pairs_job.PairOutputs(out, stats_out, out_settings or settings_path(out, "pairs_settings.json"))
    stats = pairs_job.build_pairs_job(rollouts, verdicts, model_path, PairsConfig.from_config(cfg), outputs)
    summary(out, f"{stats['pairs']} pairs from {stats['queries']} queries ({stats['queries_with_chosen']} with a "
                 f"chosen rollout): {stats['by_kind']}; dropped {stats['dropped']}")


if __name__ == "__main__":
    main()
