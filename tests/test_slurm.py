"""The tiny default through a real SLURM (tests/slurm/local-slurm.sh: munge, slurmctld, two slurmd
"nodes" on this host, slurmdbd on MariaDB) with snakemake-executor-plugin-slurm and profiles/slurm.

Needs root (apt-get and the daemons); skipped otherwise. CI runs as root. VERIPO_SLURM_TESTS=0 skips."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from conftest import ROOT, fail_once_env
from test_workflow import small_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or os.environ.get("VERIPO_SLURM_TESTS") == "0" or not shutil.which("apt-get"),
                       reason="a local SLURM needs root and apt-get"),
]
START = ROOT / "tests" / "slurm" / "local-slurm.sh"


@pytest.fixture(scope="module")
def slurm():
    # One test cluster per machine at a time (it owns /etc/slurm and the daemons' ports): concurrent
    # test runs wait here for each other.
    lock = open("/tmp/veripo-slurm-tests.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    # Not under pytest's tmp dir: that is private to root, and MariaDB runs as the mysql user.
    state = tempfile.mkdtemp(prefix="veripo-slurm-", dir="/tmp")
    os.chmod(state, 0o755)
    env = dict(os.environ, SLURM_CI_DIR=state)
    t = time.time()
    subprocess.run(["bash", str(START), "start"], env=env, check=True, timeout=900)
    print(f"\nSLURM up in {time.time() - t:.1f} s")
    yield state
    subprocess.run(["bash", str(START), "stop"], env=env, check=False, timeout=300)
    shutil.rmtree(state, ignore_errors=True)
    fcntl.flock(lock, fcntl.LOCK_UN)


def slurm_config(default):
    cfg = small_config(default, iterations=1)
    r = cfg["resources"]
    r["default"].update(partition="debug", account="root", mem_mb=1000, runtime=10, cpus_per_task=1)
    r["grpo_train"] = {"nodes": 2, "procs_per_node": 1, "mem_mb": 1000}
    for name in ("dpo_train", "verifier_judge", "eval_generate"):
        r[name] = {"mem_mb": 1000}
    return cfg


def run_slurm(workdir, cfg, *args, env=None, timeout=1800):
    (workdir / "test_config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = ["timeout", "-k", "30", str(timeout), sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--profile", str(ROOT / "profiles" / "slurm"),
           "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2", *args,
           "--configfile", str(workdir / "test_config.yaml")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def sacct_jobs():
    out = subprocess.run(["sacct", "-X", "-P", "-n", "--format=JobID,NNodes,NodeList,State,Comment%80"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(["id", "nnodes", "nodes", "state", "comment"], line.split("|"))) for line in out.splitlines()]


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_chain_through_slurm_with_two_node_grpo(slurm, tmp_path, default_config):
    cfg = slurm_config(default_config)
    t = time.time()
    out = run_slurm(tmp_path, cfg, "iter1/eval/vsi_bench.json")
    print(f"snakemake through SLURM: {time.time() - t:.1f} s")
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    jobs = sacct_jobs()
    grpo = [j for j in jobs if j["comment"].startswith("rule_grpo_train")]
    assert len(grpo) == 2 and all(j["state"] == "COMPLETED" and j["nnodes"] == "2" for j in grpo), jobs
    others = [j for j in jobs if not j["comment"].startswith("rule_grpo_train") and j["comment"].startswith("rule_")]
    assert others and all(j["nnodes"] == "1" and j["state"] == "COMPLETED" for j in others), jobs
    log = (tmp_path / "logs/grpo_train/iter1.log").read_text()
    assert log.count("launch: srun -n 2 --ntasks-per-node=1") == 1  # exactly one launcher per node
    assert "--node_rank=0" in log and "--node_rank=1" in log
    assert "rank 0/2 on node node1" in log and "rank 1/2 on node node2" in log

    # The same stage on one node with the same world size and seed gives the same checkpoint.
    from veripo.config import grpo_stage

    stage_cfg = {"dtype": cfg["dtype"], "attn_implementation": cfg.get("attn_implementation"),
                 "prompts": cfg["prompts"], "media": cfg["media"], "train": cfg["train"], "grpo": grpo_stage(cfg, 1)}
    local = tmp_path / "single_node"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "launch.py"), "--nodes", "1", "--procs-per-node", "2",
                    "--port", "29877", "--", str(ROOT / "scripts" / "grpo_train.py"), "--model", "iter0/grpo/model",
                    "--data", "data/train_video.jsonl", "--config", json.dumps(stage_cfg), "--iteration", "1",
                    "--stage", "video", "--out-model", str(local / "model"), "--out-rollouts", str(local / "r.jsonl"),
                    "--out-metrics", str(local / "m.jsonl"), "--checkpoint-dir", str(local / "ckpt")],
                   cwd=tmp_path, check=True, capture_output=True, env={k: v for k, v in os.environ.items()
                                                                       if not k.startswith("SLURM")})
    a, b = weights(tmp_path / "iter1/grpo/model"), weights(local / "model")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst  # measured 0.0: same ranks, same shards, same gloo reduction


def test_retry_after_a_failed_attempt(slurm, tmp_path, default_config):
    cfg = slurm_config(default_config)
    cfg["resources"]["grpo_train"] = {"nodes": 1, "mem_mb": 1000}
    marker = tmp_path / "failed-once"
    env = fail_once_env(tmp_path / "fail-once-hook", "data_synthetic", marker)
    before = {j["id"] for j in sacct_jobs()}
    out = run_slurm(tmp_path, cfg, "--retries", "1", "data/train_video.jsonl", env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    assert marker.exists() and (tmp_path / "data/train_video.jsonl").exists()
    mine = [j for j in sacct_jobs() if j["id"] not in before and j["comment"].startswith("rule_data_synthetic")]
    assert [j["state"] for j in mine] == ["FAILED", "COMPLETED"], mine
