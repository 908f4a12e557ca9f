"""DPO on the verifier's pairs; the reference is the GRPO model entering the stage.

Runs as one process, or as every rank of a torchrun job (see veripo/train/launch.py); rank 0 writes."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True)
@click.option("--pairs", "pairs_path", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="{dpo, train, media, prompts, dtype}")
@click.option("--out-model", required=True)
@click.option("--out-metrics", required=True)
@click.option("--out-heldout", required=True, help="chosen-over-rejected on held-out pairs, before and after (JSON)")
@click.option("--checkpoint-dir", required=True)
@main_guard
def main(model_path, pairs_path, cfg, out_model, out_metrics, out_heldout, checkpoint_dir):
    setup_logging()
    import torch

    from veripo.train import distributed

    from veripo.train import dpo

    from veripo.model import policy
    from veripo.errors import InputError
    from veripo.jsonio import read_jsonl, unique_index, write_json, write_jsonl
    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint, save_checkpoint

    dcfg, t = cfg["dpo"], cfg["train"]
    d = distributed.init(t["engine"])
    distributed.announce(d)
    torch.manual_seed(dcfg["seed"])
    pairs = read_jsonl(pairs_path, required=("pair_id", "query_id", "chosen", "rejected", "chosen_ids",
                                             "rejected_ids", "query"))
    unique_index(pairs, "pair_id", pairs_path)
    for p in pairs:
        p["_source"] = f"{pairs_path}, line {p['_line']}"
        for side in ("chosen_ids", "rejected_ids"):
            ids = p[side]
            if not isinstance(ids, list) or not ids or not all(type(t) is int for t in ids):
                raise InputError(pairs_path, "expected token ids (a non-empty list of integers)", line=p["_line"],
                                 field=side)
        if p["chosen_ids"] == p["rejected_ids"]:
            raise InputError(pairs_path, "chosen and rejected are the same tokens", line=p["_line"], field="chosen_ids")
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    ckpt = StepCheckpointer(checkpoint_dir, run_fingerprint({"--model": model_path, "--pairs": pairs_path},
                                                            {**cfg, "world_size": d.world}))
    fields = dpo.DPOConfig.__dataclass_fields__
    conf = dpo.DPOConfig(**{k: v for k, v in dcfg.items() if k in fields})
    train, heldout = dpo.split_heldout(pairs, conf.heldout_fraction, conf.seed)
    if pairs:
        click.echo(f"{len(train)} pairs train, {len(heldout)} held out", err=True)
        engine, metrics, report = dpo.train_dpo(model, processor, train, conf, cfg["prompts"], cfg["media"],
                                                checkpointer=ckpt, progress=progress, engine_kind=t["engine"],
                                                zero_config=t["zero_config"], dtype=cfg["dtype"], d=d,
                                                heldout=heldout)
    else:
        from veripo.train.engine import TrainEngine

        click.echo("no pairs: the DPO model is the GRPO model unchanged", err=True)
        engine, metrics = TrainEngine(model, conf.lr, 0.0, 1.0, "torch"), []
        report = dpo.heldout_report(model, None, [], {})
    save_checkpoint(engine, processor, out_model, {"stage": "dpo", "from": model_path, "pairs": len(pairs),
                                                   "world_size": d.world}, d)
    if d.main:
        write_jsonl(out_metrics, metrics)
        write_json(out_heldout, report)
        if report["pairs"]:
            b, a = report["before"], report["after"]
            click.echo(f"held-out pairs: chosen preferred {b['chosen_preferred']} -> {a['chosen_preferred']}, "
                       f"margin {a['margin']}", err=True)
        ckpt.clear()


if __name__ == "__main__":
    main()
