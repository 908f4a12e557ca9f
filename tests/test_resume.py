"""Partial reruns after failures: a SIGKILLed training job resumes from its newest complete step
checkpoint, ends with the same model as an uninterrupted run, and finished upstream jobs are not rerun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_workflow import small_config, snakemake

pytestmark = pytest.mark.slow


def grpo_cmd(model, data, out, cfg):
    return [sys.executable, str(ROOT / "scripts" / "grpo_train.py"), "--model", model, "--data", data,
            "--config", json.dumps(cfg), "--iteration", "1", "--stage", "video", "--out-model", str(out / "model"),
            "--out-rollouts", str(out / "rollouts.jsonl"), "--out-metrics", str(out / "metrics.jsonl"),
            "--checkpoint-dir", str(out / "ckpt")]


def wait_for(pred, timeout, what, proc):
    t = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.time() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_group(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def state_dict(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_killed_grpo_resumes_to_the_uninterrupted_model(tmp_path, tiny_dir, default_config):
    from veripo import jsonio, synthetic
    from veripo.config import grpo_stage

    recs = synthetic.make_video_set(tmp_path, 8, seed=3, tasks=["color", "count"], size=64, fps=8, seconds=1.0)
    data = str(tmp_path / "q.jsonl")
    jsonio.write_jsonl(data, recs)
    g = dict(grpo_stage(default_config, 1), rollout_batch=2, global_batch=8, epochs=3, checkpoint_every=2,
             rollouts_per_query=4, max_new_tokens=16)
    cfg = {"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
           "media": default_config["media"], "train": default_config["train"], "grpo": g}
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(grpo_cmd(tiny_dir, data, full, cfg), check=True, capture_output=True)

    log = open(tmp_path / "cut.log", "w")
    proc = subprocess.Popen(grpo_cmd(tiny_dir, data, cut, cfg), stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: list((cut / "ckpt").glob("step-000004/COMPLETE")), 120, "a step checkpoint", proc)
    kill_group(proc)
    assert not (cut / "model").exists() and not (cut / "rollouts.jsonl").exists()  # no partial outputs
    rerun = subprocess.run(grpo_cmd(tiny_dir, data, cut, cfg), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed_at = int(rerun.stderr.split("resuming from step checkpoint at round ")[1].split()[0])
    assert 4 <= resumed_at < 12

    a, b = state_dict(full / "model"), state_dict(cut / "model")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst  # measured: 0.0 (same seed, RNG and optimiser state restored)
    rows = [json.loads(x) for x in (cut / "rollouts.jsonl").read_text().splitlines()]
    keys = [(r["round"], r["rollout_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12 * 2 * 4  # every round once, nothing lost or duplicated
    assert not (cut / "ckpt").exists()  # cleared once the job finished


def test_killed_workflow_reruns_only_the_unfinished_job(tmp_path, default_config):
    cfg = small_config(default_config, iterations=1)
    cfg["grpo"]["per_iteration"][0].update(rollout_batch=2, epochs=4)
    cfg["grpo"]["checkpoint_every"] = 2
    cfg_path = tmp_path / "test_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "2", "iter1/eval/vsi_bench.json", "--configfile", str(cfg_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: list(tmp_path.glob("checkpoints/iter1/grpo/step-*/COMPLETE")), 600, "iter1 step checkpoint", proc)
    finally:
        kill_group(proc)
    assert not (tmp_path / "iter1/grpo/model").exists()
    finished = {p: p.stat().st_mtime_ns for p in [tmp_path / "base/model/model.safetensors",
                                                  tmp_path / "iter0/grpo/model/model.safetensors",
                                                  tmp_path / "iter0/grpo/rollouts.jsonl"]}
    assert snakemake(tmp_path, cfg, "--unlock").returncode == 0
    out = snakemake(tmp_path, cfg, "iter1/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
    ran = out.stdout + out.stderr
    assert "rule grpo_train:" in ran and "rule base_warmup:" not in ran and "rule data_synthetic:" not in ran
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert "resuming from step checkpoint at round" in (tmp_path / "logs/grpo_train/iter1.log").read_text()
    assert (tmp_path / "iter1/eval/vsi_bench.json").exists()
