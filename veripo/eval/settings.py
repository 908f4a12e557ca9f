"""Evaluation settings of one benchmark: ``eval.media`` updated with the benchmark's own overrides.

``eval.benchmarks.<name>`` may override fps (TOMATO is evaluated at 4 fps), max_frames, min_pixels and
max_pixels; everything else is shared by all benchmarks. The effective settings (an EvalJob, see
veripo/stage_config.py) travel to the generation job as one JSON argument and end up, whole, in its
run info and so in the score's provenance.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import get_args, get_type_hints

from veripo.config import ConfigError
from veripo.stage_config import EvalConfig, EvalJob, GenerationConfig

BACKENDS = get_args(get_type_hints(GenerationConfig)["backend"])


def benchmark_media(eval_cfg: dict, name: str) -> dict:
    """``eval.media`` with the overrides of ``eval.benchmarks.<name>`` applied."""
    return asdict(EvalConfig.from_config(eval_cfg).media_of(name))


def job_settings(config: dict, name: str) -> dict:
    """Everything the generation job of benchmark ``name`` needs besides paths (EvalJob's fields)."""
    return asdict(EvalJob.of(config, name))


def check_benchmarks(eval_cfg: dict) -> None:
    """ConfigError naming the key when a benchmark's effective frame or pixel range is empty."""
    ev = EvalConfig.from_config(eval_cfg)
    for name in ev.benchmarks:
        media = ev.media_of(name)
        where = f"eval.benchmarks.{name}"
        if media.min_frames > media.max_frames:
            raise ConfigError(f"config key '{where}.max_frames': {media.max_frames} is below "
                              f"eval.media.min_frames ({media.min_frames})")
        if media.min_pixels > media.max_pixels:
            raise ConfigError(f"config key '{where}.min_pixels': {media.min_pixels} exceeds "
                              f"max_pixels ({media.max_pixels})")
