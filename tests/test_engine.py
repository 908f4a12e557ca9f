"""The DeepSpeed engine paths on CPU: ZeRO-2 and ZeRO-3 GRPO (one process here; two processes in
tests/test_resume.py and tests/test_slurm.py), and the launcher's plans."""
import sys

import pytest
import torch

from veripo.train import grpo

from veripo.train import launch

from veripo.model import policy

from veripo.stage_config import PromptSetup, RunContext, WarmupConfig
from veripo.train import warmup

CFG = dict(rollouts_per_query=4, temperature=1.0, top_p=1.0, max_new_tokens=12, clip_eps=0.2, kl_coef=0.0,
           lr=1e-3, global_batch=4, rollout_batch=2, micro_batch=4, epochs=1, grad_clip=1.0, format_weight=0.5,
           adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100)


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_grpo_on_deepspeed_zero(zero, tiny_dir, video_set, templates, media):
    model, processor = policy.load_policy(tiny_dir)
    policy.configure_processor(processor, media)
    # a random model earns no reward at all (no advantage, no update): teach it the format first
    prompts = PromptSetup(templates, media)
    warmup.train_warmup(model, processor, video_set[:4], WarmupConfig(steps=40, batch_size=4, lr=3e-3, seed=0,
                                                                      trace_mix={"right": 0.5, "wrong": 0.5}), prompts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    run = RunContext(stage="video", iteration=1, engine="deepspeed", zero_config=f"configs/deepspeed/{zero}.json")
    engine, metrics = grpo.train_grpo(model, processor, video_set[:4], grpo.GRPOConfig(**CFG), prompts, run,
                                      rows.extend)
    assert engine.zero_stage == int(zero[-1]) and len(rows) == 16 and len(metrics) == 4
    with engine.full_parameters():
        after = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    moved = [k for k in before if k in after and after[k].shape == before[k].shape and not torch.equal(before[k], after[k])]
    assert moved and not any(k.startswith("model.visual") for k in moved)  # the frozen vision tower stays


def test_launch_plans():
    script = ["train.py", "--x", "1"]
    assert launch.plan(1, 1, 29500, "srun", script, {}) == [sys.executable, *script]
    two = launch.plan(1, 2, 29500, "srun", script, {})
    assert two[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=2" in two
    outer = launch.plan(2, 4, 29500, "srun", script, {"SLURM_JOB_ID": "7"})
    assert outer[:5] == ["srun", "-n", "2", "--ntasks-per-node=1", "--nodes"]
    inner = launch.plan(2, 4, 29500, "srun", script, {"SLURM_JOB_ID": "7", launch.STEP_MARK: "1",
                                                      "SLURM_NODEID": "1", "VERIPO_MASTER_ADDR": "10.0.0.5"})
    assert "--node_rank=1" in inner and "--nnodes=2" in inner and "--master_addr=10.0.0.5" in inner
    assert "--nproc_per_node=4" in inner and inner[-3:] == script
    one_node = launch.plan(1, 1, 29500, "srun", script, {"SLURM_JOB_ID": "7"})
    assert one_node == [sys.executable, *script]
