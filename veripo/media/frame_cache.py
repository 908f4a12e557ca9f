"""Sampled video frames cached on disk, so a video is decoded once for all the stages that read it.

A 3-iteration run decodes each training video up to 15 times (per iteration: the GRPO job's media check,
one decode per GRPO epoch, the DPO job's one) and each benchmark video twice (the check, then the
question); see speed/frame_cache.py. ``decode_video`` here is ``veripo.media.decode.decode_video``
with a ``cache_dir``: it returns the same frames, pixel for pixel, and the same metadata.

Key. An entry is named by the sha256 of: the video file's sha256, the sampling settings (fps, min and
max frames: everything ``decode.read_video`` takes), and the decoder (the sha256 of decode.py, PyAV's
and FFmpeg's versions), so a change of sampling code or decoder misses instead of serving old frames.
The file is hashed in full on every call rather than trusted by size, mtime and inode: a file rewritten
in place with its mtime kept (``cp -p``, ``rsync --inplace``, ``touch -r``) or within one timestamp tick
keeps all three, and a hit must never be another video's frames. Hashing reads the file once at disk
speed, while decoding reads it too and then decodes every frame (the sampled frames are picked from a
full decode), so the hash costs a small share of a decode (speed/frame_cache.py prints it). The pixel
budgets (min/max pixels) are not in the key: the entry holds the frames before the processor resizes
them, as decode_video returns them, so training and evaluation with different budgets share it.

Entries are ``<key>.npz`` files written to a temporary name in the same folder and renamed, so readers
(other ranks, other jobs) see a whole entry or none; two writers of one entry write the same frames
and metadata, and the last rename wins. An entry that does not load (cut short, bit flips: the zip's CRC-32 catches them)
or that holds another key is a miss: the video is decoded again and the entry rewritten. One entry is
in memory at a time.

Size. With ``max_bytes`` (config ``media.frame_cache_max_bytes``) the folder is trimmed after each write,
least recently used first: a hit refreshes the entry's mtime, so the mtimes order the entries by last use
across every process sharing the folder. Several processes may trim at once and evict an entry another
is about to read: a reader that finds it gone decodes again, and one that opened it before the removal
reads it whole (an open file outlives its name). Each write also removes the temporary files of writers
that died mid-write (killed, out of memory): a temporary is named after its writer's host and pid, and
goes once that process no longer exists on this host, or in any case once it is STALE_TEMP_SECONDS old
(a writer on another host of a shared file system, whose pid cannot be checked here).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import numpy as np

from veripo.hashing import sha256_file
from veripo.media import decode
from veripo.media.decode import DecodedVideo

log = logging.getLogger(__name__)

ENTRY_SUFFIX = ".npz"
TEMP_SUFFIX = ".tmp"
STALE_TEMP_SECONDS = 3600  # a temporary file this old belongs to a writer that died, wherever it ran
# "." separates the parts of a temporary's name: a host name keeps its dots, other characters are dropped
HOST = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_.") or "localhost"


@functools.cache
def decoder_identity() -> dict:
    """What, besides the file and the sampling settings, decides the decoded frames."""
    import av

    return {"decode_py": sha256_file(decode.__file__), "pyav": av.__version__,
            "ffmpeg": {name: list(version) for name, version in sorted(av.library_versions.items())}}


def entry_key(video_sha256: str, fps: float, min_frames: int, max_frames: int) -> str:
    spec = {"video_sha256": video_sha256, "fps": float(fps), "min_frames": int(min_frames),
            "max_frames": int(max_frames), "decoder": decoder_identity()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def decode_video(path: str, fps: float, min_frames: int = 2, max_frames: int = 16, source: str | None = None,
                 *, cache_dir: str | None = None, max_bytes: int | None = None) -> DecodedVideo:
    """``decode.decode_video`` through the cache in ``cache_dir`` (None: no cache). Errors are decode_video's,
    naming ``source``. ``max_bytes``: trim the cache to this size after a write (None: no cap)."""
    return _through_cache(path, fps, min_frames, max_frames, cache_dir, max_bytes,
                          lambda: decode.decode_video(path, fps, min_frames, max_frames, source))


def read_video(path: str, fps: float, min_frames: int = 2, max_frames: int = 16, *, cache_dir: str | None = None,
               max_bytes: int | None = None) -> DecodedVideo:
    """``decode.read_video`` (raises UnreadableMedia) through the cache, for the media checks: a hit means
    these very bytes decoded to their last frame before, which is what a check asks."""
    return _through_cache(path, fps, min_frames, max_frames, cache_dir, max_bytes,
                          lambda: decode.read_video(path, fps, min_frames, max_frames))


def _through_cache(path: str, fps: float, min_frames: int, max_frames: int, cache_dir: str | None,
                   max_bytes: int | None, decode_now: Callable[[], DecodedVideo]) -> DecodedVideo:
    if cache_dir is None or decode.file_problem(path):
        return decode_now()  # a missing file or a pipe fails there, with the uncached error
    try:
        before = _file_state(path)
        key = entry_key(sha256_file(path), fps, min_frames, max_frames)
    except OSError:
        return decode_now()
    entry = os.path.join(cache_dir, key + ENTRY_SUFFIX)
    clip = load_entry(entry, key)
    if clip is not None:
        _touch(entry)
        return clip
    clip = decode_now()
    try:
        unchanged = _file_state(path) == before
    except OSError:
        unchanged = False
    # A file replaced between the hash and the decode would file its new frames under the old hash.
    if unchanged:
        store_entry(cache_dir, key, clip, max_bytes)
    return clip


def _file_state(path: str) -> tuple:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _touch(entry: str) -> None:
    try:
        os.utime(entry)
    except OSError:
        pass  # a read-only cache still serves hits; only the eviction order goes stale


def load_entry(entry: str, key: str) -> DecodedVideo | None:
    """The entry's clip, or None when it is absent, does not load whole, or holds another key."""
    try:
        with np.load(entry, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["key"] != key:
                return None
            frames = z["frames"]
            indices, native_fps, total = list(meta["indices"]), float(meta["native_fps"]), int(meta["total_frames"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001  a damaged header fails in numpy's parser with any of a dozen types
        log.warning("frame cache entry %s does not load (%s): decoding again", entry, exc)
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(indices) != len(frames):
        log.warning("frame cache entry %s holds frames %s %s for %d indices: decoding again", entry,
                    frames.dtype, frames.shape, len(indices))
        return None
    return DecodedVideo(frames, indices, native_fps, total)


def store_entry(cache_dir: str, key: str, clip: DecodedVideo, max_bytes: int | None = None) -> None:
    """Write the entry atomically; a cache that cannot be written is logged, never fatal (it only saves time)."""
    entry = os.path.join(cache_dir, key + ENTRY_SUFFIX)
    tmp = os.path.join(cache_dir, f".{key}.{os.getpid()}.{secrets.token_hex(4)}.{HOST}{TEMP_SUFFIX}")
    try:
        os.makedirs(cache_dir, exist_ok=True)
        # os.open honours the umask (mkstemp would make the entry private to this user)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
            # float repr in JSON round-trips exactly, so native_fps comes back bit-equal
            meta = {"key": key, "indices": [int(i) for i in clip.indices], "native_fps": float(clip.native_fps),
                    "total_frames": int(clip.total_frames)}
            np.savez(fh, meta=np.array(json.dumps(meta)), frames=clip.frames)
        os.replace(tmp, entry)
    except OSError as exc:
        log.warning("frame cache: cannot write %s (%s): continuing without it", entry, exc)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return
    try:
        trim(cache_dir, max_bytes, keep=entry)
    except OSError as exc:
        log.warning("frame cache: cannot trim %s to %s bytes (%s)", cache_dir, max_bytes, exc)


def trim(cache_dir: str, max_bytes: int | None, keep: str | None = None) -> None:
    """Remove dead writers' temporaries, then the least recently used entries until the folder holds at
    most ``max_bytes`` of them (None: no cap; ``keep``, the entry just written, stays even when it alone
    is larger)."""
    entries, now = [], time.time()
    with os.scandir(cache_dir) as it:
        for e in it:
            try:
                st = e.stat()
            except FileNotFoundError:
                continue  # removed by another process meanwhile
            if e.name.endswith(TEMP_SUFFIX):
                if writer_gone(e.name, now - st.st_mtime):
                    _remove(e.path)
            elif e.name.endswith(ENTRY_SUFFIX) and not e.name.startswith("."):
                entries.append((st.st_mtime, st.st_size, e.path))
    if max_bytes is None:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path != keep:
            _remove(path)
            total -= size


def writer_gone(temp_name: str, age_s: float) -> bool:
    """Whether the process writing temporary ``temp_name`` (``.<key>.<pid>.<token>.<host>.tmp``) is gone."""
    if age_s > STALE_TEMP_SECONDS:
        return True
    parts = temp_name[1:-len(TEMP_SUFFIX)].split(".", 3)
    if len(parts) != 4 or parts[3] != HOST or not parts[1].isdigit():
        return False  # another host's writer (or a name of unknown shape): only its age tells
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # alive, another user's (or no pid this system has): only its age tells
    return False


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
