"""Evaluation settings of one benchmark: ``eval.media`` updated with the benchmark's own overrides.

``eval.benchmarks.<name>`` may override fps (TOMATO is evaluated at 4 fps), max_frames, min_pixels and
max_pixels; everything else is shared by all benchmarks. The effective settings travel to the
generation job as one JSON argument and end up in the score's provenance.
"""
from __future__ import annotations

from veripo.config import ConfigError

MEDIA_OVERRIDES = ("fps", "max_frames", "min_pixels", "max_pixels")
SAMPLING_KEYS = ("temperature", "top_p", "repetition_penalty", "max_new_tokens")
BACKENDS = ("hf", "vllm", "auto")
DEFAULT_BACKEND = "hf"
DEFAULT_BATCH_SIZE = 1


def benchmark_media(eval_cfg: dict, name: str) -> dict:
    """``eval.media`` with the overrides of ``eval.benchmarks.<name>`` applied."""
    bench = eval_cfg["benchmarks"][name]
    media = dict(eval_cfg["media"])
    media.update({key: bench[key] for key in MEDIA_OVERRIDES if key in bench})
    return media


def generation_settings(eval_cfg: dict) -> dict:
    """Sampling parameters, backend (as configured, possibly "auto"), batch size, vLLM engine options."""
    settings = {key: eval_cfg[key] for key in SAMPLING_KEYS}
    settings["backend"] = eval_cfg.get("backend", DEFAULT_BACKEND)
    settings["batch_size"] = eval_cfg.get("batch_size", DEFAULT_BATCH_SIZE)
    settings["vllm"] = dict(eval_cfg.get("vllm", {}))
    return settings


def job_settings(config: dict, name: str) -> dict:
    """Everything the generation job of benchmark ``name`` needs besides paths."""
    bench = config["eval"]["benchmarks"][name]
    return {
        "dtype": config["dtype"],
        "attn_implementation": config.get("attn_implementation"),
        "prompts": config["prompts"],
        "generation": generation_settings(config["eval"]),
        "media": benchmark_media(config["eval"], name),
        "skip_missing_videos": bool(bench.get("skip_missing_videos", False)),
    }


def check_benchmarks(eval_cfg: dict) -> None:
    """ConfigError naming the key when a benchmark's effective frame or pixel range is empty."""
    for name in eval_cfg["benchmarks"]:
        media = benchmark_media(eval_cfg, name)
        where = f"eval.benchmarks.{name}"
        if media["min_frames"] > media["max_frames"]:
            raise ConfigError(f"config key '{where}.max_frames': {media['max_frames']} is below "
                              f"eval.media.min_frames ({media['min_frames']})")
        if media["min_pixels"] > media["max_pixels"]:
            raise ConfigError(f"config key '{where}.min_pixels': {media['min_pixels']} exceeds "
                              f"max_pixels ({media['max_pixels']})")
