"""A fixed-seed GRPO run on the synthetic colour task raises the mean accuracy reward.

The tiny base is first warmed up on right traces (it learns to see the background colour and to
answer in format), then a few steps on consistently wrong traces push it to answering wrong most of
the time while it still perceives the colour: GRPO's group-relative advantage has to turn that back
into mostly-right answers. Measured: 0.31 -> 0.87 (this seed; GRPO's sampling seeded by stage and
iteration, veripo/model/seeds.py), 0.28 -> 0.55 with 8 corrupting steps (before that seeding)."""
import pytest
import torch

from veripo.train import grpo

from veripo.stage_config import PromptSetup, RunContext, WarmupConfig
from veripo.train import warmup

pytestmark = pytest.mark.slow


def mean_accuracy(model, processor, records, templates, media, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    accs = []
    for rec in records:
        g = grpo.sample_group(model, processor, rec, cfg, templates, media, gen)
        accs += g.acc
    return sum(accs) / len(accs)


def test_grpo_raises_mean_accuracy_reward(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    torch.manual_seed(0)
    prompts = PromptSetup(templates, media)
    warmup.train_warmup(model, processor, video_set,
                        WarmupConfig(steps=250, batch_size=8, lr=3e-3, seed=0, trace_mix={"right": 1.0}), prompts)
    warmup.train_warmup(model, processor, video_set,
                        WarmupConfig(steps=6, batch_size=8, lr=1e-3, seed=1, trace_mix={"wrong": 1.0}), prompts)
    cfg = grpo.GRPOConfig(rollouts_per_query=8, temperature=1.0, top_p=1.0, max_new_tokens=32, clip_eps=0.2,
                          kl_coef=0.0, lr=1e-3, global_batch=32, rollout_batch=4, micro_batch=8, epochs=4,
                          grad_clip=1.0, format_weight=0.5, adv_eps=1e-6, freeze_vision=True, weight_decay=0.0,
                          seed=0, checkpoint_every=1000)
    before = mean_accuracy(model, processor, video_set, templates, media, cfg, seed=123)
    rows = []
    grpo.train_grpo(model, processor, video_set, cfg, prompts, RunContext(stage="video", iteration=1), rows.extend)
    after = mean_accuracy(model, processor, video_set, templates, media, cfg, seed=123)
    print(f"mean accuracy reward before {before:.3f} after {after:.3f}")
    assert before < 0.6  # the corrupted warm-up left it mostly wrong
    assert after > before + 0.2
