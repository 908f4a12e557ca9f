"""The Snakemake workflow end to end on the tiny default (a shortened chain), and its DAG."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from veripo.config import validate_config


def small_config(default: dict, iterations: int = 2) -> dict:
    cfg = copy.deepcopy(default)
    cfg["iterations"] = iterations
    cfg["warmup"]["steps"] = 150
    syn = cfg["data"]["synthetic"]
    syn.update(n_warmup=24, n_train_video=8, n_train_activation=4, n_benchmark=6)
    return validate_config(cfg)


def snakemake(workdir: Path, cfg: dict, *args, timeout=1500, env=None) -> subprocess.CompletedProcess:
    cfg_path = workdir / "test_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args, "--configfile", str(cfg_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(text: str) -> dict:
    """{rule: jobs} from snakemake's "Job stats" table."""
    counts = {}
    for line in text.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_unrolls_three_iterations(tmp_path, default_config):
    out = snakemake(tmp_path, default_config, "-n", "iter3/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == {"base_build_tiny": 1, "data_synthetic": 1, "base_warmup": 1, "grpo_train": 4,
                      "curriculum_filter": 2, "verifier_judge": 3, "dpo_build_pairs": 3, "dpo_train": 3,
                      "eval_generate": 1, "eval_score": 1, "total": 20}


def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, default_config):
    cfg = copy.deepcopy(default_config)
    cfg["grpo"]["rollouts_per_query"] = 1
    out = snakemake(tmp_path, cfg, "-n", "iter1/eval/vsi_bench.json")
    assert out.returncode != 0
    assert "grpo.rollouts_per_query" in out.stdout + out.stderr


ROLLOUT_FIELDS = {"rollout_id", "query_id", "rollout", "stage", "iteration", "round", "completion", "num_tokens",
                  "truncated", "reward_accuracy", "reward_format", "reward", "advantage", "media", "query"}
VERDICT_FIELDS = {"rollout_id", "query_id", "iteration", "checks", "clean", "reasons"}
PAIR_FIELDS = {"pair_id", "query_id", "kind", "iteration", "chosen", "rejected", "chosen_rollout",
               "rejected_rollout", "rejected_reasons", "query"}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_checkpoint(path: Path):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    AutoProcessor.from_pretrained(path)


@pytest.mark.slow
def test_default_chain_runs_and_every_artifact_has_its_schema(tmp_path, default_config):
    cfg = small_config(default_config, iterations=2)
    out = snakemake(tmp_path, cfg, "iter2/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-5000:]
    w = tmp_path
    base = json.loads((w / "base/model.json").read_text())
    assert base["kind"] == "tiny" and base["params"] > 100_000
    for ckpt in ["base/model", "iter0/grpo/model", "iter1/grpo/model", "iter1/dpo/model", "iter2/dpo/model"]:
        assert_checkpoint(w / ckpt)
    act = jsonl(w / "iter0/grpo/rollouts.jsonl")
    assert len(act) == 4 * cfg["grpo"]["rollouts_per_query"] and {r["stage"] for r in act} == {"activation"}
    for k in (1, 2):
        rollouts = jsonl(w / f"iter{k}/grpo/rollouts.jsonl")
        assert rollouts and all(ROLLOUT_FIELDS <= set(r) for r in rollouts)
        assert all(0 <= r["reward_accuracy"] <= 1 and r["reward_format"] in (0, 0.5) for r in rollouts)
        assert all(r["query"].get("video") for r in rollouts)
        verdicts = jsonl(w / f"iter{k}/verifier/verdicts.jsonl")
        assert len(verdicts) == len(rollouts) and all(VERDICT_FIELDS <= set(v) for v in verdicts)
        assert {"length", "format", "repetition", "accuracy", "consistency"} == set(verdicts[0]["checks"])
        stats = json.loads((w / f"iter{k}/verifier/stats.json").read_text())
        assert stats["rollouts"] == len(rollouts)
        pairs = jsonl(w / f"iter{k}/dpo/pairs.jsonl")
        assert all(PAIR_FIELDS <= set(p) for p in pairs)
        assert all(p["kind"] in cfg["pairs"]["kinds"] for p in pairs)
        per_query = {}
        for p in pairs:
            per_query[p["query_id"]] = per_query.get(p["query_id"], 0) + 1
        assert all(n <= cfg["pairs"]["max_per_query"] for n in per_query.values())
        for m in jsonl(w / f"iter{k}/grpo/metrics.jsonl"):
            assert {"loss", "kl", "reward/accuracy", "reward/format", "response_length"} <= set(m)
    kept = jsonl(w / "iter1/data/train_video.jsonl")
    assert 0 < len(kept) <= cfg["data"]["synthetic"]["n_train_video"]
    preds = jsonl(w / "iter2/eval/vsi_bench.predictions.jsonl")
    assert len(preds) == cfg["data"]["synthetic"]["n_benchmark"]
    assert len({p["key"] for p in preds}) == len(preds)
    score = json.loads((w / "iter2/eval/vsi_bench.json").read_text())
    assert score["benchmark"] == "vsi_bench" and score["n"] == len(preds)
    assert 0 <= score["overall"] <= 100 and "official_overall" in score and score["categories"]
    assert score["inconsistency"]["judge"] == "rule" and 0 <= score["inconsistency"]["rate"] <= 100
    assert score["provenance"]["checkpoint"] == "iter2/dpo/model"
    assert len(score["provenance"]["checkpoint_sha256"]) == 64
    for rule in ("grpo_train", "dpo_train", "verifier_judge", "eval_generate"):
        assert list((w / "logs/benchmarks" / rule).glob("*.tsv")), rule
        assert list((w / "logs" / rule).glob("*.log")), rule
    assert not list(w.glob("checkpoints/*/*/step-*"))  # step checkpoints are cleared once a job is done
    # nothing left to do on a rerun
    again = snakemake(tmp_path, cfg, "-n", "iter2/eval/vsi_bench.json")
    assert "Nothing to be done" in again.stdout + again.stderr
