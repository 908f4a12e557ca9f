"""Supervised warm-up: teach a random tiny base the <think>/<answer> format on synthetic traces.

A random tiny model never produces the format, so every GRPO reward would be 0 and nothing would
train; a real base (Qwen2.5-VL-7B) skips this stage. The traces are deliberately imperfect (a mix of
right, wrong, inconsistent and repetitive ones), so rollouts carry mixed rewards and the verifier
has right and wrong to tell apart.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from veripo.data import queries, synthetic
from veripo.jsonio import write_jsonl
from veripo.model import batch_generate, policy
from veripo.stage_config import PromptSetup, WarmupConfig, WarmupJob, write_settings
from veripo.train.checkpoints import save_model
from veripo.train.tracking import Tracker, record


def trace_kind(rng: random.Random, mix: dict) -> str:
    kinds, weights = zip(*sorted(mix.items()))
    return rng.choices(kinds, weights=weights)[0]


def train_warmup(model, processor, records: list[dict], cfg: WarmupConfig, prompts: PromptSetup,
                 progress=None, tracker: Tracker | None = None) -> list[dict]:
    """``cfg.steps`` AdamW steps of completion-only NLL; a fresh trace per example per visit. Each step's
    metrics row goes to ``tracker`` as it is made."""
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    encoded: dict = {}
    model.train()
    metrics = []
    bar = progress(total=cfg.steps, desc="warmup") if progress else None
    for step in range(cfg.steps):
        batch = [records[rng.randrange(len(records))] for _ in range(cfg.batch_size)]
        opt.zero_grad(set_to_none=True)
        for rec in batch:
            if rec["id"] not in encoded:
                encoded[rec["id"]] = policy.encode_query(processor, rec, prompts.templates, prompts.media, None,
                                                         source=rec.get("_source"))
        texts = [synthetic.reasoning_trace(rec, trace_kind(rng, cfg.trace_mix), rng) for rec in batch]
        # The whole batch in one forward: at tiny size a step is mostly per-forward overhead.
        lp, mask = batch_generate.completion_logprobs(
            model, [encoded[rec["id"]] for rec in batch], [policy.encode_completion(processor, t) for t in texts],
            processor.tokenizer.pad_token_id)
        loss = (-(lp * mask).sum(1) / mask.sum(1)).mean()  # mean over traces of each trace's mean NLL
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        record(metrics, {"step": step, "loss": loss.item()}, tracker)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics[-1]['loss']:.3f}")
    if bar:
        bar.close()
    return metrics


@dataclass(frozen=True)
class WarmupOutputs:
    """Where the base_warmup job writes."""

    model: str  # the warmed-up base (Hugging Face directory)
    metrics: str  # one row per step (JSONL)
    settings: str  # the job's effective settings (JSON)


def run_job(model_path: str, data_path: str, job: WarmupJob, out: WarmupOutputs, progress=None,
            tracker: Tracker | None = None) -> list[dict]:
    """The base_warmup job (one process): warm up ``model_path`` on the queries at ``data_path``; each
    step's metrics also go to ``tracker`` as training goes."""
    torch.manual_seed(job.warmup.seed)
    prompts = PromptSetup.of(job)
    records = queries.load_queries(data_path, max_question_chars=job.max_question_chars)
    model, processor = policy.load_policy(model_path, job.dtype, job.attn_implementation)
    policy.configure_processor(processor, prompts.media)
    metrics = train_warmup(model, processor, records, job.warmup, prompts, progress=progress, tracker=tracker)
    save_model(model, processor, out.model, {"stage": "warmup", "from": model_path, "steps": job.warmup.steps})
    write_jsonl(out.metrics, metrics)
    write_settings(out.settings, job, {"model": model_path, "data": data_path}, world_size=1)
    return metrics
