"""Group Relative Policy Optimisation, with the video (or image) in every forward.

Per round: ``rollout_batch`` queries, G rollouts each (vision encoded once per query); rewards =
format + accuracy; advantages normalised within each group; the old policy's log-probs are taken
once after sampling; then the rollouts are split into optimiser steps of ``global_batch`` sequences
with the clipped-ratio loss, optionally with a k3 KL penalty to a frozen reference.

Every log-prob in the ratio (old, new, reference) is taken at the sampling temperature: the rollouts
were drawn from softmax(logits / T), so that is the distribution whose ratio the clip bounds. (top_p is
not applied to them: its truncation moves with the weights and has no gradient.)

``train_grpo`` is the loop; ``run_job`` is the grpo_train job around it (load, resume, save, settings.json).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace

import torch

from veripo.data import queries
from veripo.errors import RolloutMismatchError
from veripo.jsonio import iter_jsonl, read_jsonl, unique_index, write_jsonl
from veripo.media import checks as media_check
from veripo.model import policy
from veripo.model.seeds import sampling_seed
from veripo.stage_config import GRPOConfig, GRPOJob, PromptSetup, RunContext, write_settings
from veripo.train import distributed, memory_plan
from veripo.train.checkpoints import StepCheckpointer, frozen_vision, media_digests, run_fingerprint, save_checkpoint
from veripo.train.engine import TrainEngine, job_zero_config, to_device
from veripo.train.tracking import Tracker, record
from veripo.model import backend, vllm_rollouts
from veripo.model.rollouts import (Group, Sampling, group_advantages, rollout_rows, sample_group,  # noqa: F401
                                   sample_groups_vllm)

log = logging.getLogger(__name__)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
              clip_eps: float, ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0):
    """Per-sequence token-mean of the clipped surrogate (minus the KL term); summed over sequences.

    logp/old_logp/ref_logp/mask: (n, T); adv: (n,). Returns (loss_sum, stats): the stats (``kl``,
    ``clip_frac``: summed over the sequences) are detached 0-d tensors on the loss's device, so a loop
    reads them once per optimiser step rather than waiting for the device after every micro-batch."""
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
    stats = {"kl": ((kl * m).sum(1) / tokens).sum().detach(), "clip_frac": ((clipped * m).sum(1) / tokens).sum()}
    return loss, stats


@dataclass(frozen=True)
class Round:
    """One round: ``records`` sampled together, G rollouts each, then trained on."""

    index: int  # counts across the stage's epochs; names the rollouts (<query>@r<index>#<i>)
    epoch: int
    records: list


def plan_rounds(records: list[dict], cfg: GRPOConfig) -> list[Round]:
    """Every round of the stage: each epoch a seeded shuffle of ``records``, cut into ``rollout_batch``."""
    rounds: list[Round] = []
    for epoch in range(cfg.epochs):
        order = list(range(len(records)))
        random.Random(cfg.seed + epoch).shuffle(order)
        for start in range(0, len(order), cfg.rollout_batch):
            rounds.append(Round(len(rounds), epoch, [records[i] for i in order[start:start + cfg.rollout_batch]]))
    return rounds


def train_grpo(model, processor, records: list[dict], cfg: GRPOConfig, prompts: PromptSetup, run: RunContext,
               on_rollouts, checkpointer: StepCheckpointer | None = None, progress=None, sampler=None,
               tracker: Tracker | None = None):
    """Run GRPO over ``records`` for ``cfg.epochs``; ``on_rollouts(rows)`` receives every round's
    rollouts (on rank 0), ``tracker`` each optimiser step's metrics row as it is made. Returns (engine,
    per-step metrics); ``engine.module`` is the trained model.
    ``sampler``: a veripo.model.vllm_rollouts.VLLMRollouts to sample with instead of our HF sampler.

    With several ranks each samples and trains on its share of every round's queries; DeepSpeed
    averages the gradients."""
    run = run if run.dist is not None else replace(run, dist=distributed.Dist(0, 1, 0))
    d = run.dist
    if cfg.rollout_batch % d.world:
        raise ValueError(f"grpo rollout_batch {cfg.rollout_batch} is not divisible by the world size {d.world}")
    if cfg.freeze_vision:
        frozen_vision(model)
    ref = None
    if cfg.kl_coef > 0:
        # a full frozen copy on the training device (under ZeRO-3 too: it is never partitioned)
        ref = copy.deepcopy(model).eval().requires_grad_(False).to(distributed.device())
    engine = TrainEngine.for_run(model, cfg, run)
    rounds = plan_rounds(records, cfg)
    state = {"round": 0, "metrics": []}
    generator = torch.Generator(device=policy.model_device(engine.module)).manual_seed(
        sampling_seed(cfg.seed, run.stage, run.iteration, "rank", d.rank))
    if checkpointer is not None:
        state = checkpointer.restore(engine, generator, state, d)
    bar = progress(total=len(rounds), initial=state["round"], desc=f"grpo {run.stage}") if progress and d.main else None
    for rnd in rounds[state["round"]:]:
        steps_before = len(state["metrics"])
        _grpo_round(engine, ref, processor, rnd, cfg, prompts, run, generator, on_rollouts,
                    lambda row: record(state["metrics"], row, tracker), sampler)
        metrics = state["metrics"][steps_before:]
        state["round"] = rnd.index + 1
        if checkpointer is not None and state["round"] % cfg.checkpoint_every == 0 and state["round"] < len(rounds):
            checkpointer.save(engine, generator, state, d)
        if bar:
            bar.update(1)
            bar.set_postfix(acc=f"{metrics[-1]['reward/accuracy']:.2f}" if metrics else "-")
    if bar:
        bar.close()
    return engine, state["metrics"]


def _grpo_round(engine, ref, processor, rnd: Round, cfg: GRPOConfig, prompts: PromptSetup, run: RunContext,
                generator: torch.Generator, on_rollouts, on_step, sampler=None) -> None:
    """One round: sample, then train; ``on_step(row)`` receives each optimiser step's metrics row."""
    t0 = time.perf_counter()
    d = run.dist
    model = engine.module
    model.eval()
    mine = distributed.shard(rnd.records, d)
    with engine.generation_parameters():
        if sampler is not None:
            sampler.sync(model)  # the weights of the last update (or of a restored checkpoint)
            seeds = [sampling_seed(cfg.seed, run.stage, run.iteration, "round", rnd.index, rec["id"]) for rec in mine]
            groups = sample_groups_vllm(sampler, processor, mine, Sampling.of(cfg), prompts.templates, prompts.media,
                                        seeds)
        else:
            groups = [sample_group(model, processor, rec, Sampling.of(cfg), prompts.templates, prompts.media,
                                   generator) for rec in mine]
    t_sample = time.perf_counter() - t0
    n_steps = max(1, math.ceil(len(rnd.records) * cfg.rollouts_per_query / cfg.global_batch))
    if groups:  # a rank can get no query in a round's last, short shard
        adv = group_advantages(torch.tensor([[a + f for a, f in zip(g.acc, g.fmt)] for g in groups]), cfg.adv_eps)
        for gi, g in enumerate(groups):
            g.adv = adv[gi]
    seqs = [(gi, i) for gi, g in enumerate(groups) for i in range(len(g.texts))]
    random.Random(cfg.seed * 7919 + rnd.index * 31 + d.rank).shuffle(seqs)
    chunks = [seqs[i * len(seqs) // n_steps:(i + 1) * len(seqs) // n_steps] for i in range(n_steps)]
    plan = plan_micro_batches(groups, chunks, cfg, policy.model_device(model))
    gaps = []
    with torch.no_grad(), engine.generation_parameters():
        # the old (and reference) log-probs in the update's own micro-batches: each lines up with its
        # forward there, already on the device
        for mb in (mb for step in plan for mb in step):
            g = groups[mb.group]
            # One optimiser step per round makes old == current: the ratio is exactly 1 then, and the old
            # log-probs are taken only to hold vLLM's against them.
            if n_steps > 1 or sampler is not None:
                old = policy.completion_logprobs(model, g.prompt, mb.tokens, mb.mask, cfg.temperature,
                                                 run.logprob_chunk)
                mb.old_logp = old if n_steps > 1 else None
                if sampler is not None:
                    gaps.append(_gap(g.rollouts.logprobs, mb, old))
            if ref is not None:
                mb.ref_logp = policy.completion_logprobs(ref, g.prompt, mb.tokens, mb.mask, cfg.temperature,
                                                         run.logprob_chunk)
    gap = logprob_gap(gaps) if sampler is not None else {}
    rows = [row for g in groups
            for row in rollout_rows(g, run.stage, run.iteration, rnd.index, rnd.epoch, prompts.media)]
    all_rows = [row for part in distributed.gather(rows) for row in part]
    if d.main:
        on_rollouts(all_rows)
    bound = cfg.max_logprob_gap()
    if gap and bound is not None and not gap["vllm/logprob_gap_max"] <= bound:
        raise RolloutMismatchError(
            f"grpo {run.stage} (iteration {run.iteration}), round {rnd.index}: vLLM's log-probs of the sampled "
            f"tokens differ from the trainer's by up to {gap['vllm/logprob_gap_max']:.4g} nats (mean "
            f"{gap['vllm/logprob_gap_mean']:.3g}), above grpo.vllm.max_logprob_gap {bound:g}: the engine did not "
            f"sample from the weights being trained (a failed weight sync, or its numerics; raise the bound or "
            f"set it null to go on)")

    model.train()
    accs = [r["reward_accuracy"] for r in all_rows]
    fmts = [r["reward_format"] for r in all_rows]
    lengths = [r["num_tokens"] for r in all_rows]
    idle = next((mb for step in plan for mb in step), None)
    for s, batches in enumerate(plan):
        # Lockstep: every rank runs as many micro-batches as the busiest one (ZeRO reduces inside each
        # backward, ZeRO-3 gathers inside each forward); the extra ones weigh 0. Each sequence weighs
        # world / (sequences in the step over all ranks): DeepSpeed averages over ranks, so the update is
        # the mean over the step's sequences wherever they were.
        sizes = distributed.gather((len(batches), len(chunks[s])))
        n_batches, n_seqs = max(b for b, _ in sizes), sum(n for _, n in sizes)
        weight = d.world / max(1, n_seqs)
        # loss, kl, clip_frac summed over this rank's sequences, on the device until the step is done
        sums = torch.zeros(3, device=policy.model_device(model))
        for b in range(n_batches):
            if b < len(batches):
                mb = batches[b]
                loss, st = _sequence_loss(engine, groups[mb.group].prompt, mb, cfg, run)
                engine.backward(loss * weight)
                sums += torch.stack([loss.detach(), st["kl"], st["clip_frac"]])
            else:
                engine.backward(_idle_loss(engine, processor, groups, idle, cfg, run))
        grad_norm = engine.step()
        loss_sum, kl_sum, clip_sum = sums.tolist()  # the step's one wait for the device
        forward_tokens = sum(mb.forward_tokens(groups[mb.group].prompt.length) for mb in batches)
        local = {"loss": loss_sum, "kl": kl_sum, "clip_frac": clip_sum, "n": len(chunks[s]),
                 "forwards": len(batches), "forward_tokens": forward_tokens}
        parts = distributed.gather(local)
        n = max(1, sum(p["n"] for p in parts))
        forwards = max(1, sum(p["forwards"] for p in parts))
        row = {
            "stage": run.stage, "iteration": run.iteration, "round": rnd.index, "step_in_round": s,
            "loss": sum(p["loss"] for p in parts) / n, "kl": sum(p["kl"] for p in parts) / n,
            "clip_frac": sum(p["clip_frac"] for p in parts) / n, "grad_norm": grad_norm,
            "micro_batches": n_batches,
            "tokens_per_micro_batch": sum(p["forward_tokens"] for p in parts) / forwards,
            "reward/accuracy": sum(accs) / len(accs), "reward/format": sum(fmts) / len(fmts),
            "response_length": sum(lengths) / len(lengths),
            "seconds/sample": t_sample, "seconds/round": time.perf_counter() - t0, **gap,
        }
        on_step(row)
        if d.main:
            log.info("grpo %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


def _gap(sampler_logprobs: torch.Tensor, mb: "MicroBatch", old: torch.Tensor) -> torch.Tensor:
    """(sum, count, max) of |the sampler's log-prob - the trainer's| over the micro-batch's sampled tokens,
    on the device (masked sums, not a boolean selection: no wait for the device)."""
    vllm = to_device(sampler_logprobs.cpu()[torch.tensor(mb.rows), :mb.tokens.shape[1]], old.device)
    m = mb.mask.to(old.dtype)
    diff = (vllm - old).abs() * m
    return torch.stack([diff.sum(), m.sum(), diff.max()])


def logprob_gap(gaps: list[torch.Tensor]) -> dict:
    """The round's ``vllm/logprob_gap_mean`` and ``vllm/logprob_gap_max``: |vLLM's log-prob - the
    trainer's| of the sampled tokens (``gaps``: this rank's (sum, count, max) per micro-batch), over every rank."""
    local = torch.stack(gaps).cpu() if gaps else torch.zeros(0, 3)
    parts = distributed.gather((float(local[:, 0].sum()), int(local[:, 1].sum()),
                                float(local[:, 2].max()) if len(local) else 0.0))
    n = sum(p[1] for p in parts)
    return {"vllm/logprob_gap_mean": sum(p[0] for p in parts) / max(1, n),
            "vllm/logprob_gap_max": max(p[2] for p in parts)}


def micro_batches(step: list[tuple[int, int]], micro: int, budget: int | None = None,
                  lengths: dict | None = None) -> list[tuple[int, list[int]]]:
    """A step's (group, rollout) sequences as micro-batches of one group each (a micro-batch shares its
    prompt and vision features): at most ``micro`` rollouts, and with a token ``budget`` no more than
    fit rollouts x (prompt + the longest completion among them) <= budget; a rollout over the budget
    alone gets a micro-batch of its own. ``lengths[group]``: (prompt tokens, completion tokens of each
    rollout). Under a budget a group's rollouts go longest first, so those padded together are alike.

    Rollouts of different queries never share a forward: their prompts and vision features differ, so
    one forward would pad every prompt to the longest (or need variable-length attention over packed
    rows), and under ZeRO-3 a forward must call the vision tower exactly once on every rank
    (``policy.lockstep``), which a forward of several prompts would not."""
    by_group: dict = {}
    for gi, i in step:
        by_group.setdefault(gi, []).append(i)
    out = []
    for gi, idx in by_group.items():
        if budget is not None:
            prompt, completion = lengths[gi]
            idx = sorted(idx, key=lambda i: -completion[i])
        batch: list[int] = []
        for i in idx:
            full = len(batch) == micro or (budget is not None and batch
                                           and (len(batch) + 1) * (prompt + completion[batch[0]]) > budget)
            if full:
                out.append((gi, batch))
                batch = []
            batch.append(i)
        if batch:
            out.append((gi, batch))
    return out


@dataclass
class MicroBatch:
    """One forward/backward of the update: rollouts ``rows`` of group ``group``, on the training device,
    cut to the longest completion among them."""

    group: int
    rows: list[int]
    tokens: torch.Tensor  # (n, L) completion ids
    mask: torch.Tensor  # (n, L)
    adv: torch.Tensor  # (n,)
    old_logp: torch.Tensor | None = None  # (n, L) when the round takes several optimiser steps
    ref_logp: torch.Tensor | None = None  # (n, L) with kl_coef > 0

    def forward_tokens(self, prompt_length: int) -> int:
        """Tokens the forward carries: each rollout's prompt and its (padded) completion."""
        n, L = self.tokens.shape
        return n * (prompt_length + L)


def plan_micro_batches(groups: list[Group], chunks: list[list[tuple[int, int]]], cfg: GRPOConfig,
                       device: torch.device) -> list[list[MicroBatch]]:
    """Each optimiser step's micro-batches (``micro_batches``), their tensors moved to ``device`` once
    for the round, without waiting for it."""
    cpu = [(g.rollouts.tokens.cpu(), g.rollouts.mask.cpu()) for g in groups]
    lengths = {gi: (g.prompt.length, mask.sum(1).tolist()) for gi, (g, (_, mask)) in enumerate(zip(groups, cpu))}
    plan = []
    for step in chunks:
        batches = []
        for gi, rows in micro_batches(step, cfg.micro_batch, cfg.micro_batch_tokens, lengths):
            idx, L = torch.tensor(rows), max(lengths[gi][1][i] for i in rows)
            tokens, mask = cpu[gi]
            batches.append(MicroBatch(gi, rows, to_device(tokens[idx, :L], device), to_device(mask[idx, :L], device),
                                      to_device(groups[gi].adv[idx].float(), device)))
        plan.append(batches)
    return plan


def _sequence_loss(engine: TrainEngine, prompt: policy.EncodedPrompt, mb: MicroBatch, cfg: GRPOConfig,
                   run: RunContext):
    """The summed clipped-surrogate loss of the micro-batch's rollouts (and its stats)."""
    logp = policy.completion_logprobs(engine.module, prompt, mb.tokens, mb.mask, cfg.temperature, run.logprob_chunk,
                                      forward=engine.forward)
    old = mb.old_logp if mb.old_logp is not None else logp.detach()
    return grpo_loss(logp, old, mb.adv, mb.mask, cfg.clip_eps, mb.ref_logp, cfg.kl_coef)


def _idle_loss(engine: TrainEngine, processor, groups: list[Group], idle: MicroBatch | None, cfg: GRPOConfig,
               run: RunContext) -> torch.Tensor:
    """A forward and backward that changes nothing: one of this rank's rollouts (``idle``, or, with none,
    a one-token text prompt) at weight 0, so the rank calls what the others call."""
    if idle is not None:
        prompt, toks, mask = groups[idle.group].prompt, idle.tokens[:1], idle.mask[:1]
    else:
        prompt = policy.encode(processor, processor.tokenizer.eos_token)
        toks = torch.tensor([[processor.tokenizer.pad_token_id]])
        mask = torch.ones_like(toks)
    return policy.completion_logprobs(engine.module, prompt, toks, mask, cfg.temperature, run.logprob_chunk,
                                      forward=engine.forward).sum() * 0


class RolloutLog:
    """The stage's rollouts, appended as each round is sampled, beside the step checkpoints.

    It is part of the resumable state: the StepCheckpointer it is given to as ``journal`` cuts it back
    to the newest usable checkpoint (empty when starting over), so it never holds a round the restored
    state has not seen. Rank 0 writes it."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._fh = None

    def open(self) -> None:
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, rows: list[dict]) -> None:
        for row in rows:
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def finish(self, out: str | os.PathLike) -> int:
        """Close the log and write it to ``out``; returns the number of rollouts."""
        self._fh.close()
        # a rollout logged twice (a resume that did not cut the log back) would count twice downstream
        unique_index(read_jsonl(self.path, required=("rollout_id",)), "rollout_id", self.path)
        return write_jsonl(out, iter_jsonl(self.path))


@dataclass(frozen=True)
class GRPOOutputs:
    """Where the grpo_train job writes."""

    model: str  # the trained checkpoint (Hugging Face directory)
    rollouts: str  # every rollout of the stage (JSONL)
    metrics: str  # one row per optimiser step (JSONL)
    settings: str  # the job's effective settings (JSON)


def run_job(model_path: str, data_path: str, job: GRPOJob, stage: str, iteration: int, out: GRPOOutputs,
            checkpoint_dir: str, progress=None, tracker: Tracker | None = None) -> list[dict]:
    """The grpo_train job, as one process or as every rank of a torchrun job (rank 0 writes): train
    from ``model_path`` on the queries at ``data_path``, resuming from ``checkpoint_dir`` when a step
    checkpoint of this very run is there; each step's metrics also go to ``tracker`` as training goes.
    Returns the per-step metrics."""
    d = distributed.init(job.train.engine)
    distributed.announce(d)
    torch.manual_seed(job.grpo.seed)
    prompts = PromptSetup.of(job)
    records = queries.load_queries(data_path, max_question_chars=job.max_question_chars)
    # every video decoded as training will, before the first round rather than when a round reaches it
    media_check.check_training_media(records, prompts.media)
    model, processor = policy.load_policy(model_path, job.dtype, job.attn_implementation)
    policy.configure_processor(processor, prompts.media)
    inputs = {"model": model_path, "data": data_path}
    # auto resolves here, once: the backend that ran goes to settings.json and the run's fingerprint (a
    # resume in an env that resolves otherwise would sample the rest of the stage differently)
    rollout_backend = backend.resolve_backend(job.grpo.rollout_backend)
    context = {"iteration": iteration, "stage": stage, "world_size": d.world, "rollout_backend": rollout_backend}
    # zero_config auto resolves here too (the memory plan of this job on these GPUs): a resume under
    # another ZeRO stage would not load the engine's checkpoint, so the JSON that runs is fingerprinted
    zero_config, zero = job_zero_config(
        job.train.engine, job.train.zero_config,
        lambda gpu: memory_plan.grpo_job_plan(model.config.to_dict(), asdict(job), d.world,
                                              model.config._attn_implementation, gpu, rollout_backend == "vllm"))
    context["zero_config"] = zero_config
    rollout_log = RolloutLog(os.path.join(checkpoint_dir, "rollouts.partial.jsonl"))
    # a checkpoint written from other data or settings is refused (see StepCheckpointer)
    # ... or from media replaced under the same data file
    media = media_digests(media_check.training_media_paths(records), d)
    ckpt = StepCheckpointer(checkpoint_dir, run_fingerprint(inputs, {**asdict(job), **context}, media),
                            journal=rollout_log.path)
    ckpt.latest_round(d)  # decides (and logs) the resume before the rollout log is opened
    if d.main:
        rollout_log.open()
    distributed.barrier()
    run = replace(RunContext.of(job, d, stage, iteration), zero_config=zero_config)
    if d.main and zero:
        log.info("grpo %s: DeepSpeed ZeRO-%d (%s)", stage, zero["stage"], zero.get("reason", zero["chosen_by"]))
    sampler = None
    if d.main:
        log.info("grpo %s: rollouts sampled by %s (grpo.rollout_backend %s)", stage,
                 "vLLM" if rollout_backend == "vllm" else "our HF sampler", job.grpo.rollout_backend)
    if rollout_backend == "vllm":
        sampler = vllm_rollouts.VLLMRollouts(model_path, job.dtype, prompts.media, job.grpo.engine_args(),
                                             sampling_seed(job.grpo.seed, stage, iteration, "engine"))
    engine, metrics = train_grpo(model, processor, records, job.grpo, prompts, run, rollout_log.append,
                                 checkpointer=ckpt, progress=progress, sampler=sampler, tracker=tracker)
    save_checkpoint(engine, processor, out.model, {"stage": f"grpo_{stage}", "iteration": iteration,
                                                   "from": model_path, "data": data_path, "world_size": d.world}, d)
    if d.main:
        rollout_log.finish(out.rollouts)
        write_jsonl(out.metrics, metrics)
        write_settings(out.settings, job, inputs, **context, zero=zero)
        ckpt.clear()
    return metrics


def summary_line(metrics: list[dict]) -> str:
    """The job's result in one line: rewards and response length, first step -> last and the mean."""
    if not metrics:
        return "no steps"

    def over_steps(key: str, fmt: str) -> str:
        values = [m[key] for m in metrics]
        return f"{key} {values[0]:{fmt}} -> {values[-1]:{fmt}} (mean {sum(values) / len(values):{fmt}})"

    return (f"{len(metrics)} steps, " + ", ".join(over_steps(k, f) for k, f in
            (("reward/accuracy", ".3f"), ("reward/format", ".3f"), ("response_length", ".1f"))))
