"""Direct Preference Optimisation on verifier pairs (sigmoid loss), the video in every forward.

The reference is the model entering the stage (the GRPO checkpoint): its summed log-probs of every
chosen and rejected response are computed once before the first update, so no second model is held.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from veripo import distributed, policy
from veripo.engine import TrainEngine
from veripo.training import StepCheckpointer, frozen_vision

log = logging.getLogger(__name__)


@dataclass
class DPOConfig:
    beta: float
    lr: float
    global_batch: int
    epochs: int
    nll_coef: float
    grad_clip: float
    freeze_vision: bool
    weight_decay: float
    seed: int
    checkpoint_every: int


def dpo_loss(pol_chosen: torch.Tensor, pol_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair loss -log sigmoid(beta * margin) and the margin (log-ratio difference)."""
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin), margin


class PairEncoder:
    """Tokenised pairs; a query's prompt (and its vision features) is encoded once for all its pairs."""

    def __init__(self, processor, templates: dict, media_cfg: dict):
        self.processor, self.templates, self.media_cfg = processor, templates, media_cfg
        self.prompts: dict = {}

    def prompt(self, pair: dict) -> policy.EncodedPrompt:
        qid = pair["query_id"]
        if qid not in self.prompts:
            self.prompts[qid] = policy.encode_query(self.processor, pair["query"], self.templates, self.media_cfg,
                                                    None, source=pair.get("_source"))
        return self.prompts[qid]

    def completions(self, pair: dict) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [policy.encode_completion(self.processor, pair["chosen"]),
                policy.encode_completion(self.processor, pair["rejected"])]
        return policy.pad_completions(seqs, self.processor.tokenizer.pad_token_id)


def summed_logprobs(model, enc: PairEncoder, pair: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed log-probs and the chosen token count."""
    toks, mask = enc.completions(pair)
    lp = policy.completion_logprobs(model, enc.prompt(pair), toks, mask) * mask
    s = lp.sum(1)
    return s[0], s[1], mask[0].sum()


@torch.no_grad()
def reference_logprobs(model, enc: PairEncoder, pairs: list[dict], indices: list[int], progress=None) -> dict:
    """{pair index: (chosen, rejected) summed log-probs} under the model as it enters the stage."""
    model.eval()
    out = {}
    it = progress(indices, desc="dpo reference") if progress else indices
    for i in it:
        c, r, _ = summed_logprobs(model, enc, pairs[i])
        out[i] = (c, r)
    return out


def _zero_loss(model) -> torch.Tensor:
    """A rank without a pair in a step still takes part in the gradient reduction."""
    return sum((p * 0).sum() for p in model.parameters() if p.requires_grad)


def train_dpo(model, processor, pairs: list[dict], cfg: DPOConfig, templates: dict, media_cfg: dict,
              checkpointer: StepCheckpointer | None = None, progress=None, engine_kind: str = "torch",
              zero_config: str | None = None, dtype: str = "float32", d: distributed.Dist | None = None):
    """Returns (engine, per-step metrics). Each step's pairs are split across the ranks."""
    d = d or distributed.Dist(0, 1, 0)
    if cfg.freeze_vision:
        frozen_vision(model)
    enc = PairEncoder(processor, templates, media_cfg)
    steps = []
    for epoch in range(cfg.epochs):
        order = list(range(len(pairs)))
        random.Random(cfg.seed + epoch).shuffle(order)
        steps += [order[s:s + cfg.global_batch] for s in range(0, len(order), cfg.global_batch)]
    mine = sorted({i for step in steps for i in distributed.shard(step, d)})
    ref = reference_logprobs(model, enc, pairs, mine, progress if d.main else None)
    engine = TrainEngine(model, cfg.lr, cfg.weight_decay, cfg.grad_clip, engine_kind, zero_config, dtype)
    model = engine.module
    state = {"round": 0, "metrics": []}
    generator = torch.Generator().manual_seed(cfg.seed)
    if checkpointer is not None:
        state = checkpointer.restore(engine, generator, state, d)
    bar = progress(total=len(steps), initial=state["round"], desc="dpo") if progress and d.main else None
    model.train()
    for s in range(state["round"], len(steps)):
        batch = distributed.shard(steps[s], d)
        losses, margins = [], []
        for i in batch:
            pc, pr, n_chosen = summed_logprobs(model, enc, pairs[i])
            loss, margin = dpo_loss(pc, pr, ref[i][0], ref[i][1], cfg.beta)
            if cfg.nll_coef > 0:
                loss = loss - cfg.nll_coef * pc / n_chosen.clamp(min=1)
            engine.backward(loss / len(batch))
            losses.append(float(loss.detach()))
            margins.append(float(margin.detach()))
        if not batch:
            engine.backward(_zero_loss(model))
        grad_norm = engine.step()
        parts = distributed.gather({"losses": losses, "margins": margins})
        losses = [x for p in parts for x in p["losses"]]
        margins = [x for p in parts for x in p["margins"]]
        m = {"step": s, "loss": sum(losses) / len(losses), "margin": sum(margins) / len(margins),
             "reward_accuracy": sum(x > 0 for x in margins) / len(margins), "grad_norm": grad_norm,
             "pairs": len(losses)}
        state["metrics"].append(m)
        state["round"] = s + 1
        if d.main:
            log.info("dpo %s", m)
        if checkpointer is not None and (s + 1) % cfg.checkpoint_every == 0 and s + 1 < len(steps):
            checkpointer.save(engine, generator, state, d)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return engine, state["metrics"]
