"""sha256 of files, read in 1 MiB chunks: what scores, runs and step checkpoints are identified by."""
from __future__ import annotations

import hashlib
import os

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
