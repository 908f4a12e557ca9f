"""Generate benchmark predictions with a checkpoint (resumable; see veripo/evaluate.py)."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--benchmark", required=True)
@click.option("--questions", required=True)
@click.option("--video-root", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="{eval, prompts, dtype}")
@click.option("--out", required=True, help="predictions JSONL (appended to)")
@click.option("--partial", required=True, help="where predictions accumulate until complete")
@main_guard
def main(model_path, benchmark, questions, video_root, cfg, out, partial):
    setup_logging()
    import os

    from veripo import evaluate, policy
    from veripo.benchmarks import load_benchmark
    from veripo.errors import InputError

    qs = load_benchmark(benchmark, questions)
    missing = evaluate.missing_media(qs, video_root)
    if missing:
        raise InputError(questions, f"{len(missing)} of {len(qs)} videos are missing under {video_root}, "
                         f"first: {', '.join(missing[:3])}", field="video_path")
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["eval"]["media"])
    os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
    n = evaluate.generate_predictions(model, processor, qs, video_root, partial, cfg["eval"], cfg["prompts"],
                                      progress=progress)
    click.echo(f"generated {n}, resumed past {len(qs) - n}", err=True)
    os.replace(partial, out)


if __name__ == "__main__":
    main()
