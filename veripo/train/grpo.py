"""Group Relative Policy Optimisation, with the video (or image) in every forward.

Per round: ``rollout_batch`` queries, G rollouts each (vision encoded once per query); rewards =
format + accuracy; advantages normalised within each group; the old policy's log-probs are taken
once after sampling; then the rollouts are split into optimiser steps of ``global_batch`` sequences
with the clipped-ratio loss, optionally with a k3 KL penalty to a frozen reference.

Every log-prob in the ratio (old, new, reference) is taken at the sampling temperature: the rollouts
were drawn from softmax(logits / T), so that is the distribution whose ratio the clip bounds. (top_p is
not applied to them: its truncation moves with the weights and has no gradient.)
"""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass

import torch

from veripo.train import distributed

from veripo.model import policy
from veripo.train.engine import TrainEngine
from veripo.train.rollouts import Group, Sampling, group_advantages, rollout_rows, sample_group  # noqa: F401
from veripo.train.checkpoints import StepCheckpointer, frozen_vision

log = logging.getLogger(__name__)


@dataclass
class GRPOConfig:
    rollouts_per_query: int
    temperature: float
    top_p: float
    max_new_tokens: int
    clip_eps: float
    kl_coef: float
    lr: float
    global_batch: int
    rollout_batch: int
    micro_batch: int
    epochs: int
    grad_clip: float
    format_weight: float
    adv_eps: float
    freeze_vision: bool
    weight_decay: float
    seed: int
    checkpoint_every: int


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
              clip_eps: float, ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0):
    """Per-sequence token-mean of the clipped surrogate (minus the KL term); summed over sequences.

    logp/old_logp/ref_logp/mask: (n, T); adv: (n,). Returns (loss_sum, stats)."""
    m = mask.float()
    ratio = torch.exp(logp - old_logp)
    a = adv.unsqueeze(1)
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    per_tok = -surrogate
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_coef > 0:
        diff = ref_logp - logp
        kl = torch.exp(diff) - diff - 1  # k3 estimator: unbiased, non-negative
        per_tok = per_tok + kl_coef * kl
    tokens = m.sum(1).clamp(min=1)
    loss = ((per_tok * m).sum(1) / tokens).sum()
    clipped = ((ratio - 1).abs() > clip_eps).float()
    stats = {"kl": float(((kl * m).sum(1) / tokens).sum()), "clip_frac": float(((clipped * m).sum(1) / tokens).sum())}
    return loss, stats


def train_grpo(model, processor, records: list[dict], cfg: GRPOConfig, templates: dict, media_cfg: dict,
               stage: str, iteration: int, on_rollouts, checkpointer: StepCheckpointer | None = None,
               progress=None, engine_kind: str = "torch", zero_config: str | None = None, dtype: str = "float32",
               d: distributed.Dist | None = None):
    """Run GRPO over ``records`` for ``cfg.epochs``; ``on_rollouts(rows)`` receives every round's
    rollouts (on rank 0). Returns (engine, per-step metrics); ``engine.module`` is the trained model.

    With several ranks each samples and trains on its share of every round's queries; DeepSpeed
    averages the gradients."""
    d = d or distributed.Dist(0, 1, 0)
    if cfg.rollout_batch % d.world:
        raise ValueError(f"grpo rollout_batch {cfg.rollout_batch} is not divisible by the world size {d.world}")
    if cfg.freeze_vision:
        frozen_vision(model)
    ref = None
    if cfg.kl_coef > 0:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    engine = TrainEngine(model, cfg.lr, cfg.weight_decay, cfg.grad_clip, engine_kind, zero_config, dtype)
    rounds, epochs = [], []
    for epoch in range(cfg.epochs):
        order = list(range(len(records)))
        random.Random(cfg.seed + epoch).shuffle(order)
        for start in range(0, len(order), cfg.rollout_batch):
            rounds.append([records[i] for i in order[start:start + cfg.rollout_batch]])
            epochs.append(epoch)
    state = {"round": 0, "metrics": []}
    generator = torch.Generator().manual_seed(cfg.seed + 1000 * d.rank)
    if checkpointer is not None:
        state = checkpointer.restore(engine, generator, state, d)
    bar = progress(total=len(rounds), initial=state["round"], desc=f"grpo {stage}") if progress and d.main else None
    for r in range(state["round"], len(rounds)):
        metrics = _grpo_round(engine, ref, processor, rounds[r], cfg, templates, media_cfg, stage,
                              iteration, r, epochs[r], generator, on_rollouts, d)
        state["metrics"].extend(metrics)
        state["round"] = r + 1
        if checkpointer is not None and (r + 1) % cfg.checkpoint_every == 0 and r + 1 < len(rounds):
            checkpointer.save(engine, generator, state, d)
        if bar:
            bar.update(1)
            bar.set_postfix(acc=f"{metrics[-1]['reward/accuracy']:.2f}" if metrics else "-")
    if bar:
        bar.close()
    return engine, state["metrics"]


def _grpo_round(engine, ref, processor, batch, cfg: GRPOConfig, templates, media_cfg, stage, iteration,
                round_idx, epoch, generator, on_rollouts, d: distributed.Dist) -> list[dict]:
    t0 = time.perf_counter()
    model = engine.module
    model.eval()
    with engine.full_parameters():
        groups = [sample_group(model, processor, rec, Sampling.of(cfg), templates, media_cfg, generator)
                  for rec in distributed.shard(batch, d)]
    t_sample = time.perf_counter() - t0
    rew = torch.tensor([[a + f for a, f in zip(g.acc, g.fmt)] for g in groups])
    adv = group_advantages(rew, cfg.adv_eps)
    n_steps = max(1, math.ceil(len(batch) * cfg.rollouts_per_query / cfg.global_batch))
    with torch.no_grad(), engine.full_parameters():
        for g, a in zip(groups, adv):
            g.adv = a
            # One optimiser step per round makes old == current: the ratio is exactly 1 then.
            if n_steps > 1:
                g.old_logp = _chunked_logprobs(model, g, cfg.micro_batch, cfg.temperature)
            if ref is not None:
                g.ref_logp = _chunked_logprobs(ref, g, cfg.micro_batch, cfg.temperature)
    rows = [row for g in groups for row in rollout_rows(g, stage, iteration, round_idx, epoch, media_cfg)]
    all_rows = [row for part in distributed.gather(rows) for row in part]
    if d.main:
        on_rollouts(all_rows)

    model.train()
    seqs = [(gi, i) for gi, g in enumerate(groups) for i in range(len(g.texts))]
    random.Random(cfg.seed * 7919 + round_idx * 31 + d.rank).shuffle(seqs)
    chunks = [seqs[i * len(seqs) // n_steps:(i + 1) * len(seqs) // n_steps] for i in range(n_steps)]
    accs = [r["reward_accuracy"] for r in all_rows]
    fmts = [r["reward_format"] for r in all_rows]
    lengths = [r["num_tokens"] for r in all_rows]
    metrics = []
    for s, step in enumerate(chunks):
        total, stats = 0.0, {"kl": 0.0, "clip_frac": 0.0}
        by_group: dict = {}
        for gi, i in step:
            by_group.setdefault(gi, []).append(i)
        for gi, idx in by_group.items():
            g = groups[gi]
            for c in range(0, len(idx), cfg.micro_batch):
                rows_ = torch.tensor(idx[c:c + cfg.micro_batch])
                toks, mask = g.rollouts.tokens[rows_], g.rollouts.mask[rows_]
                logp = policy.completion_logprobs(model, g.prompt, toks, mask, cfg.temperature)
                old = g.old_logp[rows_] if g.old_logp is not None else logp.detach()
                refl = g.ref_logp[rows_] if g.ref_logp is not None else None
                loss, st = grpo_loss(logp, old, g.adv[rows_], mask, cfg.clip_eps, refl, cfg.kl_coef)
                engine.backward(loss / max(1, len(step)))
                total += float(loss.detach())
                for k in stats:
                    stats[k] += st[k]
        grad_norm = engine.step()
        local = {"loss": total, "kl": stats["kl"], "clip_frac": stats["clip_frac"], "n": len(step)}
        parts = distributed.gather(local)
        n = max(1, sum(p["n"] for p in parts))
        metrics.append({
            "stage": stage, "iteration": iteration, "round": round_idx, "step_in_round": s,
            "loss": sum(p["loss"] for p in parts) / n, "kl": sum(p["kl"] for p in parts) / n,
            "clip_frac": sum(p["clip_frac"] for p in parts) / n, "grad_norm": grad_norm,
            "reward/accuracy": sum(accs) / len(accs), "reward/format": sum(fmts) / len(fmts),
            "response_length": sum(lengths) / len(lengths),
            "seconds/sample": t_sample, "seconds/round": time.perf_counter() - t0,
        })
        if d.main:
            log.info("grpo %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics[-1].items()})
    return metrics


def _chunked_logprobs(model, g: Group, micro: int, temperature: float) -> torch.Tensor:
    parts = []
    for c in range(0, g.rollouts.tokens.shape[0], micro):
        parts.append(policy.completion_logprobs(model, g.prompt, g.rollouts.tokens[c:c + micro],
                                                g.rollouts.mask[c:c + micro], temperature))
    return torch.cat(parts)
