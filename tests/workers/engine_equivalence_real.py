"""One process of tests/test_engine_equivalence.py's tiny-model check (alone, or one torchrun rank).

    engine_equivalence_real.py MODEL QUERIES PAIRS SETUP_JSON OUT_DIR ENGINES...   (in the run directory:
                                                                              the pairs' media paths are relative to it)

With each engine in turn (torch, zero2, zero3), from the same checkpoint: one real GRPO round
(veripo.train.grpo.train_grpo: sampling, rewards, two optimiser steps of uneven micro-batches) and
a real DPO stage (veripo.train.dpo.train_dpo: 7 pairs in steps of 4, the vision tower trained). Each
trained model is saved as the jobs save it (``save_checkpoint``: gathered under ZeRO-3) to
OUT_DIR/<engine>-<stage>/; rank 0 writes OUT_DIR/result.json with each run's per-step gradient norms
and the sampled rollouts' token ids.
"""
import json
import sys
from pathlib import Path

import torch

from veripo.data import queries
from veripo.model import policy
from veripo.stage_config import DPOConfig, GRPOConfig, PromptSetup, RunContext
from veripo.train import distributed, dpo, grpo
from veripo.train.checkpoints import save_checkpoint

GRPO = dict(rollouts_per_query=4, temperature=1.0, top_p=1.0, max_new_tokens=48, clip_eps=0.2, kl_coef=0.0,
            lr=1e-4, global_batch=8, rollout_batch=4, micro_batch=3, epochs=1, grad_clip=1.0, format_weight=0.5,
            adv_eps=1e-6, freeze_vision=True, weight_decay=0.01, seed=0, checkpoint_every=100)
DPO = dict(beta=0.1, lr=1e-4, global_batch=4, epochs=1, nll_coef=0.0, grad_clip=1.0, freeze_vision=False,
           weight_decay=0.01, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1, on_too_few_pairs="stop")

model_dir, queries_path, pairs_path, setup_path, out = sys.argv[1:6]
engines = sys.argv[6:]
d = distributed.init("deepspeed")
torch.set_num_threads(1)
setup = json.loads(Path(setup_path).read_text())
prompts = PromptSetup(setup["templates"], setup["media"])
records = queries.load_queries(queries_path)[:GRPO["rollout_batch"]]
pairs = dpo.load_pairs(pairs_path)[:7]
root = Path(__file__).resolve().parents[2]
result: dict = {"world": d.world}


def run_context(kind: str, stage: str) -> RunContext:
    if kind == "torch":
        return RunContext(stage=stage, iteration=1, engine="torch", dist=d)
    return RunContext(stage=stage, iteration=1, engine="deepspeed", dist=d,
                      zero_config=str(root / "configs" / "deepspeed" / f"{kind}.json"))


for kind in engines:
    model, processor = policy.load_policy(model_dir)
    policy.configure_processor(processor, prompts.media)
    rows: list = []
    engine, metrics = grpo.train_grpo(model, processor, records, GRPOConfig(**GRPO), prompts,
                                      run_context(kind, "video"), rows.extend)
    save_checkpoint(engine, processor, Path(out) / f"{kind}-grpo", d=d)
    result[f"{kind}-grpo"] = {"grad_norms": [m["grad_norm"] for m in metrics],
                              "micro_batches": [m["micro_batches"] for m in metrics],
                              "rollouts": {r["rollout_id"]: r["completion_ids"] for r in rows},
                              "advantages": [r["advantage"] for r in rows]}

    model, processor = policy.load_policy(model_dir)
    policy.configure_processor(processor, prompts.media)
    engine, metrics, _ = dpo.train_dpo(model, processor, pairs, DPOConfig(**DPO), prompts, run_context(kind, "dpo"))
    save_checkpoint(engine, processor, Path(out) / f"{kind}-dpo", d=d)
    result[f"{kind}-dpo"] = {"grad_norms": [m["grad_norm"] for m in metrics], "pairs": [m["pairs"] for m in metrics]}

if d.main:
    (Path(out) / "result.json").write_text(json.dumps(result))
