"""One rank of tests/test_lockstep.py (started by torchrun with 2 processes, gloo).

Trains GRPO and DPO through the DeepSpeed engine on data that splits unevenly across the ranks (one
rank gets no query in the last round and no pair in the last step; a text-only query beside video
ones), counting every forward-backward and optimiser step; with ZeRO-3, also counts the parameter
all-gathers of one sampling call. Writes its counts to OUT/rank<r>.json."""
from __future__ import annotations

import collections
import json
import os
import sys

import torch

from veripo.jsonio import read_jsonl
from veripo.model import policy
from veripo.stage_config import DPOConfig, GRPOConfig, PromptSetup, RunContext
from veripo.train import distributed, dpo, grpo
from veripo.train.engine import TrainEngine

tiny_dir, zero_config, data, templates_path, out = sys.argv[1:6]
d = distributed.init("deepspeed")
records = read_jsonl(data)
setup = json.load(open(templates_path))
prompts = PromptSetup(setup["templates"], setup["media"])
counts: dict = collections.Counter()
real_backward, real_step = TrainEngine.backward, TrainEngine.step


def backward(self, loss):
    counts[f"{counts['stage']}_backward"] += 1
    return real_backward(self, loss)


def step(self):
    counts[f"{counts['stage']}_step"] += 1
    return real_step(self)


TrainEngine.backward, TrainEngine.step = backward, step
run = RunContext(stage="video", iteration=1, engine="deepspeed", zero_config=zero_config, dist=d, logprob_chunk=4)

model, processor = policy.load_policy(tiny_dir)
policy.configure_processor(processor, prompts.media)
counts["stage"] = "grpo"
# 3 queries, rollout_batch 2: round 0 splits 1/1, round 1 gives rank 0 one query and rank 1 none;
# micro-batches of 1 from unevenly long shards
cfg = GRPOConfig(rollouts_per_query=2, temperature=1.0, top_p=1.0, max_new_tokens=5, clip_eps=0.2, kl_coef=0.0,
                 lr=1e-3, global_batch=3, rollout_batch=2, micro_batch=1, epochs=1, grad_clip=1.0, format_weight=0.5,
                 adv_eps=1e-6, freeze_vision=False, weight_decay=0.0, seed=d.rank, checkpoint_every=100)
engine, metrics = grpo.train_grpo(model, processor, records, cfg, prompts, run, lambda rows: None)

gathers = {}
if engine.zero_stage == 3:
    calls = collections.Counter()
    import deepspeed.comm as ds_comm

    # ZeRO-3 gathers parameters through deepspeed.comm (looked up at call time)
    for name in ("all_gather", "all_gather_into_tensor", "allgather_fn", "all_gather_coalesced"):
        original = getattr(ds_comm, name)

        def counted(*a, _original=original, _name=name, **k):
            calls[_name] += 1
            return _original(*a, **k)

        setattr(ds_comm, name, counted)
    prompt = policy.encode_query(processor, records[0], prompts.templates, prompts.media, None)
    engine.module.eval()
    for how in ("full_parameters", "generation_parameters"):
        for steps in (2, 6):
            # Ranks decode different lengths in a real round. Inside full_parameters that deadlocks (the
            # hooks' gathers stop matching), so there both ranks decode the same length to be counted.
            length = steps + d.rank if how == "generation_parameters" else steps
            calls.clear()
            with getattr(engine, how)():
                policy.sample(engine.module, prompt, 2, length, generator=torch.Generator().manual_seed(0), eos_ids=[])
            gathers[f"{how}/{steps}"] = sum(calls.values())
    gathers["parameters"] = len(list(engine.module.parameters()))

counts["stage"] = "dpo"
model2, _ = policy.load_policy(tiny_dir)
pairs = []
for i, rec in enumerate(records):
    rec = {k: v for k, v in rec.items() if not k.startswith("_")}
    good = policy.encode_completion(processor, f"<think>x</think><answer>{rec['answer']}</answer>").tolist()
    bad = policy.encode_completion(processor, "<think>y</think><answer>Q</answer>").tolist()
    pairs.append({"pair_id": f"p{i}", "query_id": rec["id"], "query": rec, "chosen_ids": good, "rejected_ids": bad})
dcfg = DPOConfig(beta=0.1, lr=1e-3, global_batch=2, epochs=1, nll_coef=0.0, grad_clip=1.0, freeze_vision=False,
                 weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1,
                 on_too_few_pairs="stop")
_, dmetrics, _ = dpo.train_dpo(model2, processor, pairs, dcfg, prompts, RunContext(
    stage="dpo", engine="deepspeed", zero_config=zero_config, dist=d), heldout=[])
del counts["stage"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"rank{d.rank}.json"), "w") as fh:
    json.dump({"counts": dict(counts), "grpo_steps": len(metrics), "dpo_steps": len(dmetrics), "gathers": gathers,
               "zero_stage": engine.zero_stage, "dpo_pairs": [m["pairs"] for m in dmetrics],
               "grpo_finite": all(m["loss"] == m["loss"] for m in metrics)}, fh)
