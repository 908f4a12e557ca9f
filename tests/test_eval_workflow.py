"""Evaluation targets in the workflow: base/eval, iterK/eval, iterK/eval_grpo, per-benchmark settings,
and the tiny base model evaluated end to end on the synthetic benchmark of each of the six formats."""
import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from veripo.config import ConfigError, validate_config
from test_workflow import job_counts
from test_workflow import snakemake as workflow_snakemake
from veripo.eval.settings import benchmark_media, check_benchmarks, job_settings

SIX = ["vsi_bench", "video_mme", "lvbench", "tomato", "mmvu", "video_mmmu"]


def snakemake(workdir: Path, cfg: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return workflow_snakemake(workdir, cfg, *args, timeout=timeout, env=dict(os.environ, VERIPO_THREADS="1"))


def test_per_benchmark_media_overrides(default_config):
    cfg = copy.deepcopy(default_config)
    assert benchmark_media(cfg["eval"], "tomato")["fps"] == 4.0
    assert benchmark_media(cfg["eval"], "vsi_bench") == cfg["eval"]["media"]
    cfg["eval"]["benchmarks"]["mmvu"].update(max_frames=32, max_pixels=50176, skip_missing_videos=True)
    settings = job_settings(validate_config(cfg), "mmvu")
    assert settings["media"] == dict(cfg["eval"]["media"], max_frames=32, max_pixels=50176)
    assert settings["skip_missing_videos"] is True and settings["generation"]["backend"] == "hf"
    cfg["eval"]["benchmarks"]["mmvu"]["max_pixels"] = 1000
    with pytest.raises(ConfigError, match=r"eval\.benchmarks\.mmvu\.min_pixels"):
        check_benchmarks(cfg["eval"])


@pytest.mark.parametrize("mutate, needle", [
    (lambda e: e["benchmarks"]["tomato"].update(fps=0), "eval.benchmarks.tomato.fps"),
    (lambda e: e["benchmarks"]["tomato"].update(frames=8), "frames"),
    (lambda e: e.update(backend="tgi"), "eval.backend"),
    (lambda e: e.update(batch_size=0), "eval.batch_size"),
    (lambda e: e["vllm"].update(gpu_memory_utilization=2), "eval.vllm.gpu_memory_utilization"),
])
def test_bad_eval_config_names_the_key(default_config, mutate, needle):
    cfg = copy.deepcopy(default_config)
    mutate(cfg["eval"])
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config(cfg)


def test_dry_run_of_base_and_intermediate_checkpoints(tmp_path, default_config):
    out = snakemake(tmp_path, default_config, "-n", "-p", "base/eval/tomato.json", "iter1/eval_grpo/mmvu.json",
                    "iter1/eval/mmvu.json")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    # a fourth generation: base on mmvu, what iter1's mmvu scores take their paired difference to
    # (eval.paired_baseline: base)
    assert job_counts(text)["eval_generate"] == 4 and job_counts(text)["eval_score"] == 3
    assert "--baseline-predictions base/eval/mmvu.predictions.jsonl" in text
    assert "eval_generate.py --model base/model --benchmark tomato" in text
    assert "eval_generate.py --model iter1/grpo/model --benchmark mmvu" in text
    assert "eval_generate.py --model iter1/dpo/model --benchmark mmvu" in text
    assert '"fps": 4.0' in text  # TOMATO's override reaches its job
    bad = snakemake(tmp_path, default_config, "-n", "base/eval_grpo/tomato.json")
    assert bad.returncode != 0 and "the base model has no GRPO checkpoint" in bad.stdout + bad.stderr


def eval_config(default: dict) -> dict:
    cfg = copy.deepcopy(default)
    cfg["warmup"]["steps"] = 0  # the score's fields are under test, not the model
    syn = cfg["data"]["synthetic"]
    syn.update(n_warmup=2, n_train_video=2, n_train_activation=2, n_benchmark=4, video_seconds=1.0,
               benchmark_sizes={"video_mme": 7, "lvbench": 4, "tomato": 4, "mmvu": 4, "video_mmmu": 4})
    cfg["eval"].update(max_new_tokens=16, batch_size=4)
    return validate_config(cfg)


CATEGORIES = {
    "vsi_bench": {"object_counting", "object_rel_direction_easy"},
    "video_mme": {"short", "medium", "long"},
    "lvbench": set(),
    "tomato": {"human", "object", "simulated"},
    "mmvu": {"Physics", "Art", "Mathematics"},
    "video_mmmu": {"Perception", "Comprehension", "Adaptation"},
}


@pytest.mark.slow
def test_base_model_on_the_six_synthetic_benchmarks(tmp_path, default_config):
    cfg = eval_config(default_config)
    targets = [f"base/eval/{name}.json" for name in SIX]
    out = snakemake(tmp_path, cfg, *targets, "--set-threads", "eval_generate=1")
    assert out.returncode == 0, out.stderr[-5000:]
    sizes = {"vsi_bench": 4, **cfg["data"]["synthetic"]["benchmark_sizes"]}
    for name in SIX:
        score = json.loads((tmp_path / f"base/eval/{name}.json").read_text())
        assert score["benchmark"] == name and score["n"] == sizes[name]
        assert 0 <= score["overall"] <= 100
        assert set(score["categories"]) == CATEGORIES[name], name
        assert ("official_overall" in score) == (name == "vsi_bench")
        assert score["inconsistency"]["judge"] == "rule"
        assert sum(score["inconsistency"]["counts"].values()) == sizes[name]
        assert score["skipped"] == 0 and score["skipped_keys"] == []
        prov = score["provenance"]
        assert prov["checkpoint"] == "base/model" and len(prov["checkpoint_sha256"]) == 64
        assert prov["questions"] == f"data/bench/{name}.json" and len(prov["questions_sha256"]) == 64
        assert prov["generation"] == {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.05,
                                      "max_new_tokens": 16, "batch_size": 4, "backend": "hf", "device": "cpu",
                                      "configured_backend": "hf"}
        assert prov["media"]["fps"] == (4.0 if name == "tomato" else 2.0)
        keys = [json.loads(line)["key"] for line in (tmp_path / f"base/eval/{name}.predictions.jsonl").open()]
        assert len(keys) == len(set(keys)) == sizes[name]
    assert list((tmp_path / "logs/eval_generate").glob("base_eval_*.log"))
    again = snakemake(tmp_path, cfg, "-n", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr
