"""DPO on the verifier's pairs; the reference is the GRPO model entering the stage.

Runs as one process, or as every rank of a torchrun job (see veripo/train/launch.py); rank 0 writes."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--pairs", "pairs_path", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="{dpo, train, media, prompts, dtype}")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--out-model", required=True)
@click.option("--out-metrics", required=True)
@click.option("--out-heldout", required=True, help="chosen-over-rejected on held-out pairs, before and after (JSON)")
@click.option("--out-settings", default=None, help="effective settings (JSON); default: settings.json beside the model")
@click.option("--checkpoint-dir", required=True)
@click.option("--tracking", type=JSON, default=None,
              help="the config's tracking section: live TensorBoard / W&B logging of the metrics (default: none)")
@click.option("--tracking-name", default=None, help="the job's name in the trackers: <rule>/<job>")
@main_guard
def main(model_path, pairs_path, cfg, run, out_model, out_metrics, out_heldout, out_settings, checkpoint_dir, tracking,
         tracking_name):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.stage_config import DPOJob, settings_path
    from veripo.train import dpo
    from veripo.train.tracking import Tracker

    job = DPOJob.from_config(cfg)
    out = dpo.DPOOutputs(out_model, out_metrics, out_heldout, out_settings or settings_path(out_model))
    with Tracker.of(tracking, tracking_name) as tracker:
        report, metrics = dpo.run_job(model_path, pairs_path, job, out, checkpoint_dir, progress=progress,
                                      tracker=tracker)
    summary(out_model, dpo.summary_line(report, metrics))


if __name__ == "__main__":
    main()
