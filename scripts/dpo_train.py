"""DPO on the verifier's pairs; the reference is the GRPO model entering the stage."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--pairs", "pairs_path", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="{dpo, media, prompts, dtype}")
@click.option("--out-model", required=True)
@click.option("--out-metrics", required=True)
@click.option("--checkpoint-dir", required=True)
@main_guard
def main(model_path, pairs_path, cfg, out_model, out_metrics, checkpoint_dir):
    setup_logging()
    import torch

    from veripo import dpo, policy
    from veripo.jsonio import read_jsonl, write_jsonl
    from veripo.training import StepCheckpointer, save_checkpoint

    d = cfg["dpo"]
    torch.manual_seed(d["seed"])
    pairs = read_jsonl(pairs_path, required=("pair_id", "query_id", "chosen", "rejected", "query"))
    for p in pairs:
        p["_source"] = f"{pairs_path}, line {p['_line']}"
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    ckpt = StepCheckpointer(checkpoint_dir)
    if pairs:
        metrics = dpo.train_dpo(model, processor, pairs, dpo.DPOConfig(**d), cfg["prompts"], cfg["media"],
                                checkpointer=ckpt, progress=progress)
    else:
        click.echo("no pairs: the DPO model is the GRPO model unchanged", err=True)
        metrics = []
    save_checkpoint(model, processor, out_model, {"stage": "dpo", "from": model_path, "pairs": len(pairs)})
    write_jsonl(out_metrics, metrics)
    ckpt.clear()


if __name__ == "__main__":
    main()
