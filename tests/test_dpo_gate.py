"""dpo.min_pairs through Snakemake: too few pairs stop the workflow or skip the DPO stage.

The GRPO stages are not run: their outputs are put in place by hand (a tiny checkpoint and crafted
rollouts, older files first), so only verifier_judge, dpo_build_pairs (the checkpoint) and what the
gate decides run.
"""
import copy
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from test_workflow import jsonl, small_config, snakemake
from veripo.config import validate_config
from veripo.jsonio import write_jsonl

MC = {"question": "Which way does the square move?\nA. left\nB. right", "answer": "B",
      "answer_type": "multiple_choice", "options": ["A. left", "B. right"], "video": "v.mp4"}
COMPLETIONS = [  # per query: two right and consistent, one wrong, one repetitive, one truncated
    "<think>The square moves to the right across the frame, so the answer is B.</think><answer>$B$</answer>",
    "<think>It goes right, so the answer is B.</think><answer>$B$</answer>",
    "<think>The square moves to the left across the frame, so the answer is A.</think><answer>$A$</answer>",
    "<think>" + "left right " * 12 + "so the answer is A.</think><answer>$A$</answer>",
    "<think>The square moves to the right, so the",
]


def gate_config(default_config: dict, tiny_dir: str, on_too_few: str) -> dict:
    cfg = copy.deepcopy(small_config(default_config, iterations=1))
    cfg["base_model"] = tiny_dir  # a given base: no base_* rules
    cfg["data"]["synthetic"] = {"enabled": False}
    cfg["data"].update(train_video="data/train_video.jsonl", train_activation="data/train_activation.jsonl")
    if "train" in cfg:
        cfg["train"]["engine"] = "torch"
    cfg["dpo"].update(min_pairs=1000, on_too_few_pairs=on_too_few)
    return validate_config(cfg)


def stage_upstream(w: Path, tiny_dir: str) -> None:
    """Queries, then iteration 0's and 1's GRPO outputs, each newer than what it was made from."""
    queries = [dict(MC, id=f"q{i}") for i in range(3)]
    write_jsonl(w / "data/train_video.jsonl", queries)
    write_jsonl(w / "data/train_activation.jsonl", queries)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    eos = [tok.convert_tokens_to_ids("<|im_end|>")]

    def ids(i, c):  # as sampled: the truncated one (i == 4) without EOS
        return tok(c, add_special_tokens=False)["input_ids"] + ([] if i == 4 else eos)

    rows = [{"rollout_id": f"{q['id']}@r0#{i}", "query_id": q["id"], "rollout": i, "stage": "video", "iteration": 1,
             "round": 0, "completion": c, "completion_ids": ids(i, c), "num_tokens": len(ids(i, c)),
             "truncated": i == 4, "reward_accuracy": 0.0, "query": q}
            for q in queries for i, c in enumerate(COMPLETIONS)]
    for k in (0, 1):
        shutil.copytree(tiny_dir, w / f"iter{k}/grpo/model")
        write_jsonl(w / f"iter{k}/grpo/rollouts.jsonl", rows)
        write_jsonl(w / f"iter{k}/grpo/metrics.jsonl", [])
    now = time.time()
    for k, paths in enumerate([["data"], ["iter0/grpo"], ["iter1/grpo"]]):
        for p in paths:
            for f in [w / p, *(w / p).rglob("*")]:
                os.utime(f, (now - 300 + 100 * k, now - 300 + 100 * k))


@pytest.mark.slow
def test_too_few_pairs_stop_then_skip(tmp_path, default_config, tiny_dir):
    stage_upstream(tmp_path, tiny_dir)
    args = ("iter1/dpo/model", "--rerun-triggers", "mtime")

    stopped = snakemake(tmp_path, gate_config(default_config, tiny_dir, "stop"), *args, timeout=600)
    text = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert "iteration 1 yielded 6 DPO pairs, fewer than dpo.min_pairs = 1000" in text, text[-3000:]
    assert "stopping as dpo.on_too_few_pairs is 'stop'" in text
    assert not (tmp_path / "iter1/dpo/model").exists()
    stats = json.loads((tmp_path / "iter1/dpo/pair_stats.json").read_text())
    # 2 per query; rotate_kinds starts q0 and q1 at penalty, q2 at consistency
    assert stats["pairs"] == 6 and stats["by_kind"] == {"consistency": 1, "penalty": 3, "reflection": 2}
    verifier_stats = json.loads((tmp_path / "iter1/verifier/stats.json").read_text())
    assert verifier_stats["checks"]["accuracy"] == {"right": 6, "partial": 0, "wrong": 9}

    # same pairs, the other choice: no rerun of the verifier or the pairs, DPO is skipped
    skipped = snakemake(tmp_path, gate_config(default_config, tiny_dir, "skip"), *args, timeout=600)
    text = skipped.stdout + skipped.stderr
    assert skipped.returncode == 0, text[-3000:]
    assert "DPO of iteration 1 is skipped (dpo.on_too_few_pairs: skip)" in text
    assert "rule verifier_judge" not in text and "rule dpo_build_pairs" not in text
    assert "fewer than dpo.min_pairs" in (tmp_path / "logs/dpo_skip_pairs/iter1.log").read_text()
    assert jsonl(tmp_path / "iter1/dpo/metrics.jsonl") == []
    from safetensors.torch import load_file

    grpo = load_file(tmp_path / "iter1/grpo/model/model.safetensors")
    dpo = load_file(tmp_path / "iter1/dpo/model/model.safetensors")
    assert grpo.keys() == dpo.keys() and all((grpo[k] == dpo[k]).all() for k in grpo)
