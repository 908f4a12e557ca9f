"""Per-GPU memory plan of the GPU jobs of a config: every term, its formula, and whether the job fits.

    .venv/bin/python speed/memory_plan.py --configfile config.yaml configs/qwen25vl-7b.yaml \\
        [--gpus 16] [--gpu-gb 80] [--margin 0.15] [--shape 7b|3b] [--attn sdpa] [--text-tokens 512] \\
        [--seconds S] [--frame-size WxH] [--rollouts hf|vllm]

The config files are merged key by key as Snakemake merges --configfile. The model's shape comes from
config.json of a local checkpoint directory, from ``tiny_model`` for the tiny base, or from the known
Qwen2.5-VL shapes (``--shape``, else guessed from a hub id naming 3B or 7B). Videos are assumed long
enough to reach ``max_frames`` and frames to fill ``max_pixels`` (the worst case) unless --seconds and
--frame-size say otherwise. With ``train.zero_config: auto`` each training job is planned under the ZeRO
stage the job itself would pick on these GPUs (the header line says which, and why).

The formulas are veripo/train/memory_plan.py's (the jobs read them too); this is their command line.
Exits 1 with one line naming the jobs that do not fit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from veripo.train.memory_plan import (GIB, KNOWN_SHAPES, MARGIN, TEXT_TOKENS, Settings, describe,  # noqa: E402
                                      load_config, not_fitting, plan, table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", nargs="+", default=[str(ROOT / "config.yaml")],
                    help="config files, later ones merged over earlier ones key by key (as Snakemake)")
    ap.add_argument("--gpus", type=int, help="GPUs (ZeRO ranks) of grpo_train (default: resources.grpo_train "
                                             "nodes x procs_per_node; dpo_train always uses its own)")
    ap.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU, GiB")
    ap.add_argument("--margin", type=float, default=MARGIN, help="share of the GPU kept free")
    ap.add_argument("--shape", choices=sorted(KNOWN_SHAPES), help="known model shape (default: from base_model)")
    ap.add_argument("--attn", choices=["flash_attention_2", "sdpa", "eager"],
                    help="attention implementation (default: the config's; sdpa is the fallback without flash-attn)")
    ap.add_argument("--text-tokens", type=int, default=TEXT_TOKENS, help="prompt tokens besides the video")
    ap.add_argument("--seconds", type=float, help="video length (default: long enough for max_frames)")
    ap.add_argument("--frame-size", help="WxH of the videos' frames (default: a frame filling max_pixels)")
    ap.add_argument("--rollouts", choices=["hf", "vllm"],
                    help="who samples GRPO's rollouts (default: grpo.rollout_backend; auto plans vLLM)")
    args = ap.parse_args(argv)
    frame = tuple(int(x) for x in args.frame_size.lower().split("x")) if args.frame_size else None
    settings = Settings(args.gpu_gb, args.margin, args.gpus, args.shape, args.attn or "config", args.text_tokens,
                        args.seconds, frame, args.rollouts or "config")
    config = load_config(args.configfile)
    jobs = plan(config, settings)
    print("\n".join(describe(config, settings)))
    print(table(jobs, settings))
    bad = not_fitting(jobs, settings)
    if bad:
        print("memory_plan: " + "; ".join(f"{j.name} needs {j.total / GIB:.1f} GiB per GPU" for j in bad)
              + f", over the {settings.budget / GIB:.1f} GiB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
