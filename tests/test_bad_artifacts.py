"""Artifacts passed between rules, when malformed, stop the reading CLI with the file, line and field
named (exit 2, one line, no traceback) and no output written."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *map(str, args)],
                          capture_output=True, text=True)


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ROLLOUT = {"rollout_id": "q#0", "query_id": "q", "completion": "<think>x</think><answer>A</answer>",
           "query": {"answer": "A", "answer_type": "multiple_choice"}, "iteration": 1}


def test_verifier_rejects_a_rollout_without_completion(tmp_path):
    roll = write(tmp_path / "rollouts.jsonl", [ROLLOUT, {k: v for k, v in ROLLOUT.items() if k != "completion"}])
    out = tmp_path / "verdicts.jsonl"
    p = run("verifier_judge", "--rollouts", roll, "--model", tmp_path / "none", "--config", '{"judge": {"backend": "rule"}}',
            "--out", out, "--stats", tmp_path / "stats.json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "rollouts.jsonl, line 2, field 'completion': missing required field" in p.stderr
    assert not out.exists()


def test_pairs_reject_a_verdict_for_an_unknown_rollout(tmp_path):
    roll = write(tmp_path / "rollouts.jsonl", [ROLLOUT])
    verdicts = write(tmp_path / "verdicts.jsonl", [{"rollout_id": "q#9", "query_id": "q", "checks": {}, "clean": True}])
    out = tmp_path / "pairs.jsonl"
    p = run("dpo_build_pairs", "--rollouts", roll, "--verdicts", verdicts, "--model", tmp_path / "none",
            "--config", '{"kinds": ["consistency"], "max_per_query": 2, "rotate_kinds": true}', "--out", out,
            "--stats", tmp_path / "stats.json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "verdicts.jsonl, line 1, field 'rollout_id': verdict for unknown rollout 'q#9'" in p.stderr
    assert not out.exists()


@pytest.mark.slow
def test_dpo_rejects_a_malformed_pair_line(tmp_path, default_config):
    pairs = write(tmp_path / "pairs.jsonl", ['{"pair_id": "p0", "query_id": '])
    cfg = {"dtype": "float32", "prompts": default_config["prompts"], "media": default_config["media"],
           "train": default_config["train"], "dpo": default_config["dpo"]}
    out = tmp_path / "model"
    p = run("dpo_train", "--model", tmp_path / "none", "--pairs", pairs, "--config", json.dumps(cfg),
            "--out-model", out, "--out-metrics", tmp_path / "m.jsonl", "--checkpoint-dir", tmp_path / "ckpt")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "pairs.jsonl, line 1: malformed JSON" in p.stderr
    assert not out.exists()
