"""Rollouts as artifacts: sampling a query's group, one record per completion, and the ids they join on.

Identity: a query is sampled once per epoch, so ``<query>#<i>`` repeats across the epochs of a stage
(and did: the pair builder once attached three epochs' verdicts to one rollout). A rollout's id is
``<query>@r<round>#<i>``, where rounds count across the stage's epochs; ``group_id``
(``<query>@r<round>``) names the G rollouts sampled together. Every reader of rollouts, verdicts or
pairs indexes them with ``veripo.jsonio.unique_index``, which stops at the first repeated id, naming file and line.

Tokens: ``completion_ids`` are the sampled ids, ending with the EOS the sampler drew, or without one
when the rollout was truncated at ``max_new_tokens``. DPO trains on these ids: decoding the text and
encoding it again need not give the same tokens, and must never add an EOS the model did not produce.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from veripo import rewards
from veripo.model.seeds import sampling_seed

from veripo.model import policy


def rollout_id(query_id: str, round_idx: int, i: int) -> str:
    return f"{query_id}@r{round_idx}#{i}"


def group_id(query_id: str, round_idx: int) -> str:
    return f"{query_id}@r{round_idx}"


@dataclass
class Sampling:
    """How a query's group is sampled and rewarded (GRPO rounds and the verifier's fresh pass)."""

    rollouts_per_query: int
    temperature: float
    top_p: float
    max_new_tokens: int
    format_weight: float

    @classmethod
    def of(cls, cfg) -> "Sampling":
        """The sampling fields of any config object or dict that has them."""
        get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
        return cls(**{f.name: get(f.name) for f in fields(cls)})


@dataclass
class Group:
    """One query's G rollouts, their rewards and (for training) their log-probs."""

    record: dict
    prompt: policy.EncodedPrompt
    rollouts: policy.Rollouts
    texts: list
    acc: list
    fmt: list
    adv: torch.Tensor
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None


def sample_group(model, processor, record: dict, s: Sampling, templates: dict, media_cfg: dict,
                 generator: torch.Generator) -> Group:
    prompt = policy.encode_query(processor, record, templates, media_cfg, None, source=record.get("_source"))
    ro = policy.sample(model, prompt, s.rollouts_per_query, s.max_new_tokens, s.temperature, s.top_p,
                       generator=generator, pad_id=processor.tokenizer.pad_token_id)
    texts = policy.decode(processor, ro)
    acc = [rewards.accuracy_reward(t, record) for t in texts]
    fmt = [rewards.format_reward(t, s.format_weight) for t in texts]
    return Group(record, prompt, ro, texts, acc, fmt, torch.zeros(len(texts)))


def sample_groups_vllm(sampler, processor, records: list[dict], s: Sampling, templates: dict, media_cfg: dict,
                       seeds: list[int]) -> list[Group]:
    """Every record's group sampled by a vLLM engine (veripo/model/vllm_rollouts.py) in one call; each
    prompt is decoded once, for vLLM and for the training forward alike."""
    items = [policy.query_inputs(processor, rec, templates, media_cfg, source=rec.get("_source")) for rec in records]
    ros = sampler.sample(items, s.rollouts_per_query, s.temperature, s.top_p, s.max_new_tokens, seeds,
                         processor.tokenizer.pad_token_id)
    groups = []
    for rec, (text, clip, image), ro in zip(records, items, ros):
        prompt = policy.encode(processor, text, clip, image)
        texts = policy.decode(processor, ro)
        groups.append(Group(rec, prompt, ro, texts, [rewards.accuracy_reward(t, rec) for t in texts],
                            [rewards.format_reward(t, s.format_weight) for t in texts], torch.zeros(len(texts))))
    return groups


def rollout_rows(group: Group, stage: str, iteration: int, round_idx: int, epoch: int, media_cfg: dict) -> list[dict]:
    rec = {k: v for k, v in group.record.items() if not k.startswith("_")}
    rows = []
    for i, text in enumerate(group.texts):
        ids = group.rollouts.tokens[i][group.rollouts.mask[i].bool()].tolist()
        rows.append({
            "rollout_id": rollout_id(rec["id"], round_idx, i), "group_id": group_id(rec["id"], round_idx),
            "query_id": rec["id"], "rollout": i, "stage": stage, "iteration": iteration, "epoch": epoch,
            "round": round_idx, "completion": text, "completion_ids": ids, "num_tokens": len(ids),
            "truncated": bool(group.rollouts.truncated[i]),
            "reward_accuracy": group.acc[i], "reward_format": group.fmt[i],
            "reward": group.acc[i] + group.fmt[i], "advantage": float(group.adv[i]),
            "media": {k: media_cfg[k] for k in ("fps", "max_frames", "min_pixels", "max_pixels")},
            "query": rec,
        })
    return rows


def group_advantages(rewards_: torch.Tensor, eps: float) -> torch.Tensor:
    """(Q, G) -> (Q, G): (r - mean) / (std + eps) within each query's group. All-equal groups give 0."""
    mean = rewards_.mean(1, keepdim=True)
    std = rewards_.std(1, keepdim=True, unbiased=True) if rewards_.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards_ - mean) / (std + eps)


def sample_fresh(model, processor, records: list[dict], s: Sampling, templates: dict, media_cfg: dict,
                 iteration: int, seed: int, progress=None) -> list[dict]:
    """The verifier's own sampling pass: G new rollouts per query from a finished checkpoint.

    Recorded as round 0 of stage ``fresh``, with the same fields (rewards and group advantages
    included) as a GRPO round's, so the verifier and the pair builder read either alike. Its sampler
    is seeded from ``seed``, the stage and the ``iteration`` (veripo/model/seeds.py)."""
    generator = torch.Generator(device=policy.model_device(model))
    generator.manual_seed(sampling_seed(seed, "fresh", iteration))
    model.eval()
    rows = []
    it = progress(records, desc="fresh rollouts") if progress else records
    for rec in it:
        g = sample_group(model, processor, rec, s, templates, media_cfg, generator)
        g.adv = group_advantages(torch.tensor([[a + f for a, f in zip(g.acc, g.fmt)]]), 1e-6)[0]
        rows.extend(rollout_rows(g, "fresh", iteration, 0, 0, media_cfg))
    return rows
