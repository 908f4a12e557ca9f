"""Arms (issue 22): named variants of the loop built side by side, the control arm without the
verifier/DPO half, seeds as a wildcard, and `snakemake compare` reading every arm's artifacts."""
import copy
import json
import shutil
import statistics

import numpy as np
import pytest
import yaml

from conftest import ROOT, job_counts, jsonl, snakemake
from veripo import arms
from veripo.answers import score_response
from veripo.config import ConfigError, validate_config


def test_arm_config_overrides_its_sections_and_sets_every_seed(default_config):
    cfg = arms.arm_config(default_config, "no_reflection", 7)
    assert cfg["pairs"]["kinds"] == ["consistency", "penalty"]
    assert cfg["pairs"]["max_per_query"] == default_config["pairs"]["max_per_query"]  # merged key by key
    assert (cfg["grpo"]["seed"], cfg["dpo"]["seed"], cfg["curriculum"]["seed"], cfg["verifier"]["rollouts"]["seed"]) \
        == (7, 7, 7, 7)
    assert default_config["pairs"]["kinds"] == ["consistency", "penalty", "reflection"]  # not mutated
    same = arms.arm_config(default_config, "veripo", None)
    assert same["grpo"] == default_config["grpo"] and same["dpo"] == default_config["dpo"]
    assert arms.parse_run("") is None
    assert arms.parse_run("arms/grpo_only/seed3/") == ("grpo_only", 3)
    assert arms.parse_run("arms/grpo_only/") == ("grpo_only", None)
    assert not arms.has_dpo(default_config, "arms/grpo_only/seed3/") and arms.has_dpo(default_config, "")


def test_bad_arms_are_refused_naming_the_key(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["arms"]["data_arm"] = {"overrides": {"data": {"train_video": "x.jsonl"}}}
    with pytest.raises(ConfigError, match=r"'arms.data_arm.overrides.data': an arm may override only"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["arms"]["hot"] = {"overrides": {"grpo": {"temperature": -1}}}
    with pytest.raises(ConfigError, match=r"^config key 'arms.hot' makes an invalid config: config key 'grpo.temperature'"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["report"]["arms"] = ["veripo", "nope"]
    with pytest.raises(ConfigError, match=r"'report.arms\[1\]': 'nope' is not one of arms"):
        validate_config(cfg)


def _plan(tmp_path, cfg, *targets):
    out = snakemake(tmp_path, cfg, "-n", *targets)
    assert out.returncode == 0, out.stderr[-3000:]
    return job_counts(out.stdout + out.stderr)


def test_the_control_arm_plans_no_verifier_or_dpo_and_shares_data_and_warm_up(tmp_path, default_config):
    control = _plan(tmp_path, default_config, "arms/grpo_only/iter3/eval/vsi_bench.json")
    assert not {"verifier_judge", "verifier_sample", "dpo_build_pairs", "dpo_train"} & set(control)
    assert control["grpo_train"] == 4 and control["curriculum_filter"] == 2
    both = _plan(tmp_path, default_config, "arms/grpo_only/seed1/iter3/eval/vsi_bench.json",
                 "arms/veripo/seed1/iter3/eval/vsi_bench.json")
    # one data, base and warm-up job for both arms; each arm its own GRPO chain
    assert (both["data_synthetic"], both["base_build_tiny"], both["base_warmup"]) == (1, 1, 1)
    assert both["grpo_train"] == 8 and both["dpo_train"] == 3 and both["verifier_judge"] == 3


@pytest.mark.slow
def test_compare_reads_two_arms_times_two_seeds(tmp_path, finished_run):
    """Two arms x two seeds, one iteration, in a copy of the finished shortened run (its data and
    warm-up are reused): the comparison's numbers are the arms' own artifacts'."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    cfg = yaml.safe_load((run / "test_config.yaml").read_text())
    cfg["iterations"] = 1
    cfg["report"].update(arms=["veripo", "grpo_only"], seeds=[1, 2], baseline_arm="grpo_only")
    out = snakemake(run, cfg, "compare")
    assert out.returncode == 0, out.stderr[-4000:]
    counts = job_counts(out.stdout + out.stderr)
    assert "base_warmup" not in counts and "data_synthetic" not in counts  # shared, already built
    assert counts["grpo_train"] == 8 and counts["dpo_train"] == 2  # 2 stages x 4 runs; DPO in veripo only
    assert not (run / "arms/grpo_only/seed1/iter1/dpo").exists()
    summary = json.loads((run / "compare/summary.json").read_text())
    assert [(r["arm"], r["seed"]) for r in summary["runs"]] == [("veripo", 1), ("veripo", 2), ("grpo_only", 1),
                                                                 ("grpo_only", 2)]
    for r in summary["runs"]:
        prefix = run / f"arms/{r['arm']}/seed{r['seed']}"
        for row in r["rows"]:
            k = row["iteration"]
            rollouts = jsonl(prefix / f"iter{k}/grpo/rollouts.jsonl")
            assert row["rollout_accuracy"] == pytest.approx(statistics.fmean(x["reward_accuracy"] for x in rollouts))
            assert row["response_tokens"] == pytest.approx(statistics.fmean(x["num_tokens"] for x in rollouts))
            score = json.loads((prefix / f"iter{k}/eval/vsi_bench.json").read_text())
            assert row["score/vsi_bench"] == score["overall"] and row["ci95/vsi_bench"] == score["ci95"]
            assert 0 <= row["inconsistency_rule"] <= 1 and row["think_tokens"] > 0
    # the two seeds sample differently: their iteration-1 rollouts are not the same text
    texts = [[x["completion"] for x in jsonl(run / f"arms/veripo/seed{s}/iter1/grpo/rollouts.jsonl")] for s in (1, 2)]
    assert texts[0] != texts[1]
    # the paired difference at the final iteration is the mean over seeds of the score difference
    (paired,) = summary["paired"]
    direct = []
    for s in (1, 2):
        per_arm = []
        for arm in ("veripo", "grpo_only"):
            preds = jsonl(run / f"arms/{arm}/seed{s}/iter1/eval/vsi_bench.predictions.jsonl")
            per_arm.append(np.mean([score_response(p["response"], p["answer"], p["answer_type"]) for p in preds]) * 100)
        direct.append(per_arm[0] - per_arm[1])
    assert paired["difference"] == pytest.approx(np.mean(direct))
    assert paired["ci95"][0] <= paired["difference"] <= paired["ci95"][1]
    table = (run / "compare/summary.md").read_text()
    assert "| veripo |" in table and "| grpo_only |" in table and "paired difference to grpo_only" in table
    for name in ("score_vsi_bench", "rollout_accuracy", "response_length", "think_length", "inconsistency",
                 "grpo_along_iterations", "cost"):
        png = run / f"figures/compare/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_probe_layer_validates_and_its_arms_differ_from_the_loop_in_dpo_only():
    """configs/arms-probe.yaml (the README's DPO-strength table): every probe arm is the configured loop
    with another DPO, so the table's differences are DPO's."""
    from veripo.commands.checkpoint import layered_config

    cfg = layered_config((str(ROOT / "configs/arms-probe.yaml"),))
    loop = arms.arm_config(cfg, "veripo", 1)
    probes = [a for a in cfg["report"]["arms"] if a not in ("veripo", "grpo_only")]
    assert len(probes) == 3
    for name in probes:
        other = arms.arm_config(cfg, name, 1)
        assert {k for k in loop if loop[k] != other[k]} == {"dpo"}, name
