"""The tiny base's warm-up step: all traces of a batch in one forward (``train_warmup``, through
``batch_generate.completion_logprobs``) vs one forward per trace (the loop before), same data and traces.

    .venv/bin/python speed/warmup_batching.py [--steps 40] [--batch-size 8] [--threads 2] [--repeats 2]

Builds config.yaml's tiny Qwen2.5-VL and a small synthetic warm-up set, then times --steps AdamW steps
each way from the same starting weights (the fastest of --repeats passes; the first step of each pass,
which encodes every video once, is left out of neither: both ways encode alike). Prints steps/s each
way, the ratio, and the loss of the last step both ways, which agree to float noise because the batched
loss is the same mean of per-trace means.
"""
import copy
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import yaml  # noqa: E402


def per_trace_steps(model, processor, records, cfg, prompts) -> list[float]:
    """The warm-up loop with one forward and backward per trace: losses per step."""
    import torch

    from veripo.data import synthetic
    from veripo.model import policy
    from veripo.train.warmup import trace_kind

    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    encoded, losses = {}, []
    model.train()
    for _ in range(cfg.steps):
        batch = [records[rng.randrange(len(records))] for _ in range(cfg.batch_size)]
        opt.zero_grad(set_to_none=True)
        for rec in batch:
            if rec["id"] not in encoded:
                encoded[rec["id"]] = policy.encode_query(processor, rec, prompts.templates, prompts.media, None)
        total = 0.0
        for rec in batch:
            text = synthetic.reasoning_trace(rec, trace_kind(rng, cfg.trace_mix), rng)
            toks, mask = policy.pad_completions([policy.encode_completion(processor, text)],
                                                processor.tokenizer.pad_token_id)
            lp = policy.completion_logprobs(model, encoded[rec["id"]], toks, mask)
            loss = -(lp * mask).sum() / mask.sum()
            (loss / cfg.batch_size).backward()
            total += float(loss) / cfg.batch_size
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(total)
    return losses


@click.command()
@click.option("--steps", default=40, help="optimiser steps per way")
@click.option("--batch-size", default=8, help="traces per step (config.yaml warmup.batch_size: 8)")
@click.option("--threads", default=2, help="torch threads")
@click.option("--repeats", default=2, help="timed passes per way (the fastest counts)")
def main(steps, batch_size, threads, repeats):
    import torch

    from veripo.data import queries, synthetic
    from veripo.jsonio import write_jsonl
    from veripo.media.torchvision_cpu import apply as apply_torchvision_cpu_shim
    from veripo.model import policy
    from veripo.model.tiny import build_tiny_qwen25vl
    from veripo.stage_config import PromptSetup, WarmupJob
    from veripo.train.warmup import train_warmup

    apply_torchvision_cpu_shim()
    torch.set_num_threads(threads)
    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    syn = cfg["data"]["synthetic"]
    cfg["warmup"].update(steps=steps, batch_size=batch_size)
    job = WarmupJob.from_config({k: cfg[k] for k in ("dtype", "attn_implementation", "prompts", "media", "train",
                                                 "warmup")})
    prompts = PromptSetup.of(job)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_qwen25vl(f"{tmp}/model", cfg["tiny_model"], cfg["prompts"].values())
        recs = synthetic.make_video_set(Path(tmp), 24, seed=0, tasks=syn["tasks"], size=syn["video_size"],
                                        fps=syn["video_fps"], seconds=syn["video_seconds"])
        write_jsonl(f"{tmp}/warmup.jsonl", recs)
        records = queries.load_queries(f"{tmp}/warmup.jsonl")
        start_model, processor = policy.load_policy(f"{tmp}/model")
        policy.configure_processor(processor, prompts.media)
        ways = {"one forward per trace": per_trace_steps,
                "batched (one forward per step)": lambda *a: [m["loss"] for m in train_warmup(*a)]}
        results = {}
        for way, fn in ways.items():
            best = float("inf")
            for _ in range(repeats):
                model = copy.deepcopy(start_model)
                t0 = time.perf_counter()
                losses = fn(model, processor, records, job.warmup, prompts)
                best = min(best, time.perf_counter() - t0)
            results[way] = (best, losses)
    print(f"tiny Qwen2.5-VL, {steps} warm-up steps of {batch_size} traces, torch threads {torch.get_num_threads()}")
    for way, (t, losses) in results.items():
        print(f"  {way:<32} {steps / t:6.2f} steps/s ({t:.1f} s), last loss {losses[-1]:.4f}")
    (t1, l1), (tb, lb) = results.values()
    print(f"  ratio: batched is {t1 / tb:.2f}x faster; last-step losses differ by {abs(l1[-1] - lb[-1]):.2e}")


if __name__ == "__main__":
    main()
