"""sha256 of files, read in 1 MiB chunks: what scores, runs and step checkpoints are identified by.
Media (thousands of videos named by a training or question file) are hashed through a cache keyed by
each file's identity, so a job start does not read them all again."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import time

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def _feed(h, path: str | os.PathLike, limit: int | None = None) -> None:
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)


def sha256_file(path: str | os.PathLike, limit: int | None = None) -> str:
    """sha256 of the file's bytes (of its first ``limit`` bytes when given)."""
    h = hashlib.sha256()
    _feed(h, path, limit)
    return h.hexdigest()


def sha256_named_files(paths: list[str | os.PathLike]) -> str:
    """One sha256 over each file's name and bytes, in the order given: renaming a shard changes it."""
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.basename(path).encode())
        _feed(h, path)
    return h.hexdigest()


# A file whose ctime is this close to the moment it is hashed may still change within the same
# timestamp tick (coarse kernel clocks, NFS), keeping its ctime: its digest is not cached.
RACY_NS = 1_000_000_000


def media_hash_cache() -> str:
    """Where ``sha256_files_cached`` keeps digests: one file per user, as a video set is shared by every
    run, iteration and stage that reads it, and lives outside any run directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "veripo", "media-sha256.json")


def _stamp(st: os.stat_result) -> list[int]:
    # ctime is in the key because no user tool sets it back: a file rewritten in place with its size and
    # mtime kept (cp -p, rsync --inplace, touch -r) still gets a new ctime
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _read_cache(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            cache = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _still_valid(path: str, entry) -> bool:
    try:
        return isinstance(entry, list) and len(entry) == 2 and entry[0] == _stamp(os.stat(path))
    except OSError:
        return False


def _write_cache(path: str, new: dict) -> None:
    """Merge ``new`` into the cache file (atomically; a concurrent writer's entries may be lost, which
    only costs a hash later) and drop entries whose file is gone or changed, so it holds live files only."""
    merged = {k: v for k, v in _read_cache(path).items() if k not in new and _still_valid(k, v)}
    merged.update(new)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(merged, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("media hash cache %s not updated (%s): the files will be hashed again next time", path, exc)
        with contextlib.suppress(OSError):
            os.remove(tmp)


def sha256_files_cached(paths: list[str], cache_file: str | None = None) -> dict[str, str]:
    """{path: sha256 of its bytes} for every path, each file hashed only when the cache (``cache_file``,
    default ``media_hash_cache()``) holds no digest for its identity: absolute path, device, inode, size,
    mtime and ctime. A missing file or one that is not a regular file (a FIFO would block the read) is
    "missing" or "not a regular file", so a resume still sees it change."""
    cache_file = cache_file or media_hash_cache()
    cache = _read_cache(cache_file)
    digests, new = {}, {}
    for path in dict.fromkeys(paths):
        key = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError:
            digests[path] = "missing"
            continue
        if not stat.S_ISREG(st.st_mode):
            digests[path] = "not a regular file"
            continue
        entry = cache.get(key)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == _stamp(st):
            digests[path] = entry[1]
            continue
        started = time.time_ns()
        digests[path] = sha256_file(path)
        try:
            unchanged = _stamp(os.stat(path)) == _stamp(st)
        except OSError:
            unchanged = False
        if unchanged and st.st_ctime_ns < started - RACY_NS:
            new[key] = [_stamp(st), digests[path]]
    if new:
        _write_cache(cache_file, new)
    return digests
