"""The verifier's fresh sampling pass: G new rollouts per query from iteration k's GRPO checkpoint."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True, help="the GRPO checkpoint of the iteration")
@click.option("--data", required=True, help="the iteration's query JSONL")
@click.option("--config", "cfg", type=JSON, required=True, help="{grpo (stage-resolved), rollouts, media, prompts, dtype}")
@click.option("--iteration", type=int, required=True)
@click.option("--out", required=True)
@main_guard
def main(model_path, data, cfg, iteration, out):
    setup_logging()
    import torch

    from veripo.model import policy

    from veripo.data import queries
    from veripo.jsonio import write_jsonl
    from veripo.train.rollouts import Sampling, sample_fresh

    r = cfg["rollouts"]
    torch.manual_seed(r["seed"])
    records = queries.load_queries(data)
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    sampling = Sampling.of({**cfg["grpo"], "rollouts_per_query": r["rollouts_per_query"], "temperature": r["temperature"]})
    rows = sample_fresh(model, processor, records, sampling, cfg["prompts"], cfg["media"], iteration, r["seed"], progress)
    write_jsonl(out, rows)
    acc = sum(x["reward_accuracy"] for x in rows) / max(1, len(rows))
    click.echo(f"{len(rows)} fresh rollouts of {len(records)} queries, mean accuracy reward {acc:.3f}", err=True)


if __name__ == "__main__":
    main()
