"""The offline default's whole synthetic data set: which set gets which seed, size and folder.

Each set draws from its own seed (``data.synthetic.seed`` plus a fixed offset), so changing one set's
size or adding a benchmark format leaves every other set's videos and questions as they were.
Media are written here; the records are returned for the caller to write.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from veripo.data import synthetic, synthetic_benchmarks

# Seed offsets from data.synthetic.seed; benchmarks take BENCHMARK_SEED + their place in BENCHMARK_ORDER.
WARMUP_VIDEO_SEED, WARMUP_ACTIVATION_SEED, TRAIN_VIDEO_SEED, TRAIN_ACTIVATION_SEED, BENCHMARK_SEED = 1, 2, 3, 4, 5
BENCHMARK_ORDER = ("vsi_bench", *synthetic_benchmarks.WRITERS)
# The warm-up's activation images sit in their own folder, so they do not overwrite the training set's.
WARMUP_ACTIVATION_DIR = "warmup_activation"


@dataclass
class SyntheticData:
    warmup: list[dict]  # media paths relative to the training sets' folder
    train_video: list[dict]
    train_activation: list[dict]
    benchmarks: dict[str, list[dict]]  # name -> question records, video paths relative to the file's folder


def benchmark_sizes(spec: dict) -> dict[str, int]:
    """Questions per benchmark format: vsi_bench always, the others as ``benchmark_sizes`` lists them."""
    return {"vsi_bench": spec["n_benchmark"], **spec.get("benchmark_sizes", {})}


def make_synthetic_data(spec: dict, train_dir: str, benchmark_dirs: dict[str, str]) -> SyntheticData:
    """Write the videos and images of every set (config ``data.synthetic`` = ``spec``): the training
    sets' under ``train_dir``, each benchmark's under its ``benchmark_dirs`` folder."""
    seed = spec["seed"]
    vid = dict(size=spec["video_size"], fps=spec["video_fps"], seconds=spec["video_seconds"])
    warm = synthetic.make_video_set(train_dir, spec["n_warmup"], seed + WARMUP_VIDEO_SEED, spec["tasks"],
                                    prefix="w", **vid)
    for rec in synthetic.make_activation_set(os.path.join(train_dir, WARMUP_ACTIVATION_DIR),
                                             spec["n_train_activation"], seed + WARMUP_ACTIVATION_SEED,
                                             spec["video_size"]):
        if rec.get("image"):
            rec["image"] = os.path.join(WARMUP_ACTIVATION_DIR, rec["image"])
        warm.append(dict(rec, id="w" + rec["id"]))
    train_video = synthetic.make_video_set(train_dir, spec["n_train_video"], seed + TRAIN_VIDEO_SEED, spec["tasks"],
                                           prefix="v", **vid)
    train_activation = synthetic.make_activation_set(train_dir, spec["n_train_activation"],
                                                     seed + TRAIN_ACTIVATION_SEED, spec["video_size"])
    sizes = benchmark_sizes(spec)
    benchmarks = {}
    for name, out_dir in benchmark_dirs.items():
        benchmarks[name] = synthetic_benchmarks.write_benchmark(
            name, out_dir, sizes[name], seed + BENCHMARK_SEED + BENCHMARK_ORDER.index(name), **vid)
    return SyntheticData(warm, train_video, train_activation, benchmarks)
