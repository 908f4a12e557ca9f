"""What makes the GRPO and DPO update fast on a GPU, measured where there is none (issue 19, item 3):

- host syncs: a training loop that reads a device value (``float(loss)``, ``.tolist()``, ``bool(t)``, a
  boolean selection) makes the CPU wait until the GPU has run everything queued, so the GPU idles while
  the next micro-batch's kernels are launched. Counted here with a dispatch mode and a function mode
  around the loops on the torch engine: none per micro-batch, one per optimiser step of our own;
- the packer: forwards sized by tokens carry at least half the budget on average where the data allows,
  and never more than it unless one sequence alone is over it.

The figures these tests assert are printed by ``python tests/test_update_speed.py``.
"""
from __future__ import annotations

import collections
import random
import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from veripo.stage_config import DPOConfig, GRPOConfig, PromptSetup, RunContext
from veripo.train import dpo, grpo
from veripo.train.engine import TrainEngine

# ops whose result the host must wait for: a value read back, or an output whose size depends on values
DATA_DEPENDENT = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
                  torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default,
                  torch.ops.aten.equal.default, torch.ops.aten._unique2.default,
                  torch.ops.aten.unique_consecutive.default}
READS = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__,
         torch.Tensor.__bool__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu}


def _caller() -> str:
    """Who asked: ours (veripo), the engine's step, the optimiser, the model (transformers) or torch."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename
        if "/torch/optim/" in f:
            return "optimizer"
        if "/transformers/" in f:
            return "model"
        if "/veripo/train/engine.py" in f:
            return "engine"
        if "/veripo/" in f:
            return f"ours {f.split('/veripo/')[1]}:{frame.lineno}"
    return "torch"


class HostSyncs:
    """Host syncs by phase of the update: ``micro`` (from a step's first forward to its engine.step),
    ``step`` (inside engine.step) and ``between`` (after engine.step, before the next step's first
    forward), counted only while the trained model is in train mode (the update, not sampling or scoring)."""

    def __init__(self, monkeypatch, model):
        self.phase, self.on = "between", False
        self.counts: dict = collections.defaultdict(collections.Counter)
        self.forwards = self.steps = 0
        forward, step, train = TrainEngine.forward, TrainEngine.step, type(model).train
        me = self

        def counted_forward(engine, *a, **kw):
            me.phase = "micro"
            me.forwards += 1
            return forward(engine, *a, **kw)

        def counted_step(engine):
            me.phase = "step"
            me.steps += 1
            try:
                return step(engine)
            finally:
                me.phase = "between"

        def marked_train(module, mode: bool = True):
            if module is model:
                me.on = bool(mode)
            return train(module, mode)

        monkeypatch.setattr(TrainEngine, "forward", counted_forward)
        monkeypatch.setattr(TrainEngine, "step", counted_step)
        monkeypatch.setattr(type(model), "train", marked_train)

        class Reads(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func in READS and me.on:
                    me.counts[me.phase][_caller()] += 1
                    me._in_read = True  # the read's own _local_scalar_dense below is the same sync
                    try:
                        return func(*args, **(kwargs or {}))
                    finally:
                        me._in_read = False
                return func(*args, **(kwargs or {}))

        class DataDependent(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                boolean_index = func is torch.ops.aten.index.Tensor and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
                if me.on and (func in DATA_DEPENDENT or boolean_index) and not me._in_read:
                    me.counts[me.phase][_caller()] += 1
                return func(*args, **(kwargs or {}))

        self._modes = (Reads(), DataDependent())
        self._in_read = False

    def __enter__(self):
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self._modes):
            m.__exit__(*exc)

    def ours(self, phase: str) -> int:
        return sum(n for who, n in self.counts[phase].items() if who.startswith("ours"))

    def report(self) -> str:
        return (f"{self.forwards} forwards, {self.steps} steps; "
                + "; ".join(f"{phase}: {dict(c)}" for phase, c in self.counts.items()))


GRPO_CFG = dict(rollouts_per_query=4, temperature=1.0, top_p=1.0, max_new_tokens=12, clip_eps=0.2, kl_coef=0.1,
                lr=1e-3, global_batch=8, rollout_batch=4, micro_batch=1, epochs=1, grad_clip=1.0, format_weight=0.5,
                adv_eps=1e-6, freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100)


def _no_sync_per_micro_batch(syncs: HostSyncs) -> None:
    # the values a step reports are read once, after its engine.step (the engine's own grad-norm read is
    # inside engine.step, as DeepSpeed's get_global_grad_norm is)
    assert syncs.ours("micro") == 0, syncs.report()
    assert syncs.ours("between") <= syncs.steps, syncs.report()
    # the optimiser reads host-side step counters only (fused AdamW on CUDA reads none)
    assert not any(who.startswith("ours") for who in syncs.counts["step"]), syncs.report()


def test_grpo_update_reads_the_device_once_per_step(monkeypatch, tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    syncs = HostSyncs(monkeypatch, model)
    run = RunContext(stage="video", iteration=1, engine="torch", logprob_chunk=4)
    with syncs:
        _, metrics = grpo.train_grpo(model, processor, video_set[:4], GRPOConfig(**GRPO_CFG),
                                     PromptSetup(templates, media), run, lambda rows: None)
    assert syncs.steps == len(metrics) == 2 and syncs.forwards == sum(m["micro_batches"] for m in metrics) == 16
    _no_sync_per_micro_batch(syncs)


def test_dpo_update_reads_the_device_once_per_step(monkeypatch, tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    pairs = _pairs(video_set[:3], 9)
    cfg = DPOConfig(beta=0.1, lr=1e-3, global_batch=5, epochs=1, nll_coef=0.1, grad_clip=1.0, freeze_vision=True,
                    weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1,
                    on_too_few_pairs="stop", micro_batch_tokens=4096)
    syncs = HostSyncs(monkeypatch, model)
    with syncs:
        _, metrics, _ = dpo.train_dpo(model, processor, pairs, cfg, PromptSetup(templates, media),
                                      RunContext(stage="dpo", engine="torch", logprob_chunk=4))
    assert syncs.steps == len(metrics) == 2 and sum(m["pairs"] for m in metrics) == 9
    assert syncs.forwards < 9  # pairs of one query shared forwards
    _no_sync_per_micro_batch(syncs)


def _pairs(records: list[dict], n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        rec = records[i % len(records)]
        chosen, rejected = (torch.randint(0, 200, (int(k),), generator=g).tolist()
                            for k in torch.randint(3, 20, (2,), generator=g))
        out.append({"pair_id": f"p{i}", "query_id": rec["id"], "chosen": "", "rejected": "", "chosen_ids": chosen,
                    "rejected_ids": rejected, "query": rec})
    return out


# --- the packer -----------------------------------------------------------------------------------------

def grpo_packing(budget: int | None, prompt: int, max_new: int, G: int = 8, queries: int = 8, micro: int = 8,
                 steps: int = 1, seed: int = 0, before: bool = False) -> list[tuple[int, int]]:
    """(tokens, of which not padding) of each forward of a rank's round: ``queries`` groups of G rollouts
    of random lengths up to ``max_new``, shuffled and cut into ``steps`` optimiser steps as
    ``grpo._grpo_round`` cuts them. Each forward is padded to the longest completion among its rollouts
    (``grpo.plan_micro_batches``); ``before``: to the longest of its group, as the code before did."""
    rng = random.Random(seed)
    lengths = {gi: (prompt, [rng.randint(1, max_new) for _ in range(G)]) for gi in range(queries)}
    seqs = [(gi, i) for gi in range(queries) for i in range(G)]
    rng.shuffle(seqs)
    out = []
    for s in range(steps):
        step = seqs[s * len(seqs) // steps:(s + 1) * len(seqs) // steps]
        batches = grpo.micro_batches(step, micro) if budget is None else grpo.micro_batches(step, micro, budget,
                                                                                           lengths)
        for gi, rows in batches:
            completions = [lengths[gi][1][i] for i in rows]
            padded = max(lengths[gi][1]) if before else max(completions)
            out.append((len(rows) * (prompt + padded), sum(prompt + c for c in completions)))
            assert budget is None or out[-1][0] <= budget or len(rows) == 1
    return out


@pytest.mark.parametrize("budget,prompt,max_new", [(20480, 2560, 2048), (4096, 300, 600), (512, 40, 48)])
def test_grpo_forwards_fill_the_token_budget(budget, prompt, max_new):
    tokens = [t for t, _ in grpo_packing(budget, prompt, max_new)]
    assert sum(tokens) / len(tokens) >= budget / 2, tokens


def test_grpo_without_a_budget_keeps_micro_batch_sequences():
    step = [(0, 3), (1, 0), (0, 1), (0, 2), (1, 1), (0, 0)]
    assert grpo.micro_batches(step, 2) == [(0, [3, 1]), (0, [2, 0]), (1, [0, 1])]
    lengths = {0: (10, [5, 50, 7, 30]), 1: (10, [1, 1])}
    # a rollout over the budget alone; the rest longest first while they fit
    assert grpo.micro_batches(step, 8, 60, lengths) == [(0, [1]), (0, [3]), (0, [2, 0]), (1, [0, 1])]


def test_dpo_forwards_fill_the_token_budget(tiny_policy, video_set, templates, media):
    _, processor = tiny_policy
    enc = dpo.PairEncoder(processor, templates, media)
    pairs = _pairs(video_set[:2], 40)
    prompt = enc.prompt(pairs[0]).length
    budget = 6 * (prompt + 20)
    forwards = dpo.pack_pairs(pairs, list(range(len(pairs))), enc, budget)
    tokens = [enc.forward_tokens([pairs[i] for i in f]) for f in forwards]
    assert sorted(i for f in forwards for i in f) == list(range(len(pairs)))
    assert all(len({pairs[i]["query_id"] for i in f}) == 1 for f in forwards)
    assert all(t <= budget or len(f) == 1 for t, f in zip(tokens, forwards))
    assert sum(tokens) / len(tokens) >= budget / 2, tokens
    assert dpo.pack_pairs(pairs, [3, 1, 2], enc, None) == [[3], [1], [2]]


def test_dpo_job_runs_the_zero_stage_it_chose_and_says_so(tmp_path, tiny_dir, video_set, default_config, caplog):
    """zero_config auto in a job: resolved once (here, without a GPU: ZeRO-2), run, logged, and written
    to settings.json beside the JSON that ran (which is also what a resume must match)."""
    import json
    import logging

    from veripo import jsonio
    from veripo.stage_config import DPOJob

    records = [{k: v for k, v in r.items() if not k.startswith("_")} for r in video_set[:2]]
    jsonio.write_jsonl(tmp_path / "pairs.jsonl", _pairs(records, 4))
    cfg = DPOJob.from_config({
        "dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
        "media": default_config["media"], "train": dict(default_config["train"], zero_config="auto"),
        "dpo": dict(default_config["dpo"], global_batch=4, heldout_fraction=0.0, micro_batch_tokens=2048)})
    out = dpo.DPOOutputs(*(str(tmp_path / f) for f in ("model", "metrics.jsonl", "heldout.json", "settings.json")))
    with caplog.at_level(logging.INFO, logger="veripo.train.dpo"):
        _, metrics = dpo.run_job(tiny_dir, str(tmp_path / "pairs.jsonl"), cfg, out, str(tmp_path / "ckpt"))
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["config"]["train"]["zero_config"] == "auto"
    assert settings["zero_config"] == "configs/deepspeed/zero2.json"
    assert settings["zero"] == {"zero_config": "configs/deepspeed/zero2.json", "stage": 2,
                                "chosen_by": "memory plan (zero_config auto)",
                                "reason": "no GPU: nothing to fit, ZeRO-2", "gpu_gib": None, "budget_gib": None,
                                "planned_peak_gib": {}}
    assert "dpo: DeepSpeed ZeRO-2 (no GPU: nothing to fit, ZeRO-2)" in caplog.text
    assert metrics[0]["forwards_per_rank"] < 4 and metrics[0]["tokens_per_micro_batch"] > 0


def _print_proxies() -> None:
    """The figures behind these tests, for the README: host syncs of the tiny model's GRPO and DPO update
    (torch engine) by phase and caller, and the packer's tokens per forward at the 7B config's shapes.
    Runs on whatever ``veripo`` imports first (PYTHONPATH=<an older checkout> measures the code before)."""
    import tempfile
    from pathlib import Path

    import yaml
    from _pytest.monkeypatch import MonkeyPatch

    from veripo.data import queries, synthetic
    from veripo.jsonio import write_jsonl
    from veripo.model import policy
    from veripo.model.tiny import build_tiny_qwen25vl

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config.yaml").read_text())
    media, templates = dict(config["media"]), config["prompts"]
    work = Path(tempfile.mkdtemp())
    build_tiny_qwen25vl(str(work / "model"), config["tiny_model"], templates.values())
    write_jsonl(work / "q.jsonl", synthetic.make_video_set(work, 16, seed=11, tasks=["color"], size=64, fps=8,
                                                           seconds=1.0))
    video_set = queries.load_queries(str(work / "q.jsonl"))
    budgets = "micro_batch_tokens" in DPOConfig.__dataclass_fields__

    def counted(train) -> str:
        model, processor = policy.load_policy(str(work / "model"))
        policy.configure_processor(processor, media)
        patch = MonkeyPatch()
        syncs = HostSyncs(patch, model)
        with syncs:
            train(model, processor)
        patch.undo()
        return syncs.report()

    print("GRPO:", counted(lambda model, processor: grpo.train_grpo(
        model, processor, video_set[:4], GRPOConfig(**GRPO_CFG), PromptSetup(templates, media),
        RunContext(stage="video", iteration=1, engine="torch", logprob_chunk=4), lambda rows: None)))
    dpo_cfg = dict(beta=0.1, lr=1e-3, global_batch=5, epochs=1, nll_coef=0.1, grad_clip=1.0, freeze_vision=True,
                   weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1,
                   on_too_few_pairs="stop", **({"micro_batch_tokens": 4096} if budgets else {}))
    print("DPO:", counted(lambda model, processor: dpo.train_dpo(
        model, processor, _pairs(video_set[:3], 9), DPOConfig(**dpo_cfg), PromptSetup(templates, media),
        RunContext(stage="dpo", engine="torch", logprob_chunk=4))))
    # A rank's step holding all of 8 groups, at the 7B config's shapes (prompt 2560 tokens, up to 2048 new)
    # and two small ones; then the 7B config's video stage as it is: a rank's round is 4 queries x 8
    # rollouts in 8 steps of 4. Before: micro_batch 4 rollouts of a group, padded to the group's longest.
    def line(forwards) -> str:
        tokens, real = sum(t for t, _ in forwards), sum(r for _, r in forwards)
        return (f"{len(forwards)} forwards of {tokens / len(forwards):,.0f} tokens ({real / len(forwards):,.0f} "
                f"not padding)")

    seven_b = yaml.safe_load((root / "configs" / "qwen25vl-7b.yaml").read_text())["grpo"]["micro_batch_tokens"]
    for budget, prompt, max_new, queries, steps in ((seven_b, 2560, 2048, 8, 1), (4096, 300, 600, 8, 1),
                                                    (512, 40, 48, 8, 1), (seven_b, 2560, 2048, 4, 8)):
        shape = f"{queries} queries x 8 rollouts of {prompt} + 1..{max_new} tokens in {steps} step(s)"
        print(f"packer, {shape}: before (4 rollouts of a group per forward) "
              + line(grpo_packing(None, prompt, max_new, queries=queries, micro=4, steps=steps, before=True))
              + (f"; budget {budget}: " + line(grpo_packing(budget, prompt, max_new, queries=queries, steps=steps))
                 if budgets else ""))


if __name__ == "__main__":
    _print_proxies()
