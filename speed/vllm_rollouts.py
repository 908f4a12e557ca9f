"""GRPO rollouts per second: the colocated vLLM engine vs our HF sampler, side by side in one run, on
the same tiny checkpoint, the same video queries and the same sampling settings (G rollouts per query).

    .venv-vllm/bin/python speed/vllm_rollouts.py [--queries 8] [--G 8] [--new 48] [--repeats 2]

Runs in the vLLM venv (scripts/setup_vllm_env.sh), which holds both. Both sides get the decoded frames
from the same call (veripo.model.policy.query_inputs); our sampler encodes the vision once per
query and samples the G rollouts from one prefill, vLLM takes the whole round in one generate call.
Prints the median wall time of each and rollouts/s, and the ratio.
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import click  # noqa: E402
import yaml  # noqa: E402


@click.command()
@click.option("--queries", default=8, help="video queries per round")
@click.option("--G", "G", default=8, help="rollouts per query")
@click.option("--new", default=48, help="new tokens per rollout (the default config's max_new_tokens)")
@click.option("--repeats", default=2)
def main(queries, G, new, repeats):
    import torch

    from veripo.data import synthetic
    from veripo.model import policy, vllm_rollouts
    from veripo.model.rollouts import Sampling, sample_group, sample_groups_vllm
    from veripo.model.tiny import build_tiny_qwen25vl

    torch.set_num_threads(2)
    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    tmp = Path(tempfile.mkdtemp())
    build_tiny_qwen25vl(str(tmp / "m"), cfg["tiny_model"], cfg["prompts"].values())
    recs = synthetic.make_video_set(tmp / "v", queries, seed=3, tasks=["color"], size=64, fps=8, seconds=2.0)
    for r in recs:
        r["video"] = str(tmp / "v" / r["video"])
    media, templates = cfg["media"], cfg["prompts"]
    model, processor = policy.load_policy(str(tmp / "m"))
    policy.configure_processor(processor, media)
    s = Sampling(rollouts_per_query=G, temperature=1.0, top_p=1.0, max_new_tokens=new, format_weight=0.5)
    sampler = vllm_rollouts.VLLMRollouts(str(tmp / "m"), "float32", media, {"enforce_eager": True,
                                                                             "max_model_len": 4096}, seed=0)

    def hf():
        gen = torch.Generator().manual_seed(0)
        return [sample_group(model, processor, r, s, templates, media, gen) for r in recs]

    def vllm():
        return sample_groups_vllm(sampler, processor, recs, s, templates, media, list(range(len(recs))))

    times = {"hf": [], "vllm": []}
    tokens = {}
    for name, fn in (("hf", hf), ("vllm", vllm)):
        fn()  # warm-up (vLLM's first call compiles and fills caches)
        for _ in range(repeats):
            t0 = time.perf_counter()
            groups = fn()
            times[name].append(time.perf_counter() - t0)
        tokens[name] = sum(int(g.rollouts.mask.sum()) for g in groups)
    n = queries * G
    print(f"{queries} video queries x G={G}, up to {new} new tokens, tiny model, {torch.get_num_threads()} threads")
    for name in ("hf", "vllm"):
        t = statistics.median(times[name])
        print(f"{name:5s} {t:7.2f} s  {n / t:7.1f} rollouts/s  ({tokens[name]} tokens in the last round)")
    print(f"vLLM / HF rollouts per second: {statistics.median(times['hf']) / statistics.median(times['vllm']):.1f}x")


if __name__ == "__main__":
    main()
