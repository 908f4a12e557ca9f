"""Direct Preference Optimisation on verifier pairs (sigmoid loss), the video in every forward.

The reference is the model entering the stage (the GRPO checkpoint): its summed log-probs of every
chosen and rejected response are computed once before the first update, so no second model is held.
Both sides are scored as the token ids the pair carries (the sampled ones for a rollout), never a
re-tokenisation of the text. A seeded share of the queries (``heldout_fraction``) is kept out of
training; their pairs measure whether the preference learned carries over to unseen pairs.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from veripo.errors import InputError
from veripo.jsonio import read_jsonl, require_token_ids, unique_index, write_json, write_jsonl
from veripo.media import checks as media_check
from veripo.model import policy
from veripo.stage_config import DPOConfig, DPOJob, PromptSetup, RunContext, write_settings
from veripo.train import distributed, memory_plan
from veripo.train.checkpoints import (StepCheckpointer, frozen_vision, media_digests, run_fingerprint, save_checkpoint,
                                      save_model)
from veripo.train.engine import TrainEngine, job_zero_config, to_device
from veripo.train.tracking import Tracker, record

log = logging.getLogger(__name__)

PAIR_FIELDS = ("pair_id", "query_id", "chosen", "rejected", "chosen_ids", "rejected_ids", "query")


def load_pairs(path: str) -> list[dict]:
    """The pairs of ``path`` (dpo_build_pairs' output): unique ids, and both sides as the non-empty,
    differing token ids DPO scores; otherwise an InputError naming the line and field."""
    pairs = read_jsonl(path, required=PAIR_FIELDS)
    unique_index(pairs, "pair_id", path)
    require_token_ids(pairs, ("chosen_ids", "rejected_ids"), path)
    for p in pairs:
        p["_source"] = f"{path}, line {p['_line']}"
        if p["chosen_ids"] == p["rejected_ids"]:
            raise InputError(path, "chosen and rejected are the same tokens", line=p["_line"], field="chosen_ids")
    return pairs


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

    def completions(self, pairs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """(2k, T) ids and mask of k pairs' sides: chosen, rejected, chosen, ..., padded to the longest."""
        seqs = [torch.tensor(p[side], dtype=torch.long) for p in pairs for side in ("chosen_ids", "rejected_ids")]
        return policy.pad_completions(seqs, self.processor.tokenizer.pad_token_id)

    def forward_tokens(self, pairs: list[dict]) -> int:
        """Tokens of one forward of ``pairs`` (one query's): both sides of each, prompt and the longest side."""
        side = max(len(p[k]) for p in pairs for k in ("chosen_ids", "rejected_ids"))
        return 2 * len(pairs) * (self.prompt(pairs[0]).length + side)


def pairs_logprobs(model, enc: PairEncoder, pairs: list[dict], chunk: int | None = None, forward=None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k,) chosen and rejected summed log-probs and chosen token counts of k pairs of one query, in one
    forward, on the model's device (``forward``: the training engine's, for a loss to backpropagate)."""
    dev = policy.model_device(model)
    toks, mask = (to_device(t, dev) for t in enc.completions(pairs))
    lp = policy.completion_logprobs(model, enc.prompt(pairs[0]), toks, mask, chunk=chunk, forward=forward)
    s = (lp * mask).sum(1).view(-1, 2)
    return s[:, 0], s[:, 1], mask.view(len(pairs), 2, -1)[:, 0].sum(1)


def summed_logprobs(model, enc: PairEncoder, pair: dict, chunk: int | None = None, forward=None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed log-probs and the chosen token count of one pair (``pairs_logprobs``)."""
    c, r, n = pairs_logprobs(model, enc, [pair], chunk, forward)
    return c[0], r[0], n[0]


def pack_pairs(pairs: list[dict], indices: list[int], enc: PairEncoder, budget: int | None) -> list[list[int]]:
    """``indices`` (a rank's share of a step) as the pairs of each forward: one pair each without a
    ``budget``; with one, the pairs of one query (they share the prompt and its vision features) while
    their forward holds at most ``budget`` tokens (``PairEncoder.forward_tokens``), longest first; a pair
    over the budget alone gets a forward of its own."""
    if budget is None:
        return [[i] for i in indices]
    by_query: dict = {}
    for i in indices:
        by_query.setdefault(pairs[i]["query_id"], []).append(i)
    out = []
    for idx in by_query.values():
        idx = sorted(idx, key=lambda i: -max(len(pairs[i]["chosen_ids"]), len(pairs[i]["rejected_ids"])))
        batch: list[int] = []
        for i in idx:
            if batch and enc.forward_tokens([pairs[j] for j in batch + [i]]) > budget:
                out.append(batch)
                batch = []
            batch.append(i)
        out.append(batch)
    return out


@torch.no_grad()
def reference_logprobs(model, enc: PairEncoder, pairs: list[dict], indices: list[int], progress=None,
                       chunk: int | None = None) -> dict:
    """{pair index: (chosen, rejected) summed log-probs} under the model as it enters the stage."""
    model.eval()
    out = {}
    it = progress(indices, desc="dpo reference") if progress else indices
    for i in it:
        c, r, _ = summed_logprobs(model, enc, pairs[i], chunk)
        out[i] = (c, r)
    return out


def split_heldout(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs): a seeded ``fraction`` of the queries, all their pairs held out,
    so no held-out pair shares a prompt with a trained one. At least one query stays in training."""
    queries = sorted({p["query_id"] for p in pairs})
    n = min(int(round(fraction * len(queries))), max(0, len(queries) - 1))
    held = set(random.Random(seed).sample(queries, n)) if n else set()
    return [p for p in pairs if p["query_id"] not in held], [p for p in pairs if p["query_id"] in held]


@torch.no_grad()
def heldout_report(model, enc: PairEncoder, heldout: list[dict], ref: dict, chunk: int | None = None) -> dict:
    """Chosen-over-rejected on held-out pairs, before (the reference) and after (``model``) training.

    ``logp_gap``: mean summed log-prob of chosen minus rejected; ``per_token``: the same with each side
    divided by its length (sides differ in length); ``chosen_preferred``: share of pairs with a positive
    gap; ``margin``: DPO's margin (the gap's change from the reference), 0 before by definition."""
    model.eval()
    before, after, per_tok_b, per_tok_a, margins = [], [], [], [], []
    for i, pair in enumerate(heldout):
        pc, pr, _ = summed_logprobs(model, enc, pair, chunk)
        rc, rr = ref[i]
        nc, nr = len(pair["chosen_ids"]), len(pair["rejected_ids"])
        before.append(float(rc - rr))
        after.append(float(pc - pr))
        per_tok_b.append(float(rc / nc - rr / nr))
        per_tok_a.append(float(pc / nc - pr / nr))
        margins.append(float((pc - rc) - (pr - rr)))

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    def share(xs):
        return round(sum(x > 0 for x in xs) / len(xs), 4) if xs else None

    return {"pairs": len(heldout), "queries": len({p["query_id"] for p in heldout}),
            "before": {"logp_gap": mean(before), "logp_gap_per_token": mean(per_tok_b), "chosen_preferred": share(before),
                       "margin": 0.0 if heldout else None},
            "after": {"logp_gap": mean(after), "logp_gap_per_token": mean(per_tok_a), "chosen_preferred": share(after),
                      "margin": mean(margins), "positive_margin_share": share(margins)}}


def train_dpo(model, processor, pairs: list[dict], cfg: DPOConfig, prompts: PromptSetup, run: RunContext,
              heldout: list[dict] | None = None, checkpointer: StepCheckpointer | None = None, progress=None,
              tracker: Tracker | None = None):
    """Returns (engine, per-step metrics, held-out report). Each step's pairs are split across the
    ranks; every rank scores all ``heldout`` pairs (a few), so ranks run the same forwards. Each step's
    metrics row goes to ``tracker`` as it is made."""
    d = run.dist or distributed.Dist(0, 1, 0)
    if cfg.freeze_vision:
        frozen_vision(model)
    enc = PairEncoder(processor, prompts.templates, prompts.media)
    steps = []
    for epoch in range(cfg.epochs):
        order = list(range(len(pairs)))
        random.Random(cfg.seed + epoch).shuffle(order)
        steps += [order[s:s + cfg.global_batch] for s in range(0, len(order), cfg.global_batch)]
    mine = sorted({i for step in steps for i in distributed.shard(step, d)})
    engine = TrainEngine.for_run(model, cfg, run)
    model = engine.module
    # the reference pass runs on the training device, the weights gathered once (ZeRO-3) for all of it
    with engine.generation_parameters():
        ref = reference_logprobs(model, enc, pairs, mine, progress if d.main else None, run.logprob_chunk)
        heldout = heldout or []
        ref_heldout = reference_logprobs(model, enc, heldout, list(range(len(heldout))), chunk=run.logprob_chunk)
    state = {"round": 0, "metrics": []}
    generator = torch.Generator().manual_seed(cfg.seed)  # nothing samples: kept for the checkpoint format
    if checkpointer is not None:
        state = checkpointer.restore(engine, generator, state, d)
    bar = progress(total=len(steps), initial=state["round"], desc=run.stage) if progress and d.main else None
    model.train()
    for s in range(state["round"], len(steps)):
        batch = distributed.shard(steps[s], d)
        forwards = pack_pairs(pairs, batch, enc, cfg.micro_batch_tokens)
        # Lockstep: a rank with fewer forwards in this step (the last step, more ranks than pairs, fewer
        # pairs sharing a query) runs as many forwards and backwards as the others, at weight 0. Each pair
        # weighs world / (pairs in the step): DeepSpeed averages over ranks, so the update is the mean
        # over the step's pairs.
        n_forwards = max(distributed.gather(len(forwards)))
        weight = d.world / len(steps[s])
        losses, margins = [], []  # per pair, on the device until the step is done
        for b in range(n_forwards):
            if b < len(forwards):
                idx = forwards[b]
                pc, pr, n_chosen = pairs_logprobs(model, enc, [pairs[i] for i in idx], run.logprob_chunk,
                                                  engine.forward)
                loss, margin = dpo_loss(pc, pr, torch.stack([ref[i][0] for i in idx]).to(pc.device),
                                        torch.stack([ref[i][1] for i in idx]).to(pc.device), cfg.beta)
                if cfg.nll_coef > 0:
                    loss = loss - cfg.nll_coef * pc / n_chosen.clamp(min=1)
                engine.backward(loss.sum() * weight)
                losses.append(loss.detach())
                margins.append(margin.detach())
            else:
                idle, _, _ = summed_logprobs(model, enc, pairs[steps[s][0]], run.logprob_chunk, engine.forward)
                engine.backward(idle * 0)
        grad_norm = engine.step()
        values = torch.cat(losses + margins).tolist() if losses else []  # the step's one wait for the device
        parts = distributed.gather({"losses": values[:len(values) // 2], "margins": values[len(values) // 2:],
                                    "forward_tokens": sum(enc.forward_tokens([pairs[i] for i in f]) for f in forwards),
                                    "forwards": len(forwards)})
        losses = [x for p in parts for x in p["losses"]]
        margins = [x for p in parts for x in p["margins"]]
        forward_tokens = sum(p["forward_tokens"] for p in parts)
        m = {"step": s, "loss": sum(losses) / len(losses), "margin": sum(margins) / len(margins),
             "positive_margin_share": sum(x > 0 for x in margins) / len(margins), "grad_norm": grad_norm,
             "pairs": len(losses), "forwards_per_rank": n_forwards,
             "tokens_per_micro_batch": forward_tokens / max(1, sum(p["forwards"] for p in parts))}
        record(state["metrics"], m, tracker)
        state["round"] = s + 1
        if d.main:
            log.info("dpo %s", m)
        if checkpointer is not None and (s + 1) % cfg.checkpoint_every == 0 and s + 1 < len(steps):
            checkpointer.save(engine, generator, state, d)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    with engine.generation_parameters():
        report = heldout_report(engine.module, enc, heldout, ref_heldout, run.logprob_chunk)
    return engine, state["metrics"], report


@dataclass(frozen=True)
class DPOOutputs:
    """Where the dpo_train job writes."""

    model: str  # the trained checkpoint (the entering model, re-saved, when there are no pairs)
    metrics: str  # one row per optimiser step (JSONL)
    heldout: str  # chosen over rejected on held-out pairs, before and after (JSON)
    settings: str  # the job's effective settings (JSON)


def run_job(model_path: str, pairs_path: str, job: DPOJob, out: DPOOutputs, checkpoint_dir: str,
            progress=None, tracker: Tracker | None = None) -> tuple[dict, list[dict]]:
    """The dpo_train job, as one process or as every rank of a torchrun job (rank 0 writes): DPO from
    ``model_path`` on the pairs at ``pairs_path``, resuming from ``checkpoint_dir`` when a step
    checkpoint of this very run is there. No pairs: the entering model is saved unchanged. Each step's
    metrics also go to ``tracker`` as training goes. Returns the held-out report and the per-step metrics."""
    d = distributed.init(job.train.engine)
    distributed.announce(d)
    torch.manual_seed(job.dpo.seed)
    pairs = load_pairs(pairs_path)
    prompts = PromptSetup.of(job)
    model, processor = policy.load_policy(model_path, job.dtype, job.attn_implementation)
    policy.configure_processor(processor, prompts.media)
    inputs = {"model": model_path, "pairs": pairs_path}
    # zero_config auto: the memory plan of this job (its longest pair side) on these GPUs picks the stage;
    # the JSON that runs is fingerprinted (another ZeRO stage would not load the engine's checkpoint)
    longest = max((len(p[k]) for p in pairs for k in ("chosen_ids", "rejected_ids")), default=1)
    zero_config, zero = job_zero_config(
        job.train.engine, job.train.zero_config,
        lambda gpu: memory_plan.dpo_job_plan(model.config.to_dict(), asdict(job), d.world,
                                             model.config._attn_implementation, longest))
    context = {"world_size": d.world, "zero_config": zero_config}
    # the pairs' queries name videos: one replaced under the same pairs file is another run
    queried = [p["query"] for p in pairs if isinstance(p["query"], dict)]
    media = media_digests(media_check.training_media_paths(queried), d)
    ckpt = StepCheckpointer(checkpoint_dir, run_fingerprint(inputs, {**asdict(job), **context}, media))
    train, heldout = split_heldout(pairs, job.dpo.heldout_fraction, job.dpo.seed)
    extra = {"stage": "dpo", "from": model_path, "pairs": len(pairs), "world_size": d.world}
    if pairs:
        log.info("%d pairs train, %d held out", len(train), len(heldout))
        if d.main and zero:
            log.info("dpo: DeepSpeed ZeRO-%d (%s)", zero["stage"], zero.get("reason", zero["chosen_by"]))
        run = replace(RunContext.of(job, d, "dpo"), zero_config=zero_config)
        engine, metrics, report = train_dpo(model, processor, train, job.dpo, prompts, run, heldout,
                                            checkpointer=ckpt, progress=progress, tracker=tracker)
        save_checkpoint(engine, processor, out.model, extra, d)
    else:
        log.info("no pairs: the DPO model is the GRPO model unchanged")
        metrics, report = [], heldout_report(model, None, [], {})
        save_model(model, processor, out.model, extra, d)
    if d.main:
        write_jsonl(out.metrics, metrics)
        write_json(out.heldout, report)
        write_settings(out.settings, job, inputs, **context, zero=zero)
        ckpt.clear()
    return report, metrics


def summary_line(report: dict, metrics: list[dict]) -> str:
    """The job's result in one line: steps, loss and margin over training, the held-out pairs."""
    if not metrics:
        return "no pairs: the GRPO model, unchanged"
    pairs = sum(m["pairs"] for m in metrics)
    line = (f"{len(metrics)} steps on {pairs} pairs, loss {metrics[0]['loss']:.3f} -> {metrics[-1]['loss']:.3f}, "
            f"margin {metrics[-1]['margin']:+.2f}")
    if report["pairs"]:
        line += (f"; {report['pairs']} held-out pairs: chosen preferred {report['before']['chosen_preferred']:.0%} -> "
                 f"{report['after']['chosen_preferred']:.0%}, margin {report['after']['margin']:+.2f}")
    return line


