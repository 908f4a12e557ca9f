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


ROLLOUT = {"rollout_id": "q@r0#0", "query_id": "q", "completion": "<think>x</think><answer>A</answer>",
           "completion_ids": [5, 6, 7],
           "query": {"answer": "A", "answer_type": "multiple_choice"}, "iteration": 1}


def test_verifier_rejects_a_rollout_without_completion(tmp_path, default_config):
    roll = write(tmp_path / "rollouts.jsonl", [ROLLOUT, {k: v for k, v in ROLLOUT.items() if k != "completion"}])
    out = tmp_path / "verdicts.jsonl"
    p = run("verifier_judge", "--rollouts", roll, "--model", tmp_path / "none", "--config",
            json.dumps(default_config["verifier"]), "--out", out, "--stats", tmp_path / "stats.json")
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
            "--out-model", out, "--out-metrics", tmp_path / "m.jsonl", "--out-heldout", tmp_path / "h.json", "--checkpoint-dir", tmp_path / "ckpt")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "pairs.jsonl, line 1: malformed JSON" in p.stderr
    assert not out.exists()


def test_repeated_rollout_ids_stop_every_reader(tmp_path, default_config):
    """Rollout ids are unique within a stage; a repeated one names the file, line and field in the
    verifier, the pair builder and the curriculum alike."""
    roll = write(tmp_path / "rollouts.jsonl", [ROLLOUT, dict(ROLLOUT, completion="<think>y</think><answer>B</answer>")])
    want = "rollouts.jsonl, line 2, field 'rollout_id': duplicate rollout_id 'q@r0#0' (first on line 1)"
    p = run("verifier_judge", "--rollouts", roll, "--model", tmp_path / "none", "--config",
            json.dumps(default_config["verifier"]), "--out", tmp_path / "v.jsonl", "--stats", tmp_path / "s.json")
    assert p.returncode == 2 and want in p.stderr, p.stderr
    verdicts = write(tmp_path / "verdicts.jsonl", [{"rollout_id": "q@r0#0", "query_id": "q", "checks": {}, "clean": True}])
    p = run("dpo_build_pairs", "--rollouts", roll, "--verdicts", verdicts, "--model", tmp_path / "none",
            "--config", '{"kinds": ["consistency"], "max_per_query": 2, "rotate_kinds": true}', "--out",
            tmp_path / "p.jsonl", "--stats", tmp_path / "ps.json")
    assert p.returncode == 2 and want in p.stderr, p.stderr
    queries = write(tmp_path / "q.jsonl", [{"id": "q", "question": "?", "answer": "A", "answer_type": "multiple_choice"}])
    roll2 = write(tmp_path / "rollouts.jsonl", [dict(ROLLOUT, reward_accuracy=1.0)] * 2)
    p = run("curriculum_filter", "--data", queries, "--rollouts", roll2, "--config", '{"discard_fraction": 0.8, "seed": 0}',
            "--out", tmp_path / "kept.jsonl")
    assert p.returncode == 2 and want in p.stderr, p.stderr
    assert not any((tmp_path / f).exists() for f in ("v.jsonl", "p.jsonl", "kept.jsonl"))


def test_pairs_reject_rollouts_without_their_sampled_ids(tmp_path):
    roll = write(tmp_path / "rollouts.jsonl", [dict(ROLLOUT, completion_ids=[])])
    verdicts = write(tmp_path / "verdicts.jsonl", [{"rollout_id": "q@r0#0", "query_id": "q", "checks": {}, "clean": True}])
    p = run("dpo_build_pairs", "--rollouts", roll, "--verdicts", verdicts, "--model", tmp_path / "none",
            "--config", '{"kinds": ["consistency"], "max_per_query": 2, "rotate_kinds": true}', "--out",
            tmp_path / "p.jsonl", "--stats", tmp_path / "ps.json")
    assert p.returncode == 2 and "rollouts.jsonl, line 1, field 'completion_ids': expected the sampled token ids" in p.stderr
