"""vLLM for real, no mock: the vLLM consistency judge (veripo/verify/judges/vllm_engine.py, in the venv
scripts/setup_vllm_env.sh builds) against the HF judge here, on the same tiny judge checkpoint.

The judge is a Qwen2 causal LM of two 32-dimensional heads (vLLM's CPU attention takes no smaller head),
fine-tuned for a few steps so that its verdict depends on the prompt (CONSISTENT for answer A,
INCONSISTENT for B: a shortcut, enough to tell the replies apart). Both judges run with the config's
defaults: vLLM gets no dtype, the judge passes the checkpoint's own (float32), as the HF judge loads it.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import ROOT, VLLM_TEST_ENGINE
from veripo.verify.judges import make_judge
from veripo.verify.judges.base import chat_text
from veripo.verify.judges.verdicts import render_prompt

TEMPLATE = "Question: {question}\nReasoning: {reasoning}\nAnswer: {answer}\nReply CONSISTENT or INCONSISTENT."
PHRASES = ["the square moves left", "it is red and it moves up", "count them", "two squares, one moves down"]


def completion(phrase: str, answer: str) -> str:
    return f"<think>{phrase}, so the answer is A.</think><answer>${answer}$</answer>"


ROLLOUTS = [(phrase, answer) for phrase in PHRASES for answer in "AB"]
# 8 rollouts judged, 1 not asked (no <answer>): batches of 5 and 3 with batch_size 5
TEXTS = [completion(phrase, answer) for phrase, answer in ROLLOUTS] + ["<think>no answer tag here</think>"]
QUESTIONS = [f"Which way? {i}" for i in range(len(TEXTS))]


def spec(backend: str, model: str) -> dict:
    return {"backend": backend, "model": model, "url": None, "api_key_env": None, "timeout_s": 5, "retries": 0,
            "backoff_s": 0.01, "batch_size": 5, "max_new_tokens": 8, "yes_is": "CONSISTENT",
            "engine_args": dict(VLLM_TEST_ENGINE) if backend == "vllm" else {}, "prompt": TEMPLATE}


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> str:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from veripo.model.tiny import build_tokenizer

    tok = build_tokenizer(1024, [TEMPLATE, "CONSISTENT", "INCONSISTENT", *PHRASES, *QUESTIONS] * 10)
    cfg = Qwen2Config(vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    batch = []
    for (phrase, answer), question in zip(ROLLOUTS, QUESTIONS):
        prompt = chat_text(tok, render_prompt(TEMPLATE, question, f"{phrase}, so the answer is A.", f"${answer}$"))
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        reply = ("CONSISTENT" if answer == "A" else "INCONSISTENT") + "<|im_end|>"
        y = tok(reply, add_special_tokens=False)["input_ids"]
        batch.append((p + y, [-100] * len(p) + y))
    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if loss.item() < 0.02:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02, loss.item()
    out = str(tmp_path_factory.mktemp("judge") / "model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# Run in the vLLM venv: the real VLLMJudge through make_judge, its verdicts as JSON.
JUDGE = """
import json, sys
from veripo.verify.judges import make_judge

args = json.loads(sys.argv[1])
judge = make_judge(args["spec"])
json.dump({"verdicts": judge(args["texts"], args["questions"]), "dtype": str(judge.llm.llm_engine.model_config.dtype)},
          open(args["out"], "w"))
"""


@pytest.mark.slow
def test_vllm_judge_equals_hf_judge(vllm_python, vllm_env, judge_dir, tmp_path):
    out = tmp_path / "verdicts.json"
    args = {"spec": spec("vllm", judge_dir), "texts": TEXTS, "questions": QUESTIONS, "out": str(out)}
    proc = subprocess.run([vllm_python, "-c", JUDGE, json.dumps(args)], cwd=ROOT, env=vllm_env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(out.read_text())
    assert got["dtype"] == "torch.float32"  # the checkpoint's own, not vLLM's bfloat16 for float32 checkpoints
    want = make_judge(spec("hf", judge_dir))(TEXTS, QUESTIONS)
    assert [v["raw"] for v in got["verdicts"]] == [v["raw"] for v in want]
    assert [v["verdict"] for v in got["verdicts"]] == [v["verdict"] for v in want]
    assert all(v["judge"] == f"vllm:{judge_dir}" for v in got["verdicts"])
    # the replies depend on the prompt, and the unanswered rollout is not asked
    assert {v["verdict"] for v in want} == {"CONSISTENT", "INCONSISTENT", "UNKNOWN"}
    assert want[-1]["raw"] is None


# The real VLLMJudge, then its engine dies under a generate as vLLM reports it (EngineDeadError, what
# LLM.generate raises once the engine core is gone, e.g. taken by the OOM killer): the job's error path.
DEAD = """
import json, sys
from vllm.v1.engine.exceptions import EngineDeadError
from veripo.cli import main_guard
from veripo.verify.judges import make_judge

args = json.loads(sys.argv[1])
judge = make_judge(args["spec"])
print("kv_cache_memory_bytes", judge.llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes, flush=True)

def dead(*a, **k):
    raise EngineDeadError()

judge.llm.generate = dead
main_guard(lambda: judge(args["texts"], args["questions"]))()
"""


@pytest.mark.slow
def test_vllm_judge_sized_from_its_key_and_a_dead_engine_is_one_line(vllm_python, vllm_env, judge_dir):
    s = spec("vllm", judge_dir)
    s["engine_args"]["kv_cache_gib"] = 2  # over the tests' VLLM_CPU_KVCACHE_SPACE=1: the key wins
    proc = subprocess.run([vllm_python, "-c", DEAD, json.dumps({"spec": s, "texts": TEXTS, "questions": QUESTIONS})],
                          cwd=ROOT, env=vllm_env, capture_output=True, text=True, timeout=300)
    assert f"kv_cache_memory_bytes {2 << 30}" in proc.stdout, proc.stderr[-4000:]
    assert proc.returncode == 2, proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vLLM judge's engine" in errors[0] and "died" in errors[0], proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
