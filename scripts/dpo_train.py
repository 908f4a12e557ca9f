"""DPO on the verifier's pairs; the reference is the GRPO model entering the stage.

Runs as one process, or as every rank of a torchrun job (see veripo/launch.py); rank 0 writes."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--pairs", "pairs_path", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="{dpo, train, media, prompts, dtype}")
@click.option("--out-model", required=True)
@click.option("--out-metrics", required=True)
@click.option("--checkpoint-dir", required=True)
@main_guard
def main(model_path, pairs_path, cfg, out_model, out_metrics, checkpoint_dir):
    setup_logging()
    import torch

    from veripo import distributed, dpo, policy
    from veripo.jsonio import read_jsonl, write_jsonl
    from veripo.training import StepCheckpointer, save_checkpoint

    dcfg, t = cfg["dpo"], cfg["train"]
    d = distributed.init(t["engine"])
    distributed.announce(d)
    torch.manual_seed(dcfg["seed"])
    pairs = read_jsonl(pairs_path, required=("pair_id", "query_id", "chosen", "rejected", "query"))
    for p in pairs:
        p["_source"] = f"{pairs_path}, line {p['_line']}"
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    ckpt = StepCheckpointer(checkpoint_dir)
    fields = dpo.DPOConfig.__dataclass_fields__
    conf = dpo.DPOConfig(**{k: v for k, v in dcfg.items() if k in fields})
    if pairs:
        engine, metrics = dpo.train_dpo(model, processor, pairs, conf, cfg["prompts"], cfg["media"],
                                        checkpointer=ckpt, progress=progress, engine_kind=t["engine"],
                                        zero_config=t["zero_config"], dtype=cfg["dtype"], d=d)
    else:
        from veripo.engine import TrainEngine

        click.echo("no pairs: the DPO model is the GRPO model unchanged", err=True)
        engine, metrics = TrainEngine(model, conf.lr, 0.0, 1.0, "torch"), []
    save_checkpoint(engine, processor, out_model, {"stage": "dpo", "from": model_path, "pairs": len(pairs),
                                                   "world_size": d.world}, d)
    if d.main:
        write_jsonl(out_metrics, metrics)
        ckpt.clear()


if __name__ == "__main__":
    main()
