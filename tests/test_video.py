"""Video decoding keeps only the frames it samples, yet returns exactly what decoding every frame and
then picking did (same indices, frames, fps and count) for containers with and without a frame count
and for variable frame rates; non-regular files are refused before they are opened; training media
are checked up front."""
import inspect
import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import ROOT
from veripo.media import checks as media_check
from veripo.data import queries
from veripo.media import decode as video
from veripo.errors import InputError


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    """A frame that differs from every other, so a wrong index shows as a wrong picture."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 3 + i * 7) % 256, (y * 5 + i * 11) % 256, np.full_like(x, i * 37 % 256)],
                    -1).astype(np.uint8)


def write_video(path, n: int, fps: int, width: int = 64, height: int = 48, fmt: str | None = None,
                codec: str = "libx264", options: dict | None = None, pts_ms: list[int] | None = None,
                noise: bool = False, fast: bool = False) -> str:
    """``n`` frames at ``fps``; ``pts_ms`` gives each frame its own time (variable frame rate)."""
    rng = np.random.default_rng(n)
    with av.open(str(path), mode="w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if fast:
            stream.options = {"preset": "ultrafast"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else frame_image(i, width, height)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def truncated_video(path, fraction: float = 0.8) -> str:
    """An mp4 with its index up front (as downloaded videos usually are) cut at ``fraction`` of its bytes:
    it opens and its first frames decode; it fails only further in."""
    write_video(path, 40, 8, noise=True, options={"movflags": "faststart"})
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[:int(len(data) * fraction)])
    return str(path)


def reference_decode(path: str, fps: float, min_frames: int, max_frames: int):
    """The decoder before it kept only sampled frames: decode all, then pick."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        native_fps = float(stream.average_rate or stream.guessed_rate or 1.0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    n = round(len(frames) / native_fps * fps)
    n = max(min_frames, min(max_frames, n))
    n = max(2, (n // 2) * 2)
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int).tolist()
    return np.stack([frames[i] for i in idx]), idx, native_fps, len(frames)


VIDEOS = {  # name -> (frames, fps, write_video options)
    "mp4_8fps_5s": (40, 8, {}),
    "mp4_25fps_odd": (63, 25, {}),
    "mp4_30fps_short": (7, 30, {}),
    "mkv_no_frame_count": (50, 24, {"fmt": "matroska"}),
    "webm_vp9_no_frame_count": (30, 12, {"codec": "libvpx-vp9"}),
    "mp4_variable_rate": (40, 25, {"pts_ms": np.cumsum([0] + [30, 70, 40, 100, 20] * 8)[:40].tolist()}),
}
SETTINGS = [(2.0, 2, 8), (1.0, 4, 16), (8.0, 2, 64)]  # (fps, min_frames, max_frames); the last repeats frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    ext = {"fmt": ".mkv", "codec": ".webm"}
    out = {}
    for name, (n, fps, opts) in VIDEOS.items():
        suffix = next((ext[k] for k in ext if k in opts), ".mp4")
        out[name] = write_video(d / f"{name}{suffix}", n, fps, **opts)
    return out


@pytest.mark.parametrize("name", VIDEOS)
@pytest.mark.parametrize("fps,min_frames,max_frames", SETTINGS)
def test_same_frames_as_decoding_everything(videos, name, fps, min_frames, max_frames):
    frames, idx, native_fps, total = reference_decode(videos[name], fps, min_frames, max_frames)
    got = video.decode_video(videos[name], fps, min_frames, max_frames)
    assert total == VIDEOS[name][0]
    assert (got.indices, got.native_fps, got.total_frames) == (idx, native_fps, total)
    assert got.frames.dtype == np.uint8 and np.array_equal(got.frames, frames)
    meta = got.metadata()
    assert (meta.total_num_frames, meta.fps, meta.frames_indices) == (total, native_fps, idx)


def test_containers_without_a_frame_count_are_covered(videos):
    """The mkv and webm cases exercise the packet count, the mp4 ones the header's."""
    for name in ("mkv_no_frame_count", "webm_vp9_no_frame_count"):
        with av.open(videos[name]) as container:
            assert container.streams.video[0].frames == 0
    with av.open(videos["mp4_8fps_5s"]) as container:
        assert container.streams.video[0].frames == 40


@pytest.mark.parametrize("wrong", [0, 5, 39, 41, 400])
def test_a_wrong_frame_count_guess_still_gives_the_same_frames(videos, monkeypatch, wrong):
    """Containers may announce a count the decoder does not deliver (edit lists): the decode's own
    count wins, and the right frames are decoded again when the guess picked others."""
    path = videos["mp4_8fps_5s"]
    frames, idx, native_fps, total = reference_decode(path, 2.0, 2, 8)
    monkeypatch.setattr(video, "_frame_count_guess", lambda p: (native_fps, wrong))
    got = video.decode_video(path, 2.0, 2, 8)
    assert (got.indices, got.total_frames) == (idx, total) and np.array_equal(got.frames, frames)


RSS_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import av
import numpy as np
from veripo.media import decode as video
{reference}
def peak():
    # VmHWM is this process's own high-water mark; getrusage's maxrss would start at pytest's (the parent's)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024
video.decode_video({small!r}, 2.0, 2, 4)
reference_decode({small!r}, 2.0, 2, 4)  # both code paths loaded before the baseline
before = peak()
{call}
print(peak() - before)
"""


def peak_growth(call: str, path: str, small: str) -> int:
    """How far decoding in a fresh interpreter raises its peak RSS, in bytes."""
    script = RSS_SCRIPT.format(root=str(ROOT), reference=inspect.getsource(reference_decode), small=small,
                               call=call.format(path=path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from Linux's /proc")
def test_peak_memory_is_bounded_by_the_kept_frames(tmp_path):
    width, height, n = 320, 240, 400
    path = write_video(tmp_path / "long.mp4", n, 25, width, height, fast=True)
    small = write_video(tmp_path / "small.mp4", 8, 8)
    all_frames = n * width * height * 3  # 92 MB as RGB
    old = peak_growth("reference_decode({path!r}, 2.0, 2, 4)", path, small)
    new = peak_growth("video.decode_video({path!r}, 2.0, 2, 4)", path, small)
    assert old > 0.8 * all_frames  # the measure sees what holding every frame costs
    assert new < 0.25 * all_frames, (new, old)


def test_truncated_video_fails_where_its_first_frame_did_not(tmp_path):
    path = truncated_video(tmp_path / "cut.mp4")
    with av.open(path) as container:
        next(container.decode(video=0))  # what the old pre-check decoded: fine
    with pytest.raises(InputError, match=rf"q\.jsonl, line 4, field 'video': unreadable video {path}"):
        video.decode_video(path, 2.0, 2, 8, source="q.jsonl, line 4")
    assert media_check.probe_video(path, {"fps": 2.0, "min_frames": 2, "max_frames": 8}).startswith("unreadable")


NON_REGULAR_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from veripo.media import checks as media_check
from veripo.media import decode as video
from veripo.errors import InputError
for call in (lambda: video.decode_video({fifo!r}, 2.0, source="q.jsonl, line 2"),
             lambda: video.load_image({fifo!r}, source="q.jsonl, line 3"),
             lambda: video.decode_video({folder!r}, 2.0),
             lambda: media_check.check_training_media([{{"video": {fifo!r}, "_source": "q.jsonl, line 5"}}],
                                                      {{"fps": 2.0, "max_frames": 8}})):
    try:
        call()
    except InputError as exc:
        print(exc)
print("probe:", media_check.probe_video({fifo!r}))
"""


def test_named_pipes_and_folders_are_refused_without_opening_them(tmp_path):
    fifo, folder = tmp_path / "clip.mp4", tmp_path / "dir.mp4"
    os.mkfifo(fifo)
    folder.mkdir()
    script = NON_REGULAR_SCRIPT.format(root=str(ROOT), fifo=str(fifo), folder=str(folder))
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("opening a named pipe as a video or image hangs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"q.jsonl, line 2, field 'video': video {fifo} is {video.NOT_REGULAR}",
        f"q.jsonl, line 3, field 'image': image {fifo} is {video.NOT_REGULAR}",
        f"{folder}, field 'video': video {folder} is {video.NOT_REGULAR}",
        f"q.jsonl, line 5, field 'video': unreadable video {fifo}: {video.NOT_REGULAR}",
        f"probe: unreadable: {video.NOT_REGULAR}",
    ]


def test_training_media_are_checked_before_the_first_round(tmp_path):
    media = {"fps": 2.0, "min_frames": 2, "max_frames": 8}
    write_video(tmp_path / "good.mp4", 16, 8)
    truncated_video(tmp_path / "cut.mp4")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    base = {"question": "What colour?", "answer": "A", "answer_type": "multiple_choice", "options": ["red", "blue"]}
    rows = [dict(base, id="q1", video="good.mp4"), dict(base, id="q2", video="cut.mp4"),
            dict(base, id="q3", image="bad.png"), dict(base, id="q4", video="good.mp4"),
            dict(base, id="q5", video="cut.mp4")]
    qfile = tmp_path / "train.jsonl"
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = queries.load_queries(str(qfile))
    media_check.check_training_media([records[0], records[3]], media)
    with pytest.raises(InputError) as err:
        media_check.check_training_media(records, media)
    message = str(err.value)
    assert message.startswith(f"{qfile}, line 2, field 'video': unreadable video {tmp_path / 'cut.mp4'}: ")
    assert message.endswith(f"; 2 more records with missing or unreadable media: {qfile}, line 3 (image); "
                            f"{qfile}, line 5 (video)")
    assert "\n" not in message
    os.remove(tmp_path / "good.mp4")
    with pytest.raises(InputError, match=rf"line 1, field 'video': video file not found: .*good\.mp4"):
        media_check.check_training_media(records[:1], media)


def test_images_decode_and_garbage_is_named(tmp_path):
    from PIL import Image

    Image.fromarray(frame_image(3, 32, 24)).save(tmp_path / "ok.png")
    assert video.load_image(str(tmp_path / "ok.png")).size == (32, 24)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"q\.jsonl, line 7, field 'image': unreadable image"):
        video.load_image(str(tmp_path / "bad.png"), source="q.jsonl, line 7")

