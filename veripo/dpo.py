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

from veripo import policy
from veripo.training import StepCheckpointer, build_optimizer, frozen_vision

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
def reference_logprobs(model, enc: PairEncoder, pairs: list[dict], progress=None) -> torch.Tensor:
    model.eval()
    out = []
    it = progress(pairs, desc="dpo reference") if progress else pairs
    for p in it:
        c, r, _ = summed_logprobs(model, enc, p)
        out.append(torch.stack([c, r]))
    return torch.stack(out) if out else torch.zeros(0, 2)


def train_dpo(model, processor, pairs: list[dict], cfg: DPOConfig, templates: dict, media_cfg: dict,
              checkpointer: StepCheckpointer | None = None, progress=None) -> list[dict]:
    if cfg.freeze_vision:
        frozen_vision(model)
    enc = PairEncoder(processor, templates, media_cfg)
    ref = reference_logprobs(model, enc, pairs, progress)
    opt = build_optimizer(model, cfg.lr, cfg.weight_decay)
    steps = []
    for epoch in range(cfg.epochs):
        order = list(range(len(pairs)))
        random.Random(cfg.seed + epoch).shuffle(order)
        steps += [order[s:s + cfg.global_batch] for s in range(0, len(order), cfg.global_batch)]
    state = {"round": 0, "metrics": []}
    generator = torch.Generator().manual_seed(cfg.seed)
    if checkpointer is not None:
        state = checkpointer.restore(model, opt, generator, state)
    bar = progress(total=len(steps), initial=state["round"], desc="dpo") if progress else None
    model.train()
    for s in range(state["round"], len(steps)):
        batch = steps[s]
        opt.zero_grad(set_to_none=True)
        losses, margins, accs = [], [], []
        for i in batch:
            pc, pr, n_chosen = summed_logprobs(model, enc, pairs[i])
            loss, margin = dpo_loss(pc, pr, ref[i, 0], ref[i, 1], cfg.beta)
            if cfg.nll_coef > 0:
                loss = loss - cfg.nll_coef * pc / n_chosen.clamp(min=1)
            (loss / len(batch)).backward()
            losses.append(float(loss))
            margins.append(float(margin))
            accs.append(float(margin > 0))
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        opt.step()
        m = {"step": s, "loss": sum(losses) / len(losses), "margin": sum(margins) / len(margins),
             "reward_accuracy": sum(accs) / len(accs), "grad_norm": float(grad_norm), "pairs": len(batch)}
        state["metrics"].append(m)
        state["round"] = s + 1
        log.info("dpo %s", m)
        if checkpointer is not None and (s + 1) % cfg.checkpoint_every == 0 and s + 1 < len(steps):
            checkpointer.save(model, opt, generator, state)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return state["metrics"]
