"""speed/gpu/run.sh as its CPU dry run (SHAPE=tiny DEVICE=cpu: fp32, gloo, the project's tiny shapes):
every step of the GPU check runs through the project's code and its summary says what the GPU run will
say, so the check is known to work before a GPU is lent."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("preflight", "fwd_bwd", "sampler", "grpo", "dpo", "engines")


def _numbers(value, where=""):
    """(path, value) of every number in a JSON value; the strings 'nan'/'inf' count as numbers."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value
    elif isinstance(value, str) and value.lstrip("-") in ("nan", "inf"):
        yield where, float(value)


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SHAPE": "tiny", "DEVICE": "cpu", "OUT": str(out), "PYTHON": sys.executable}
    # the first run on a machine also builds DeepSpeed's CPU communication op (about 90 s on 2 cores)
    proc = subprocess.run(["bash", str(ROOT / "speed" / "gpu" / "run.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    log = (out / "steps.log").read_text() if (out / "steps.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]

    assert (summary["shape"], summary["device"], summary["dtype"]) == ("tiny", "cpu", "float32")
    assert {name: steps[name]["status"] for name in STEPS} == {name: "ok" for name in STEPS}
    assert summary["checks"] and all(v is True for v in summary["checks"].values()), summary["checks"]
    bad = [(where, v) for where, v in _numbers(summary) if not math.isfinite(v)]
    assert not bad, bad

    # the forward/backward saw the video and counted every token it ran
    pre = steps["preflight"]["result"]
    fb = steps["fwd_bwd"]["result"]
    assert pre["model"]["video_tokens"] > 0 and fb["prompt_tokens"] == pre["model"]["prompt_tokens"]
    for gc in ("gc_off", "gc_on"):
        part = fb[gc]
        assert part["tokens"] == fb["n"] * (fb["prompt_tokens"] + fb["completion_tokens"])
        assert part["seconds"] > 0 and part["tokens_per_s"] > 0 and part["tflops"] >= 0
        assert part["grad_norm"] > 0 and part["params_with_grad"] > 0
        assert part["mfu"] is None and part["peak_gib"] is None  # no card: no peak to compare with, no CUDA memory

    # greedy decoding: our samplers give HF generate's very tokens
    sm = steps["sampler"]["result"]
    for name in ("policy_sample", "policy_sample_eager", "batch_generate"):
        same = sm["identity_fp32"][name]
        assert same["equal"] and same["tokens_hf"] == same["tokens_ours"] >= 1 and same["agreement"] == 1.0
    # decode rows: one per group size (eager only on a CPU), decode-only ms/step, no bandwidth to compare with
    assert sm["decode_groups"] == [2, 4, 8] and sm["decode_weight_bytes"] > 0
    assert sm["memory_bandwidth_tbs"] is None and sm["weight_read_ms"] is None
    for g in sm["decode_groups"]:
        (row,) = sm[f"decode_g{g}"]["rows"]
        assert (row["group"], row["mode"], row["new_tokens"]) == (g, "eager", sm["decode_tokens"])
        assert row["ms_per_step"] > 0 and row["prefill_seconds"] > 0 and row["kv_read_gb"] >= 0
        assert abs(row["tokens_per_s"] - 1000 * g / row["ms_per_step"]) <= 0.01 * row["tokens_per_s"] + 0.1
        assert row["floor_ratio"] is None

    # GRPO under ZeRO-2 and ZeRO-3: the stand-in rewards alternate within the group, so the advantages
    # are +a and -a, and the clipped surrogate at ratio 1 sums to -sum(advantages) = 0; the step still has
    # a gradient. The group's rollouts share one forward (the 7B config's 16k-token budget), and the
    # memory plan's prediction for the same shapes stands beside each (measured) peak.
    gr = steps["grpo"]["result"]
    for stage in (2, 3):
        grpo = gr[f"zero{stage}"]
        assert grpo["zero_stage"] == stage and grpo["rollouts"] == gr["group"] and grpo["train_forwards"] == 1
        assert sorted(set(grpo["rewards"])) == [0.0, 1.0] and abs(sum(grpo["advantages"])) < 1e-3
        assert abs(grpo["loss"]) < 1e-4 and grpo["grad_norm"] > 0 and grpo["clip_frac"] == 0
        assert grpo["weights_moved"] and grpo["vision_unchanged"] and grpo["train_tokens_per_s"] > 0
        assert grpo["tokens_per_micro_batch"] >= grpo["train_tokens"] and grpo["plan_update_gib"] > 0
        assert grpo["peak_gib"] is None and grpo["plan_peak_phase"].startswith("grpo_train")
    assert gr["zero2"]["grad_norm"] == pytest.approx(gr["zero3"]["grad_norm"], rel=1e-5)

    # DPO: policy == reference at its first step, so the loss is ln 2 and the margin 0; two pairs of one
    # query per forward
    dp = steps["dpo"]["result"]
    for stage in (2, 3):
        dpo = dp[f"zero{stage}"]
        assert dpo["zero_stage"] == stage and abs(dpo["loss"] - math.log(2)) < 1e-3 and abs(dpo["margin"]) < 1e-2
        assert dpo["grad_norm"] > 0 and dpo["weights_moved"] and dpo["vision_unchanged"]
        assert dpo["steps"] == 2 and dpo["train_forwards"] == 1 and dpo["plan_update_gib"] > 0

    # one step of 3 uneven micro-batches: ZeRO-2 and ZeRO-3 take torch's step (fp32: to rounding)
    en = steps["engines"]["result"]
    assert en["micro_batches"] == [2, 2, 1] and en["torch"]["grad_norm"] > 0
    assert en["zero2"]["zero_stage"] == 2 and en["zero3"]["zero_stage"] == 3
    assert all(abs(r - 1) <= 1e-5 for r in en["grad_norm_ratio"].values()), en["grad_norm_ratio"]
    assert all(d <= 1e-6 for d in en["max_weight_diff"].values()), en["max_weight_diff"]

    lines = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines[1:1 + len(STEPS)]] == [[name, "ok"] for name in STEPS]
    rows = [line for line in lines if line.startswith("update ")]
    assert [row.split(":")[0] for row in rows] == [f"update {loop} ZeRO-{stage}" for loop in ("grpo", "dpo")
                                                   for stage in (2, 3)]
    assert all("(plan " in row and "tok/s" in row for row in rows), rows
    decode_lines = [line for line in lines if line.startswith("decode G=")]
    assert [line.split()[1:3] for line in decode_lines] == [[f"G={g}", "eager"] for g in sm["decode_groups"]]
    assert proc.stdout.rstrip().endswith(lines[-1])

    # the cluster estimate reads every rate it needs from this summary (tiny shape: labelled as such)
    est = subprocess.run([sys.executable, str(ROOT / "speed" / "cluster_estimate.py"), str(out / "summary.json")],
                         capture_output=True, text=True, timeout=60)
    assert est.returncode == 0, est.stderr
    assert "missing" not in est.stdout and "THE SUMMARY MEASURED SHAPE 'tiny'" in est.stdout, est.stdout
    assert "| **run** | iteration 0 + 3 x iteration k |" in est.stdout
