"""Peak memory of decoding a long video the old way (every frame to RGB, then pick the sampled ones)
and the new way (veripo.media.decode: only the sampled frames are kept).

    .venv/bin/python speed/video_memory.py [--seconds 180] [--width 640] [--height 480] [--fps 30]
        [--sample-fps 2.0] [--max-frames 16]

Writes a synthetic H.264 mp4 with PyAV, then decodes it in two fresh subprocesses, one per way, each
reporting its own peak RSS (resource.getrusage ru_maxrss) and wall time; prints both and their ratio.
Linux's maxrss carries the parent's peak across exec, so this parent stays small (it never holds more
than one frame) and each child also prints its peak before decoding, the floor of both figures.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402


def write_long_video(path: Path, seconds: float, width: int, height: int, fps: int) -> int:
    """Moving bars over a drifting gradient, generated frame by frame; returns the frame count."""
    import av
    import numpy as np

    n = int(seconds * fps)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n):
            bars = ((x + 4 * i) // 40 % 2 * 200).astype(np.uint8)
            img = np.stack([bars, ((y + i) % 256).astype(np.uint8), ((x * y + 3 * i) % 256).astype(np.uint8)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return n


def old_decode(path: str, fps: float, min_frames: int, max_frames: int):
    """What veripo.media.decode.decode_video did before: every frame to RGB in a list, then pick."""
    import av
    import numpy as np

    from veripo.media.decode import sample_indices

    with av.open(path) as container:
        stream = container.streams.video[0]
        native_fps = float(stream.average_rate or stream.guessed_rate or 1.0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    idx = sample_indices(len(frames), native_fps, fps, min_frames, max_frames)
    return np.stack([frames[i] for i in idx])


def measure(way: str, path: str, fps: float, min_frames: int, max_frames: int) -> None:
    """Decode ``path`` one way and print 'before_bytes peak_bytes seconds frames_shape' (child side)."""
    import resource

    from veripo.media import decode as video

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if way == "old":
        frames = old_decode(path, fps, min_frames, max_frames)
    else:
        frames = video.decode_video(path, fps, min_frames, max_frames).frames
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(before, peak, f"{seconds:.1f}", "x".join(map(str, frames.shape)))


@click.command()
@click.option("--seconds", default=180.0, help="video length")
@click.option("--width", default=640)
@click.option("--height", default=480)
@click.option("--fps", default=30, help="the video's frame rate")
@click.option("--sample-fps", default=2.0, help="sampling rate of the decoder (config media.fps)")
@click.option("--min-frames", default=2)
@click.option("--max-frames", default=16)
@click.option("--measure-way", type=click.Choice(["old", "new"]), hidden=True)
@click.option("--video", "video_path", hidden=True)
def main(seconds, width, height, fps, sample_fps, min_frames, max_frames, measure_way, video_path):
    if measure_way:
        measure(measure_way, video_path, sample_fps, min_frames, max_frames)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.mp4"
        start = time.perf_counter()
        n = write_long_video(path, seconds, width, height, fps)
        print(f"video: {seconds:g} s, {width}x{height} at {fps} fps = {n} frames "
              f"({n * width * height * 3 / 1e9:.2f} GB as RGB), {path.stat().st_size / 1e6:.1f} MB on disk, "
              f"written in {time.perf_counter() - start:.0f} s")
        print(f"sampling: {sample_fps} fps, {min_frames}-{max_frames} frames")
        peaks = {}
        for way in ("old", "new"):
            proc = subprocess.run([sys.executable, __file__, "--measure-way", way, "--video", str(path),
                                   "--sample-fps", str(sample_fps), "--min-frames", str(min_frames),
                                   "--max-frames", str(max_frames)], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{way} decode failed:\n{proc.stderr}")
            before, peak, secs, shape = proc.stdout.split()
            peaks[way] = int(peak)
            print(f"{way}: peak RSS {int(peak) / 1e9:.3f} GB (before decoding {int(before) / 1e9:.3f} GB), "
                  f"{secs} s, frames {shape}")
        print(f"old/new peak RSS: {peaks['old'] / peaks['new']:.1f}x")


if __name__ == "__main__":
    main()
