"""Generate benchmark predictions with a checkpoint (resumable; see veripo/eval/predictions.py)."""
import _bootstrap  # noqa: F401
import click

from veripo.run_settings import merged
from veripo.cli import JSON, main_guard, progress, set_threads, setup_logging, summary


@click.command()
@click.option("--model", "model_path", required=True, help="checkpoint directory or hub id")
@click.option("--benchmark", required=True)
@click.option("--questions", required=True, help="the benchmark's question file")
@click.option("--video-root", required=True, help="folder the records' video_path is relative to")
@click.option("--config", "cfg", type=JSON, required=True,
              help="the benchmark's EvalJob (veripo.eval.settings.job_settings)")
@click.option("--run-settings", "run", type=JSON, default="{}",
              help="settings that change no result, kept out of --config for Snakemake (veripo/run_settings.py)")
@click.option("--out", required=True, help="predictions JSONL, in place once every question is answered")
@click.option("--run-info", required=True, help="JSON written with it: the whole EvalJob, backend, skipped questions")
@main_guard
def main(model_path, benchmark, questions, video_root, cfg, run, out, run_info):
    setup_logging()
    cfg = merged(cfg, run)
    set_threads()
    from veripo.eval.job import run_generation
    from veripo.stage_config import EvalJob

    info = run_generation(model_path, benchmark, questions, video_root, EvalJob.from_config(cfg), out, run_info,
                          progress=progress)
    summary(out, f"{info['n_answered']} of {info['n_questions']} {benchmark} questions answered with "
                 f"{info['generation']['backend']}, {info['skipped']} skipped")


if __name__ == "__main__":
    main()
