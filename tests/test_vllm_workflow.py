"""The tiny chain with the model calls of the loop through vLLM (configs/vllm.yaml: GRPO rollouts and the
evaluation; the rule judge), for real in the vLLM venv, shortened to one iteration: still VerIPO, the
verifier's pairs train DPO, and every engine's KV cache is sized from its rule's mem_mb."""
import json

import pytest
import yaml

from conftest import ROOT
from test_workflow import jsonl, small_config, snakemake


@pytest.mark.slow
def test_tiny_chain_through_vllm(tmp_path, default_config, vllm_python, vllm_env):
    overrides = yaml.safe_load((ROOT / "configs" / "vllm.yaml").read_text())
    cfg = small_config(default_config, iterations=1)
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    cfg["verifier"]["judge"] = {**default_config["verifier"]["judge"], **overrides["verifier"]["judge"]}
    cfg["vllm_python"] = vllm_python
    out = snakemake(tmp_path, cfg, "iter1/eval/vsi_bench.json", timeout=2400, env=vllm_env)
    assert out.returncode == 0, out.stderr[-4000:]
    for stage in ("iter0", "iter1"):
        settings = json.loads((tmp_path / stage / "grpo" / "settings.json").read_text())
        assert settings["config"]["grpo"]["rollout_backend"] == "vllm"
        rows = jsonl(tmp_path / stage / "grpo" / "rollouts.jsonl")
        assert rows and all(r["completion_ids"] for r in rows)
        assert len({r["rollout_id"] for r in rows}) == len(rows)
        # the rewards are mixed: the vLLM rollouts of the warmed-up model are sometimes right
        assert 0 < sum(r["reward_accuracy"] for r in rows) < len(rows)
        # every step logs the round's vLLM-vs-trainer log-prob gap: fp32 numerics, far under the bound
        metrics = jsonl(tmp_path / stage / "grpo" / "metrics.jsonl")
        assert all(0 <= m["vllm/logprob_gap_mean"] <= m["vllm/logprob_gap_max"] < 1e-2 for m in metrics), metrics
    verdicts = jsonl(tmp_path / "iter1" / "verifier" / "verdicts.jsonl")
    assert verdicts
    # the judge answers: verdicts a pair can be built from, not UNPARSABLE (the tiny policy as an LLM judge)
    consistency = [v["checks"]["consistency"]["verdict"] for v in verdicts]
    assert "UNPARSABLE" not in consistency and "CONSISTENT" in consistency
    # ... so the iteration has pairs and DPO trains on them: steps logged, weights moved
    stats = json.loads((tmp_path / "iter1" / "dpo" / "pair_stats.json").read_text())
    assert stats["pairs"] > 0, stats
    dpo_metrics = jsonl(tmp_path / "iter1" / "dpo" / "metrics.jsonl")
    assert dpo_metrics and all(m["pairs"] > 0 for m in dpo_metrics)
    from safetensors.torch import load_file

    before = load_file(str(tmp_path / "iter1" / "grpo" / "model" / "model.safetensors"))
    after = load_file(str(tmp_path / "iter1" / "dpo" / "model" / "model.safetensors"))
    assert before.keys() == after.keys() and any(not before[k].equal(after[k]) for k in before)
    # every engine's KV cache from its rule's mem_mb (1 GiB: all the tiny model can fill), not 90% of the RAM
    for log_name, mem_mb in (("grpo_train/iter1.log", 8000), ("eval_generate/iter1_eval_vsi_bench.log", 4000)):
        assert f"vllm: KV cache 1 GiB (from mem_mb {mem_mb})" in (tmp_path / "logs" / log_name).read_text()
    run = json.loads((tmp_path / "iter1" / "eval" / "vsi_bench.run.json").read_text())
    assert "vllm" in json.dumps(run)
    score = json.loads((tmp_path / "iter1" / "eval" / "vsi_bench.json").read_text())
    assert score
    # the jobs that ran vLLM ran in the vLLM interpreter
    log = (tmp_path / "logs" / "grpo_train" / "iter1.log").read_text()
    assert "launch:" in log and vllm_python in log
