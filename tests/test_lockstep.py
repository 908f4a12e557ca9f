"""Ranks in lockstep (2 gloo ranks, DeepSpeed ZeRO-2 and ZeRO-3 on the CPU): uneven shards, a rank with
no query in a round and no pair in a step, a text-only query among video ones, and ZeRO-3 sampling
that gathers the weights once per call rather than per decode step."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from veripo.jsonio import write_jsonl
from veripo.train.distributed import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_stay_in_lockstep(stage, tmp_path, tiny_dir, video_set, templates, media):
    recs = [{k: v for k, v in r.items() if not k.startswith("_")} for r in video_set[:3]]
    recs[2] = {k: v for k, v in recs[2].items() if k != "video"}  # text only: no vision tower call of its own
    write_jsonl(tmp_path / "q.jsonl", recs)
    (tmp_path / "setup.json").write_text(json.dumps({"templates": templates, "media": media}))
    zero = json.loads((ROOT / "configs" / "deepspeed" / f"zero{stage}.json").read_text())
    # every parameter partitioned (the tiny model's are all under the default threshold)
    zero["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(ROOT / "tests" / "workers" / "lockstep.py"), tiny_dir, str(tmp_path / "zero.json"),
           str(tmp_path / "q.jsonl"), str(tmp_path / "setup.json"), str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["zero_stage"] == r1["zero_stage"] == stage
    # the same number of optimiser steps and of forward-backward passes on both ranks
    assert r0["counts"] == r1["counts"], (r0["counts"], r1["counts"])
    assert r0["grpo_steps"] == r1["grpo_steps"] == 3 and r0["grpo_finite"]
    assert r0["dpo_steps"] == r1["dpo_steps"] == 2 and r0["dpo_pairs"] == [2, 1]
    if stage == 3:
        g = r0["gathers"]
        # generation_parameters gathers each parameter once, however many tokens are decoded ...
        assert g["generation_parameters/2"] == g["generation_parameters/6"] == g["parameters"]
        # ... where ZeRO-3's hooks inside full_parameters gather again at every decode step
        assert g["full_parameters/6"] > g["full_parameters/2"]
