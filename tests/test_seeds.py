"""Sampling seeds (veripo/model/seeds.py): every stage and iteration samples anew, equal inputs alike.

Before, GRPO's HF sampler was seeded with ``grpo.seed + 1000 * rank`` and vLLM requests with (seed,
round, query) in every iteration, so iteration 2 replayed iteration 1's sampling noise; the verifier's
fresh pass used ``seed`` alone."""
import itertools

import torch

from veripo.model import policy
from veripo.model.rollouts import Sampling, sample_fresh
from veripo.model.seeds import sampling_seed
from veripo.stage_config import PromptSetup, RunContext
from veripo.train import grpo

CFG = dict(rollouts_per_query=2, temperature=1.0, top_p=1.0, max_new_tokens=4, clip_eps=0.2, kl_coef=0.0,
           lr=1e-3, global_batch=4, rollout_batch=2, micro_batch=2, epochs=1, grad_clip=1.0, format_weight=0.5,
           adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100)


def test_seeds_differ_by_stage_iteration_and_place_and_repeat():
    parts = {"seed": [0, 1], "stage": ["activation", "video", "fresh"], "iteration": [0, 1, 2, None],
             "where": [("rank", 0), ("rank", 1), ("round", 0, "q1"), ("round", 1, "q1"), ("round", 0, "q2")]}
    seen = {}
    for seed, stage, iteration, where in itertools.product(*parts.values()):
        s = sampling_seed(seed, stage, iteration, *where)
        assert s == sampling_seed(seed, stage, iteration, *where)
        assert 0 <= s < 2 ** 32
        seen.setdefault(s, []).append((seed, stage, iteration, where))
    assert all(len(v) == 1 for v in seen.values()), [v for v in seen.values() if len(v) > 1]
    # a value fixed across processes and Python versions (sha256, not hash()): resumed runs rely on it
    assert sampling_seed(0, "video", 1, "rank", 0) == 3187737190


def _first_round(tiny_dir, video_set, templates, media, iteration: int) -> list[dict]:
    """Round 0's rollouts of an HF GRPO stage on a fresh copy of the tiny model (two queries, G=2)."""
    model, processor = policy.load_policy(tiny_dir)
    policy.configure_processor(processor, media)
    rows = []
    _, metrics = grpo.train_grpo(model, processor, video_set[:2], grpo.GRPOConfig(**CFG), PromptSetup(templates, media),
                                 RunContext(stage="video", iteration=iteration), rows.extend)
    assert metrics and not any(k.startswith("vllm/") for m in metrics for k in m)  # no gap without vLLM
    return rows


def test_grpo_iterations_sample_anew_and_reruns_sample_alike(tiny_dir, video_set, templates, media):
    first, again, next_iteration = (_first_round(tiny_dir, video_set, templates, media, k) for k in (1, 1, 2))
    ids = [[r["completion_ids"] for r in rows] for rows in (first, again, next_iteration)]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    assert [r["rollout_id"] for r in first] == [r["rollout_id"] for r in next_iteration]  # same queries, rounds


def test_fresh_pass_samples_anew_each_iteration(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    s = Sampling(rollouts_per_query=2, temperature=1.0, top_p=1.0, max_new_tokens=4, format_weight=0.5)

    def ids(iteration):
        rows = sample_fresh(model, processor, video_set[:2], s, templates, media, iteration, seed=0)
        return [r["completion_ids"] for r in rows]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    # not the GRPO stage's noise either: its rank-0 sampler at the same seed and iteration
    gen = torch.Generator().manual_seed(sampling_seed(0, "video", 1, "rank", 0))
    grpo_like = [grpo.sample_group(model, processor, rec, s, templates, media, gen) for rec in video_set[:2]]
    assert ids(1) != [t[m.bool()].tolist() for g in grpo_like for t, m in zip(g.rollouts.tokens, g.rollouts.mask)]
