"""Run in the vLLM venv by tests/test_vllm_rollouts.py: the vLLM rollout engine against our HF sampler
on the same tiny checkpoint, greedy, for text, image and video queries; then after the weights change
(synced in memory); then a short GRPO stage sampling through vLLM, with its log-prob gap measured, and
one stopped by a bound no engine meets. Prints one JSON object."""
import dataclasses
import json
import sys

import torch

from veripo.model import policy, vllm_rollouts
from veripo.errors import RolloutMismatchError
from veripo.model.rollouts import Sampling, sample_group, sample_groups_vllm
from veripo.model.seeds import sampling_seed
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
        seeds = [sampling_seed(0, "video", 1, "round", 0, r["id"]) for r in records]
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

    # vLLM's log-probs are those of the distribution it sampled from: softmax(logits / T) without the
    # banned vision tokens. The trainer's at T over the same vocabulary must equal them (T = 0.7: vLLM's
    # default "raw" log-probs, at temperature 1, would be far off).
    hot = Sampling(rollouts_per_query=4, temperature=0.7, top_p=1.0, max_new_tokens=8, format_weight=0.5)
    groups = sample_groups_vllm(sampler, processor, records[:2], hot, templates, media, [1, 2])
    banned = torch.tensor(policy.suppressed_token_ids(model))
    gather = policy._gather_logprobs
    policy._gather_logprobs = lambda logits, tokens, t: gather(logits.index_fill(-1, banned, float("-inf")), tokens, t)
    try:
        with torch.no_grad():
            diffs = [(g.rollouts.logprobs - policy.completion_logprobs(model, g.prompt, g.rollouts.tokens,
                                                                       g.rollouts.mask, 0.7))[g.rollouts.mask.bool()]
                     for g in groups]
    finally:
        policy._gather_logprobs = gather
    out["same_distribution_max_diff"] = float(torch.cat(diffs).abs().max())

    cfg = GRPOConfig(rollouts_per_query=4, temperature=1.0, top_p=1.0, max_new_tokens=8, clip_eps=0.2, kl_coef=0.0,
                     lr=1e-3, global_batch=8, rollout_batch=2, micro_batch=4, epochs=1, grad_clip=1.0, format_weight=0.5,
                     adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100,
                     rollout_backend="vllm")
    rows = []
    _, metrics = grpo.train_grpo(model, processor, records, cfg, PromptSetup(templates, media),
                                 RunContext(stage="video", iteration=1), rows.extend, sampler=sampler)
    out["grpo"] = {"rows": len(rows), "steps": len(metrics), "ids": sorted(r["rollout_id"] for r in rows),
                   "completion_ids_nonempty": all(r["completion_ids"] for r in rows),
                   "finite": all(m["loss"] == m["loss"] for m in metrics),
                   "gap": [{k: m.get(k) for k in ("round", "vllm/logprob_gap_mean", "vllm/logprob_gap_max")}
                           for m in metrics]}

    def stopped(cfg, iteration):
        try:
            grpo.train_grpo(model, processor, records[:2], cfg, PromptSetup(templates, media),
                            RunContext(stage="video", iteration=iteration), [].extend, sampler=sampler)
        except RolloutMismatchError as exc:
            return str(exc)
        return None

    out["stopped_by_tiny_bound"] = stopped(dataclasses.replace(cfg, vllm={"max_logprob_gap": 1e-9}), 2)
    # an engine left on old weights (its sync skipped after the weights changed) breaks the default bound
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5).add_(torch.randn_like(model.lm_head.weight) * 0.5)
    sampler.sync = lambda model: None
    out["stopped_stale"] = stopped(cfg, 3)
    print("RESULT " + json.dumps(out))
