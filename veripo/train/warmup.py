"""Supervised warm-up: teach a random tiny base the <think>/<answer> format on synthetic traces.

A random tiny model never produces the format, so every GRPO reward would be 0 and nothing would
train; a real base (Qwen2.5-VL-7B) skips this stage. The traces are deliberately imperfect (a mix of
right, wrong, inconsistent and repetitive ones), so rollouts carry mixed rewards and the verifier
has right and wrong to tell apart.
"""
from __future__ import annotations

import random

import torch

from veripo.model import policy

from veripo.data import synthetic


def trace_kind(rng: random.Random, mix: dict) -> str:
    kinds, weights = zip(*sorted(mix.items()))
    return rng.choices(kinds, weights=weights)[0]


def train_sft(model, processor, records: list[dict], templates: dict, media_cfg: dict, steps: int,
              batch_size: int, lr: float, mix: dict, seed: int, progress=None) -> list[dict]:
    """``steps`` AdamW steps of completion-only NLL; a fresh trace per example per visit."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    prompts: dict = {}
    model.train()
    metrics = []
    bar = progress(total=steps, desc="warmup") if progress else None
    for step in range(steps):
        batch = [records[rng.randrange(len(records))] for _ in range(batch_size)]
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for rec in batch:
            if rec["id"] not in prompts:
                prompts[rec["id"]] = policy.encode_query(processor, rec, templates, media_cfg, None,
                                                         source=rec.get("_source"))
            text = synthetic.reasoning_trace(rec, trace_kind(rng, mix), rng)
            toks, mask = policy.pad_completions([policy.encode_completion(processor, text)],
                                                processor.tokenizer.pad_token_id)
            lp = policy.completion_logprobs(model, prompts[rec["id"]], toks, mask)
            loss = -(lp * mask).sum() / mask.sum()
            (loss / batch_size).backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        metrics.append({"step": step, "loss": total / batch_size})
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{total / batch_size:.3f}")
    if bar:
        bar.close()
    return metrics
