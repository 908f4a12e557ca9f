"""Which checkpoint a score belongs to: a content hash of its weights."""
from __future__ import annotations

import hashlib
from pathlib import Path


def checkpoint_hash(path: str) -> str:
    """sha256 over the checkpoint's weight files (names and bytes), in name order."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) if p.is_dir() else []
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest() if files else "unhashed:" + str(path)
