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


# The training sets make_synthetic_data can write, each in its own file's folder.
SETS = ("warmup", "train_video", "train_activation")


@dataclass
class SyntheticData:
    warmup: list[dict]  # media paths relative to the set's folder; an empty list for a set not asked for
    train_video: list[dict]
    train_activation: list[dict]
    benchmarks: dict[str, list[dict]]  # name -> question records, video paths relative to the file's folder


def benchmark_sizes(spec: dict) -> dict[str, int]:
    """Questions per benchmark format: vsi_bench always, the others as ``benchmark_sizes`` lists them."""
    return {"vsi_bench": spec["n_benchmark"], **spec.get("benchmark_sizes", {})}


def make_synthetic_data(spec: dict, set_dirs: dict[str, str], benchmark_dirs: dict[str, str]) -> SyntheticData:
    """Write the videos and images of the sets ``set_dirs`` names (a subset of SETS, each under its folder)
    and of the benchmarks ``benchmark_dirs`` names (each under its folder); config ``data.synthetic`` =
    ``spec``. With own data (data.synthetic.enabled false) the tiny base's warm-up set is still asked for."""
    unknown = sorted(set(set_dirs) - set(SETS))
    if unknown:
        raise ValueError(f"unknown synthetic set(s) {', '.join(unknown)}, expected among {', '.join(SETS)}")
    seed = spec["seed"]
    vid = dict(size=spec["video_size"], fps=spec["video_fps"], seconds=spec["video_seconds"])
    warm: list[dict] = []
    if "warmup" in set_dirs:
        warm_dir = set_dirs["warmup"]
        warm = synthetic.make_video_set(warm_dir, spec["n_warmup"], seed + WARMUP_VIDEO_SEED, spec["tasks"],
                                        prefix="w", **vid)
        for rec in synthetic.make_activation_set(os.path.join(warm_dir, WARMUP_ACTIVATION_DIR),
                                                 spec["n_train_activation"], seed + WARMUP_ACTIVATION_SEED,
                                                 spec["video_size"]):
            if rec.get("image"):
                rec["image"] = os.path.join(WARMUP_ACTIVATION_DIR, rec["image"])
            warm.append(dict(rec, id="w" + rec["id"]))
    train_video: list[dict] = []
    if "train_video" in set_dirs:
        train_video = synthetic.make_video_set(set_dirs["train_video"], spec["n_train_video"],
                                               seed + TRAIN_VIDEO_SEED, spec["tasks"], prefix="v", **vid)
    train_activation: list[dict] = []
    if "train_activation" in set_dirs:
        train_activation = synthetic.make_activation_set(set_dirs["train_activation"], spec["n_train_activation"],
                                                         seed + TRAIN_ACTIVATION_SEED, spec["video_size"])
    sizes = benchmark_sizes(spec)
    benchmarks = {}
    for name, out_dir in benchmark_dirs.items():
        benchmarks[name] = synthetic_benchmarks.write_benchmark(
            name, out_dir, sizes[name], seed + BENCHMARK_SEED + BENCHMARK_ORDER.index(name), **vid)
    return SyntheticData(warm, train_video, train_activation, benchmarks)
