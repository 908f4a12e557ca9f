"""Supervised warm-up of the tiny base on synthetic reasoning traces (see veripo/train/warmup.py for why)."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--data", required=True, help="warm-up queries (JSONL)")
@click.option("--config", "cfg", type=JSON, required=True, help="{warmup, media, prompts, dtype}")
@click.option("--out", required=True)
@click.option("--metrics", required=True)
@main_guard
def main(model_path, data, cfg, out, metrics):
    setup_logging()
    import torch

    from veripo.model import policy

    from veripo.data import queries

    from veripo.train import warmup as sft
    from veripo.jsonio import write_jsonl
    from veripo.train.engine import TrainEngine
    from veripo.train.checkpoints import save_checkpoint

    w = cfg["warmup"]
    torch.manual_seed(w["seed"])
    records = queries.load_queries(data)
    model, processor = policy.load_policy(model_path, cfg["dtype"])
    policy.configure_processor(processor, cfg["media"])
    rows = sft.train_sft(model, processor, records, cfg["prompts"], cfg["media"], w["steps"], w["batch_size"],
                         w["lr"], w["trace_mix"], w["seed"], progress=progress)
    save_checkpoint(TrainEngine(model, w["lr"], 0.0, 1.0, "torch"), processor, out, {"stage": "warmup", "from": model_path, "steps": w["steps"]})
    write_jsonl(metrics, rows)


if __name__ == "__main__":
    main()
