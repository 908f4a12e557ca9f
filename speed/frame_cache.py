"""Decoding every time vs the frame cache (veripo/media/frame_cache.py), over the decodes a default
3-iteration run makes.

    .venv/bin/python speed/frame_cache.py [--train-videos 6] [--bench-videos 6] [--size 224]
        [--seconds 20] [--video-fps 30] [--repeats 2]

What a run decodes, read from the code and config.yaml:
  per training video and iteration k = 1..iterations:
    1                 the grpo_train job's media check (veripo/media/checks.py, check_training_media)
    epochs_k          one per GRPO round it is in, i.e. per epoch (grpo.per_iteration; the G rollouts
                      of a round share one decode, veripo/model/rollouts.py sample_group)
    1                 the dpo_train job's (veripo/train/dpo.py PairEncoder: once per query, all its
                      pairs and epochs); the verifier judges logged rollouts and decodes nothing
  per benchmark question, evaluated at the last iteration (the default target iter3/eval/*):
    2                 the eval job's media check (screen_questions), then the question's prepare
With config.yaml: 3 x (1 + 2 + 1) = 12 decodes per training video, 2 per benchmark video. 12 is an
upper bound: the curriculum drops most solved queries after each iteration, a query with no pair
skips DPO.

Both ways run that sequence in this process, in the run's order (each iteration's check, epochs,
DPO, then the evaluation), the cached way starting from an empty cache, the fastest of --repeats
passes counting; every cached result is checked pixel-equal to the decoded one. Twice: on videos like config.yaml's synthetic data (tiny:
decoding them is already cheap) and on --size/--seconds/--video-fps ones (longer videos decode for
longer while a hit costs the same, so the ratio grows with video length).
"""
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import yaml  # noqa: E402


def access_pattern(cfg: dict, train: list[str], bench: list[str]) -> list[tuple[str, str]]:
    """(stage, video) per decode of a run, in order."""
    per_iteration = cfg["grpo"]["per_iteration"]
    seq = []
    for k in range(1, cfg["iterations"] + 1):
        epochs = per_iteration[min(k, len(per_iteration)) - 1]["epochs"]
        seq += [("train", v) for v in train]  # the grpo_train job's media check
        seq += [("train", v) for _ in range(epochs) for v in train]
        seq += [("train", v) for v in train]  # dpo_train
    seq += [("eval", v) for _ in range(2) for v in bench]  # eval check, then generation
    return seq


def write_videos(folder: Path, first: int, n: int, size: int, seconds: float, fps: int, tag: str) -> list[str]:
    """Videos number ``first`` to ``first + n - 1``: 48 different scenes, so no two of the first 48 share
    bytes (the cache would share their entry)."""
    from veripo.data import synthetic

    paths = []
    for i in range(first, first + n):
        path = folder / f"{tag}{i}.mp4"
        frames = synthetic.draw_frames(synthetic.DIRECTIONS[i % 4], list(synthetic.COLORS)[i // 4 % 4],
                                       1 + i // 16 % 3, int(seconds * fps), size)
        synthetic.write_mp4(path, frames, fps)
        paths.append(str(path))
    return paths


def run_pattern(seq, media: dict, cache_dir: str | None) -> tuple[float, dict]:
    """(seconds, {video: sha1 of its frames per stage}) of decoding ``seq`` (through the cache if given)."""
    from veripo.media import decode
    from veripo.media import frame_cache

    seen: dict = {}
    start = time.perf_counter()
    for stage, video in seq:
        settings = decode.sampling(media[stage])
        if cache_dir is None:
            clip = decode.decode_video(video, *settings)
        else:
            clip = frame_cache.decode_video(video, *settings, cache_dir=cache_dir)
        seen.setdefault((stage, video), set()).add(hashlib.sha1(clip.frames.tobytes()).hexdigest())
    return time.perf_counter() - start, seen


def measure(label: str, folder: Path, cfg: dict, repeats: int, n_train: int, n_bench: int, size: int,
            seconds: float, fps: int) -> float:
    from veripo.hashing import sha256_file

    t0 = time.perf_counter()
    train = write_videos(folder, 0, n_train, size, seconds, fps, "train")
    bench = write_videos(folder, n_train, n_bench, size, seconds, fps, "bench")
    mb = sum(Path(p).stat().st_size for p in train + bench) / 1e6
    print(f"{label}: {n_train} training + {n_bench} benchmark videos of {size}x{size}, {seconds:g} s at {fps} fps "
          f"({mb:.2f} MB, written in {time.perf_counter() - t0:.0f} s)")
    seq = access_pattern(cfg, train, bench)
    media = {"train": cfg["media"], "eval": cfg["eval"]["media"]}
    cache = folder / "cache"
    run_pattern(seq[:1], media, None)  # imports and first-call setup, outside both timings
    plain_s = cached_s = float("inf")
    for _ in range(repeats):  # the fastest pass of each way: the others lost time to the rest of the machine
        took, plain = run_pattern(seq, media, None)
        plain_s = min(plain_s, took)
        shutil.rmtree(cache, ignore_errors=True)
        took, cached = run_pattern(seq, media, str(cache))
        cached_s = min(cached_s, took)
        if cached != plain or any(len(h) != 1 for h in plain.values()):
            sys.exit("the cached frames differ from the decoded ones")
    t = time.perf_counter()
    for _, video in seq:
        sha256_file(video)
    hash_s = time.perf_counter() - t
    entries = list(cache.iterdir())
    n = len(seq)
    print(f"  decodes in a {cfg['iterations']}-iteration run: {n} "
          f"({n - 2 * n_bench} training = {(n - 2 * n_bench) // max(n_train, 1)} per video, {2 * n_bench} evaluation)")
    print(f"  decode every time   {plain_s:7.2f} s   {plain_s / n * 1000:7.1f} ms per decode")
    print(f"  frame cache         {cached_s:7.2f} s   {cached_s / n * 1000:7.1f} ms per decode "
          f"({len(entries)} misses, {sum(e.stat().st_size for e in entries) / 1e6:.1f} MB on disk; hashing the "
          f"file {hash_s / n * 1000:.2f} ms of it)")
    print(f"  ratio: {plain_s / cached_s:.1f}x faster with the cache (at most {n / len(entries):.1f}x: "
          f"each video's first decode is a miss)")
    shutil.rmtree(cache)
    return plain_s / cached_s


@click.command()
@click.option("--train-videos", default=6, help="training videos (config.yaml's synthetic set has 32)")
@click.option("--bench-videos", default=6, help="benchmark videos, one question each")
@click.option("--size", default=224, help="frame side in pixels of the larger videos")
@click.option("--seconds", default=20.0, help="length of the larger videos")
@click.option("--video-fps", default=30, help="frame rate of the larger videos")
@click.option("--repeats", default=2, help="timed passes per way (the fastest counts)")
def main(train_videos, bench_videos, size, seconds, video_fps, repeats):
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    syn = cfg["data"]["synthetic"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, sub, shape in (("config.yaml's synthetic videos", "tiny",
                                   (syn["video_size"], syn["video_seconds"], syn["video_fps"])),
                                  ("larger videos", "large", (size, seconds, video_fps))):
            folder = Path(tmp) / sub
            folder.mkdir()
            measure(label, folder, cfg, repeats, train_videos, bench_videos, *shape)


if __name__ == "__main__":
    main()
