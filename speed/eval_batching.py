"""Evaluation batched (the HF backend, ``eval.batch_size`` questions per generation call) vs one question
at a time (the authors' evaluation script's way), on the same questions, greedy.

    .venv/bin/python speed/eval_batching.py [--batch-size 8] [--benchmarks vsi_bench,tomato,video_mmmu]
        [--questions 16] [--new 64] [--threads 1] [--repeats 3]

Builds config.yaml's tiny Qwen2.5-VL (random weights: every answer runs to --new tokens, no early EOS)
and synthetic question files in the benchmarks' own formats (veripo/data/synthetic_benchmarks.py), then
answers each benchmark both ways through ``HFBackend.generate`` (veripo/eval/backends/hf.py: decode and
encode each question, ``batch_generate.generate`` over the chunk), with the benchmark's generation and
media settings from config.yaml (greedy, repetition penalty 1.05). One at a time is the same call with
one question, so only the batching differs. Both ways load their own backend, warm it up on one
question and are timed over all questions (the fastest of --repeats passes). Prints questions/s each way, the ratio, and
whether the answers are identical both ways (exit status 1 if not). One torch thread by default: the
tiny model's matrices are too small to gain from more, and on a shared machine two threads that wait on
each other at every op measured 4-16x slower, both ways.
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import yaml  # noqa: E402


def answer(backend, questions: list[dict], batch_size: int, repeats: int) -> tuple[float, list[str]]:
    """(seconds, answers) of ``questions`` in chunks of ``batch_size``, as evaluation's loop chunks them;
    the fastest of ``repeats`` passes (the others lost time to whatever else the machine ran)."""
    backend.generate(questions[:1])  # warm-up: first-call allocations and lazy imports
    best, answers = float("inf"), None
    for _ in range(repeats):
        texts = []
        start = time.perf_counter()
        for i in range(0, len(questions), batch_size):
            texts += [g.text for g in backend.generate(questions[i:i + batch_size])]
        best = min(best, time.perf_counter() - start)
        if answers is not None and texts != answers:
            sys.exit("greedy answers changed between two passes of the same way")
        answers = texts
    return best, answers


@click.command()
@click.option("--batch-size", default=8, help="questions per generation call when batched")
@click.option("--benchmarks", default="vsi_bench,tomato,video_mmmu",
              help="synthetic benchmarks to answer (comma-separated; any of config.yaml's six)")
@click.option("--questions", default=16, help="questions per benchmark")
@click.option("--new", default=64, help="max_new_tokens (config.yaml eval.max_new_tokens: 64)")
@click.option("--threads", default=1, help="torch threads")
@click.option("--repeats", default=3, help="timed passes per way (the fastest counts)")
def main(batch_size, benchmarks, questions, new, threads, repeats):
    import torch

    from veripo.data import synthetic_benchmarks
    from veripo.eval.backends.hf import HFBackend
    from veripo.eval.benchmarks import load_benchmark
    from veripo.eval.settings import job_settings
    from veripo.jsonio import write_json
    from veripo.media.torchvision_cpu import apply as apply_torchvision_cpu_shim
    from veripo.model.tiny import build_tiny_qwen25vl

    from transformers.utils import logging as hf_logging

    apply_torchvision_cpu_shim()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    syn = cfg["data"]["synthetic"]
    names = benchmarks.split(",")
    totals = {"one at a time": 0.0, f"batched, {batch_size} per call": 0.0}
    differ, n_total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "model")
        build_tiny_qwen25vl(model, cfg["tiny_model"], cfg["prompts"].values())
        print(f"tiny Qwen2.5-VL ({cfg['tiny_model']['num_layers']} layers, hidden {cfg['tiny_model']['hidden_size']}, "
              f"random weights), greedy, {new} new tokens, torch threads: {torch.get_num_threads()}")
        for seed, name in enumerate(names):
            root = Path(tmp) / "bench"
            file = root / f"{name}.json"
            write_json(file, synthetic_benchmarks.write_benchmark(name, str(root), questions, seed=seed,
                                                                  size=syn["video_size"], fps=syn["video_fps"],
                                                                  seconds=syn["video_seconds"]))
            qs = load_benchmark(name, file)
            settings = job_settings(cfg, name)
            settings["generation"]["max_new_tokens"] = new
            results = {}
            for way, size in zip(totals, (1, batch_size)):
                backend = HFBackend(model, settings, str(root))
                results[way] = answer(backend, qs, size, repeats)
                totals[way] += results[way][0]
            (t1, one), (tb, batched) = results.values()
            differ += [f"{name}/{q['key']}" for q, a, b in zip(qs, one, batched) if a != b]
            n_total += len(qs)
            print(f"  {name:<12} {len(qs)} questions ({settings['media']['fps']:g} fps, up to "
                  f"{settings['media']['max_frames']} frames): one at a time {len(qs) / t1:6.2f} q/s, "
                  f"batched {len(qs) / tb:6.2f} q/s, {t1 / tb:.2f}x")
    (w1, t1), (wb, tb) = totals.items()
    print(f"all {n_total} questions: {w1} {n_total / t1:.2f} questions/s ({t1:.1f} s), "
          f"{wb} {n_total / tb:.2f} questions/s ({tb:.1f} s)")
    print(f"  ratio: batched is {t1 / tb:.2f}x faster; answers identical both ways: {n_total - len(differ)}/{n_total}")
    if differ:
        sys.exit(f"answers differ between the two ways for {', '.join(differ[:5])}")


if __name__ == "__main__":
    main()
