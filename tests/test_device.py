"""Device-correctness without a GPU: the GRPO step, the sampler, the DPO step and evaluation generation
run with the model on a pretended CUDA device (tests/fake_device.py), where any tensor our code leaves
on the CPU, or a CPU generator sampling device tensors, raises as it would on a GPU."""
import pytest
import torch

from fake_device import DEVICE, DeviceMismatch, OnDevice, fake_cuda, on_device
from veripo.model import batch_generate, policy
from veripo.model.rollouts import Sampling, sample_group


def _prompt(processor, rec, templates, media):
    return policy.encode_query(processor, rec, templates, media, None)


def test_the_harness_catches_a_cpu_tensor(monkeypatch):
    with fake_cuda(monkeypatch):
        x = torch.ones(3, device="cuda")
        assert isinstance(x, OnDevice) and x.device == DEVICE
        with pytest.raises(DeviceMismatch):
            x + torch.arange(3)
        with pytest.raises(DeviceMismatch):
            torch.multinomial(torch.ones(2, 3, device="cuda"), 1, generator=torch.Generator())
        torch.multinomial(torch.ones(2, 3, device="cuda"), 1, generator=torch.Generator(device="cuda"))
        assert not isinstance(x.cpu(), OnDevice)


@pytest.fixture()
def eager_policy(tiny_dir, media):
    """The tiny policy with eager attention: SDPA picks CUDA kernels by the (pretended) device."""
    model, processor = policy.load_policy(tiny_dir, attn_implementation="eager")
    policy.configure_processor(processor, media)
    return model, processor


def test_sampler_and_logprobs_on_device(monkeypatch, eager_policy, video_set, templates, media):
    model, processor = eager_policy
    prompt = _prompt(processor, video_set[0], templates, media)
    with fake_cuda(monkeypatch) as dev:
        on_device(model)
        gen = torch.Generator(device=dev).manual_seed(0)
        ro = policy.sample(model, prompt, 3, 6, temperature=1.0, generator=gen,
                           pad_id=processor.tokenizer.pad_token_id)
        lp = policy.completion_logprobs(model, prompt, ro.tokens, ro.mask, 1.0)
        assert lp.device == DEVICE


def _grpo_cfg(**kw):
    from veripo.train import grpo

    cfg = dict(rollouts_per_query=2, temperature=1.0, top_p=1.0, max_new_tokens=6, clip_eps=0.2, kl_coef=0.1,
               lr=1e-3, global_batch=2, rollout_batch=2, micro_batch=1, epochs=1, grad_clip=1.0, format_weight=0.5,
               adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100)
    cfg.update(kw)
    return grpo.GRPOConfig(**cfg)


def test_grpo_step_on_device(monkeypatch, eager_policy, video_set, templates, media):
    """Sampling, old/reference log-probs, advantages and the update of a GRPO round (two optimiser
    steps, a reference model for the KL term, log-probs in chunks) with the torch engine, which moves
    the model to the GPU it finds."""
    from veripo.stage_config import PromptSetup, RunContext
    from veripo.train import grpo

    model, processor = eager_policy
    rows = []
    with fake_cuda(monkeypatch):
        run = RunContext(stage="video", iteration=1, engine="torch", logprob_chunk=2, gradient_checkpointing=True)
        engine, metrics = grpo.train_grpo(model, processor, video_set[:2], _grpo_cfg(), PromptSetup(templates, media),
                                          run, rows.extend)
        assert isinstance(engine.module.lm_head.weight, OnDevice)
        assert all(isinstance(p, OnDevice) for p in engine.module.parameters())
    assert len(rows) == 4 and len(metrics) == 2
    assert all(m["grad_norm"] == m["grad_norm"] for m in metrics)  # finite: the update ran on the device


def test_dpo_step_on_device(monkeypatch, eager_policy, video_set, templates, media):
    """The reference pass, the DPO updates and the held-out report, on the training device."""
    from veripo.stage_config import PromptSetup, RunContext
    from veripo.train import dpo

    model, processor = eager_policy
    pairs = []
    for i, rec in enumerate(video_set[:2]):
        rec = {k: v for k, v in rec.items() if not k.startswith("_")}
        a = policy.encode_completion(processor, f"<think>it is {rec['answer']}</think><answer>{rec['answer']}</answer>")
        b = policy.encode_completion(processor, "<think>no idea</think><answer>Z</answer>")
        pairs.append({"pair_id": f"p{i}", "query_id": rec["id"], "query": rec, "chosen_ids": a.tolist(),
                      "rejected_ids": b.tolist()})
    cfg = dpo.DPOConfig(beta=0.1, lr=1e-3, global_batch=2, epochs=1, nll_coef=0.1, grad_clip=1.0, freeze_vision=True,
                        weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1,
                        on_too_few_pairs="stop")
    with fake_cuda(monkeypatch):
        engine, metrics, report = dpo.train_dpo(model, processor, pairs, cfg, PromptSetup(templates, media),
                                                RunContext(stage="dpo", engine="torch", logprob_chunk=3),
                                                heldout=[pairs[0]])
        assert isinstance(engine.module.lm_head.weight, OnDevice)
    assert len(metrics) == 1 and metrics[0]["pairs"] == 2 and report["pairs"] == 1


def test_eval_generation_on_device(monkeypatch, eager_policy, tmp_path, video_set, templates, media):
    """The HF evaluation backend: batched prompts, vision, positions and the decoding loop on the GPU."""
    from veripo.eval.backends.hf import HFBackend
    from veripo.model import batch_generate

    # loaded before the device is pretended (loading itself is transformers' business)
    monkeypatch.setattr(policy, "load_policy", lambda *a, **k: eager_policy)
    settings = {"dtype": "float32", "attn_implementation": "eager", "media": media, "prompts": templates,
                "generation": {"max_new_tokens": 5, "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.05}}
    with fake_cuda(monkeypatch):
        backend = HFBackend("unused", settings, str(tmp_path))
        assert backend.device == "cuda" and isinstance(backend.model.lm_head.weight, OnDevice)
        prompts = [_prompt(backend.processor, rec, templates, media) for rec in video_set[:3]]
        ro = batch_generate.generate(backend.model, prompts, 5, temperature=1.0, top_p=0.9, repetition_penalty=1.05,
                                     generator=backend.generator, pad_id=backend.processor.tokenizer.pad_token_id)
    assert ro.tokens.shape[0] == 3 and not isinstance(ro.tokens, OnDevice)
