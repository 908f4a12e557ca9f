"""Supervised warm-up of the tiny base on synthetic reasoning traces (see veripo/train/warmup.py for why)."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--data", required=True, help="warm-up queries (JSONL)")
@click.option("--config", "cfg", type=JSON, required=True, help="{warmup, train, media, prompts, dtype}")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--out", required=True)
@click.option("--metrics", required=True)
@click.option("--out-settings", default=None,
              help="effective settings (JSON); default: warmup_settings.json beside the model")
@click.option("--tracking", type=JSON, default=None,
              help="the config's tracking section: live TensorBoard / W&B logging of the metrics (default: none)")
@click.option("--tracking-name", default=None, help="the job's name in the trackers: <rule>/<job>")
@main_guard
def main(model_path, data, cfg, run, out, metrics, out_settings, tracking, tracking_name):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.stage_config import WarmupJob, settings_path
    from veripo.train import warmup
    from veripo.train.tracking import Tracker

    job = WarmupJob.from_config(cfg)
    outputs = warmup.WarmupOutputs(out, metrics, out_settings or settings_path(out, "warmup_settings.json"))
    with Tracker.of(tracking, tracking_name) as tracker:
        rows = warmup.run_job(model_path, data, job, outputs, progress=progress, tracker=tracker)
    summary(out, f"{len(rows)} warm-up steps, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}" if rows
            else "no warm-up steps")


if __name__ == "__main__":
    main()
