"""The frame cache returns exactly what decoding returns: a hit is pixel-equal to decode_video with equal
metadata; any change of sampling settings or of the file's bytes (even in place, mtime kept) misses; a
damaged entry is decoded again and rewritten; two processes writing one entry never leave a partial one;
the size cap holds; errors are decode_video's."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from veripo.data import synthetic
from veripo.errors import InputError
from veripo.hashing import sha256_file
from veripo.media import decode
from veripo.media import frame_cache

SETTINGS = (2.0, 2, 8)  # fps, min_frames, max_frames


def write_video(path, color: str = "red", frames: int = 24, size: int = 64, fps: int = 8) -> str:
    synthetic.write_mp4(path, synthetic.draw_frames("right", color, 2, frames, size), fps)
    return str(path)


@pytest.fixture
def decodes(monkeypatch) -> list:
    """The paths decode.read_video was called on (every decode, cached or not, ends there)."""
    calls = []
    real = decode.read_video

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode, "read_video", counting)
    return calls


def entries(cache) -> list[str]:
    return sorted(n for n in os.listdir(cache) if n.endswith(frame_cache.ENTRY_SUFFIX))


def assert_same_clip(got: decode.DecodedVideo, want: decode.DecodedVideo) -> None:
    assert got.frames.dtype == want.frames.dtype == np.uint8
    assert got.frames.shape == want.frames.shape
    assert np.array_equal(got.frames, want.frames)
    assert (got.indices, got.native_fps, got.total_frames) == (want.indices, want.native_fps, want.total_frames)
    assert dataclasses.asdict(got.metadata()) == dataclasses.asdict(want.metadata())


def test_hit_is_pixel_equal_to_decode_video(tmp_path, decodes):
    video = write_video(tmp_path / "v.mp4", frames=27, fps=9)  # 3 s at 9 fps: indices are not a simple stride
    cache = str(tmp_path / "cache")
    want = decode.decode_video(video, *SETTINGS)
    first = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    assert len(decodes) == 2 and entries(cache) != []
    hit = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    assert len(decodes) == 2, "the second call decoded again"
    assert_same_clip(first, want)
    assert_same_clip(hit, want)
    # the media checks' entry point shares the entries
    assert_same_clip(frame_cache.read_video(video, *SETTINGS, cache_dir=cache), want)
    assert len(decodes) == 2 and len(entries(cache)) == 1
    assert not [n for n in os.listdir(cache) if n.endswith(frame_cache.TEMP_SUFFIX)]


@pytest.mark.parametrize("changed", [(4.0, 2, 8), (2.0, 6, 8), (2.0, 2, 4)], ids=["fps", "min_frames", "max_frames"])
def test_any_sampling_setting_misses(tmp_path, decodes, changed):
    video = write_video(tmp_path / "v.mp4", frames=48)  # 6 s: each change samples other frames
    cache = str(tmp_path / "cache")
    frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    got = frame_cache.decode_video(video, *changed, cache_dir=cache)
    assert len(decodes) == 2 and len(entries(cache)) == 2
    assert_same_clip(got, decode.decode_video(video, *changed))


def test_file_replaced_in_place_misses(tmp_path, decodes):
    video = write_video(tmp_path / "v.mp4", "red")
    cache = str(tmp_path / "cache")
    red = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    other = write_video(tmp_path / "other.mp4", "blue")
    blue = decode.decode_video(other, *SETTINGS)
    before = os.stat(video)
    with open(video, "r+b") as fh:  # same inode, new bytes, then the old timestamps back (as cp -p, rsync do)
        fh.truncate(0)
        fh.write(open(other, "rb").read())
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(video).st_ino == before.st_ino and os.stat(video).st_mtime_ns == before.st_mtime_ns
    n = len(decodes)
    got = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    assert len(decodes) == n + 1, "the old video's entry was served"
    assert_same_clip(got, blue)
    assert not np.array_equal(got.frames, red.frames)


@pytest.mark.parametrize("damage", ["truncated", "bit_flip", "empty", "foreign_key"])
def test_damaged_entry_is_decoded_again_and_rewritten(tmp_path, decodes, damage):
    video = write_video(tmp_path / "v.mp4")
    cache = str(tmp_path / "cache")
    want = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    [name] = entries(cache)
    entry = os.path.join(cache, name)
    data = bytearray(open(entry, "rb").read())
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "bit_flip":
        data[len(data) // 2] ^= 0x10  # inside the frames: only the zip's CRC-32 notices
    elif damage == "empty":
        data = b""
    else:  # another video's whole entry under this name (copied by hand, say)
        scratch, key = str(tmp_path / "scratch"), "0" * 64
        other = decode.decode_video(write_video(tmp_path / "other.mp4", "blue"), *SETTINGS)
        frame_cache.store_entry(scratch, key, other)
        data = open(os.path.join(scratch, key + frame_cache.ENTRY_SUFFIX), "rb").read()
    open(entry, "wb").write(bytes(data))
    n = len(decodes)
    got = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    assert len(decodes) == n + 1, "the damaged entry was served"
    assert_same_clip(got, want)
    assert_same_clip(frame_cache.decode_video(video, *SETTINGS, cache_dir=cache), want)
    assert len(decodes) == n + 1, "the entry was not rewritten whole"


WRITER = """
import sys
import numpy as np
from pathlib import Path
from veripo.hashing import sha256_file
from veripo.media import decode, frame_cache

video, cache, go, rounds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
settings = (2.0, 2, 8)
clip = decode.decode_video(video, *settings)
key = frame_cache.entry_key(sha256_file(video), *settings)
entry = f"{cache}/{key}{frame_cache.ENTRY_SUFFIX}"
while not go.exists():
    pass
for _ in range(rounds):
    frame_cache.store_entry(cache, key, clip)
    got = frame_cache.load_entry(entry, key)  # None on a partial or damaged entry
    assert got is not None, "read a partial entry"
    assert np.array_equal(got.frames, clip.frames)
print("ok")
"""


def test_concurrent_writers_never_leave_a_partial_entry(tmp_path):
    # 8 frames of 320x320: each write is 2.4 MB, long enough for the two writers' writes to overlap
    video = write_video(tmp_path / "v.mp4", frames=32, size=320)
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, video, str(cache), str(go), "40"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert len(entries(cache)) == 1 and os.listdir(cache) == entries(cache), "temporary files left behind"
    assert_same_clip(frame_cache.decode_video(video, *SETTINGS, cache_dir=str(cache)),
                     decode.decode_video(video, *SETTINGS))


def test_size_cap_keeps_the_most_recently_used(tmp_path, decodes):
    cache = str(tmp_path / "cache")
    videos = [write_video(tmp_path / f"{c}.mp4", c) for c in ("red", "green", "blue")]
    frame_cache.decode_video(videos[0], *SETTINGS, cache_dir=cache)
    size = os.path.getsize(os.path.join(cache, entries(cache)[0]))
    cap = 2 * size + size // 2  # room for two entries
    frame_cache.decode_video(videos[1], *SETTINGS, cache_dir=cache, max_bytes=cap)
    old = os.path.join(cache, entries(cache)[0])
    for e in entries(cache):  # make the order of use unambiguous on coarse clocks
        os.utime(os.path.join(cache, e), (1, 1))
    frame_cache.decode_video(videos[0], *SETTINGS, cache_dir=cache, max_bytes=cap)  # a hit: now most recent
    assert len(decodes) == 2 and os.path.exists(old)
    frame_cache.decode_video(videos[2], *SETTINGS, cache_dir=cache, max_bytes=cap)
    assert len(entries(cache)) == 2
    assert sum(os.path.getsize(os.path.join(cache, e)) for e in entries(cache)) <= cap
    frame_cache.decode_video(videos[0], *SETTINGS, cache_dir=cache, max_bytes=cap)
    frame_cache.decode_video(videos[2], *SETTINGS, cache_dir=cache, max_bytes=cap)
    assert len(decodes) == 3, "evicted an entry used more recently than the one it kept"


def test_errors_are_decode_videos(tmp_path):
    cache = str(tmp_path / "cache")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    for path in (str(tmp_path / "missing.mp4"), str(bad)):
        with pytest.raises(InputError) as plain:
            decode.decode_video(path, *SETTINGS, source="q.jsonl, line 3")
        with pytest.raises(InputError) as cached:
            frame_cache.decode_video(path, *SETTINGS, source="q.jsonl, line 3", cache_dir=cache)
        assert str(cached.value) == str(plain.value)
    assert not os.path.exists(cache) or entries(cache) == []


def test_no_cache_dir_is_plain_decoding(tmp_path, decodes):
    video = write_video(tmp_path / "v.mp4")
    for _ in range(2):
        assert_same_clip(frame_cache.decode_video(video, *SETTINGS), decode.decode_video(video, *SETTINGS))
    assert len(decodes) == 4


def test_key_names_file_content_and_settings(tmp_path):
    video = write_video(tmp_path / "v.mp4")
    digest = sha256_file(video)
    keys = {frame_cache.entry_key(digest, *s) for s in (SETTINGS, (2, 2, 8))}
    assert len(keys) == 1, "2 and 2.0 fps are one setting"
    assert frame_cache.entry_key("0" * 64, *SETTINGS) not in keys


def test_config_bound_holds_for_the_media_checks(tmp_path, default_config):
    from veripo.config import validate_config
    from veripo.media import checks
    from veripo.stage_config import MediaConfig

    cfg = dict(default_config, media=dict(default_config["media"], frame_cache=str(tmp_path / "cache")))
    cfg["media"]["frame_cache_max_bytes"] = 1
    media = dataclasses.asdict(MediaConfig.from_config(validate_config(cfg)["media"]))
    videos = [write_video(tmp_path / f"{c}.mp4", c) for c in ("red", "green", "blue")]
    assert checks.probe_video(videos[0], media) is None
    size = os.path.getsize(os.path.join(media["frame_cache"], entries(media["frame_cache"])[0]))
    media["frame_cache_max_bytes"] = 2 * size + size // 2
    for v in videos:
        assert checks.probe_video(v, media) is None
    cache = media["frame_cache"]
    assert len(entries(cache)) == 2
    assert sum(os.path.getsize(os.path.join(cache, e)) for e in entries(cache)) <= media["frame_cache_max_bytes"]


@pytest.mark.parametrize("bad", [0, -5, "1GB", 1.5])
def test_config_bound_is_validated(default_config, bad):
    from veripo.config import ConfigError, validate_config

    cfg = dict(default_config, media=dict(default_config["media"], frame_cache_max_bytes=bad))
    with pytest.raises(ConfigError, match="frame_cache_max_bytes"):
        validate_config(cfg)


def test_dead_writers_temporaries_are_removed(tmp_path):
    video = write_video(tmp_path / "v.mp4")
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    host = frame_cache.HOST
    names = {
        "dead": f".{'a' * 64}.{dead_pid}.0011aabb.{host}{frame_cache.TEMP_SUFFIX}",
        "alive": f".{'b' * 64}.{os.getppid()}.0011aabb.{host}{frame_cache.TEMP_SUFFIX}",
        "other_host": f".{'c' * 64}.{dead_pid}.0011aabb.elsewhere.example{frame_cache.TEMP_SUFFIX}",
        "old_other_host": f".{'d' * 64}.{dead_pid}.0011aabb.elsewhere.example{frame_cache.TEMP_SUFFIX}",
    }
    for name in names.values():
        (cache / name).write_bytes(b"half an entry")
    old = os.path.getmtime(cache / names["old_other_host"]) - frame_cache.STALE_TEMP_SECONDS - 60
    os.utime(cache / names["old_other_host"], (old, old))
    frame_cache.decode_video(video, *SETTINGS, cache_dir=str(cache))  # a write, no size bound
    left = set(os.listdir(cache))
    assert names["dead"] not in left and names["old_other_host"] not in left
    assert names["alive"] in left, "removed the temporary of a writer still running"
    assert names["other_host"] in left, "removed a recent temporary whose writer cannot be checked here"
    assert len(entries(cache)) == 1


def test_an_entry_evicted_under_a_reader_is_read_whole_or_decoded_again(tmp_path, decodes, monkeypatch):
    video = write_video(tmp_path / "v.mp4")
    cache = str(tmp_path / "cache")
    want = frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    real_load = np.load

    def evicted_after_open(path, *args, **kwargs):
        z = real_load(path, *args, **kwargs)
        frame_cache.trim(cache, 1)  # another process evicts it while this one holds it open
        return z

    monkeypatch.setattr(np, "load", evicted_after_open)
    assert_same_clip(frame_cache.decode_video(video, *SETTINGS, cache_dir=cache), want)
    assert len(decodes) == 1 and entries(cache) == []

    def evicted_before_open(path, *args, **kwargs):
        frame_cache.trim(cache, 1)
        return real_load(path, *args, **kwargs)

    frame_cache.decode_video(video, *SETTINGS, cache_dir=cache)
    monkeypatch.setattr(np, "load", evicted_before_open)
    assert_same_clip(frame_cache.decode_video(video, *SETTINGS, cache_dir=cache), want)
    assert len(decodes) == 3


EVICTING_READER = """
import sys
import numpy as np
from pathlib import Path
from veripo.media import decode, frame_cache

video, cache, go, rounds, cap = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
want = decode.decode_video(video, 2.0, 2, 8)
while not go.exists():
    pass
for _ in range(rounds):
    got = frame_cache.decode_video(video, 2.0, 2, 8, cache_dir=cache, max_bytes=cap)
    assert np.array_equal(got.frames, want.frames) and got.indices == want.indices
print("ok")
"""


def test_processes_evicting_each_others_entries_read_right_frames(tmp_path):
    # room for one entry: every write evicts the other process's entry, often while it is being read
    videos = [write_video(tmp_path / f"{c}.mp4", c, frames=32, size=160) for c in ("red", "blue")]
    cache, go = tmp_path / "cache", tmp_path / "go"
    frame_cache.decode_video(videos[0], *SETTINGS, cache_dir=str(cache))
    cap = os.path.getsize(cache / entries(cache)[0]) * 3 // 2
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", EVICTING_READER, v, str(cache), str(go), "25", str(cap)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in videos]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert len(entries(cache)) == 1 and os.listdir(cache) == entries(cache)
