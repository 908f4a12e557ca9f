"""Measure what encoding a query's video once (shared by its G rollouts) saves over HF generate,
which repeats the pixels G times and runs the vision tower on every copy.

    .venv/bin/python speed/vision_once_per_query.py [--frames 16] [--size 224] [--G 8] [--new 32]

Prints vision-tower calls and patches per query, and wall time of both ways, measured in this run.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import yaml  # noqa: E402


@click.command()
@click.option("--frames", default=16, help="frames per video")
@click.option("--size", default=224, help="frame side in pixels")
@click.option("--G", "G", default=8, help="rollouts per query")
@click.option("--new", default=32, help="new tokens per rollout")
@click.option("--repeats", default=3)
def main(frames, size, G, new, repeats):
    import torch

    from veripo.model import policy

    from veripo.data import synthetic
    from veripo.model.tiny import build_tiny_qwen25vl

    torch.set_num_threads(2)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    tmp = Path(tempfile.mkdtemp())
    spec = dict(cfg["tiny_model"], max_pixels=size * size)
    build_tiny_qwen25vl(str(tmp / "m"), spec, cfg["prompts"].values())
    synthetic.write_mp4(tmp / "v.mp4", synthetic.draw_frames("left", "red", 2, frames * 2, size), 8)
    media = dict(cfg["media"], max_frames=frames, max_pixels=size * size, fps=8.0)
    model, proc = policy.load_policy(str(tmp / "m"))
    policy.configure_processor(proc, media)
    model.eval()
    rec = {"id": "q", "video": str(tmp / "v.mp4"), "question": "Which direction?", "answer": "A",
           "answer_type": "multiple_choice"}
    calls = {"n": 0, "patches": 0}

    def hook(mod, args, kwargs=None):
        calls["n"] += 1
        calls["patches"] += args[0].shape[0]

    model.model.visual.register_forward_pre_hook(hook)
    sup = policy.suppressed_token_ids(model)

    def ours():
        prompt = policy.encode_query(proc, rec, cfg["prompts"], media, None)
        # no EOS: exactly `new` tokens per rollout, as min_new_tokens makes HF generate below
        policy.sample(model, prompt, G, new, generator=torch.Generator().manual_seed(0), eos_ids=[])

    def hf():
        prompt = policy.encode_query(proc, rec, cfg["prompts"], media, None)
        with torch.no_grad():
            model.generate(input_ids=prompt.input_ids, attention_mask=torch.ones_like(prompt.input_ids),
                           mm_token_type_ids=prompt.mm_token_type_ids, **prompt.media, do_sample=True,
                           num_return_sequences=G, max_new_tokens=new, min_new_tokens=new, top_k=0,
                           suppress_tokens=sup)

    results = {}
    for name, fn in (("vision once per query (veripo.model.policy.sample)", ours),
                     ("HF generate, num_return_sequences=G", hf)):
        fn()  # warm-up
        calls.update(n=0, patches=0)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        results[name] = (statistics.median(times), calls["n"] / repeats, calls["patches"] / repeats)
    prompt = policy.encode_query(proc, rec, cfg["prompts"], media, None)
    print(f"tiny Qwen2.5-VL, {frames} frames of {size}x{size}, G={G}, {new} new tokens, "
          f"{int((prompt.input_ids == model.config.video_token_id).sum())} video tokens per query")
    for name, (t, n, p) in results.items():
        print(f"  {name:<46} {t * 1000:8.1f} ms/query   vision calls {n:.0f}   patches encoded {p:.0f}")
    (t_ours, _, p_ours), (t_hf, _, p_hf) = results.values()
    print(f"  ratio: patches encoded {p_hf / p_ours:.1f}x fewer, wall time {t_hf / t_ours:.2f}x faster")


if __name__ == "__main__":
    main()
