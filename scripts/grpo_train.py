"""One GRPO stage: reasoning activation (iteration 0) or video GRPO of iteration k.

Runs as one process, or as every rank of a torchrun job (see veripo/train/launch.py); rank 0 writes."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True, help="checkpoint entering the stage")
@click.option("--data", required=True, help="query JSONL")
@click.option("--config", "cfg", type=JSON, required=True, help="{grpo (stage-resolved), train, media, prompts, dtype}")
@click.option("--iteration", type=int, required=True)
@click.option("--stage", required=True, help="activation | video")
@click.option("--out-model", required=True)
@click.option("--out-rollouts", required=True)
@click.option("--out-metrics", required=True)
@click.option("--out-settings", default=None, help="effective settings (JSON); default: settings.json beside the model")
@click.option("--checkpoint-dir", required=True, help="step checkpoints (not a declared output)")
@main_guard
def main(model_path, data, cfg, iteration, stage, out_model, out_rollouts, out_metrics, out_settings, checkpoint_dir):
    setup_logging()
    from veripo.stage_config import GRPOJob, settings_path
    from veripo.train import grpo

    job = GRPOJob.from_config(cfg)
    out = grpo.GRPOOutputs(out_model, out_rollouts, out_metrics, out_settings or settings_path(out_model))
    metrics = grpo.run_job(model_path, data, job, stage, iteration, out, checkpoint_dir, progress=progress)
    summary(out_model, grpo.summary_line(metrics))


if __name__ == "__main__":
    main()
