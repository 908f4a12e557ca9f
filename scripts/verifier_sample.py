"""The verifier's fresh sampling pass: G new rollouts per query from iteration k's GRPO checkpoint."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True, help="the GRPO checkpoint of the iteration")
@click.option("--data", required=True, help="the iteration's query JSONL")
@click.option("--config", "cfg", type=JSON, required=True,
              help="{grpo (stage-resolved), rollouts, train, media, prompts, dtype}")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--iteration", type=int, required=True)
@click.option("--out", required=True)
@click.option("--out-settings", default=None,
              help="effective settings (JSON); default: sample_settings.json beside --out")
@main_guard
def main(model_path, data, cfg, run, iteration, out, out_settings):
    setup_logging()
    cfg = merged(cfg, run)
    from veripo.stage_config import VerifierSampleJob, settings_path
    from veripo.verify import verifier

    job = VerifierSampleJob.from_config(cfg)
    rows = verifier.run_sample_job(model_path, data, job, iteration, out,
                                   out_settings or settings_path(out, "sample_settings.json"), progress)
    acc = sum(x["reward_accuracy"] for x in rows) / max(1, len(rows))
    summary(out, f"{len(rows)} fresh rollouts of {len({x['query_id'] for x in rows})} queries, "
                 f"mean accuracy reward {acc:.3f}")


if __name__ == "__main__":
    main()
