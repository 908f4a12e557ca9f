"""One GRPO stage: reasoning activation (iteration 0) or video GRPO of iteration k."""
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--model", "model_path", required=True, help="checkpoint entering the stage")
@click.option("--data", required=True, help="query JSONL")
@click.option("--config", "cfg", type=JSON, required=True, help="{grpo (stage-resolved), media, prompts, dtype}")
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

    from veripo import grpo, policy, queries
    from veripo.jsonio import iter_jsonl, write_jsonl
    from veripo.training import StepCheckpointer, save_checkpoint

    g = cfg["grpo"]
    torch.manual_seed(g["seed"])
    records = queries.load_queries(data)
    model, processor = policy.load_policy(model_path, cfg["dtype"], cfg.get("attn_implementation"))
    policy.configure_processor(processor, cfg["media"])
    fields = {f for f in grpo.GRPOConfig.__dataclass_fields__}
    gcfg = grpo.GRPOConfig(**{k: v for k, v in g.items() if k in fields})
    ckpt = StepCheckpointer(checkpoint_dir)
    # Rollouts of rounds finished before a kill are kept; those after the newest step checkpoint are
    # redone, so the partial log is cut back to the checkpoint's round on resume.
    partial = os.path.join(checkpoint_dir, "rollouts.partial.jsonl")
    done = ckpt.completed()
    resume_round = int(done[-1].name.split("-")[1]) if done else 0
    kept = [r for r in iter_jsonl(partial) if r["round"] < resume_round] if resume_round and os.path.exists(partial) else []
    os.makedirs(checkpoint_dir, exist_ok=True)
    write_jsonl(partial, kept)
    with open(partial, "a", encoding="utf-8") as fh:
        import json

        def on_rollouts(rows):
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()

        metrics = grpo.train_grpo(model, processor, records, gcfg, cfg["prompts"], cfg["media"], stage, iteration,
                                  on_rollouts, checkpointer=ckpt, progress=progress)
    save_checkpoint(model, processor, out_model, {"stage": f"grpo_{stage}", "iteration": iteration,
                                                  "from": model_path, "data": data})
    write_jsonl(out_rollouts, iter_jsonl(partial))
    write_jsonl(out_metrics, metrics)
    ckpt.clear()


if __name__ == "__main__":
    main()
