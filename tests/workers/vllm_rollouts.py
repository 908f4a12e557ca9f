"""Run in the vLLM venv by tests/test_vllm_rollouts.py: the vLLM rollout engine against our HF sampler
on the same tiny checkpoint, greedy, for text, image and video queries; then after the weights change
(synced in memory); then a short GRPO stage sampling through vLLM. Prints one JSON object."""
import json
import sys

import torch

from veripo.model import policy, vllm_rollouts
from veripo.model.rollouts import Sampling, sample_group, sample_groups_vllm
from veripo.stage_config import GRPOConfig, PromptSetup, RunContext
from veripo.train import grpo

if __name__ == "__main__":  # vLLM starts helper processes that import the main module
    args = json.loads(sys.argv[1])
    records, templates, media = args["records"], args["templates"], args["media"]
    model, processor = policy.load_policy(args["model"])
    policy.configure_processor(processor, media)
    sampler = vllm_rollouts.VLLMRollouts(args["model"], "float32", media, args["engine"], seed=0)
    greedy = Sampling(rollouts_per_query=2, temperature=0.0, top_p=1.0, max_new_tokens=args["max_new_tokens"],
                      format_weight=0.5)
    out = {}

    def compare(tag):
        seeds = [vllm_rollouts.request_seed(0, 0, r["id"]) for r in records]
        ours = [sample_group(model, processor, r, greedy, templates, media, torch.Generator()) for r in records]
        theirs = sample_groups_vllm(sampler, processor, records, greedy, templates, media, seeds)
        out[tag] = [{"hf": [g.rollouts.tokens[i][g.rollouts.mask[i].bool()].tolist() for i in range(2)],
                     "vllm": [v.rollouts.tokens[i][v.rollouts.mask[i].bool()].tolist() for i in range(2)],
                     "hf_truncated": g.rollouts.truncated.tolist(), "vllm_truncated": v.rollouts.truncated.tolist()}
                    for g, v in zip(ours, theirs)]

    compare("before")
    with torch.no_grad():  # new weights: a visible change of the LM head
        model.lm_head.weight.mul_(1.5).add_(torch.randn_like(model.lm_head.weight) * 0.5)
    sampler.sync(model)
    compare("after_sync")

    cfg = GRPOConfig(rollouts_per_query=4, temperature=1.0, top_p=1.0, max_new_tokens=8, clip_eps=0.2, kl_coef=0.0,
                     lr=1e-3, global_batch=8, rollout_batch=2, micro_batch=4, epochs=1, grad_clip=1.0, format_weight=0.5,
                     adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100,
                     rollout_backend="vllm")
    rows = []
    _, metrics = grpo.train_grpo(model, processor, records, cfg, PromptSetup(templates, media),
                                 RunContext(stage="video", iteration=1), rows.extend, sampler=sampler)
    out["grpo"] = {"rows": len(rows), "steps": len(metrics), "ids": sorted(r["rollout_id"] for r in rows),
                   "completion_ids_nonempty": all(r["completion_ids"] for r in rows),
                   "finite": all(m["loss"] == m["loss"] for m in metrics)}
    print("RESULT " + json.dumps(out))
