"""The eval backend switch (hf | vllm | auto) and the vLLM backend, driven through a mock ``vllm``.

vLLM is a GPU-only engine (no CPU wheels, it cannot be installed here), so a stand-in module is
injected in ``sys.modules``: it records what the backend hands to ``LLM``, ``SamplingParams`` and
``LLM.generate`` and answers with objects shaped like vLLM's ``RequestOutput``. What is tested is our
side of the contract: engine arguments, greedy sampling parameters, one prompt per question with the
chat text, our sampled frames and their metadata, and the mapping of the outputs to predictions.
"""
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from veripo import jsonio

from veripo.eval.backends import hf as eval_backends

from veripo.eval import job as eval_job

from veripo.data import synthetic_benchmarks
from veripo.eval.settings import job_settings
from veripo.stage_config import EvalJob


class MockLLM:
    instances: list = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        MockLLM.instances.append(self)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for i, prompt in enumerate(prompts):
            truncated = i % 2 == 1
            completion = SimpleNamespace(text=f"<think>x</think><answer>$A$</answer> #{len(self.calls)}.{i}",
                                         token_ids=list(range(7 if truncated else 5)),
                                         finish_reason="length" if truncated else "stop")
            outputs.append(SimpleNamespace(prompt=prompt["prompt"], outputs=[completion]))
        return outputs


class MockSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture()
def mock_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = MockLLM, MockSamplingParams
    MockLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_backend_resolution(monkeypatch, mock_vllm):
    assert eval_backends.resolve_backend("hf") == "hf"
    assert eval_backends.resolve_backend("vllm") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert eval_backends.resolve_backend("auto") == "hf"  # importable, but no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert eval_backends.resolve_backend("auto") == "vllm"
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable
    assert eval_backends.resolve_backend("auto") == "hf"


@pytest.fixture()
def tomato(tmp_path):
    root = tmp_path / "bench"
    jsonio.write_json(root / "tomato.json", synthetic_benchmarks.write_benchmark("tomato", str(root), 5, seed=3,
                                                                                 size=64, fps=8, seconds=2.0))
    return root


def test_vllm_backend_through_the_eval_job(tmp_path, tiny_dir, default_config, mock_vllm, monkeypatch, tomato):
    from transformers import AutoConfig, AutoProcessor

    from veripo.model import policy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    settings = job_settings(default_config, "tomato")
    settings["generation"].update(backend="auto", batch_size=3, vllm={"max_model_len": 4096})
    out, run_info = tmp_path / "p.jsonl", tmp_path / "r.json"
    info = eval_job.run_generation(tiny_dir, "tomato", str(tomato / "tomato.json"), str(tomato),
                                   EvalJob.from_config(settings), str(out), str(run_info))
    [llm] = MockLLM.instances
    assert llm.model == tiny_dir
    assert llm.kwargs["limit_mm_per_prompt"] == {"video": 1, "image": 1}
    assert llm.kwargs["max_model_len"] == 4096 and llm.kwargs["dtype"] == "float32"
    assert llm.kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12544, "cap_pixels_per_frame": True}
    assert [len(prompts) for prompts, _ in llm.calls] == [3, 2]  # batch_size questions per llm.generate
    params = llm.calls[0][1].kwargs
    banned = {t: -100.0 for t in policy.suppressed_token_ids(SimpleNamespace(config=AutoConfig.from_pretrained(tiny_dir)))}
    assert params == {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.05,
                      "max_tokens": default_config["eval"]["max_new_tokens"], "seed": 0,
                      "logit_bias": banned}  # the four vision tokens the HF sampler bans
    request = llm.calls[0][0][0]
    assert request["prompt"].startswith("<|im_start|>system")
    assert "<|vision_start|><|video_pad|><|vision_end|>" in request["prompt"]
    assert "Which direction do the squares move?" in request["prompt"] and request["prompt"].endswith("assistant\n")
    [(frames, meta)] = request["multi_modal_data"]["video"]
    assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
    # TOMATO's 4 fps over a 2 s clip: 8 frames, and vLLM is told not to resample them
    assert frames.shape[0] == len(meta["frames_indices"]) == 8 and meta["total_num_frames"] == 16
    assert request["mm_processor_kwargs"] == {"fps": 4.0, "do_sample_frames": False}
    assert "image" not in request["multi_modal_data"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["num_tokens"] for p in lines] == [5, 7, 5, 5, 7] and [p["truncated"] for p in lines][:2] == [False, True]
    # the text is the completion's token ids decoded by our tokenizer, as the HF backend decodes
    assert lines[1]["response"] == AutoProcessor.from_pretrained(tiny_dir).tokenizer.decode(list(range(7)),
                                                                                          skip_special_tokens=True)
    assert info["generation"]["backend"] == "vllm" and info["generation"]["configured_backend"] == "auto"
    assert info["generation"]["engine"]["max_model_len"] == 4096
    assert info["media"]["fps"] == 4.0


def test_vllm_request_carries_the_inline_image(tmp_path, tiny_dir, default_config, mock_vllm):
    from veripo.eval.benchmarks import load_benchmark
    from veripo.eval.backends.vllm import VLLMBackend

    root = tmp_path / "bench"
    jsonio.write_json(root / "q.json", synthetic_benchmarks.write_benchmark("video_mmmu", str(root), 3, seed=1,
                                                                            size=64, fps=8, seconds=1.0))
    adaptation = load_benchmark("video_mmmu", root / "q.json")[2]
    backend = VLLMBackend(tiny_dir, job_settings(default_config, "video_mmmu"), str(root))
    request = backend.request(adaptation)
    assert request["multi_modal_data"]["image"].size == (64, 64)
    assert request["prompt"].index("<|video_pad|>") < request["prompt"].index("<|image_pad|>")


def test_vllm_backend_without_vllm_says_so(monkeypatch, tiny_dir, default_config):
    from veripo.eval.backends.vllm import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(RuntimeError, match="eval.backend is 'vllm' but vLLM does not import"):
        VLLMBackend(tiny_dir, job_settings(default_config, "vsi_bench"), "")
