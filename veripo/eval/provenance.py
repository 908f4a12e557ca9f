"""Which checkpoint a score belongs to: a content hash of its weights."""
from __future__ import annotations

from pathlib import Path

from veripo.hashing import sha256_named_files


def checkpoint_hash(path: str) -> str:
    """sha256 over the checkpoint's weight files (names and bytes), in name order."""
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) if p.is_dir() else []
    return sha256_named_files(files) if files else "unhashed:" + str(path)
