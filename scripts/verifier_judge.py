"""Verdicts for every rollout of a GRPO stage, plus per-iteration statistics."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--rollouts", required=True)
@click.option("--model", "model_path", required=True, help="policy checkpoint (its tokenizer counts think tokens)")
@click.option("--config", "cfg", type=JSON, required=True, help="verifier section")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--out", required=True)
@click.option("--stats", "stats_out", required=True)
@click.option("--out-settings", default=None, help="effective settings (JSON); default: settings.json beside --out")
@main_guard
def main(rollouts, model_path, cfg, run, out, stats_out, out_settings):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.stage_config import VerifierConfig, settings_path
    from veripo.verify import verifier

    outputs = verifier.VerifierOutputs(out, stats_out, out_settings or settings_path(out))
    stats = verifier.run_job(rollouts, model_path, VerifierConfig.from_config(cfg), outputs, progress=progress)
    summary(out, f"{stats['rollouts']} rollouts, {stats['clean']} clean, judge {stats['checks']['consistency']}, "
                 f"inconsistency rate {100 * stats['inconsistency_rate']:.1f}%")


if __name__ == "__main__":
    main()
