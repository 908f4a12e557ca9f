"""One GRPO stage: reasoning activation (iteration 0) or video GRPO of iteration k.

Runs as one process, or as every rank of a torchrun job (see veripo/train/launch.py); rank 0 writes."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True, help="checkpoint entering the stage")
@click.option("--data", required=True, help="query JSONL")
@click.option("--config", "cfg", type=JSON, required=True, help="{grpo (stage-resolved), train, media, prompts, dtype}")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--iteration", type=int, required=True)
@click.option("--stage", required=True, help="activation | video")
@click.option("--out-model", required=True)
@click.option("--out-rollouts", required=True)
@click.option("--out-metrics", required=True)
@click.option("--out-settings", default=None, help="effective settings (JSON); default: settings.json beside the model")
@click.option("--checkpoint-dir", required=True, help="step checkpoints (not a declared output)")
@click.option("--tracking", type=JSON, default=None,
              help="the config's tracking section: live TensorBoard / W&B logging of the metrics (default: none)")
@click.option("--tracking-name", default=None, help="the job's name in the trackers: <rule>/<job>")
@main_guard
def main(model_path, data, cfg, run, iteration, stage, out_model, out_rollouts, out_metrics, out_settings,
         checkpoint_dir, tracking, tracking_name):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.stage_config import GRPOJob, settings_path
    from veripo.train import grpo
    from veripo.train.tracking import Tracker

    job = GRPOJob.from_config(cfg)
    out = grpo.GRPOOutputs(out_model, out_rollouts, out_metrics, out_settings or settings_path(out_model))
    with Tracker.of(tracking, tracking_name) as tracker:
        metrics = grpo.run_job(model_path, data, job, stage, iteration, out, checkpoint_dir, progress=progress,
                               tracker=tracker)
    summary(out_model, grpo.summary_line(metrics))


if __name__ == "__main__":
    main()
