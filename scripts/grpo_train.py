"""One GRPO stage: reasoning activation (iteration 0) or video GRPO of iteration k.

Runs as one process, or as every rank of a torchrun job (see veripo/train/launch.py); rank 0 writes."""
import json
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True, help="checkpoint entering the stage")
@click.option("--data", required=True, help="query JSONL")
@click.option("--config", "cfg", type=JSON, required=True, help="{grpo (stage-resolved), train, media, prompts, dtype}")
@click.option("--iteration", type=int, required=True)
@click.option("--stage", required=True, help="activation | video")
@click.option("--out-model", required=True)
@click.option("--out-rollouts", required=True)
@click.option("--out-metrics", required=True)
@click.option("--checkpoint-dir", required=True, help="step checkpoints (not a declared output)")
@main_guard
def main(model_path, data, cfg, iteration, stage, out_model, out_rollouts, out_metrics, checkpoint_dir):
    setup_logging()
    import torch

    from veripo.train import distributed

    from veripo.train import grpo

    from veripo.media import checks as media_check

    from veripo.model import policy

    from veripo.data import queries
    from veripo.jsonio import iter_jsonl, read_jsonl, unique_index, write_jsonl
    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint, save_checkpoint

    g, t = cfg["grpo"], cfg["train"]
    d = distributed.init(t["engine"])
    distributed.announce(d)
    torch.manual_seed(g["seed"])
    records = queries.load_queries(data)
    # every video decoded as training will, before the first round rather than when a round reaches it
    media_check.check_training_media(records, cfg["media"])
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    gcfg = grpo.GRPOConfig(**{k: v for k, v in g.items() if k in grpo.GRPOConfig.__dataclass_fields__})
    partial = os.path.join(checkpoint_dir, "rollouts.partial.jsonl")
    # The rollout log is part of the resumed state: the checkpointer cuts it back to the newest usable
    # step checkpoint (empty when starting over), and refuses one written from other data or settings.
    ckpt = StepCheckpointer(checkpoint_dir, run_fingerprint({"--model": model_path, "--data": data},
                                                            {**cfg, "iteration": iteration, "stage": stage,
                                                             "world_size": d.world}), journal=partial)
    resume_round = ckpt.latest_round(d)
    fh = None
    if d.main:
        if resume_round:
            click.echo(f"resuming from step checkpoint at round {resume_round}", err=True)
        fh = open(partial, "a", encoding="utf-8")
    distributed.barrier()

    def on_rollouts(rows):
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()

    engine, metrics = grpo.train_grpo(model, processor, records, gcfg, cfg["prompts"], cfg["media"], stage, iteration,
                                      on_rollouts, checkpointer=ckpt, progress=progress, engine_kind=t["engine"],
                                      zero_config=t["zero_config"], dtype=cfg["dtype"], d=d)
    save_checkpoint(engine, processor, out_model, {"stage": f"grpo_{stage}", "iteration": iteration,
                                                   "from": model_path, "data": data, "world_size": d.world}, d)
    if d.main:
        fh.close()
        # a rollout logged twice (a resume that did not cut the log back) would count twice downstream
        unique_index(read_jsonl(partial, required=("rollout_id",)), "rollout_id", partial)
        write_jsonl(out_rollouts, iter_jsonl(partial))
        write_jsonl(out_metrics, metrics)
        ckpt.clear()


if __name__ == "__main__":
    main()
